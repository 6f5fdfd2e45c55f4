"""Cython CPU backend: the kernels of ``corenet/_ext/*.pyx``, compiled at install time with OpenMP.

Each module here re-exports the compiled kernels under the contract names and adds the
backend-independent orchestration (GEMM chunking) shared with the Numba backend.
"""


import importlib

_MODULES = ("conv", "simd_conv", "pool", "lrn", "norm", "act", "fused", "resample")


def unavailable_reason():
    """None when every compiled family imports; a family that failed to build disables the backend."""
    missing = []
    for name in _MODULES:
        try:
            importlib.import_module(f"corenet._ext.{name}")
        except ImportError as exc:
            missing.append(f"{name} ({exc})")
    if missing:
        return (
            "the compiled extension corenet._ext was not (fully) built at install time "
            f"(no C compiler or Cython?): missing {', '.join(missing)}"
        )
    return None
