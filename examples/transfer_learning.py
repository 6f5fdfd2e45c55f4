"""Transfer learning, the lecture's recipe: reuse features learned on digits 0-4 for digits 5-9.

1. Train a base LeNet-5 on digits 0-4.
2. For digits 5-9 with only a small training set, compare three ways:
   a. feature extraction: cut the base before its classifier, freeze it, train a new head;
   b. fine-tuning: start from (a) and also train the top layers at a 10x lower learning rate;
   c. training the same network from scratch on the small set.
With little data, (a) and (b) beat (c); that gap is the point of transfer learning.

    python examples/transfer_learning.py
"""

import argparse

import numpy as np

from corenet import Model, data, models, optim
from corenet import layers as L


def subset(x, y, digits, n=None):
    keep = np.isin(y, digits)
    x, y = x[keep], y[keep] - min(digits)
    return (x[:n], y[:n]) if n else (x, y)


def accuracy(model, x, y):
    return float(np.mean(model.predict(x, batch_size=512).argmax(axis=1) == y))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", type=int, default=300, help="training images of digits 5-9")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--smoke", action="store_true", help="a few batches, for CI")
    args = ap.parse_args(argv)
    epochs, base_n, small = (1, 256, 64) if args.smoke else (args.epochs, None, args.small)

    (x_train, y_train), (x_test, y_test) = data.load_bundled(normalize=True)
    base_train = subset(x_train, y_train, [0, 1, 2, 3, 4], base_n)
    new_train = subset(x_train, y_train, [5, 6, 7, 8, 9], small)
    new_test = subset(x_test, y_test, [5, 6, 7, 8, 9])
    fit = dict(batch_size=32, epochs=epochs, seed=0, verbose=0)

    # 1. the base network, on digits 0-4
    base = models.lenet5(num_classes=5, seed=0)
    base.compile(optim.Adam(lr=2e-3), "cross_entropy")
    base.fit(*base_train, batch_size=64, epochs=max(1, epochs // 2), seed=0, verbose=0)
    print(f"base network on digits 0-4: test accuracy {accuracy(base, *subset(x_test, y_test, [0, 1, 2, 3, 4])):.2%}")

    # 2a. frozen feature extractor + new head: cut at the 84-unit features
    features = base.cut(base.layers[-2].name)  # the ReLU after fc2: (N, 84) features
    for layer in features.layers:
        layer.trainable = False
    head = L.Linear(5, name="new_head")(features.output)
    transfer = Model(features.input, head, name="transfer", seed=1)
    frozen_before = {k: v.copy() for k, v in features.parameters().items()}
    transfer.compile(optim.Adam(lr=3e-3), "cross_entropy")
    transfer.fit(*new_train, **fit)
    assert all((v == frozen_before[k]).all() for k, v in features.parameters().items()), "frozen weights moved"
    acc_frozen = accuracy(transfer, *new_test)

    # 2b. fine-tune the fully connected layers too, 10x slower than the head
    for name in ("fc1", "fc2"):
        layer = transfer.get_layer(name)
        layer.trainable, layer.lr_mult = True, 0.1
    transfer.compile(optim.Adam(lr=3e-3), "cross_entropy")
    transfer.fit(*new_train, **fit)
    acc_finetuned = accuracy(transfer, *new_test)

    # 2c. the same architecture from scratch on the same small set
    scratch = models.lenet5(num_classes=5, seed=2)
    scratch.compile(optim.Adam(lr=3e-3), "cross_entropy")
    scratch.fit(*new_train, **fit)
    acc_scratch = accuracy(scratch, *new_test)

    print(f"digits 5-9 with {len(new_train[0])} training images, test accuracy:")
    print(f"  frozen features + new head  {acc_frozen:.2%}")
    print(f"  + fine-tuned fc layers      {acc_finetuned:.2%}")
    print(f"  from scratch                {acc_scratch:.2%}")


if __name__ == "__main__":
    main()
