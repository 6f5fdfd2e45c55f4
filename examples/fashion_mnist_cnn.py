"""A small CNN with batch norm and dropout on Fashion-MNIST.

Shows: a ``Sequential`` model with ``BatchNorm2d`` and ``Dropout``, data augmentation applied in
``fit`` (random shifts and horizontal flips), and ``ReduceLROnPlateau`` (the AlexNet recipe).
The shared data holds the first 8,226 training images: the last 1,000 are the test set, read once at
the end; 10% of the others (stratified) validate each epoch and drive the learning-rate plateau.

    python examples/fashion_mnist_cnn.py --data-dir ../shared/data/fashion-mnist
"""

import argparse
import time

import numpy as np

from corenet import Sequential, callbacks, data, optim
from corenet import layers as L
from corenet.data import augment as A


def build(seed=0):
    return Sequential([
        L.Conv2d(32, 3, padding=1, bias=False), L.BatchNorm2d(), L.ReLU(),
        L.Conv2d(32, 3, padding=1, bias=False), L.BatchNorm2d(), L.ReLU(), L.MaxPool2d(2),
        L.Conv2d(64, 3, padding=1, bias=False), L.BatchNorm2d(), L.ReLU(), L.MaxPool2d(2),
        L.Flatten(), L.Dropout(0.3), L.Linear(128), L.ReLU(), L.Dropout(0.3), L.Linear(10),
    ], input_shape=(1, 28, 28), name="fashion_cnn", seed=seed)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default="../shared/data/fashion-mnist")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--test-size", type=int, default=1000)
    ap.add_argument("--smoke", action="store_true", help="a few batches, for CI")
    args = ap.parse_args(argv)

    x, y = data.load_fashion_mnist(args.data_dir, split="train", normalize=True)
    k = args.test_size
    (x_train, y_train), (x_test, y_test) = (x[:-k], y[:-k]), (x[-k:], y[-k:])
    if args.smoke:
        x_train, y_train, x_test, y_test, args.epochs = x_train[:256], y_train[:256], x_test[:128], y_test[:128], 1
    print(f"Fashion-MNIST: {len(x_train)} train (10% of them validate), {len(x_test)} test; "
          f"classes {np.bincount(y_train).tolist()}")

    model = build()
    model.summary()
    model.compile(optim.Adam(lr=2e-3), "cross_entropy", metrics=["accuracy"])
    augment = A.Compose([A.RandomHorizontalFlip(), A.RandomShift(2)])
    plateau = callbacks.ReduceLROnPlateau(monitor="val_accuracy", factor=0.1, patience=2)
    t0 = time.perf_counter()
    model.fit(x_train, y_train, batch_size=64, epochs=args.epochs, seed=0, transform=augment,
              validation_split=0.1, callbacks=[plateau])
    result = model.evaluate(x_test, y_test, batch_size=512)  # the test set, once
    print(f"test accuracy {result['accuracy']:.2%} ({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
