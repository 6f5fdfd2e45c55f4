"""The epoch loop behind ``Model.fit``: batching, callbacks, validation, progress, exact resume.

Arrays are served by a ``corenet.data.DataLoader`` (several inputs and targets, their dtypes kept:
float64 stays float64): epoch ``e`` serves the permutation of ``SeedSequence([seed, e])`` and augments
with the generator of ``SeedSequence([seed, e, 1])``. The sample order is therefore a function of
``(seed, e)`` alone, and the rest of the state a resumed run needs (weights, buffers, optimizer,
learning rate, every layer's random generator, callback states, history) is what
:func:`corenet.training.state.training_state` captures.
"""

from __future__ import annotations

import math
import os

import numpy as np

from .. import callbacks as _cb
from .. import distributed
from ..data.loader import DataLoader, os_seed
from ..distributed import fit as dist_fit
from .checks import _as_list, _take
from .progress import EpochProgress, resolve_verbose
from .state import restore, training_state

__all__ = ["run_fit"]


def _split_sizes(n, validation_split):
    if not 0.0 <= validation_split < 1.0:
        raise ValueError(f"fit: validation_split must be in [0, 1), received {validation_split}")
    at = int(math.ceil(n * (1.0 - validation_split)))
    if at == n or at == 0:
        raise ValueError(f"fit: validation_split={validation_split} leaves {n - at} validation and {at} training "
                         f"samples out of {n}")
    return n - at


def _split(xs, y, n_val, seed):
    """Hold out ``n_val`` samples chosen by ``SeedSequence([seed, 0, 2])``: stratified when ``y`` is (N,) integer
    labels (each class gives its proportional share, within one sample), else uniformly. Both sets keep the
    original relative order."""
    n = len(xs[0])
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0, 2]))
    labels = np.asarray(y) if not isinstance(y, (list, tuple)) else None
    if labels is not None and labels.ndim == 1 and np.issubdtype(labels.dtype, np.integer):
        # rank of each sample within its class (random), as a fraction of the class size: the lowest keys
        # over all classes take every class's share in turn
        perm = rng.permutation(n)
        _, inverse, counts = np.unique(labels[perm], return_inverse=True, return_counts=True)
        rank = np.empty(n)
        order = np.argsort(inverse, kind="stable")
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        rank[order] = np.arange(n) - np.repeat(starts, counts)
        key = (rank + 0.5) / counts[inverse]
        val = perm[np.argsort(key, kind="stable")[:n_val]]
    else:
        val = rng.permutation(n)[:n_val]
    is_val = np.zeros(n, dtype=bool)
    is_val[val] = True
    tr, va = np.flatnonzero(~is_val), np.flatnonzero(is_val)
    return [a[tr] for a in xs], _take(y, tr), ([a[va] for a in xs], _take(y, va))


def run_fit(model, x, y, *, batch_size, epochs, validation_data, validation_split, shuffle, seed, callbacks,
            verbose, transform, initial_epoch, resume, drop_last):
    model._require_compiled("fit")
    loader = x if hasattr(x, "set_epoch") and hasattr(x, "order") else None
    n_val = 0  # samples held out by validation_split
    if loader is not None:
        if y is not None:
            raise ValueError("fit: y must be None when x is a DataLoader (the loader holds the targets)")
        if validation_split or transform is not None:
            raise ValueError("fit: with a DataLoader, give the transform to the loader and pass validation_data "
                             f"(received validation_split={validation_split}, transform={transform!r})")
        batch_size, seed = loader.batch_size, loader.seed
        steps = len(loader)
    else:  # arrays, checked by Model.fit (count, kind, dtype, shapes, lengths, batch_size)
        xs = _as_list(x)
        if validation_split and validation_data is None:
            n_val = _split_sizes(len(xs[0]), validation_split)
        n = len(xs[0]) - n_val  # the split itself needs the resolved seed, below
        steps = n // batch_size if drop_last else math.ceil(n / batch_size)
        if steps == 0:
            raise ValueError(f"fit: drop_last=True with batch_size={batch_size} > {n} samples leaves no batch")
    if validation_data is not None:
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            raise ValueError("fit: validation_data must be a pair (x_val, y_val)")
    verbose = resolve_verbose(verbose)
    user_cbs = dist_fit.fit_callbacks(list(callbacks or []))  # MPI ranks > 0: no file writers
    history = _cb.History()
    # ModelCheckpoint runs last so the file it writes sees every other callback's end-of-epoch state.
    ordered = [cb for cb in user_cbs if not isinstance(cb, _cb.ModelCheckpoint)]
    ordered += [cb for cb in user_cbs if isinstance(cb, _cb.ModelCheckpoint)]
    all_cbs = [history, *ordered]
    for cb in all_cbs:
        cb.set_model(model)
    nan_policy = "stop" if any(isinstance(cb, _cb.TerminateOnNaN) for cb in user_cbs) else "raise"
    # under MPI rank 0's checkpoint, broadcast; in one process: the file if it exists
    state = None if resume is None else dist_fit.read_on_main(resume, lambda p: restore(model, p, all_cbs))
    if state is not None:
        if seed is not None and int(seed) != state["seed"]:
            raise ValueError(f"fit: resume={os.fspath(resume)!r} was trained with seed={state['seed']}, "
                             f"received seed={seed}; pass the same seed (or None) to continue it exactly")
        seed, initial_epoch = state["seed"], state["epoch"]
    elif seed is None:
        seed = os_seed()  # as a DataLoader draws one
    seed = int(seed)
    # MPI (size > 1): rank 0's seed, weights and optimizer state on every rank; None in one process
    sync = dist_fit.FitSync.create(model, seed)
    if sync is not None:
        seed, verbose = sync.seed, verbose if sync.main else 0
    if n_val:  # a function of the fit seed: the same on every rank and after a resume
        xs, y, validation_data = _split(xs, y, n_val, seed)
    if loader is None:  # the arrays in a DataLoader: its order and augmentation streams, the arrays' dtypes
        loader = DataLoader(xs, y, batch_size, shuffle=shuffle, seed=seed, drop_last=drop_last, transform=transform,
                            dtype=None)
    # per-batch hooks cost a dict per step: call only the callbacks that define them
    begin_cbs = [cb for cb in all_cbs if type(cb).on_batch_begin is not _cb.Callback.on_batch_begin]
    batch_cbs = [cb for cb in all_cbs if type(cb).on_batch_end is not _cb.Callback.on_batch_end]

    model.stop_training = False
    model._fit_ctx = {"epoch": initial_epoch, "seed": seed, "callbacks": all_cbs}
    try:
        for cb in all_cbs:
            cb.on_train_begin({})
        for epoch in range(initial_epoch, epochs):
            for cb in all_cbs:
                cb.on_epoch_begin(epoch, {})
            lr = float(model.optimizer.lr)
            if sync is not None:  # per-rank dropout streams for this epoch
                sync.begin_epoch(model, epoch)
            loader.set_epoch(epoch)
            batches = iter(loader) if sync is None else loader.iterate(epoch, sync.rank, sync.size)
            progress = EpochProgress(epoch, epochs, steps, verbose)
            loss_sum, seen = 0.0, 0
            sums = [[0.0, 0] for _ in model._metric_fns]
            for step, (xb, yb) in enumerate(batches):
                for cb in begin_cbs:
                    cb.on_batch_begin(step, {})
                xb = _as_list(xb)
                if sync is None:
                    loss, outputs, targets = model._train_step(xb, yb, nan_policy)
                    m = len(xb[0])
                    model._accumulate(sums, outputs, targets)
                else:  # this rank's share; one allreduce; global loss, batch size and metric sums
                    loss, m = sync.train_step(model, xb, yb, nan_policy, sums)
                loss_sum += loss * m
                seen += m
                if batch_cbs or verbose == 1:
                    logs = {"loss": loss_sum / seen, **model._metric_values(sums)}
                    for cb in batch_cbs:
                        cb.on_batch_end(step, logs)
                    progress.update(step + 1, logs)
                if model.stop_training:
                    break
            if hasattr(batches, "close"):
                batches.close()
            if sync is not None:
                distributed.average_buffers(model)  # batch-norm statistics: the same on every rank
            logs = {"loss": loss_sum / max(seen, 1), **model._metric_values(sums)}
            if validation_data is not None:
                val = model.evaluate(validation_data[0], validation_data[1], batch_size=batch_size)
                logs.update({f"val_{k}": v for k, v in val.items()})
            logs["lr"] = lr
            progress.end(logs)
            model._fit_ctx["epoch"] = epoch + 1
            for cb in all_cbs:
                cb.on_epoch_end(epoch, logs)
            if resume is not None and (sync is None or sync.main):
                model.save(resume)
            if model.stop_training:
                break
        for cb in all_cbs:
            cb.on_train_end({})
    finally:
        model._train_state = training_state(model)
        model._fit_ctx = None
    model.history = history
    return history
