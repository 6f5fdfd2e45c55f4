# Design
# ------
# Shared declarations of the compiled kernels (corenet/_ext/*.pyx).
#
# ``real`` is the fused float type of every kernel: one specialisation for float32 and one for
# float64, chosen at call time from the arrays' dtype, so float32 data stays float32 end to end.
# Accumulations that must not lose precision (window sums, batch reductions) are written with
# ``double`` accumulators explicitly in the kernels, as the Numba kernels do.

ctypedef fused real:
    float
    double


cdef inline void valid_range(Py_ssize_t off, Py_ssize_t stride, Py_ssize_t size, Py_ssize_t n_out,
                             Py_ssize_t* lo, Py_ssize_t* hi) noexcept nogil:
    """Output positions ``[lo, hi)`` whose input index ``o*stride + off`` lies in ``[0, size)``.

    ``0 <= lo <= hi <= n_out`` always: callers zero ``[0, lo)`` and ``[hi, n_out)`` of an output row
    segment, so an unclamped ``lo`` (padding wider than the whole row) would write into the next
    segment, which another thread may own. The same clamps as ``_valid`` in ``numba_cpu/conv.py``.
    """
    cdef Py_ssize_t a = 0, b = 0
    if off < 0:
        a = (-off + stride - 1) // stride
        if a > n_out:
            a = n_out
    if size - 1 - off >= 0:
        b = (size - 1 - off) // stride + 1
    if b > n_out:
        b = n_out
    if b < a:
        b = a
    lo[0] = a
    hi[0] = b
