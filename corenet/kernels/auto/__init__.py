"""The default backend, ``auto``: each op family from the CPU backend whose kernels are fastest for it.

- ``conv``: the ``cython`` backend's, whose ungrouped convolutions run the register-tiled direct
  SIMD kernels of ``corenet/_ext/simd_conv.h`` (AVX-512, AVX2 or generic, picked from the CPU's
  flags), when the compiled extension was built; otherwise ``numba``'s (im2col + BLAS GEMM).
- ``pool``, ``act``: the ``cython`` backend's when built (a LeNet-5 step, 2 threads: 3.60 ms with
  Numba's pooling and activations, 2.46 ms with these; the max-pool forward of its first layer
  186 us against 424 us), else ``numba``'s.
- ``lrn``, ``norm``, ``fused``: ``numba``'s (parallel on Numba's workqueue threads; as fast or
  faster on ResNet-20 and AlexNet steps).

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
    "norm": ("numba_cpu",),
    "act": ("cython_cpu", "numba_cpu"),
    "fused": ("numba_cpu",),
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
