# Design
# ------
# Resampling kernels of the Cython backend: nearest and bilinear upsampling, forward and backward.
# Names, arguments and semantics are the contract documented at the top of
# ``corenet/kernels/numba_cpu/resample.py``, plus one extra last argument, ``num_threads`` (filled
# in by ``corenet/kernels/cython_cpu/resample.py`` from ``corenet.config``).
#
# The per-axis tables (which input rows/columns each output row/column reads, and the weight of
# the second tap) come from the caller, computed once per call by PyTorch's coordinate rules; the
# kernels gather (forward) and scatter (backward) with them, one plane at a time.
#
# Races: ``prange`` over the N*C planes; a plane, including its backward scatter-add, belongs to
# one task (every thread-private value is a local of the plane function, never written through a
# pointer shared across the prange), so no element is written by two threads and results do not
# depend on the thread count at all.

from cython.parallel cimport prange
from libc.stdint cimport int64_t

from ._types cimport real


cdef void _nearest_plane(const real* x, real* y, real* gx, const real* gy, const int64_t* ih,
                         const int64_t* iw, Py_ssize_t W, Py_ssize_t HW, Py_ssize_t Ho,
                         Py_ssize_t Wo) noexcept nogil:
    """Forward (gather into ``y``) when ``gx`` is NULL, else backward (zero ``gx``, scatter ``gy``)."""
    cdef Py_ssize_t oh, ow, q
    cdef const real* xr
    cdef real* yr
    cdef real* gr
    cdef const real* gyr
    if gx == NULL:
        for oh in range(Ho):
            xr = x + ih[oh] * W
            yr = y + oh * Wo
            for ow in range(Wo):
                yr[ow] = xr[iw[ow]]
        return
    for q in range(HW):
        gx[q] = 0
    for oh in range(Ho):
        gr = gx + ih[oh] * W
        gyr = gy + oh * Wo
        for ow in range(Wo):
            gr[iw[ow]] += gyr[ow]


cdef void _bilinear_plane(const real* x, real* y, real* gx, const real* gy, const int64_t* h0,
                          const int64_t* h1, const real* lh, const int64_t* w0, const int64_t* w1,
                          const real* lw, Py_ssize_t W, Py_ssize_t HW, Py_ssize_t Ho,
                          Py_ssize_t Wo) noexcept nogil:
    """Forward when ``gx`` is NULL, else backward; ``lh``/``lw`` hold the two weights of each row/column."""
    cdef Py_ssize_t oh, ow, q, j0, j1
    cdef real a0, a1, b0, b1, g, ga0, ga1
    cdef const real* r0
    cdef const real* r1
    cdef real* g0
    cdef real* g1
    cdef real* yr
    cdef const real* gyr
    if gx == NULL:
        for oh in range(Ho):
            a0 = lh[2 * oh]
            a1 = lh[2 * oh + 1]
            r0 = x + h0[oh] * W
            r1 = x + h1[oh] * W
            yr = y + oh * Wo
            for ow in range(Wo):
                b0 = lw[2 * ow]
                b1 = lw[2 * ow + 1]
                j0 = w0[ow]
                j1 = w1[ow]
                yr[ow] = a0 * (b0 * r0[j0] + b1 * r0[j1]) + a1 * (b0 * r1[j0] + b1 * r1[j1])
        return
    for q in range(HW):
        gx[q] = 0
    for oh in range(Ho):
        a0 = lh[2 * oh]
        a1 = lh[2 * oh + 1]
        g0 = gx + h0[oh] * W
        g1 = gx + h1[oh] * W
        gyr = gy + oh * Wo
        for ow in range(Wo):
            b0 = lw[2 * ow]
            b1 = lw[2 * ow + 1]
            j0 = w0[ow]
            j1 = w1[ow]
            g = gyr[ow]
            g0[j0] += a0 * b0 * g
            g0[j1] += a0 * b1 * g
            g1[j0] += a1 * b0 * g
            g1[j1] += a1 * b1 * g


def nearest_forward(const real[:, :, :, ::1] x, const int64_t[::1] ih, const int64_t[::1] iw,
                    real[:, :, :, ::1] y, int num_threads):
    """IN x (N, C, H, W), ih (Ho,), iw (Wo,); OUT y (N, C, Ho, Wo)."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t Ho = y.shape[2], Wo = y.shape[3], HW = H * W, P = Ho * Wo
    cdef Py_ssize_t p
    if N * C * P == 0:
        return
    cdef const real* xp = &x[0, 0, 0, 0]
    cdef real* yp = &y[0, 0, 0, 0]
    for p in prange(N * C, nogil=True, schedule="static", num_threads=num_threads):
        _nearest_plane(xp + p * HW, yp + p * P, NULL, NULL, &ih[0], &iw[0], W, HW, Ho, Wo)


def nearest_backward(const real[:, :, :, ::1] gy, const int64_t[::1] ih, const int64_t[::1] iw,
                     real[:, :, :, ::1] gx, int num_threads):
    """IN gy (N, C, Ho, Wo); OUT gx (N, C, H, W): zeroed, then the scatter-add."""
    cdef Py_ssize_t N = gx.shape[0], C = gx.shape[1], H = gx.shape[2], W = gx.shape[3]
    cdef Py_ssize_t Ho = gy.shape[2], Wo = gy.shape[3], HW = H * W, P = Ho * Wo
    cdef Py_ssize_t p
    if N * C * HW == 0:
        return
    if P == 0:
        gx[...] = 0
        return
    cdef const real* gyp = &gy[0, 0, 0, 0]
    cdef real* gxp = &gx[0, 0, 0, 0]
    for p in prange(N * C, nogil=True, schedule="static", num_threads=num_threads):
        _nearest_plane(NULL, NULL, gxp + p * HW, gyp + p * P, &ih[0], &iw[0], W, HW, Ho, Wo)


def bilinear_forward(const real[:, :, :, ::1] x, const int64_t[::1] h0, const int64_t[::1] h1,
                     const real[:, ::1] lh, const int64_t[::1] w0, const int64_t[::1] w1, const real[:, ::1] lw,
                     real[:, :, :, ::1] y, int num_threads):
    """IN x (N, C, H, W), row and column tables; OUT y (N, C, Ho, Wo)."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t Ho = y.shape[2], Wo = y.shape[3], HW = H * W, P = Ho * Wo
    cdef Py_ssize_t p
    if N * C * P == 0:
        return
    cdef const real* xp = &x[0, 0, 0, 0]
    cdef real* yp = &y[0, 0, 0, 0]
    for p in prange(N * C, nogil=True, schedule="static", num_threads=num_threads):
        _bilinear_plane(xp + p * HW, yp + p * P, NULL, NULL, &h0[0], &h1[0], &lh[0, 0], &w0[0], &w1[0], &lw[0, 0],
                        W, HW, Ho, Wo)


def bilinear_backward(const real[:, :, :, ::1] gy, const int64_t[::1] h0, const int64_t[::1] h1,
                      const real[:, ::1] lh, const int64_t[::1] w0, const int64_t[::1] w1, const real[:, ::1] lw,
                      real[:, :, :, ::1] gx, int num_threads):
    """IN gy (N, C, Ho, Wo), the tables; OUT gx (N, C, H, W): zeroed, then the scatter-add."""
    cdef Py_ssize_t N = gx.shape[0], C = gx.shape[1], H = gx.shape[2], W = gx.shape[3]
    cdef Py_ssize_t Ho = gy.shape[2], Wo = gy.shape[3], HW = H * W, P = Ho * Wo
    cdef Py_ssize_t p
    if N * C * HW == 0:
        return
    if P == 0:
        gx[...] = 0
        return
    cdef const real* gyp = &gy[0, 0, 0, 0]
    cdef real* gxp = &gx[0, 0, 0, 0]
    for p in prange(N * C, nogil=True, schedule="static", num_threads=num_threads):
        _bilinear_plane(NULL, NULL, gxp + p * HW, gyp + p * P, &h0[0], &h1[0], &lh[0, 0], &w0[0], &w1[0], &lw[0, 0],
                        W, HW, Ho, Wo)
