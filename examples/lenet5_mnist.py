"""LeNet-5 on MNIST: the classic convolutional network, trained with the high-level ``fit`` API.

Shows: loading the official IDX files (or the subset bundled with corenet), a zoo model,
``compile``/``fit``/``evaluate``, and saving a checkpoint that ``corenet.load`` restores. Each
epoch is validated on 10% of the training images; the test set is read once, at the end.

    python examples/lenet5_mnist.py                             # the bundled subset, offline
    python examples/lenet5_mnist.py --data-dir ~/data/mnist     # the official 60k/10k files
"""

import argparse
import math
import time

import corenet
from corenet import data, models, optim


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", help="folder with the MNIST IDX files (default: the bundled subset)")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--checkpoint", default="lenet5_mnist.npz")
    ap.add_argument("--smoke", action="store_true", help="a few batches, for CI")
    args = ap.parse_args(argv)

    if args.data_dir:
        x_train, y_train = data.load_mnist(args.data_dir, split="train", normalize=True)
        x_test, y_test = data.load_mnist(args.data_dir, split="test", normalize=True)
    else:
        (x_train, y_train), (x_test, y_test) = data.load_bundled(normalize=True)
    if args.smoke:
        x_train, y_train, x_test, y_test, args.epochs = x_train[:256], y_train[:256], x_test[:128], y_test[:128], 1

    model = models.lenet5(seed=0)
    model.summary()
    model.compile(optim.Adam(lr=2e-3), "cross_entropy", metrics=["accuracy"])
    t0 = time.perf_counter()
    # a stratified 10% of the training images validates each epoch (drawn from the seed)
    history = model.fit(x_train, y_train, batch_size=args.batch_size, epochs=args.epochs, seed=0,
                        validation_split=0.1)
    seconds = time.perf_counter() - t0
    result = model.evaluate(x_test, y_test, batch_size=512)  # the test set, once
    n_fit = math.ceil(0.9 * len(x_train))  # what fit trained on
    print(f"validation accuracy {history.history['val_accuracy'][-1]:.2%}, test accuracy {result['accuracy']:.2%} "
          f"after {seconds:.1f} s ({args.epochs * n_fit / seconds:,.0f} images/s)")

    model.save(args.checkpoint)
    restored = corenet.load(args.checkpoint)
    assert (restored.predict(x_train[:32]) == model.predict(x_train[:32])).all()
    print(f"saved {args.checkpoint}; corenet.load() gives identical predictions")


if __name__ == "__main__":
    main()
