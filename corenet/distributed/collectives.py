"""Collectives over the world's ranks: averaging and broadcasting flat buffers of host arrays.

Every function is a no-op in a world of size 1. Models are duck-typed (``gradients()``,
``state_dict()``, ``layers[i].buffers``), so this floor knows no corenet class.
"""

from __future__ import annotations

import numpy as np

from .world import _comm, broadcast_object, rank, size


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

