# Design
# ------
# Local response normalisation kernels of the Cython backend, across channels (AlexNet) and
# within a channel (Caffe WITHIN_CHANNEL), forward and backward. Names, arguments and the exact
# order of every float64 sum are the contract documented at the top of
# ``corenet/kernels/numba_cpu/lrn.py``, plus one extra last argument, ``num_threads`` (filled in
# by ``corenet/kernels/cython_cpu/lrn.py`` from ``corenet.config``). ``alpha`` is the effective
# coefficient (already divided by ``size`` or ``size**2`` where the convention asks for it).
#
# Across channels: one task per (image, block of BLOCK pixels). The channel-window sum is a
# float64 running sum per pixel of the block (channel ``c + hi`` enters, ``c - lo - 1`` leaves),
# so each channel is read once per pass whatever the window size. The backward keeps ring
# buffers of the last ``size`` channels' ``t = gy*x*p/s`` and ``p = s**-beta``.
# Within a channel: one task per (image, channel) plane; the box sum is separable (rows first,
# then columns), in float64. Work buffers are allocated once per thread, not per task.
#
# Races: every output element is computed by one task in a fixed order, so results are
# bit-identical for any thread count.

from cython.parallel cimport parallel, prange
from libc.math cimport pow, sqrt
from libc.stdlib cimport abort, free, malloc

from ._types cimport real

cdef enum:
    BLOCK = 1024  # pixels per across-channel task: the channel window stays in L1/L2


cdef inline double _rpow(double s, double beta) noexcept nogil:
    """``s ** -beta`` for ``s > 0``; square roots for the common exponents."""
    if beta == 0.75:
        return 1.0 / sqrt(s * sqrt(s))
    if beta == 0.5:
        return 1.0 / sqrt(s)
    if beta == 1.0:
        return 1.0 / s
    return pow(s, -beta)


cdef inline double* _alloc(Py_ssize_t n) noexcept nogil:
    cdef double* buf = <double*> malloc((n if n > 0 else 1) * sizeof(double))
    if buf == NULL:
        abort()
    return buf


# ---------------------------------------------------------------------------- across channels

cdef void _across_forward_block(const real* x, real* y, real* scale, Py_ssize_t C, Py_ssize_t P,
                                Py_ssize_t m, Py_ssize_t lo, Py_ssize_t hi, double alpha,
                                double beta, double k, double* acc) noexcept nogil:
    """One image's block of ``m`` pixels; ``x``, ``y``, ``scale`` point at channel 0 of the block
    (channel stride ``P``); ``scale`` is NULL when the caller does not keep it."""
    cdef Py_ssize_t c, e, o, q
    cdef const real* xe
    cdef real* yc
    cdef real* sc
    cdef double s
    for q in range(m):
        acc[q] = 0.0
    for c in range(hi if hi < C else C):  # channels that enter before c = 0
        xe = x + c * P
        for q in range(m):
            acc[q] += <double>xe[q] * xe[q]
    for c in range(C):
        e = c + hi
        if e < C:
            xe = x + e * P
            for q in range(m):
                acc[q] += <double>xe[q] * xe[q]
        o = c - lo - 1
        if o >= 0:
            xe = x + o * P
            for q in range(m):
                s = acc[q] - <double>xe[q] * xe[q]
                acc[q] = s if s > 0.0 else 0.0
        xe = x + c * P
        yc = y + c * P
        if scale != NULL:
            sc = scale + c * P
            for q in range(m):
                s = k + alpha * acc[q]
                sc[q] = <real>s
                yc[q] = <real>(xe[q] * _rpow(s, beta))
        else:
            for q in range(m):
                yc[q] = <real>(xe[q] * _rpow(k + alpha * acc[q], beta))


cdef void _across_backward_block(const real* x, const real* scale, const real* gy, real* gx,
                                 Py_ssize_t C, Py_ssize_t P, Py_ssize_t m, Py_ssize_t size,
                                 Py_ssize_t lo, Py_ssize_t hi, double beta, double coef,
                                 double* acc, double* tr, double* pr) noexcept nogil:
    """One image's block of ``m`` pixels; ``tr``/``pr`` are ``(size, BLOCK)`` ring buffers."""
    cdef Py_ssize_t j, e, q
    cdef double* ts
    cdef double* ps
    cdef const real* xe
    cdef const real* se
    cdef const real* ge
    cdef real* gxj
    cdef double s, p, t
    for q in range(m):
        acc[q] = 0.0
    for j in range(-lo, C):
        e = j + lo  # entering channel; the one leaving, e - size, shares its ring slot
        if e < C:
            ts = tr + (e % size) * BLOCK
            ps = pr + (e % size) * BLOCK
            if e - size >= 0:
                for q in range(m):
                    acc[q] -= ts[q]
            xe = x + e * P
            se = scale + e * P
            ge = gy + e * P
            for q in range(m):
                s = se[q]
                p = _rpow(s, beta)
                t = <double>ge[q] * xe[q] * p / s
                ps[q] = p
                ts[q] = t
                acc[q] += t
        elif j - hi - 1 >= 0:  # no channel enters, one still leaves
            ts = tr + ((j - hi - 1) % size) * BLOCK
            for q in range(m):
                acc[q] -= ts[q]
        if j >= 0:
            ps = pr + (j % size) * BLOCK
            xe = x + j * P
            ge = gy + j * P
            gxj = gx + j * P
            for q in range(m):
                gxj[q] = <real>(ge[q] * ps[q] - coef * xe[q] * acc[q])


def lrn_across_forward(const real[:, :, :, ::1] x, real[:, :, :, ::1] y, real[:, :, :, ::1] scale,
                       Py_ssize_t size, double alpha, double beta, double k, int num_threads):
    """IN x (N, C, H, W); OUT y, scale (``scale`` may be ``(0, 0, 0, 0)``: not kept)."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], P = x.shape[2] * x.shape[3]
    cdef Py_ssize_t lo = size // 2, hi = (size - 1) // 2, nb = (P + BLOCK - 1) // BLOCK
    cdef Py_ssize_t task, n, p0, m
    cdef double* acc = NULL
    if N * C * P == 0:
        return
    cdef const real* xp = &x[0, 0, 0, 0]
    cdef real* yp = &y[0, 0, 0, 0]
    cdef real* sp = &scale[0, 0, 0, 0] if scale.shape[0] != 0 else NULL
    with nogil, parallel(num_threads=num_threads):
        acc = _alloc(BLOCK)
        for task in prange(N * nb, schedule="static"):
            n = task // nb
            p0 = (task - n * nb) * BLOCK
            m = P - p0 if P - p0 < BLOCK else BLOCK
            _across_forward_block(xp + n * C * P + p0, yp + n * C * P + p0,
                                  sp + n * C * P + p0 if sp != NULL else NULL,
                                  C, P, m, lo, hi, alpha, beta, k, acc)
        free(acc)


def lrn_across_backward(const real[:, :, :, ::1] x, const real[:, :, :, ::1] scale,
                        const real[:, :, :, ::1] gy, real[:, :, :, ::1] gx, Py_ssize_t size,
                        double alpha, double beta, int num_threads):
    """IN x, scale, gy (N, C, H, W); OUT gx (N, C, H, W)."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], P = x.shape[2] * x.shape[3]
    cdef Py_ssize_t lo = size // 2, hi = (size - 1) // 2, nb = (P + BLOCK - 1) // BLOCK
    cdef Py_ssize_t task, n, p0, m, off
    cdef double coef = 2.0 * alpha * beta
    cdef double* acc = NULL
    cdef double* tr = NULL
    cdef double* pr = NULL
    if N * C * P == 0:
        return
    cdef const real* xp = &x[0, 0, 0, 0]
    cdef const real* sp = &scale[0, 0, 0, 0]
    cdef const real* gyp = &gy[0, 0, 0, 0]
    cdef real* gxp = &gx[0, 0, 0, 0]
    with nogil, parallel(num_threads=num_threads):
        acc = _alloc(BLOCK)
        tr = _alloc(size * BLOCK)
        pr = _alloc(size * BLOCK)
        for task in prange(N * nb, schedule="static"):
            n = task // nb
            p0 = (task - n * nb) * BLOCK
            m = P - p0 if P - p0 < BLOCK else BLOCK
            off = n * C * P + p0
            _across_backward_block(xp + off, sp + off, gyp + off, gxp + off, C, P, m, size, lo, hi,
                                   beta, coef, acc, tr, pr)
        free(acc)
        free(tr)
        free(pr)


# --------------------------------------------------------------------------- within a channel

cdef void _box(const double* src, double* dst, double* tmp, Py_ssize_t H, Py_ssize_t W,
               Py_ssize_t before, Py_ssize_t after) noexcept nogil:
    """``dst[h, w] = sum src[h', w']`` over ``[h-before, h+after] x [w-before, w+after]``, zero padded."""
    cdef Py_ssize_t h, w, u, v, a, b
    cdef double s
    for h in range(H):
        for w in range(W):
            a = w - before if w - before > 0 else 0
            b = w + after + 1 if w + after + 1 < W else W
            s = 0.0
            for v in range(a, b):
                s += src[h * W + v]
            tmp[h * W + w] = s
    for h in range(H):
        for w in range(W):
            dst[h * W + w] = 0.0
        a = h - before if h - before > 0 else 0
        b = h + after + 1 if h + after + 1 < H else H
        for u in range(a, b):
            for w in range(W):
                dst[h * W + w] += tmp[u * W + w]


def lrn_within_forward(const real[:, :, :, ::1] x, real[:, :, :, ::1] y, real[:, :, :, ::1] scale,
                       Py_ssize_t size, double alpha, double beta, double k, int num_threads):
    """IN x (N, C, H, W); OUT y, scale (``scale`` may be ``(0, 0, 0, 0)``: not kept)."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3], HW = H * W
    cdef Py_ssize_t lo = size // 2, hi = (size - 1) // 2
    cdef Py_ssize_t p, q
    cdef double* buf = NULL  # per thread: squares, row sums, box sums (3 planes)
    cdef double s
    if N * C * HW == 0:
        return
    cdef const real* xp = &x[0, 0, 0, 0]
    cdef real* yp = &y[0, 0, 0, 0]
    cdef real* sp = &scale[0, 0, 0, 0] if scale.shape[0] != 0 else NULL
    with nogil, parallel(num_threads=num_threads):
        buf = _alloc(3 * HW)
        for p in prange(N * C, schedule="static"):  # one (image, channel) plane per task
            for q in range(HW):
                buf[q] = <double>xp[p * HW + q] * xp[p * HW + q]
            _box(buf, buf + 2 * HW, buf + HW, H, W, lo, hi)
            for q in range(HW):
                s = k + alpha * buf[2 * HW + q]
                if sp != NULL:
                    sp[p * HW + q] = <real>s
                yp[p * HW + q] = <real>(xp[p * HW + q] * _rpow(s, beta))
        free(buf)


def lrn_within_backward(const real[:, :, :, ::1] x, const real[:, :, :, ::1] scale,
                        const real[:, :, :, ::1] gy, real[:, :, :, ::1] gx, Py_ssize_t size,
                        double alpha, double beta, int num_threads):
    """IN x, scale, gy (N, C, H, W); OUT gx (N, C, H, W)."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3], HW = H * W
    cdef Py_ssize_t lo = size // 2, hi = (size - 1) // 2
    cdef Py_ssize_t p, q
    cdef double coef = 2.0 * alpha * beta
    cdef double* buf = NULL  # per thread: p = s**-beta, t, row sums, box sums (4 planes)
    cdef double s
    if N * C * HW == 0:
        return
    cdef const real* xp = &x[0, 0, 0, 0]
    cdef const real* sp = &scale[0, 0, 0, 0]
    cdef const real* gyp = &gy[0, 0, 0, 0]
    cdef real* gxp = &gx[0, 0, 0, 0]
    with nogil, parallel(num_threads=num_threads):
        buf = _alloc(4 * HW)
        for p in prange(N * C, schedule="static"):  # one (image, channel) plane per task
            for q in range(HW):
                s = sp[p * HW + q]
                buf[q] = _rpow(s, beta)
                buf[HW + q] = <double>gyp[p * HW + q] * xp[p * HW + q] * buf[q] / s
            _box(buf + HW, buf + 3 * HW, buf + 2 * HW, H, W, hi, lo)
            for q in range(HW):
                gxp[p * HW + q] = <real>(gyp[p * HW + q] * buf[q] - coef * xp[p * HW + q] * buf[3 * HW + q])
        free(buf)
