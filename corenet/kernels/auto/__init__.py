"""The default backend, ``auto``: each op family from the CPU backend whose kernels are fastest for it.

- ``conv``: the ``cython`` backend's, whose ungrouped convolutions run the register-tiled direct
  SIMD kernels of ``corenet/_ext/simd_conv.h`` (AVX-512, AVX2 or generic, picked from the CPU's
  flags), when the compiled extension was built; otherwise ``numba``'s (im2col + BLAS GEMM).
- ``pool``, ``act``, ``norm``, ``fused``: the ``cython`` backend's when built, else ``numba``'s.
  Waking Numba's workqueue threads costs 30-100 us per kernel on this virtual machine (a futex
  wake is an inter-processor interrupt), and OpenMP's briefly spinning workers ~2 us: a LeNet-5
  step went from 3.60 to 2.46 ms with these pooling and activation kernels (first max-pool
  424 -> 186 us), and a ResNet-20 step from ~87 to ~81 ms with these batch-norm and fused ones
  (batch norm + ReLU forward on (64, 16, 32, 32): 102 -> 73 us; at batch 1: 49 -> 4 us). One
  thread pool instead of two also keeps them from fighting over the two cores.
- ``lrn``: ``numba``'s (as fast as the Cython kernels on the AlexNet step).

Each family module here re-exports the chosen backend's module under the contract names, so
``auto`` is complete wherever ``numba`` is, and both named backends stay complete on their own.
``sources()`` says where each family comes from in this process.
"""

from __future__ import annotations

import importlib

_PREFERENCE = {
    "conv": ("cython_cpu", "numba_cpu"),
    "pool": ("cython_cpu", "numba_cpu"),
    "lrn": ("numba_cpu",),
    "norm": ("cython_cpu", "numba_cpu"),
    "act": ("cython_cpu", "numba_cpu"),
    "fused": ("cython_cpu", "numba_cpu"),
    "resample": ("cython_cpu", "numba_cpu"),
    "ops": ("numba_cpu",),  # numpy glue (sums, copies, concatenation): one implementation on the CPU
    "train": ("numba_cpu",),  # numpy loss and optimizer updates
}
_NAMES = {"cython_cpu": "cython", "numba_cpu": "numba"}
_chosen: dict[str, str] = {}


def module_for(family: str):
    """The kernel module that serves ``family`` in the auto backend (first preference that imports)."""
    errors = []
    for package in _PREFERENCE[family]:
        try:
            module = importlib.import_module(f"corenet.kernels.{package}.{family}")
        except ImportError as exc:  # the compiled extension is missing
            errors.append(f"{package}: {exc}")
            continue
        _chosen[family] = _NAMES[package]
        return module
    raise ImportError(f"auto backend: no kernels for {family!r}: {'; '.join(errors)}")


def sources() -> dict[str, str]:
    """``{family: backend name}`` for every family of the auto backend."""
    for family in _PREFERENCE:
        if family not in _chosen:
            module_for(family)
    return dict(_chosen)


def unavailable_reason():
    """``auto`` runs wherever ``numba`` does."""
    return None
