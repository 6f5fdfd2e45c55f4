"""Residual and Inception building blocks with the graph API: ``Add``, ``Concat``, fan-out.

Shows: a tensor used by several layers (fan-out), a residual block (He et al., 2015) merged with
``Add``, an Inception module (Szegedy et al., 2014) merged with ``Concat`` along channels, the
``summary()`` table with its "connected to" column, and a short training run on the bundled
MNIST digits to show that gradients flow through both kinds of merge (validated on 10% of the
training images; the test set is read once, at the end).

    python examples/residual_and_inception.py
"""

import argparse

from corenet import Input, Model, data, optim
from corenet import layers as L


def conv_bn_relu(x, channels, kernel, stride=1):
    h = L.Conv2d(channels, kernel, stride=stride, padding=kernel // 2, bias=False)(x)
    return L.ReLU()(L.BatchNorm2d()(h))


def residual_block(x, channels, stride=1):
    """y = relu(F(x) + shortcut(x)); a 1x1 projection when the shape changes (option B)."""
    h = conv_bn_relu(x, channels, 3, stride)
    h = L.BatchNorm2d()(L.Conv2d(channels, 3, padding=1, bias=False)(h))
    shortcut = x
    if stride != 1 or x.shape[0] != channels:
        shortcut = L.BatchNorm2d()(L.Conv2d(channels, 1, stride=stride, bias=False)(x))
    return L.ReLU()(L.Add()([h, shortcut]))


def inception_module(x, c1, c3r, c3, c5r, c5, pool_proj):
    """Four branches on the same input, concatenated along channels: 1x1, 1x1->3x3, 1x1->5x5, pool->1x1."""
    b1 = conv_bn_relu(x, c1, 1)
    b2 = conv_bn_relu(conv_bn_relu(x, c3r, 1), c3, 3)
    b3 = conv_bn_relu(conv_bn_relu(x, c5r, 1), c5, 5)
    b4 = conv_bn_relu(L.MaxPool2d(3, 1, padding=1)(x), pool_proj, 1)
    return L.Concat()([b1, b2, b3, b4])  # channels: c1 + c3 + c5 + pool_proj


def build(num_classes=10):
    x = Input((1, 28, 28))
    h = conv_bn_relu(x, 16, 3)
    h = residual_block(h, 16)
    h = residual_block(h, 32, stride=2)  # 14x14, projection shortcut
    h = inception_module(h, 16, 16, 24, 4, 8, 8)  # 56 channels
    h = L.GlobalAvgPool2d()(h)
    out = L.Linear(num_classes)(L.Flatten()(h))
    return Model(x, out, name="res_inception_demo", seed=0)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--train-size", type=int, default=4000)
    ap.add_argument("--smoke", action="store_true", help="a few batches, for CI")
    args = ap.parse_args(argv)

    model = build()
    model.summary()
    (x_train, y_train), (x_test, y_test) = data.load_bundled(normalize=True)
    n = 256 if args.smoke else args.train_size
    epochs = 1 if args.smoke else args.epochs
    model.compile(optim.SGD(lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4), "cross_entropy",
                  metrics=["accuracy"])
    # drop_last: a last batch of 16 images at this rate moves the weights away from what the batch-norm
    # running statistics describe, and the evaluation (which uses them) collapses
    model.fit(x_train[:n], y_train[:n], batch_size=64, epochs=epochs, seed=0, validation_split=0.1, drop_last=True)
    result = model.evaluate(x_test, y_test, batch_size=512)
    print(f"test accuracy {result['accuracy']:.2%}")


if __name__ == "__main__":
    main()
