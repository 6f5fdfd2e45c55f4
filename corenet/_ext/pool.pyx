# Design
# ------
# Pooling kernels of the Cython backend: max/min with first-extremum argmax, average/sum with
# PyTorch's divisor rules, adaptive average and max; forward and backward. Names, arguments and
# semantics are the contract documented at the top of ``corenet/kernels/numba_cpu/pool.py``,
# plus one extra last argument, ``num_threads`` (filled in by
# ``corenet/kernels/cython_cpu/pool.py`` from ``corenet.config``). One exception: the argmax
# scatter ``extreme_pool_backward(gy, idx, gx, num_threads)`` takes no window geometry (the
# contract's geometry arguments serve the cuda gather; the wrapper drops them), and it is the
# backward of adaptive max pooling too.
#
# Window geometry: output ``(oh, ow)`` reads the taps ``(oh*sh - pt + i*dh, ow*sw - pl + j*dw)``.
# The taps of each output row and column that fall inside the input (and, for the average
# divisor, inside the padded input) are the same for every plane, so they are computed once per
# call (``_windows``) and the window loops never test padding. Max/min compares and selects
# without branches and sums the taps alongside: only when that sum is NaN is the window
# rescanned for its first NaN (a NaN is extremal). Average sums run in float64 and are divided
# in float64, as in the Numba kernels.
#
# Races: ``prange`` over the N*C planes; a plane, including its backward scatter, belongs to
# one task, so results do not depend on the thread count at all.
#
# Note: ``cdivision`` is on for the whole extension, so every ``//`` here has a non-negative
# numerator (ceilings are written as ``(a + b - 1) // b``).

from cython.parallel cimport prange
from libc.math cimport INFINITY
from libc.stdint cimport int32_t
from libc.stdlib cimport free, malloc

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


cdef Py_ssize_t* _windows(Py_ssize_t n_out, Py_ssize_t stride, Py_ssize_t pad_before,
                          Py_ssize_t pad_after, Py_ssize_t k, Py_ssize_t d, Py_ssize_t size) except NULL:
    """Per output index ``o``: ``r[3*o : 3*o + 3] = (t0, t1, cnt)``: the in-input taps ``[t0, t1)``
    and the number of taps inside the padded input ``[-pad_before, size + pad_after)``.
    The caller frees the array."""
    cdef Py_ssize_t* r = <Py_ssize_t*> malloc((3 * n_out + 1) * sizeof(Py_ssize_t))
    cdef Py_ssize_t o, start, c0, c1
    if r == NULL:
        raise MemoryError()
    for o in range(n_out):
        start = o * stride - pad_before
        _tap_range(start, k, d, size, &r[3 * o], &r[3 * o + 1])
        _tap_range(start + pad_before, k, d, size + pad_before + pad_after, &c0, &c1)
        r[3 * o + 2] = c1 - c0
    return r


# -------------------------------------------------------------------------------- max / min

cdef Py_ssize_t _first_nan(const real* x, Py_ssize_t q0, Py_ssize_t i0, Py_ssize_t i1,
                           Py_ssize_t j0, Py_ssize_t j1, Py_ssize_t rstep, Py_ssize_t dw) noexcept nogil:
    """Flat index of the first NaN tap of a window in row-major order, or -1."""
    cdef Py_ssize_t i, j, q
    for i in range(i0, i1):
        for j in range(j0, j1):
            q = q0 + i * rstep + j * dw
            if x[q] != x[q]:
                return q
    return -1


cdef void _extreme_plane(const real* x, real* y, int32_t* idx, Py_ssize_t W, Py_ssize_t Ho,
                         Py_ssize_t Wo, const Py_ssize_t* rh, const Py_ssize_t* rw, Py_ssize_t sh,
                         Py_ssize_t sw, Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t dh, Py_ssize_t dw,
                         bint find_min) noexcept nogil:
    """IN x plane (H, W); OUT y, idx planes (Ho, Wo)."""
    cdef Py_ssize_t oh, ow, i0, i1, j0, j1, i, j, q, q0, r, besti, first
    cdef Py_ssize_t rstep = dh * W
    cdef real best, v, total
    cdef bint u
    for oh in range(Ho):
        i0 = rh[3 * oh]
        i1 = rh[3 * oh + 1]
        for ow in range(Wo):
            j0 = rw[3 * ow]
            j1 = rw[3 * ow + 1]
            if i0 == i1 or j0 == j1:
                y[oh * Wo + ow] = INFINITY if find_min else -INFINITY
                idx[oh * Wo + ow] = -1
                continue
            q0 = (oh * sh - pt) * W + ow * sw - pl  # flat index of tap (0, 0), maybe outside the plane
            besti = q0 + i0 * rstep + j0 * dw
            best = x[besti]
            total = best - best  # NaN iff some tap is NaN (or +inf and -inf meet)
            for i in range(i0, i1):
                r = q0 + i * rstep
                if find_min:
                    for j in range(j0, j1):
                        q = r + j * dw
                        v = x[q]
                        total = total + v
                        u = v < best  # strict: the first extremum stays
                        besti = q if u else besti
                        best = v if u else best
                else:
                    for j in range(j0, j1):
                        q = r + j * dw
                        v = x[q]
                        total = total + v
                        u = v > best
                        besti = q if u else besti
                        best = v if u else best
            if total != total:
                first = _first_nan(x, q0, i0, i1, j0, j1, rstep, dw)
                if first >= 0:
                    besti = first
                    best = x[first]
            y[oh * Wo + ow] = best
            idx[oh * Wo + ow] = <int32_t>besti


def extreme_pool_forward(const real[:, :, :, ::1] x, real[:, :, :, ::1] y, int32_t[:, :, :, ::1] idx,
                         Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t pt,
                         Py_ssize_t pl, Py_ssize_t dh, Py_ssize_t dw, bint find_min, int num_threads):
    """IN x (N, C, H, W); OUT y, idx (N, C, Ho, Wo): extremum and flat index of its first tap."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t Ho = y.shape[2], Wo = y.shape[3], HW = H * W, P = Ho * Wo
    cdef Py_ssize_t p
    if N * C * P == 0:
        return
    cdef const real* xp = &x[0, 0, 0, 0]
    cdef real* yp = &y[0, 0, 0, 0]
    cdef int32_t* ip = &idx[0, 0, 0, 0]
    cdef Py_ssize_t* rh = _windows(Ho, sh, pt, 0, kh, dh, H)
    cdef Py_ssize_t* rw = NULL
    try:
        rw = _windows(Wo, sw, pl, 0, kw, dw, W)
        for p in prange(N * C, nogil=True, schedule="static", num_threads=num_threads):
            _extreme_plane(xp + p * HW, yp + p * P, ip + p * P, W, Ho, Wo, rh, rw, sh, sw, pt, pl,
                           dh, dw, find_min)
    finally:
        free(rh)
        free(rw)


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

cdef void _avg_plane(const real* x, real* y, real* gx, const real* gy, Py_ssize_t W, Py_ssize_t HW,
                     Py_ssize_t Ho, Py_ssize_t Wo, const Py_ssize_t* rh, const Py_ssize_t* rw,
                     Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t dh,
                     Py_ssize_t dw, bint count_include_pad, double divisor) noexcept nogil:
    """Forward (``x`` -> ``y``) when ``gx`` is NULL, else backward (``gy`` -> ``gx``, zeroed here)."""
    cdef Py_ssize_t oh, ow, i0, i1, j0, j1, i, j, cnt_h, cnt_w, q, q0, r
    cdef double d, s, v
    if gx != NULL:
        for q in range(HW):
            gx[q] = 0
    for oh in range(Ho):
        i0 = rh[3 * oh]
        i1 = rh[3 * oh + 1]
        cnt_h = rh[3 * oh + 2] if count_include_pad else i1 - i0
        for ow in range(Wo):
            j0 = rw[3 * ow]
            j1 = rw[3 * ow + 1]
            cnt_w = rw[3 * ow + 2] if count_include_pad else j1 - j0
            d = divisor if divisor > 0 else <double>(cnt_h * cnt_w)
            q0 = (oh * sh - pt) * W + ow * sw - pl  # flat index of tap (0, 0), maybe outside the plane
            if gx == NULL:
                s = 0.0
                for i in range(i0, i1):
                    r = q0 + i * dh * W
                    for j in range(j0, j1):
                        s += x[r + j * dw]
                y[oh * Wo + ow] = <real>(s / d) if d > 0 else 0
            elif d > 0:
                v = gy[oh * Wo + ow] / d
                for i in range(i0, i1):
                    r = q0 + i * dh * W
                    for j in range(j0, j1):
                        gx[r + j * dw] += v


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
    cdef Py_ssize_t* rh = _windows(Ho, sh, pt, pb, kh, dh, H)
    cdef Py_ssize_t* rw = NULL
    try:
        rw = _windows(Wo, sw, pl, pr, kw, dw, W)
        for p in prange(N * C, nogil=True, schedule="static", num_threads=num_threads):
            _avg_plane(xp + p * HW, yp + p * P, NULL, NULL, W, HW, Ho, Wo, rh, rw, sh, sw, pt, pl,
                       dh, dw, count_include_pad, divisor)
    finally:
        free(rh)
        free(rw)


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
    cdef Py_ssize_t* rh = _windows(Ho, sh, pt, pb, kh, dh, H)
    cdef Py_ssize_t* rw = NULL
    try:
        rw = _windows(Wo, sw, pl, pr, kw, dw, W)
        for p in prange(N * C, nogil=True, schedule="static", num_threads=num_threads):
            _avg_plane(NULL, NULL, gxp + p * HW, gyp + p * P, W, HW, Ho, Wo, rh, rw, sh, sw, pt, pl,
                       dh, dw, count_include_pad, divisor)
    finally:
        free(rh)
        free(rw)


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


# ---------------------------------------------------------------------------- adaptive max

cdef void _adaptive_max_plane(const real* x, real* y, int32_t* idx, Py_ssize_t H, Py_ssize_t W,
                              Py_ssize_t Ho, Py_ssize_t Wo) noexcept nogil:
    """IN x plane (H, W); OUT y, idx planes (Ho, Wo): each bin's first maximum and its flat index."""
    cdef Py_ssize_t oh, ow, h0, h1, w0, w1, h, w, q, besti, first
    cdef real best, v, total
    cdef bint u
    for oh in range(Ho):
        h0 = (oh * H) // Ho
        h1 = ((oh + 1) * H + Ho - 1) // Ho
        for ow in range(Wo):
            w0 = (ow * W) // Wo
            w1 = ((ow + 1) * W + Wo - 1) // Wo
            besti = h0 * W + w0
            best = x[besti]
            total = best - best  # NaN iff some element is NaN (or +inf and -inf meet)
            for h in range(h0, h1):
                for w in range(w0, w1):
                    q = h * W + w
                    v = x[q]
                    total = total + v
                    u = v > best  # strict: the first maximum stays
                    besti = q if u else besti
                    best = v if u else best
            if total != total:
                first = _first_nan(x, h0 * W + w0, 0, h1 - h0, 0, w1 - w0, W, 1)
                if first >= 0:
                    besti = first
                    best = x[first]
            y[oh * Wo + ow] = best
            idx[oh * Wo + ow] = <int32_t>besti


def adaptive_max_pool_forward(const real[:, :, :, ::1] x, real[:, :, :, ::1] y, int32_t[:, :, :, ::1] idx,
                              int num_threads):
    """IN x (N, C, H, W); OUT y, idx (N, C, Ho, Wo): bin maxima and the flat index of each first maximum."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t Ho = y.shape[2], Wo = y.shape[3], HW = H * W, P = Ho * Wo
    cdef Py_ssize_t p
    if N * C * P == 0:
        return
    cdef const real* xp = &x[0, 0, 0, 0]
    cdef real* yp = &y[0, 0, 0, 0]
    cdef int32_t* ip = &idx[0, 0, 0, 0]
    for p in prange(N * C, nogil=True, schedule="static", num_threads=num_threads):
        _adaptive_max_plane(xp + p * HW, yp + p * P, ip + p * P, H, W, Ho, Wo)
