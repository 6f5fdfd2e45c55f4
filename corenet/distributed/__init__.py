"""Data-parallel training over MPI (mpi4py), optional: ``pip install corenet[mpi]``.

::

    mpiexec -n 4 python train.py            # 4 processes ("ranks") on this machine

    import corenet.distributed as dist
    dist.init()                             # MPI world; a no-op world of size 1 without mpiexec
    model.fit(x, y, batch_size=256, epochs=30, seed=0)   # batch_size is the GLOBAL batch
    if dist.is_main(): model.save("final.npz")

mpi4py is imported only by :func:`init`, and only when the process was started by an MPI launcher
(``mpiexec``/``mpirun``/``srun`` set ``PMI_*``, ``OMPI_COMM_WORLD_*``, ``PMIX_RANK`` ...); otherwise,
or when mpi4py is not installed, the world is a single process and every function here is a no-op.
:func:`rank` and :func:`size` call :func:`init` on first use, so a script that never calls it still
runs data-parallel under ``mpiexec``. The world is process-wide state (MPI is), kept in this module.

What ``Model.fit`` does when ``size() > 1`` (the seam is :class:`FitSync`, called from ``fitting.py``):

- the seed (``seed=None``: drawn on rank 0) is broadcast, and every rank draws the same epoch
  permutation ``SeedSequence([seed, epoch])`` as a single process would; each global batch
  ``order[i*B:(i+1)*B]`` is split by striding, rank ``r`` taking ``batch[r::size]``. So every step's
  global batch is the same set of samples as in a one-process run, an uneven batch (the last one, or
  any ``B`` not divisible by the ranks) gives some ranks one sample more, and a rank may get none.
- rank 0's weights, buffers and optimizer state are broadcast at the start of ``fit``.
- each step: local forward/backward on the rank's share; every gradient, multiplied by the rank's
  sample count ``m_r``, is summed over the ranks in flat buckets (:class:`GradBuckets`, about
  ``CORENET_BUCKET_MB`` = 25 MiB each, filled in the order backward completes the layers): a bucket's
  non-blocking ``Iallreduce`` starts as soon as its last gradient is stored, so communication overlaps
  the rest of backward; then one small ``Iallreduce`` of the loss times ``m_r``, ``m_r`` and the metric
  sums, and one ``Waitall``. Dividing by ``M = sum m_r`` gives exactly the gradient of the mean-reduced
  loss over the global batch (up to float summation order), whatever the split. The sums are
  element-wise, so the bucket size changes no result.
- after each epoch the batch-norm running statistics are averaged over the ranks (``average_buffers``).
- synchronised batch norm (``BatchNorm2d(..., sync=True)``, or :func:`convert_sync_batchnorm`) takes
  the training statistics over the global batch (see :func:`batch_norm_reducer`); ``fit`` then
  requires every rank to have samples in every step (a global batch of at least ``size()``).
- loss and metrics are global; the progress bar, ``ModelCheckpoint``, ``CSVLogger`` and the
  ``resume`` checkpoint run on rank 0 only; resuming, rank 0 reads the checkpoint and broadcasts
  it (other hosts need no copy).
- ``evaluate`` (and validation) shards the samples ``r::size`` and reduces the sums;
  ``predict`` computes a contiguous block per rank and all-gathers it, so EVERY rank returns the
  full result.
- a transform/augmentation draws from ``SeedSequence([seed, epoch, 1, rank])`` on rank ``r``;
- every layer with a generator of its own (``Dropout``: ``layer.rng``) draws, during epoch
  ``epoch``, from ``SeedSequence([seed, epoch, 2, i, rank])`` (``i``: its index in
  ``model.layers``), set at each epoch's start (``reseed_layers``): ranks draw independent masks
  for their different samples, and a run resumed at an epoch boundary draws what the uninterrupted
  run drew.

Equality with a one-process run (same seed, up to float summation order) holds for models without
batch norm or with synchronised batch norm (plain batch norm computes its statistics over each
rank's shard, not the global batch, so the forward pass itself differs), without dropout (the
masks come from the per-rank streams above, not from the one-process stream) and without
augmentation.

Collectives: ``fit``, ``evaluate`` and ``predict`` must be called on every rank with the same
arguments (``if dist.is_main(): model.evaluate(...)`` would wait forever). Host (numpy) models only.
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np

__all__ = ["init", "rank", "size", "is_main", "barrier", "allreduce_mean_", "broadcast_params",
           "broadcast_object", "allreduce_gradients", "average_buffers", "read_on_main", "shard", "FitSync",
           "GradBuckets", "bucket_bytes", "convert_sync_batchnorm", "batch_norm_reducer"]

# Environment variables set by MPI launchers (MPICH/Hydra, Open MPI, PMIx, MVAPICH, Intel MPI, Slurm).
_LAUNCHER_ENV = ("PMI_RANK", "PMI_SIZE", "PMIX_RANK", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE",
                 "MPI_LOCALNRANKS", "HYDI_CONTROL_FD", "SLURM_PROCID")

last_buckets = None  # the GradBuckets of the latest data-parallel fit (bucket count, early starts, wait)
_world: dict | None = None  # {"comm": mpi4py communicator or None, "rank": int, "size": int}


def _launched_by_mpi() -> bool:
    return any(k in os.environ for k in _LAUNCHER_ENV)


def init(comm=None) -> dict:
    """Join the MPI world (once; later calls return the same world).

    Parameters
    ----------
    comm : mpi4py communicator, optional
        Use this communicator instead of ``MPI.COMM_WORLD`` (e.g. a split of it). Passing one
        re-initialises the world.

    Returns
    -------
    dict with ``rank``, ``size`` and ``comm`` (``None`` in a world of size 1 without MPI).

    Without an MPI launcher in the environment, or without mpi4py, this is a world of size 1 and
    mpi4py is not imported. In a world of size > 1 it also sets corenet's kernel threads to the
    host's cores divided by the ranks on the host (unless ``CORENET_NUM_THREADS`` or
    ``set_num_threads`` chose already), and makes an uncaught exception on any rank abort the
    whole job (``MPI.Abort`` after printing it) instead of leaving the others waiting.
    """
    global _world
    if _world is not None and comm is None:
        return _world
    if comm is None and _launched_by_mpi():
        try:
            from mpi4py import MPI
        except ImportError:
            n = os.environ.get("PMI_SIZE") or os.environ.get("OMPI_COMM_WORLD_SIZE")
            if n and int(n) > 1:
                import warnings

                warnings.warn(f"corenet.distributed: started by an MPI launcher with {n} processes but mpi4py is "
                              "not installed (pip install corenet[mpi]); every process trains ALONE",
                              RuntimeWarning, stacklevel=2)
        else:
            comm = MPI.COMM_WORLD
    if comm is None:
        _world = {"comm": None, "rank": 0, "size": 1}
        return _world
    _world = {"comm": comm, "rank": int(comm.Get_rank()), "size": int(comm.Get_size())}
    if _world["size"] > 1:
        _set_threads(comm)
        _abort_on_error(comm)
    return _world


def _set_threads(comm) -> None:
    from .. import config

    if os.environ.get("CORENET_NUM_THREADS") or config._state["num_threads"] is not None:
        return
    from mpi4py import MPI

    local = comm.Split_type(MPI.COMM_TYPE_SHARED)
    per_host = local.Get_size()
    local.Free()
    config.set_num_threads(max(1, config._max_threads() // per_host))


def _abort_on_error(comm) -> None:
    previous = sys.excepthook

    def hook(kind, value, tb):
        previous(kind, value, tb)
        sys.stderr.flush()
        # one unbuffered line, then a moment for mpiexec to forward the output: an Abort from
        # another rank can otherwise cut this rank's traceback off mid-line
        os.write(2, f"corenet: rank {comm.Get_rank()} failed: {kind.__name__}: {value}\n".encode(errors="replace"))
        time.sleep(0.2)
        comm.Abort(1)

    sys.excepthook = hook


def _comm():
    return (_world or init())["comm"]


def rank() -> int:
    """This process's rank, 0 .. size()-1 (0 without MPI)."""
    return (_world or init())["rank"]


def size() -> int:
    """Number of processes in the world (1 without MPI)."""
    return (_world or init())["size"]


def is_main() -> bool:
    """True on rank 0, the one that prints, logs and writes files."""
    return rank() == 0


def barrier() -> None:
    """Wait until every rank reaches this point (no-op in a world of size 1)."""
    comm = _comm()
    if comm is not None and size() > 1:
        comm.Barrier()


def broadcast_object(obj, root: int = 0):
    """Rank ``root``'s ``obj`` (pickled) on every rank; ``obj`` as given in a world of size 1."""
    comm = _comm()
    if comm is None or size() == 1:
        return obj
    return comm.bcast(obj, root=root)


def _flat_dtype(arrays):
    return np.float64 if any(a.dtype == np.float64 for a in arrays) else np.float32


def _check_host(arrays, op, floats_only=True):
    for a in arrays:
        if not isinstance(a, np.ndarray):
            raise TypeError(f"{op}: only numpy (host) arrays are supported, received {type(a).__name__}")
        if floats_only and a.dtype.kind != "f":
            raise TypeError(f"{op}: expected float arrays, received dtype {a.dtype}")


def allreduce_mean_(arrays, weight: float | None = None) -> float:
    """Average ``arrays`` over the ranks, in place, with ONE ``Allreduce`` of one flat buffer.

    Parameters
    ----------
    arrays : sequence of float ndarrays (or a dict of them)
        The same shapes and order on every rank. The buffer is float64 when any array is, else float32.
    weight : float, optional
        This rank's weight (e.g. its sample count): the result is ``sum_r w_r a_r / sum_r w_r``.
        Default: 1 on every rank (a plain mean). A total weight of 0 leaves zeros.

    Returns
    -------
    float: the total weight ``sum_r w_r`` (``size()`` for the plain mean).
    """
    if isinstance(arrays, dict):
        arrays = list(arrays.values())
    arrays = list(arrays)
    _check_host(arrays, "allreduce_mean_")
    w = 1.0 if weight is None else float(weight)
    comm = _comm()
    if comm is None or size() == 1:
        return w
    buf = _pack(arrays, [w], scale=w)
    _allreduce(comm, buf)
    total = float(buf[-1])
    _unpack(buf, arrays, 1.0 / total if total else 0.0)
    return total


def _pack(arrays, extra, scale=1.0):
    n = sum(a.size for a in arrays)
    buf = np.empty(n + len(extra), _flat_dtype(arrays) if arrays else np.float64)
    at = 0
    for a in arrays:
        np.multiply(a.reshape(-1), scale, out=buf[at:at + a.size], casting="unsafe")
        at += a.size
    buf[at:] = extra
    return buf


def _unpack(buf, arrays, scale):
    at = 0
    for a in arrays:
        part = buf[at:at + a.size].reshape(a.shape)
        np.multiply(part, scale, out=a, casting="unsafe")
        at += a.size


def _mpi_min():
    from mpi4py import MPI

    return MPI.MIN


def _allreduce(comm, buf) -> None:
    """Sum ``buf`` over the ranks in place (one ``MPI_Allreduce``).

    Every rank then applies the same update to the same weights. MPI recommends, without requiring,
    that every rank receive the same bits; MPICH does (checked up to 7 ranks by the tests' script),
    and the test compares the ranks' weights bitwise."""
    from mpi4py import MPI

    comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)


def allreduce_gradients(model, weight: float | None = None) -> float:
    """Average ``model.gradients()`` over the ranks in place (for custom loops: after ``backward``,
    before ``optimizer.step``); ``weight`` as in :func:`allreduce_mean_`."""
    return allreduce_mean_(list(model.gradients().values()), weight)


# ------------------------------------------------------------------------ synchronised batch norm
def convert_sync_batchnorm(model):
    """Set ``sync=True`` on every batch-norm layer of ``model`` (``BatchNorm1d``/``BatchNorm2d``, also
    inside nested models), in place; returns ``model``. Weights and running statistics are kept, and
    the flag is saved with the model's config. Harmless in a world of size 1 (plain batch norm)."""
    from ..layers.norm import _BatchNorm

    seen = set()

    def visit(layers):
        for layer in layers:
            if id(layer) in seen:
                continue
            seen.add(id(layer))
            if isinstance(layer, _BatchNorm):
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
    from ..layers.norm import _BatchNorm

    stack, seen = list(model.layers), set()
    while stack:
        layer = stack.pop()
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        if isinstance(layer, _BatchNorm) and layer.sync and layer.trainable:
            return True
        inner = getattr(layer, "layers", None)
        if isinstance(inner, (list, tuple)):
            stack.extend(inner)
    return False


def broadcast_params(model, root: int = 0) -> None:
    """Copy rank ``root``'s parameters and buffers (batch-norm statistics) to every rank, in place:
    one ``Bcast`` of one flat buffer for the float arrays, one per integer buffer (``num_batches_tracked``)."""
    _broadcast_arrays(list(model.state_dict().values()), root, "broadcast_params")


def _broadcast_arrays(arrays, root, op):
    comm = _comm()
    if comm is None or size() == 1:
        return
    _check_host(arrays, op, floats_only=False)
    floats = [a for a in arrays if a.dtype.kind == "f"]
    if floats:
        buf = _pack(floats, [])
        comm.Bcast(buf, root=root)
        _unpack(buf, floats, 1.0)
    for a in arrays:
        if a.dtype.kind != "f":
            comm.Bcast(a.reshape(-1), root=root)  # a view: C-contiguous layer arrays


def average_buffers(model) -> None:
    """Average the float buffers (batch-norm running mean and variance) over the ranks, in place, and
    give every rank rank 0's integer ones (``num_batches_tracked``). ``fit`` calls it after each epoch,
    so the statistics rank 0 saves (and every rank evaluates with) are the same on every rank."""
    if size() == 1:
        return
    buffers = [b for layer in model.layers for b in layer.buffers.values()]
    floats = [b for b in buffers if isinstance(b, np.ndarray) and b.dtype.kind == "f"]
    if floats:
        allreduce_mean_(floats)
    _broadcast_arrays([b for b in buffers if not (isinstance(b, np.ndarray) and b.dtype.kind == "f")], 0,
                      "average_buffers")


def _broadcast_optimizer(optimizer, root: int = 0) -> None:
    """Rank ``root``'s optimizer state (iterations, hyper-parameters, slots) on every rank."""
    if optimizer is None or size() == 1:
        return
    state = broadcast_object(optimizer.state_dict() if rank() == root else None, root)
    if rank() != root:
        optimizer.load_state_dict(state)


def shard(n: int, seed: int | None = None, epoch: int = 0, *, rank: int | None = None,
          size: int | None = None) -> np.ndarray:
    """This rank's indices of epoch ``epoch``, as PyTorch's ``DistributedSampler``.

    The epoch's order is the permutation of ``SeedSequence([seed, epoch])`` (the order ``fit`` and
    ``DataLoader`` serve; ``seed=None``: ``0 .. n-1`` unshuffled). When ``n`` does not divide by the
    ranks, the order is padded by repeating its first indices up to ``ceil(n / size) * size``, so
    every rank gets the same count ``ceil(n / size)`` (a few samples are seen twice per epoch; with
    ``n < size`` the order is repeated as often as needed). Rank ``r`` takes ``padded[r::size]``.

    Parameters
    ----------
    n : int, number of samples (>= 1)
    seed, epoch : the permutation's seed (None: no shuffling) and epoch
    rank, size : override the world's (to compute another rank's share)

    Returns
    -------
    int64 ndarray of length ``ceil(n / size)``.

    Examples
    --------
    >>> shard(5, None, rank=1, size=2)
    array([1, 3, 0])
    """
    r = _world_rank() if rank is None else int(rank)
    p = _world_size() if size is None else int(size)
    if n < 1 or p < 1 or not 0 <= r < p:
        raise ValueError(f"shard: expected n >= 1 and 0 <= rank < size, received n={n}, rank={r}, size={p}")
    order = (np.arange(n, dtype=np.int64) if seed is None
             else np.random.default_rng(np.random.SeedSequence([int(seed), int(epoch)])).permutation(n))
    total = -(-n // p) * p
    if total > n:
        order = np.resize(order, total)  # repeats from the start: the first indices pad the end
    return order[r::p]


_world_rank, _world_size = rank, size  # shard's keywords shadow the module functions


# The pieces fit/evaluate/predict call (corenet/distributed/fit.py), public under this name too.
from .fit import (  # noqa: E402, F401
    FitSync,
    GradBuckets,
    bucket_bytes,
    eval_reduce,
    eval_share,
    fit_callbacks,
    predict_gather,
    read_on_main,
    reseed_layers,
)
