"""Helper for tests/test_distributed.py: issue 15's equality check on real digits.

Usage: ``python distributed_mnist.py OUT.npz [--syncbn]``, alone or under ``mpiexec -n 2``.
Trains a small LeNet-style network in float64 on the first 1,024 digits bundled with corenet,
global batch 64, two epochs, seed 0, and writes the final weights (rank 0). ``--syncbn`` adds
batch norms, synchronised when there is more than one rank (plain in one process), so the runs
must agree either way.
"""

import sys

import numpy as np

import corenet
import corenet.distributed as dist
from corenet import Input, Model, optim
from corenet import layers as L


def main(out, syncbn):
    dist.init()
    (x, y), _ = corenet.data.load_bundled(normalize=True)
    x, y = x[:1024].astype(np.float64), y[:1024]
    inp = Input((1, 28, 28), dtype=np.float64)
    h = L.Conv2d(6, 5, padding=2)(inp)
    h = L.BatchNorm2d()(h) if syncbn else h
    h = L.MaxPool2d(2)(L.ReLU()(h))
    h = L.MaxPool2d(2)(L.ReLU()(L.Conv2d(16, 5)(h)))
    h = L.ReLU()(L.Linear(32)(L.Flatten()(h)))
    model = Model(inp, L.Linear(10)(h), seed=0)
    if syncbn and dist.size() > 1:
        dist.convert_sync_batchnorm(model)
    model.compile(optim.SGD(lr=0.05, momentum=0.9), "cross_entropy")
    model.fit(x, y, batch_size=64, epochs=2, seed=0, verbose=0)
    if dist.is_main():
        np.savez(out, **{k: v for k, v in model.state_dict().items()})


if __name__ == "__main__":
    main(sys.argv[1], "--syncbn" in sys.argv[2:])
