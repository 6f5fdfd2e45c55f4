"""What ``Model.fit``, ``evaluate`` and ``predict`` call under MPI (size > 1): the per-step gradient
buckets, the per-rank streams, rank 0's checkpoint read, and the sharding of evaluation and
prediction: the training floor's half of ``corenet.distributed`` (it hooks into the layers' backward).
The world, the collectives, ``shard`` and synchronised batch norm are in ``world.py``,
``collectives.py`` and ``sync_bn.py``; the package docstring gives the semantics.
"""

from __future__ import annotations

import os

import numpy as np

from ..layers import base as _base
from .collectives import _allreduce, _broadcast_optimizer, _check_host, _flat_dtype, _mpi_min, broadcast_params
from .sync_bn import _has_sync_batchnorm
from .world import _comm, broadcast_object, is_main, rank, size

last_buckets = None  # the GradBuckets of the latest data-parallel fit (bucket count, early starts, wait)


# ------------------------------------------------------------------------------ fit / evaluate hooks
def read_on_main(path, read):
    """``read(path)`` on every rank, with RANK 0's file: ``None`` when rank 0 has no file at ``path``.

    Rank 0 reads the file's bytes and broadcasts them; the other ranks read a private temporary copy,
    so their hosts need no copy of the checkpoint (``fit(resume=...)``). In a world of size 1 this is
    ``read(path) if os.path.exists(path) else None``.
    """
    if size() == 1:
        return read(path) if os.path.exists(path) else None
    exists = broadcast_object(os.path.exists(path) if is_main() else None)
    if not exists:
        return None
    if is_main():
        with open(path, "rb") as f:
            broadcast_object(f.read())
        return read(path)
    import tempfile

    data = broadcast_object(None)
    with tempfile.TemporaryDirectory(prefix="corenet-resume-") as tmp:
        copy = os.path.join(tmp, os.path.basename(os.fspath(path)))
        with open(copy, "wb") as f:
            f.write(data)
        return read(copy)


def bucket_bytes() -> int:
    """The gradient bucket size in bytes: ``CORENET_BUCKET_MB`` MiB (default 25; read when ``fit`` starts)."""
    raw = os.environ.get("CORENET_BUCKET_MB", "").strip()
    try:
        mb = float(raw) if raw else 25.0
    except ValueError:
        mb = float("nan")
    if not mb > 0 or mb == float("inf"):
        raise ValueError(f"CORENET_BUCKET_MB must be a positive number of MiB, received {raw!r}")
    return max(1, int(mb * 2 ** 20))


class GradBuckets:
    """Sums a model's gradients over the ranks in flat buckets, started during backward.

    The trainable layers' gradient arrays, taken in the REVERSE order of ``model.gradients()`` (about
    the order backward completes them), are laid out in flat buffers of ``limit`` bytes or a little
    more (an array is never split; the buffers are float64 when any gradient is, else float32). In a
    step, :meth:`ready` (installed as ``corenet.layers.base.grad_ready`` around ``backward``) copies a
    layer's gradients times ``m`` into their buckets as soon as the layer stores them; a bucket whose
    gradients are all in, and whose predecessors have started, starts its ``Iallreduce`` at once.
    :meth:`finish` packs what backward did not report (layers without a gradient this step, layers
    called more than once, a rank without samples), starts the remaining buckets and the statistics in
    bucket order (the same on every rank: the layout depends only on the model) and waits for all.
    """

    def __init__(self, model, comm, limit: int):
        self.comm = comm
        entries = [(layer, g) for layer in model.layers if layer.trainable for g in layer.gradients().values()]
        arrays = [g for _, g in entries]
        _check_host(arrays, "fit")
        self.key = tuple(map(id, arrays))
        self.dtype = _flat_dtype(arrays) if arrays else np.float64
        item = np.dtype(self.dtype).itemsize
        sizes, cur = [], 0
        self.slots = []  # per array of entries, reversed: (bucket, offset, array)
        for _, g in reversed(entries):
            self.slots.append((len(sizes), cur, g))
            cur += g.size
            if cur * item >= limit:
                sizes.append(cur)
                cur = 0
        if cur:
            sizes.append(cur)
        self.bufs = [np.empty(n, self.dtype) for n in sizes]
        self.counts = [0] * len(sizes)
        for b, _, _ in self.slots:
            self.counts[b] += 1
        by_layer: dict = {}
        for (layer, _), slot in zip(reversed(entries), self.slots):
            by_layer.setdefault(id(layer), (layer, []))[1].append(slot)
        self.layers = list(by_layer.values())  # [(layer, [slots])]
        # only a layer called once in any graph stores its gradient once per backward: report those early
        self.index = {id(layer): i for i, (layer, _) in enumerate(self.layers) if len(layer._nodes) == 1}
        self.early = 0  # buckets started before finish() in the last step
        self.wait_s = 0.0  # seconds finish() spent waiting in the last step

    def start(self, m: int) -> None:
        """A new step on ``m`` local samples."""
        self.m, self.next, self.reqs, self.early = m, 0, [], 0
        self.pending = list(self.counts)
        self.done = [False] * len(self.layers)

    def _pack_layer(self, i: int) -> None:
        for b, lo, g in self.layers[i][1]:
            if b < self.next:
                raise RuntimeError(f"fit: {self.layers[i][0].label()} stored its gradient again after its bucket "
                                   "was sent; a layer called twice must not be reported early")
            np.multiply(g.reshape(-1), self.m, out=self.bufs[b][lo:lo + g.size], casting="unsafe")
            if not self.done[i]:
                self.pending[b] -= 1
        self.done[i] = True

    def _launch(self, everything: bool = False) -> None:
        from mpi4py import MPI

        while self.next < len(self.bufs) and (everything or self.pending[self.next] == 0):
            self.reqs.append(self.comm.Iallreduce(MPI.IN_PLACE, self.bufs[self.next], op=MPI.SUM))
            self.next += 1

    def ready(self, layer) -> None:
        """``grad_ready`` hook: ``layer`` has stored its gradients."""
        i = self.index.get(id(layer))
        if i is None:
            return
        self._pack_layer(i)
        before = self.next
        self._launch()
        self.early += self.next - before
        if self.reqs and before == self.next:
            from mpi4py import MPI

            MPI.Request.Testall(self.reqs)  # lets MPI progress the buckets in flight

    def finish(self, stats: list) -> np.ndarray:
        """Pack the rest, start the remaining buckets and ``stats``, wait; returns the summed ``stats``."""
        import time

        from mpi4py import MPI

        for i, (layer, _) in enumerate(self.layers):
            if not self.done[i]:
                layer.gradients()  # zeros for a layer without a gradient this step
                self._pack_layer(i)
        self._launch(everything=True)
        tail = np.array(stats, self.dtype)
        self.reqs.append(self.comm.Iallreduce(MPI.IN_PLACE, tail, op=MPI.SUM))
        t = time.perf_counter()
        MPI.Request.Waitall(self.reqs)
        self.wait_s = time.perf_counter() - t
        self.reqs = []
        return tail

    def unpack(self, scale: float) -> None:
        """Every gradient := its summed bucket entries times ``scale``."""
        for b, lo, g in self.slots:
            np.multiply(self.bufs[b][lo:lo + g.size].reshape(g.shape), scale, out=g, casting="unsafe")


def reseed_layers(model, seed: int, epoch: int, rank_: int) -> int:
    """Give every layer that owns a generator (``layer.rng``: dropout) the stream
    ``SeedSequence([seed, epoch, 2, i, rank])``, ``i`` its index in ``model.layers``; returns how
    many were set. ``fit`` calls it at each epoch's start when more than one rank trains."""
    count = 0
    for i, layer in enumerate(model.layers):
        if isinstance(getattr(layer, "rng", None), np.random.Generator):
            layer.rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(epoch), 2, i, int(rank_)]))
            count += 1
    return count


class FitSync:
    """What ``fit`` does differently in a world of size > 1 (``corenet.training.loop`` holds one or None).

    Built at the start of ``fit``; broadcasts the seed, the weights and the optimizer state.
    """

    def __init__(self, model, seed):
        self.rank, self.size = rank(), size()
        self.main = self.rank == 0
        self.seed = broadcast_object(seed)
        self.sync_bn = _has_sync_batchnorm(model)
        self.limit = bucket_bytes()
        self.buckets = None  # GradBuckets, built in the first step (rebuilt if the gradient arrays change)
        broadcast_params(model)
        _broadcast_optimizer(model.optimizer)

    @staticmethod
    def create(model, seed):
        """A ``FitSync`` when ``size() > 1``, else None (the single-process path is untouched)."""
        return FitSync(model, seed) if size() > 1 else None

    def begin_epoch(self, model, epoch):
        """Per-rank generators of the model's layers for ``epoch`` (see the module docstring)."""
        reseed_layers(model, self.seed, epoch, self.rank)

    def train_step(self, model, xs, y, nan_policy, sums):
        """One synchronous step on this rank's share ``(xs, y)`` (it may be empty).

        Returns ``(loss, m)``: the mean loss over the global batch and its size ``M``; adds the
        global batch's metric sums to ``sums``. Every rank calls this the same number of times.
        """
        m = len(xs[0])
        if self.sync_bn:  # a rank without samples would not join the batch norms' collectives: a hang
            fewest = _comm().allreduce(m, op=_mpi_min())
            if fewest == 0:
                raise ValueError(
                    f"fit: synchronised batch norm needs samples on every one of the {self.size} ranks in each "
                    "step, but a global batch left a rank none; use a batch_size (and a data set, or "
                    "drop_last=True) giving at least one sample per rank")
        params, mult = model._step_args()
        grads = model.gradients()
        if self.buckets is None or self.buckets.key != tuple(map(id, grads.values())):
            self.buckets = GradBuckets(model, _comm(), self.limit)
            global last_buckets
            last_buckets = self.buckets
        buckets = self.buckets
        buckets.start(m)
        model.zero_grad()
        loss = 0.0
        local = [[0.0, 0] for _ in sums]
        if m:
            outputs = model.forward(xs if len(xs) > 1 else xs[0], training=True)
            outputs = list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
            targets = model._targets(y, len(outputs))
            loss, gys = model._compute_loss(outputs, targets)
            if np.isfinite(loss) or self.sync_bn:  # synchronised batch norm: every rank joins its backward
                _base.grad_ready = buckets.ready  # each layer's gradients go to their bucket as they come
                try:
                    model.backward(gys if len(gys) > 1 else gys[0], need_input_grads=False)
                finally:
                    _base.grad_ready = None
            model._accumulate(local, outputs, targets)
        tail = buckets.finish([loss * m, m] + [v for acc in local for v in acc]).astype(np.float64)
        k = len(tail)
        total = int(round(tail[1]))
        loss = float(tail[0]) / total
        for acc, i in zip(sums, range(2, k, 2)):
            acc[0] += float(tail[i])
            acc[1] += int(round(tail[i + 1]))
        if not np.isfinite(loss):
            if nan_policy == "raise":
                raise FloatingPointError(
                    f"train_on_batch: the loss is {loss} (over the {self.size} ranks); the step was not applied. "
                    "Lower the learning rate, check the inputs for NaN/inf, or pass callbacks=[TerminateOnNaN()] "
                    "to fit to stop cleanly")
            return loss, total
        buckets.unpack(1.0 / total)
        model.optimizer.step(params, grads, lr_mult=mult)
        return loss, total


def fit_callbacks(cbs: list) -> list:
    """``fit``'s callbacks on this rank: rank 0 keeps all; the others drop those that write files
    (``ModelCheckpoint``, ``CSVLogger``)."""
    if size() == 1 or is_main():
        return cbs
    from .. import callbacks as _cb

    return [cb for cb in cbs if not isinstance(cb, (_cb.ModelCheckpoint, _cb.CSVLogger))]


def eval_share(xs: list, y):
    """``evaluate``'s share of this rank: samples ``rank::size`` (everything in a world of size 1)."""
    p = size()
    if p == 1:
        return xs, y
    r = rank()
    y = [a[r::p] for a in y] if isinstance(y, (list, tuple)) else y[r::p]
    return [np.ascontiguousarray(a[r::p]) for a in xs], y


def eval_reduce(loss_sum: float, n: int, sums: list):
    """Sum ``evaluate``'s loss sum, sample count and metric sums over the ranks (one ``Allreduce``)."""
    if size() == 1:
        return loss_sum, n, sums
    buf = np.array([loss_sum, n] + [v for acc in sums for v in acc], np.float64)
    _allreduce(_comm(), buf)
    return float(buf[0]), int(round(buf[1])), [[float(buf[i]), int(round(buf[i + 1]))]
                                                 for i in range(2, len(buf), 2)]


def predict_gather(predict_block, xs: list):
    """Run ``predict_block(xs_block)`` (a list of output arrays) on this rank's contiguous block of
    ``xs`` and all-gather the blocks in rank order: every rank returns the full list of outputs."""
    p = size()
    if p == 1:
        return predict_block(xs)
    r, n = rank(), len(xs[0])
    lo, hi = n * r // p, n * (r + 1) // p
    block = predict_block([a[lo:hi] for a in xs]) if hi > lo else None
    parts = [b for b in _comm().allgather(block) if b is not None]
    return [np.concatenate([b[i] for b in parts]) for i in range(len(parts[0]))]
