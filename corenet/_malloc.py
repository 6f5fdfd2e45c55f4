"""Keep freed arrays in the process heap instead of returning them to the kernel (glibc only).

glibc serves every allocation above a threshold (128 KiB at start, raised dynamically up to 32 MiB)
with a fresh ``mmap`` and returns it with ``munmap`` when freed. A training step allocates and frees
activations and gradients of a few MiB dozens of times: each fresh mapping page-faults once per
4 KiB page when first written, and each ``munmap`` of a multi-threaded process sends a TLB
shoot-down to every core running one of its threads, which on a busy machine waits for a core the
scheduler gave to someone else. Measured on a LeNet-5 step (batch 64, 2 threads, the other core
busy): median 105 ms with glibc's defaults, 12 ms with the thresholds below; on an idle machine
the page faults alone cost more than the ReLUs.

``tune()`` raises the mmap threshold to 1 GiB and the trim threshold to 2 GiB, so blocks are
recycled from the heap (peak resident memory is kept, not returned between steps). It runs once,
when ``import corenet`` imports this module; ``CORENET_MALLOC_TUNE=0`` leaves glibc's defaults, and environment settings
of ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` are respected.
"""

from __future__ import annotations

import ctypes
import os
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD = 1 << 30
_TRIM_THRESHOLD = 2 << 30
_state = {"tuned": False, "reason": "not attempted"}


def tune() -> bool:
    """Apply the thresholds once; ``True`` when glibc accepted them."""
    if _state["tuned"]:
        return True
    if os.environ.get("CORENET_MALLOC_TUNE", "1") == "0":
        _state["reason"] = "disabled by CORENET_MALLOC_TUNE=0"
        return False
    if not sys.platform.startswith("linux"):
        _state["reason"] = "not Linux"
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        _state["reason"] = "no glibc mallopt (another C library)"
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = True
    if "MALLOC_MMAP_THRESHOLD_" not in os.environ:
        ok = mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD) == 1 and ok
    if "MALLOC_TRIM_THRESHOLD_" not in os.environ:
        ok = mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD) == 1 and ok
    _state["tuned"] = ok
    _state["reason"] = "tuned" if ok else "mallopt refused the thresholds"
    return ok


def status() -> str:
    """``"tuned"`` or why not (reported by ``corenet.warmup``)."""
    return _state["reason"]


tune()  # at import, before any array of a step is allocated
