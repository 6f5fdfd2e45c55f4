"""Helper for tests/test_distributed.py: one fit, run alone or under ``mpiexec -n 2``.

Usage: ``python distributed_fit.py OUT.npz [--loader] [--bn] [--syncbn] [--resume EPOCHS]``.

Trains a small convnet WITHOUT batch norm or dropout (batch norm normalises with each shard's own
statistics and dropout draws masks per rank, so with either the N-rank run is not the 1-process
run) for two epochs at a fixed seed on 101 samples with global batch 16 (the last batch holds 5:
3 on rank 0, 2 on rank 1), with validation, then evaluates and predicts. Rank 0 writes the final
weights, history, evaluation and prediction to OUT.npz. Without ``--loader`` it runs in float64
from arrays; with it, in float32 from a ``DataLoader`` (uint8 images).
``--bn`` adds a BatchNorm2d (the run then differs from one process; the ranks must still agree).
``--syncbn`` adds a BatchNorm2d (followed by a ReLU: the fused path) and a BatchNorm1d, made synchronised
with ``convert_sync_batchnorm`` when there is more than one rank: the run must equal the 1-process run
with plain batch norm.
Under MPI, rank 0 prints ``buckets N started-during-backward K`` for the last step (see ``GradBuckets``).
``--dropout`` adds a Dropout layer (per-rank mask streams: the ranks must agree on the weights, and
each rank prints its stream's state).
``--resume EPOCHS`` fits up to EPOCHS epochs with ``resume=OUT.ckpt.npz`` on rank 0 and a path that does
not exist on the other ranks (rank 0's checkpoint must reach them by broadcast).
"""

import sys

import numpy as np

import corenet.distributed as dist
import corenet.distributed.fit as dist_fit
from corenet import Input, Model, optim
from corenet import layers as L
from corenet.callbacks import CSVLogger
from corenet.data import DataLoader


def main(out, use_loader, bn, resume_epochs=None, syncbn=False, dropout=False):
    dist.init()
    dtype = np.float32 if use_loader else np.float64
    x = Input((2, 8, 8), dtype=dtype)
    h = L.Conv2d(4, 3, padding=1)(x)
    h = L.MaxPool2d(2)(L.ReLU()(L.BatchNorm2d(4)(h) if bn or syncbn else h))
    h = L.Flatten()(L.Conv2d(6, 3, stride=2, padding=1)(h))
    if dropout:
        h = L.Dropout(0.3, seed=5)(h)
    if syncbn:
        h = L.BatchNorm1d(momentum=0.3)(h)
    model = Model(x, L.Linear(3)(h), seed=3)
    if syncbn and dist.size() > 1:
        assert dist.convert_sync_batchnorm(model) is model
        assert [getattr(layer, "sync", None) for layer in model.layers if "batch_norm" in layer.name] == [True, True]
    if dist.rank() != 0:  # other ranks start from other weights: fit broadcasts rank 0's
        for p in model.state_dict().values():
            p += 1
    model.compile(optim.SGD(lr=0.05, momentum=0.9), "cross_entropy")
    rng = np.random.default_rng(1)
    n = 101
    images = rng.integers(0, 256, (n, 2, 8, 8)).astype(np.uint8)
    labels = rng.integers(0, 3, n)
    xv, yv = rng.standard_normal((23, 2, 8, 8)).astype(dtype), rng.integers(0, 3, 23)
    cbs = [CSVLogger(out + f".rank{dist.rank()}.csv")]  # rank 0 only under MPI
    if use_loader:
        data = DataLoader(images, labels, batch_size=16, seed=7)
        hist = model.fit(data, epochs=2, validation_data=(xv, yv), verbose=0, callbacks=cbs)
    else:
        xs = images.astype(np.float64) / 255
        resume = None
        if resume_epochs is not None:
            resume = out + ".ckpt.npz" if dist.is_main() else out + ".nowhere/ckpt.npz"
        hist = model.fit(xs, labels, batch_size=16, epochs=resume_epochs or 2, seed=7, validation_data=(xv, yv),
                         verbose=0, callbacks=cbs, resume=resume)
    ev = model.evaluate(xv, yv, batch_size=5)
    pred = model.predict(xv, batch_size=4)
    if dist.is_main():
        arrays = {f"w/{k}": v for k, v in model.state_dict().items()}
        arrays.update({f"h/{k}": np.array(v) for k, v in hist.history.items()})
        arrays.update({f"e/{k}": np.array(v) for k, v in ev.items()})
        np.savez(out, pred=pred, size=dist.size(), **arrays)
    else:  # every rank holds the same weights and the full prediction
        w0 = dist.broadcast_object(None)
        p0 = dist.broadcast_object(None)
        assert all(np.array_equal(w0[k], v) for k, v in model.state_dict().items()), "weights differ across ranks"
        assert np.array_equal(p0, pred), "predictions differ across ranks"
    if dist.is_main() and dist.size() > 1:
        dist.broadcast_object(model.state_dict())
        dist.broadcast_object(pred)
        b = dist_fit.last_buckets  # the gradient buckets of the last step (CORENET_BUCKET_MB sets their size)
        print(f"buckets {len(b.bufs)} started-during-backward {b.early}", flush=True)
    if dropout:  # each rank's dropout stream after the last epoch: different ranks, different streams
        layer = next(la for la in model.layers if isinstance(la, L.Dropout))
        print(f"<dropout {dist.rank()} {layer.rng.bit_generator.state['state']['state']}>", flush=True)


if __name__ == "__main__":
    args = sys.argv[2:]
    main(sys.argv[1], "--loader" in args, "--bn" in args,
         int(args[args.index("--resume") + 1]) if "--resume" in args else None, "--syncbn" in args,
         "--dropout" in args)
