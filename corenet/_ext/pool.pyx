# Design
# ------
# Pooling kernels of the Cython backend: max/min with first-extremum argmax, average/sum with
# PyTorch's divisor rules, adaptive average; forward and backward. Names, arguments and
# semantics are the contract documented at the top of ``corenet/kernels/numba_cpu/pool.py``,
# plus one extra last argument, ``num_threads`` (filled in by
# ``corenet/kernels/cython_cpu/pool.py`` from ``corenet.config``).
#
# Window geometry: output ``(oh, ow)`` reads the taps ``(oh*sh - pt + i*dh, ow*sw - pl + j*dw)``;
# ``_tap_range`` gives the taps that fall inside the input, so the inner loops never test
# padding. Sums run in float64 and are divided in float64, as in the Numba kernels.
#
# Races: ``prange`` over the N*C planes; a plane, including its backward scatter, belongs to
# one task, so results do not depend on the thread count at all.
#
# Note: ``cdivision`` is on for the whole extension, so every ``//`` here has a non-negative
# numerator (ceilings are written as ``(a + b - 1) // b``).

from cython.parallel cimport prange
from libc.math cimport INFINITY
from libc.stdint cimport int32_t

from ._types cimport real


cdef inline void _tap_range(Py_ssize_t start, Py_ssize_t k, Py_ssize_t d, Py_ssize_t size,
                            Py_ssize_t* t0, Py_ssize_t* t1) noexcept nogil:
    """Taps ``t`` in ``[t0, t1)`` keep ``start + t*d`` inside ``[0, size)``."""
    cdef Py_ssize_t a = 0, b = k, last = start + (k - 1) * d
    if start < 0:
        a = (-start + d - 1) // d
    if last >= size:
        b = k - (last - size) // d - 1
    if b < a:
        b = a
    t0[0] = a
    t1[0] = b


cdef inline Py_ssize_t _count(Py_ssize_t start, Py_ssize_t k, Py_ssize_t d, Py_ssize_t lo,
                              Py_ssize_t hi) noexcept nogil:
    """Number of taps ``start + t*d`` (``0 <= t < k``) inside ``[lo, hi)``."""
    cdef Py_ssize_t t0, t1
    _tap_range(start - lo, k, d, hi - lo, &t0, &t1)
    return t1 - t0


# -------------------------------------------------------------------------------- max / min

cdef void _extreme_plane(const real* x, real* y, int32_t* idx, Py_ssize_t H, Py_ssize_t W,
                         Py_ssize_t Ho, Py_ssize_t Wo, Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh,
                         Py_ssize_t sw, Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t dh, Py_ssize_t dw,
                         real sign) noexcept nogil:
    """IN x plane (H, W); OUT y, idx planes (Ho, Wo). ``sign = -1`` turns max into min."""
    cdef Py_ssize_t oh, ow, h0, w0, i0, i1, j0, j1, i, j, h, w, besti
    cdef real best, v
    for oh in range(Ho):
        h0 = oh * sh - pt
        _tap_range(h0, kh, dh, H, &i0, &i1)
        for ow in range(Wo):
            w0 = ow * sw - pl
            _tap_range(w0, kw, dw, W, &j0, &j1)
            if i0 == i1 or j0 == j1:
                y[oh * Wo + ow] = -sign * INFINITY
                idx[oh * Wo + ow] = -1
                continue
            h = h0 + i0 * dh
            w = w0 + j0 * dw
            best = sign * x[h * W + w]
            besti = h * W + w
            for i in range(i0, i1):
                h = h0 + i * dh
                for j in range(j0, j1):
                    w = w0 + j * dw
                    v = sign * x[h * W + w]
                    # strict '>' keeps the first extremum; the first NaN wins and stays
                    if v > best or (v != v and best == best):
                        best = v
                        besti = h * W + w
            y[oh * Wo + ow] = sign * best
            idx[oh * Wo + ow] = <int32_t>besti


def extreme_pool_forward(const real[:, :, :, ::1] x, real[:, :, :, ::1] y, int32_t[:, :, :, ::1] idx,
                         Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t pt,
                         Py_ssize_t pl, Py_ssize_t dh, Py_ssize_t dw, bint find_min, int num_threads):
    """IN x (N, C, H, W); OUT y, idx (N, C, Ho, Wo): extremum and flat index of its first tap."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t Ho = y.shape[2], Wo = y.shape[3], HW = H * W, P = Ho * Wo
    cdef Py_ssize_t p
    cdef real sign = -1 if find_min else 1
    if N * C * P == 0:
        return
    cdef const real* xp = &x[0, 0, 0, 0]
    cdef real* yp = &y[0, 0, 0, 0]
    cdef int32_t* ip = &idx[0, 0, 0, 0]
    for p in prange(N * C, nogil=True, schedule="static", num_threads=num_threads):
        _extreme_plane(xp + p * HW, yp + p * P, ip + p * P, H, W, Ho, Wo, kh, kw, sh, sw, pt, pl,
                       dh, dw, sign)


def extreme_pool_backward(const real[:, :, :, ::1] gy, const int32_t[:, :, :, ::1] idx,
                          real[:, :, :, ::1] gx, int num_threads):
    """IN gy, idx (N, C, Ho, Wo); OUT gx (N, C, H, W): each gy added at its window's argmax."""
    cdef Py_ssize_t N = gx.shape[0], C = gx.shape[1], HW = gx.shape[2] * gx.shape[3]
    cdef Py_ssize_t P = gy.shape[2] * gy.shape[3]
    cdef Py_ssize_t p, q
    cdef int32_t k
    cdef real* g
    if N * C * HW == 0:
        return
    cdef const real* gyp = &gy[0, 0, 0, 0] if P > 0 else NULL
    cdef const int32_t* ip = &idx[0, 0, 0, 0] if P > 0 else NULL
    cdef real* gxp = &gx[0, 0, 0, 0]
    for p in prange(N * C, nogil=True, schedule="static", num_threads=num_threads):
        g = gxp + p * HW
        for q in range(HW):
            g[q] = 0
        for q in range(P):  # outputs in row-major order
            k = ip[p * P + q]
            if k >= 0:
                g[k] += gyp[p * P + q]


# -------------------------------------------------------------------------------- avg / sum

cdef void _avg_plane(const real* x, real* y, real* gx, const real* gy, Py_ssize_t H, Py_ssize_t W,
                     Py_ssize_t Ho, Py_ssize_t Wo, Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh,
                     Py_ssize_t sw, Py_ssize_t pt, Py_ssize_t pb, Py_ssize_t pl, Py_ssize_t pr,
                     Py_ssize_t dh, Py_ssize_t dw, bint count_include_pad, double divisor) noexcept nogil:
    """Forward (``x`` -> ``y``) when ``gx`` is NULL, else backward (``gy`` -> ``gx``, zeroed here)."""
    cdef Py_ssize_t oh, ow, h0, w0, i0, i1, j0, j1, i, j, cnt_h, cnt_w, q
    cdef double d, s, v
    cdef const real* row
    cdef real* grow
    if gx != NULL:
        for q in range(H * W):
            gx[q] = 0
    for oh in range(Ho):
        h0 = oh * sh - pt
        _tap_range(h0, kh, dh, H, &i0, &i1)
        cnt_h = _count(h0, kh, dh, -pt, H + pb) if count_include_pad else i1 - i0
        for ow in range(Wo):
            w0 = ow * sw - pl
            _tap_range(w0, kw, dw, W, &j0, &j1)
            cnt_w = _count(w0, kw, dw, -pl, W + pr) if count_include_pad else j1 - j0
            d = divisor if divisor > 0 else <double>(cnt_h * cnt_w)
            if gx == NULL:
                s = 0.0
                for i in range(i0, i1):
                    row = x + (h0 + i * dh) * W
                    for j in range(j0, j1):
                        s += row[w0 + j * dw]
                y[oh * Wo + ow] = <real>(s / d) if d > 0 else 0
            elif d > 0:
                v = gy[oh * Wo + ow] / d
                for i in range(i0, i1):
                    grow = gx + (h0 + i * dh) * W
                    for j in range(j0, j1):
                        grow[w0 + j * dw] += v


def avg_pool_forward(const real[:, :, :, ::1] x, real[:, :, :, ::1] y, Py_ssize_t kh, Py_ssize_t kw,
                     Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t pt, Py_ssize_t pb, Py_ssize_t pl,
                     Py_ssize_t pr, Py_ssize_t dh, Py_ssize_t dw, bint count_include_pad,
                     double divisor, int num_threads):
    """IN x (N, C, H, W); OUT y (N, C, Ho, Wo): window sums over the divisor ``d`` of the contract."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t Ho = y.shape[2], Wo = y.shape[3], HW = H * W, P = Ho * Wo
    cdef Py_ssize_t p
    if N * C * P == 0:
        return
    cdef const real* xp = &x[0, 0, 0, 0]
    cdef real* yp = &y[0, 0, 0, 0]
    for p in prange(N * C, nogil=True, schedule="static", num_threads=num_threads):
        _avg_plane(xp + p * HW, yp + p * P, NULL, NULL, H, W, Ho, Wo, kh, kw, sh, sw, pt, pb, pl, pr,
                   dh, dw, count_include_pad, divisor)


def avg_pool_backward(const real[:, :, :, ::1] gy, real[:, :, :, ::1] gx, Py_ssize_t kh, Py_ssize_t kw,
                      Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t pt, Py_ssize_t pb, Py_ssize_t pl,
                      Py_ssize_t pr, Py_ssize_t dh, Py_ssize_t dw, bint count_include_pad,
                      double divisor, int num_threads):
    """IN gy (N, C, Ho, Wo); OUT gx (N, C, H, W): ``gy / d`` added to every in-input tap."""
    cdef Py_ssize_t N = gx.shape[0], C = gx.shape[1], H = gx.shape[2], W = gx.shape[3]
    cdef Py_ssize_t Ho = gy.shape[2], Wo = gy.shape[3], HW = H * W, P = Ho * Wo
    cdef Py_ssize_t p
    if N * C * HW == 0:
        return
    cdef const real* gyp = &gy[0, 0, 0, 0] if P > 0 else NULL
    cdef real* gxp = &gx[0, 0, 0, 0]
    for p in prange(N * C, nogil=True, schedule="static", num_threads=num_threads):
        _avg_plane(NULL, NULL, gxp + p * HW, gyp + p * P, H, W, Ho, Wo, kh, kw, sh, sw, pt, pb, pl, pr,
                   dh, dw, count_include_pad, divisor)


# ---------------------------------------------------------------------------- adaptive average

cdef void _adaptive_plane(const real* x, real* y, real* gx, const real* gy, Py_ssize_t H,
                          Py_ssize_t W, Py_ssize_t Ho, Py_ssize_t Wo) noexcept nogil:
    """Forward when ``gx`` is NULL, else backward; bin ``i`` of ``Ho`` covers
    ``[floor(i*H/Ho), ceil((i+1)*H/Ho))``, likewise columns."""
    cdef Py_ssize_t oh, ow, h0, h1, w0, w1, h, w, q
    cdef double s, v
    if gx != NULL:
        for q in range(H * W):
            gx[q] = 0
    for oh in range(Ho):
        h0 = (oh * H) // Ho
        h1 = ((oh + 1) * H + Ho - 1) // Ho
        for ow in range(Wo):
            w0 = (ow * W) // Wo
            w1 = ((ow + 1) * W + Wo - 1) // Wo
            if gx == NULL:
                s = 0.0
                for h in range(h0, h1):
                    for w in range(w0, w1):
                        s += x[h * W + w]
                y[oh * Wo + ow] = <real>(s / <double>((h1 - h0) * (w1 - w0)))
            else:
                v = gy[oh * Wo + ow] / <double>((h1 - h0) * (w1 - w0))
                for h in range(h0, h1):
                    for w in range(w0, w1):
                        gx[h * W + w] += v


def adaptive_avg_pool_forward(const real[:, :, :, ::1] x, real[:, :, :, ::1] y, int num_threads):
    """IN x (N, C, H, W); OUT y (N, C, Ho, Wo): bin means."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t Ho = y.shape[2], Wo = y.shape[3], HW = H * W, P = Ho * Wo
    cdef Py_ssize_t p
    if N * C * P == 0:
        return
    cdef const real* xp = &x[0, 0, 0, 0]
    cdef real* yp = &y[0, 0, 0, 0]
    for p in prange(N * C, nogil=True, schedule="static", num_threads=num_threads):
        _adaptive_plane(xp + p * HW, yp + p * P, NULL, NULL, H, W, Ho, Wo)


def adaptive_avg_pool_backward(const real[:, :, :, ::1] gy, real[:, :, :, ::1] gx, int num_threads):
    """IN gy (N, C, Ho, Wo); OUT gx (N, C, H, W): ``gy / bin area`` spread over each bin."""
    cdef Py_ssize_t N = gx.shape[0], C = gx.shape[1], H = gx.shape[2], W = gx.shape[3]
    cdef Py_ssize_t Ho = gy.shape[2], Wo = gy.shape[3], HW = H * W, P = Ho * Wo
    cdef Py_ssize_t p
    if N * C * HW == 0:
        return
    cdef const real* gyp = &gy[0, 0, 0, 0] if P > 0 else NULL
    cdef real* gxp = &gx[0, 0, 0, 0]
    for p in prange(N * C, nogil=True, schedule="static", num_threads=num_threads):
        _adaptive_plane(NULL, NULL, gxp + p * HW, gyp + p * P, H, W, Ho, Wo)
