"""Cython CPU backend: the kernels of ``corenet/_ext/*.pyx``, compiled at install time with OpenMP.

Each module here re-exports the compiled kernels under the contract names and adds the
backend-independent orchestration (GEMM chunking) shared with the Numba backend.
"""


def unavailable_reason():
    try:
        from ..._ext import conv  # noqa: F401
    except ImportError as exc:
        return (
            "the compiled extension corenet._ext was not built at install time "
            f"(no C compiler or Cython?): {exc}"
        )
    return None
