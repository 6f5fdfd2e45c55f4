"""The MPI world of this process: joining it, who this rank is, and its share of the samples.

Process-wide state (MPI is), and the lowest floor of corenet: nothing here imports a model, a
layer or a kernel. The package docstring (``corenet/distributed/__init__.py``) gives the semantics.
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np

# Environment variables set by MPI launchers (MPICH/Hydra, Open MPI, PMIx, MVAPICH, Intel MPI, Slurm).
_LAUNCHER_ENV = ("PMI_RANK", "PMI_SIZE", "PMIX_RANK", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE",
                 "MPI_LOCALNRANKS", "HYDI_CONTROL_FD", "SLURM_PROCID")


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
