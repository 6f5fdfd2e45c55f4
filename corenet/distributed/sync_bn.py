"""Synchronised batch norm (PyTorch's ``SyncBatchNorm``): statistics over the global batch.

A batch-norm layer is recognised by its boolean ``sync`` attribute (``BatchNorm1d``/``BatchNorm2d``
have one), so this module imports no layer: ``layers/norm.py`` asks :func:`batch_norm_reducer` for
the reducer during a training step.
"""

from __future__ import annotations

import numpy as np

from .collectives import _allreduce
from .world import _comm, size


def _is_batch_norm(layer) -> bool:
    return isinstance(getattr(layer, "sync", None), bool)


def convert_sync_batchnorm(model):
    """Set ``sync=True`` on every batch-norm layer of ``model`` (``BatchNorm1d``/``BatchNorm2d``, also
    inside nested models), in place; returns ``model``. Weights and running statistics are kept, and
    the flag is saved with the model's config. Harmless in a world of size 1 (plain batch norm)."""
    seen = set()

    def visit(layers):
        for layer in layers:
            if id(layer) in seen:
                continue
            seen.add(id(layer))
            if _is_batch_norm(layer):
                layer.sync = True
            inner = getattr(layer, "layers", None)
            if isinstance(inner, (list, tuple)):
                visit(inner)

    visit(model.layers)
    return model


class _BatchNormReducer:
    """Merges a batch-norm layer's per-channel statistics and gradient sums over the ranks.

    Forward, ONE ``Allgather`` of ``(n_r, mean_r, var_r)`` (float64, ``2C + 1`` values per rank), merged
    on every rank in rank order with Chan et al.'s parallel formula (no sum-of-squares cancellation;
    the same bits on every rank)::

        N = sum n_r,  mean = sum n_r mean_r / N,  var = (sum n_r var_r + sum n_r (mean_r - mean)^2) / N

    Backward, ONE ``Allreduce`` of ``n_r * (sum gy, sum gy*(x - mean))`` divided by ``n_r`` afterwards
    (``n_r``: this rank's samples). ``fit`` scales rank ``r``'s gradients by ``n_r / N`` when it averages
    them, so weighting the sums by ``n_r`` makes the input gradient exactly the one-process gradient of
    the mean loss over the global batch, also for unequal shares; with equal shares it is the plain
    sum (PyTorch's ``SyncBatchNorm``). ``gamma``/``beta`` gradients stay per rank (the gradient
    allreduce combines them). A custom loop that averages gradients unweighted should give every rank
    the same number of samples.
    """

    def __init__(self, comm, p):
        self.comm, self.p = comm, p

    def stats(self, M, mean, var):
        C = mean.shape[0]
        send = np.empty(2 * C + 1, np.float64)
        send[0], send[1:C + 1], send[C + 1:] = M, mean, var
        recv = np.empty((self.p, 2 * C + 1), np.float64)
        self.comm.Allgather(send, recv)
        n = recv[:, :1]
        means, vars_ = recv[:, 1:C + 1], recv[:, C + 1:]
        total = float(n.sum())
        gmean = (n * means).sum(axis=0) / total
        gvar = ((n * vars_).sum(axis=0) + (n * (means - gmean) ** 2).sum(axis=0)) / total
        return int(round(total)), gmean, gvar

    def sums(self, n, sums):
        sg, sgx = sums
        C = sg.shape[0]
        buf = np.empty(2 * C, np.float64)
        buf[:C], buf[C:] = sg, sgx
        buf *= n
        _allreduce(self.comm, buf)
        buf /= n
        return buf[:C], buf[C:]


def batch_norm_reducer():
    """The reducer a ``sync=True`` batch-norm layer uses in a training step: a :class:`_BatchNormReducer`
    over the world, or None in a world of size 1 (plain batch norm)."""
    comm = _comm()
    if comm is None or size() == 1:
        return None
    return _BatchNormReducer(comm, size())


def _has_sync_batchnorm(model) -> bool:
    stack, seen = list(model.layers), set()
    while stack:
        layer = stack.pop()
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        if _is_batch_norm(layer) and layer.sync and layer.trainable:
            return True
        inner = getattr(layer, "layers", None)
        if isinstance(inner, (list, tuple)):
            stack.extend(inner)
    return False

