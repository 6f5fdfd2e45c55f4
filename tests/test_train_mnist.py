"""A real training run: LeNet-5 on 10,000 MNIST training images reaches >= 98% on the official test set.

Recipe: Adam, lr 3e-3 decayed by 0.8 per epoch (``ExponentialLR`` through
``LearningRateScheduler``), batch 64, random shifts of up to 2 pixels (edge fill), 12 epochs; inputs
standardised with the training set's mean and standard deviation. Measured with seed 0: test
accuracy 98.1-98.6% from epoch 8 on and 98.78% after epoch 12 (without the shifts the same network
peaks near 97.8%: 10,000 images are few).
"""

import time
from pathlib import Path

import numpy as np
import pytest

from corenet import Input, Model, callbacks, optim
from corenet import layers as L
from corenet.data import RandomShift, load_mnist

MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"


def lenet5(seed=0):
    """LeNet-5 with ReLU and max pooling: conv6@5x5 pad 2, pool, conv16@5x5, pool, 120, 84, 10."""
    x = Input((1, 28, 28))
    h = L.MaxPool2d(2, name="s2")(L.ReLU()(L.Conv2d(6, 5, padding=2, name="c1")(x)))
    h = L.MaxPool2d(2, name="s4")(L.ReLU()(L.Conv2d(16, 5, name="c3")(h)))
    h = L.ReLU()(L.Linear(120, name="c5")(L.Flatten()(h)))
    h = L.ReLU()(L.Linear(84, name="f6")(h))
    return Model(x, L.Linear(10, name="output")(h), seed=seed)


@pytest.mark.slow
def test_lenet5_mnist_reaches_98_percent(capsys):
    if not MNIST.is_dir():
        pytest.fail(f"the shared MNIST files are missing: {MNIST}")
    x, y = load_mnist(MNIST, "train")
    x_test, y_test = load_mnist(MNIST, "test")
    assert x.shape == (10000, 1, 28, 28) and x_test.shape == (10000, 1, 28, 28)
    x = x.astype(np.float32) / 255.0
    x_test = x_test.astype(np.float32) / 255.0
    mean, std = float(x.mean()), float(x.std())
    x = (x - mean) / std
    x_test = (x_test - mean) / std

    model = lenet5(seed=0)
    model.compile(optim.Adam(lr=3e-3), "cross_entropy")
    schedule = callbacks.LearningRateScheduler(optim.ExponentialLR(gamma=0.8))
    start = time.perf_counter()
    history = model.fit(x, y, batch_size=64, epochs=12, seed=0, transform=RandomShift(2, mode="edge"),
                        callbacks=[schedule], verbose=2)
    seconds = time.perf_counter() - start
    result = model.evaluate(x_test, y_test, batch_size=500)
    with capsys.disabled():
        print(f"\nLeNet-5 MNIST (10k train): test accuracy {result['accuracy']:.4f}, "
              f"loss {result['loss']:.4f}, fit {seconds:.1f} s")
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert result["accuracy"] >= 0.98
