"""A caching device allocator: the outputs and partials of every kernel reuse freed blocks.

Why
---
Each cuda op allocates its outputs and reduction partials (about 20 per batch-norm layer per
training step). numba's own manager calls ``cuMemAlloc`` for each and frees them in batches with a
synchronising ``cuMemFree``. A training step allocates the same sizes every time, so a freed block
is kept and handed to the next request of its size class instead.

Design
------
:class:`BlockCache` is the bookkeeping, independent of numba: free blocks listed by size class
(requests rounded up to 512 bytes below 1 MiB, to 128 KiB above), a block taken from its list or
allocated new, and given back to its list when the last array over it is gone. Blocks are never
split or merged, so reuse needs a repeated size: a training loop repeats every size from its
second step on. ``stats()`` counts the requests and the new (raw) allocations, which is what the
allocation tests count per step.

Two hosts for it:

- on a GPU, :class:`CachingMemoryManager`, a numba External Memory Management plugin installed by
  ``_runtime`` before the first CUDA context is made (``CORENET_CUDA_ALLOCATOR=numba`` keeps numba's
  own manager). It serves every device allocation numba makes in the process (``device_array``,
  ``to_device``), and gives a block back when numba's reference count of the pointer reaches zero,
  as numba's own manager frees it then. On an out-of-memory error the cache is emptied and the
  allocation retried.
- under the simulator (no memory manager there), :func:`sim_empty`: ``_runtime.empty`` takes a
  host block and wraps it as a simulated device array; the block returns when the last view of
  that array is gone.

Reusing a block as soon as Python drops it is safe on one stream: a kernel launched later on the
same stream runs after the kernels that used it (PyTorch's caching allocator relies on the same
ordering). corenet launches everything on the default stream.
"""

from __future__ import annotations

import functools
import threading
import weakref

import numpy as np

_SMALL = 1 << 20  # below: 512-byte size classes; above: 128 KiB ones


def size_class(nbytes: int) -> int:
    """The block size that serves a request of ``nbytes`` (at least 512 bytes)."""
    step = 512 if nbytes < _SMALL else 128 << 10
    return max(step, -(-int(nbytes) // step) * step)


class BlockCache:
    """Free blocks by size class over a raw allocator ``raw(size) -> block``; thread-safe."""

    def __init__(self, raw):
        self._raw = raw
        self._free: dict[int, list] = {}
        self._lock = threading.Lock()
        self.requests = 0
        self.raw_allocs = 0
        self.in_use = 0  # bytes handed out and not given back
        self.cached = 0  # bytes held in the free lists

    def take(self, nbytes: int):
        """``(size, block)`` for a request of ``nbytes``: a cached block of the size class, or a new one."""
        size = size_class(nbytes)
        with self._lock:
            self.requests += 1
            free = self._free.get(size)
            if free:
                self.cached -= size
                self.in_use += size
                return size, free.pop()
        block = self._raw(size)  # outside the lock: the raw allocator may empty the cache and retry
        with self._lock:
            self.raw_allocs += 1
            self.in_use += size
        return size, block

    def give(self, size: int, block) -> None:
        """Return a block taken with :meth:`take` to its size class."""
        with self._lock:
            self._free.setdefault(size, []).append(block)
            self.in_use -= size
            self.cached += size

    def clear(self) -> int:
        """Drop every free block (its own finalizer releases the memory); the bytes dropped."""
        with self._lock:
            dropped, self._free, self.cached = self.cached, {}, 0
        return dropped

    def stats(self) -> dict:
        """``requests`` and ``raw_allocs`` since the start, ``in_use`` and ``cached`` bytes now."""
        with self._lock:
            return dict(requests=self.requests, raw_allocs=self.raw_allocs, in_use=self.in_use, cached=self.cached)


# --------------------------------------------------------------------------- simulator

_sim_cache = BlockCache(lambda size: np.empty(size, np.uint8))


class _Lease:
    """One allocation over a cached host block. numpy keeps the object an array was made from as
    the base of the array and of all its views, so the lease lives exactly as long as some view of
    the allocation does; its finalizer then gives the block back."""

    def __init__(self, block, nbytes, shape, dtype):
        self.__array_interface__ = dict(block.__array_interface__, shape=tuple(shape), typestr=dtype.str,
                                        strides=None, version=3)
        self._block = block  # the memory the interface points at stays alive with the lease
        self._nbytes = nbytes


def sim_empty(shape, dtype, wrap):
    """An uninitialised simulated device array from the simulator's cache; ``wrap`` makes the
    device-array object from a numpy array."""
    dtype = np.dtype(dtype)
    shape = (int(shape),) if np.isscalar(shape) else tuple(int(s) for s in shape)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    size, block = _sim_cache.take(nbytes)
    lease = _Lease(block, nbytes, shape, dtype)
    weakref.finalize(lease, _sim_cache.give, size, block)
    return wrap(np.asarray(lease))


# --------------------------------------------------------------------------- GPU (numba EMM plugin)


def make_manager_class(driver):
    """The EMM plugin class over numba's own manager (built on demand: it subclasses numba's
    driver classes, which exist only where numba.cuda imports)."""

    class CachingMemoryManager(driver.NumbaCUDAMemoryManager):
        """numba's manager with a :class:`BlockCache` in front of ``cuMemAlloc`` (module docstring)."""

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.cache = BlockCache(self._raw)
            self._leases: dict[int, object] = {}
            self._next = 0

        def _raw(self, size):
            try:
                return super().memalloc(size)
            except driver.CudaAPIError:
                if not self.cache.clear():
                    raise
                self.deallocations.clear()  # the dropped blocks' cuMemFree, now
                return super().memalloc(size)

        def memalloc(self, size):
            csize, block = self.cache.take(size)
            key = self._next
            self._next += 1
            mem = driver.AutoFreePointer(weakref.proxy(self.context), block.device_pointer, size,
                                         finalizer=functools.partial(self._give_back, key, csize, block))
            self._leases[key] = mem  # numba's own manager keeps its pointers in self.allocations alike
            return mem.own()

        def _give_back(self, key, csize, block):
            self._leases.pop(key, None)
            self.cache.give(csize, block)

        def reset(self):
            self._leases.clear()
            self.cache.clear()
            super().reset()

    return CachingMemoryManager
