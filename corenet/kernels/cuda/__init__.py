"""numba.cuda backend (optional): the same kernel names, device arrays stay on the GPU."""


def unavailable_reason():
    try:
        from ._runtime import cuda_reason
    except ImportError as exc:
        return f"the cuda backend is not implemented in this build: {exc}"
    return cuda_reason()
