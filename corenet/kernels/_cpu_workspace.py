"""Scratch memory of the CPU convolutions: per-thread workspaces reused across calls, and how many
images a chunk of the im2col + GEMM path may hold under ``config.get_workspace_bytes()``."""

from __future__ import annotations

import threading

import numpy as np

from .. import config


def chunk_images(n_images: int, bytes_per_image: int) -> int:
    """Images per chunk: as many as fit the workspace limit, spread evenly over the chunks."""
    fit = max(1, config.get_workspace_bytes() // max(1, bytes_per_image))
    n_chunks = max(1, -(-n_images // fit))
    return max(1, -(-n_images // n_chunks))


_scratch = threading.local()  # per calling thread: kernels release the GIL, callers may be threads


def workspace(slot: int, shape, dtype) -> np.ndarray:
    """A scratch array for one call, reused across calls when it fits the workspace limit.

    A fresh 40 MB buffer costs ~10k page faults (several ms) on every call, as much as im2col
    itself; buffers up to ``config.get_workspace_bytes()`` are therefore kept, one per ``slot``
    and calling thread. Larger ones (a single image beyond the limit) are allocated per call.
    Callers never return a view of a workspace.
    """
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape)) * dtype.itemsize
    if nbytes > config.get_workspace_bytes():
        return np.empty(shape, dtype=dtype)
    bufs = getattr(_scratch, "bufs", None)
    if bufs is None:
        bufs = _scratch.bufs = {}
    buf = bufs.get(slot)
    if buf is None or buf.size < nbytes:
        buf = bufs[slot] = np.empty(nbytes, dtype=np.uint8)
    return buf[:nbytes].view(dtype).reshape(shape)
