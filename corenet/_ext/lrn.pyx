# Design
# ------
# Local response normalisation kernels of the Cython backend, across channels (AlexNet) and
# within a channel (Caffe WITHIN_CHANNEL), forward and backward. Names, arguments and the exact
# arithmetic (which sums run in float64, which steps stay in the input dtype) are the contract
# documented at the top of ``corenet/kernels/numba_cpu/lrn.py``, plus one extra last argument,
# ``num_threads`` (filled in by ``corenet/kernels/cython_cpu/lrn.py``). ``alpha`` is the
# effective coefficient (already divided by ``size`` or ``size**2`` where the convention says so).
#
# Across channels: one task per (image, block of at most BLOCK pixels; smaller blocks when a
# small batch would leave threads idle). The channel-window sum is a float64 running sum per
# pixel of the block (channel ``c + hi`` enters, ``c - lo - 1`` leaves), so each channel is read
# once per pass whatever the window size. The backward keeps ring buffers of the last ``size``
# channels' ``d = scale**beta`` and ``t = gy*x/(d*scale)``, in the input dtype.
# Within a channel: one task per (image, channel) plane; the box sum is separable (rows first,
# then columns), in float64. Work buffers are allocated once per thread, not per task.
#
# ``d = scale**beta`` is computed in the input dtype with square roots for beta in {0.5, 0.75, 1}
# (vectorisable; the build passes -fno-math-errno so ``sqrtf`` is one instruction) and with a
# float64 ``pow`` otherwise; then ``y = x / d``.
#
# Races: every output element is computed by one task in a fixed order, so results are
# bit-identical for any thread count.

from cython.parallel cimport parallel, prange
from libc.math cimport pow, sqrt, sqrtf
from libc.stdlib cimport abort, free, malloc

from ._types cimport real

cdef enum:
    BLOCK = 1024  # at most this many pixels per across-channel task: the window stays in L1/L2
    TASKS = 32  # a small batch is cut into smaller blocks so that there are at least this many tasks


cdef inline Py_ssize_t _block(Py_ssize_t N, Py_ssize_t P) noexcept nogil:
    """Pixels per task (never changes results: every pixel is computed the same way)."""
    cdef Py_ssize_t per_image = (TASKS + N - 1) // N
    cdef Py_ssize_t blk = (P + per_image - 1) // per_image
    if blk < 64:
        blk = 64
    return blk if blk < BLOCK else BLOCK


cdef inline real _sqrt(real v) noexcept nogil:
    if real is float:
        return sqrtf(v)
    else:
        return sqrt(v)


cdef void _pow_into(const real* s, real* d, Py_ssize_t m, double beta) noexcept nogil:
    """``d[q] = s[q] ** beta`` in the dtype of ``d``; square roots for the common betas."""
    cdef Py_ssize_t q
    if beta == 0.75:
        for q in range(m):
            d[q] = _sqrt(s[q] * _sqrt(s[q]))
    elif beta == 0.5:
        for q in range(m):
            d[q] = _sqrt(s[q])
    elif beta == 1.0:
        for q in range(m):
            d[q] = s[q]
    else:
        for q in range(m):
            d[q] = <real>pow(<double>s[q], beta)


cdef inline double* _alloc(Py_ssize_t n) noexcept nogil:
    cdef double* buf = <double*> malloc((n if n > 0 else 1) * sizeof(double))
    if buf == NULL:
        abort()
    return buf


# ---------------------------------------------------------------------------- across channels

cdef void _across_forward_block(const real* x, real* y, real* scale, Py_ssize_t sstride,
                                Py_ssize_t C, Py_ssize_t P, Py_ssize_t m, Py_ssize_t lo,
                                Py_ssize_t hi, double alpha, double beta, double k,
                                double* acc) noexcept nogil:
    """One image's block of ``m`` pixels. ``x``, ``y`` point at channel 0 of the block (channel
    stride ``P``); ``scale`` too with ``sstride = P``, or is a per-thread row (``sstride = 0``)
    when the caller does not keep it."""
    cdef Py_ssize_t c, e, o, q
    cdef const real* xe
    cdef real* yc
    cdef real* sc
    cdef double v
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
                v = acc[q] - <double>xe[q] * xe[q]
                acc[q] = v if v > 0.0 else 0.0
        sc = scale + c * sstride
        for q in range(m):
            sc[q] = <real>(k + alpha * acc[q])
        xe = x + c * P
        yc = y + c * P
        _pow_into(sc, yc, m, beta)  # yc = scale**beta, then divided into x in place
        for q in range(m):
            yc[q] = xe[q] / yc[q]


cdef void _across_backward_block(const real* x, const real* scale, const real* gy, real* gx,
                                 Py_ssize_t C, Py_ssize_t P, Py_ssize_t m, Py_ssize_t size,
                                 Py_ssize_t lo, Py_ssize_t hi, double coef, double beta,
                                 double* acc, real* dr, real* tr) noexcept nogil:
    """One image's block of ``m`` pixels; ``dr``/``tr`` are ``(size, BLOCK)`` ring buffers."""
    cdef Py_ssize_t j, e, q
    cdef real* ds
    cdef real* ts
    cdef const real* xe
    cdef const real* se
    cdef const real* ge
    cdef real* gxj
    for q in range(m):
        acc[q] = 0.0
    for j in range(-lo, C):
        e = j + lo  # entering channel; the one leaving, e - size, shares its ring slot
        if e < C:
            ds = dr + (e % size) * BLOCK
            ts = tr + (e % size) * BLOCK
            if e - size >= 0:
                for q in range(m):
                    acc[q] -= ts[q]
            se = scale + e * P
            _pow_into(se, ds, m, beta)
            xe = x + e * P
            ge = gy + e * P
            for q in range(m):
                ts[q] = ge[q] * xe[q] / (ds[q] * se[q])
            for q in range(m):
                acc[q] += ts[q]
        elif j - hi - 1 >= 0:  # no channel enters, one still leaves
            ts = tr + ((j - hi - 1) % size) * BLOCK
            for q in range(m):
                acc[q] -= ts[q]
        if j >= 0:
            ds = dr + (j % size) * BLOCK
            xe = x + j * P
            ge = gy + j * P
            gxj = gx + j * P
            for q in range(m):
                gxj[q] = <real>(ge[q] / ds[q] - coef * xe[q] * acc[q])


def lrn_across_forward(const real[:, :, :, ::1] x, real[:, :, :, ::1] y, real[:, :, :, ::1] scale,
                       Py_ssize_t size, double alpha, double beta, double k, int num_threads):
    """IN x (N, C, H, W); OUT y, scale (``scale`` may be ``(0, 0, 0, 0)``: not kept)."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], P = x.shape[2] * x.shape[3]
    cdef Py_ssize_t lo = size // 2, hi = (size - 1) // 2
    cdef Py_ssize_t blk, nb, task, n, p0, m, off
    cdef bint keep = scale.shape[0] != 0
    cdef double* acc = NULL
    cdef real* tmp = NULL
    if N * C * P == 0:
        return
    blk = _block(N, P)
    nb = (P + blk - 1) // blk
    cdef const real* xp = &x[0, 0, 0, 0]
    cdef real* yp = &y[0, 0, 0, 0]
    cdef real* sp = &scale[0, 0, 0, 0] if keep else NULL
    with nogil, parallel(num_threads=num_threads):
        acc = _alloc(BLOCK)
        tmp = <real*> malloc(BLOCK * sizeof(real))  # the scale row when it is not kept
        if tmp == NULL:
            abort()
        for task in prange(N * nb, schedule="static"):
            n = task // nb
            p0 = (task - n * nb) * blk
            m = P - p0 if P - p0 < blk else blk
            off = n * C * P + p0
            if keep:
                _across_forward_block(xp + off, yp + off, sp + off, P, C, P, m, lo, hi, alpha, beta, k, acc)
            else:
                _across_forward_block(xp + off, yp + off, tmp, 0, C, P, m, lo, hi, alpha, beta, k, acc)
        free(acc)
        free(tmp)


def lrn_across_backward(const real[:, :, :, ::1] x, const real[:, :, :, ::1] scale,
                        const real[:, :, :, ::1] gy, real[:, :, :, ::1] gx, Py_ssize_t size,
                        double alpha, double beta, int num_threads):
    """IN x, scale, gy (N, C, H, W); OUT gx (N, C, H, W)."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], P = x.shape[2] * x.shape[3]
    cdef Py_ssize_t lo = size // 2, hi = (size - 1) // 2
    cdef Py_ssize_t blk, nb, task, n, p0, m, off
    cdef double coef = 2.0 * alpha * beta
    cdef double* acc = NULL
    cdef real* dr = NULL
    cdef real* tr = NULL
    if N * C * P == 0:
        return
    blk = _block(N, P)
    nb = (P + blk - 1) // blk
    cdef const real* xp = &x[0, 0, 0, 0]
    cdef const real* sp = &scale[0, 0, 0, 0]
    cdef const real* gyp = &gy[0, 0, 0, 0]
    cdef real* gxp = &gx[0, 0, 0, 0]
    with nogil, parallel(num_threads=num_threads):
        acc = _alloc(BLOCK)
        dr = <real*> malloc(size * BLOCK * sizeof(real))  # ring buffers, one BLOCK row per slot
        tr = <real*> malloc(size * BLOCK * sizeof(real))
        if dr == NULL or tr == NULL:
            abort()
        for task in prange(N * nb, schedule="static"):
            n = task // nb
            p0 = (task - n * nb) * blk
            m = P - p0 if P - p0 < blk else blk
            off = n * C * P + p0
            _across_backward_block(xp + off, sp + off, gyp + off, gxp + off, C, P, m, size, lo, hi,
                                   coef, beta, acc, dr, tr)
        free(acc)
        free(dr)
        free(tr)


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
    cdef bint keep = scale.shape[0] != 0
    cdef double* buf = NULL  # per thread: squares, row sums, box sums (3 planes, float64)
    cdef real* tmp = NULL  # per thread: the scale plane when it is not kept
    cdef real* sc
    cdef const real* xq
    cdef real* yq
    if N * C * HW == 0:
        return
    cdef const real* xp = &x[0, 0, 0, 0]
    cdef real* yp = &y[0, 0, 0, 0]
    cdef real* sp = &scale[0, 0, 0, 0] if keep else NULL
    with nogil, parallel(num_threads=num_threads):
        buf = _alloc(3 * HW)
        tmp = <real*> malloc(HW * sizeof(real))
        if tmp == NULL:
            abort()
        for p in prange(N * C, schedule="static"):  # one (image, channel) plane per task
            xq = xp + p * HW
            yq = yp + p * HW
            for q in range(HW):
                buf[q] = <double>xq[q] * xq[q]
            _box(buf, buf + 2 * HW, buf + HW, H, W, lo, hi)
            sc = sp + p * HW if keep else tmp
            for q in range(HW):
                sc[q] = <real>(k + alpha * buf[2 * HW + q])
            _pow_into(sc, yq, HW, beta)
            for q in range(HW):
                yq[q] = xq[q] / yq[q]
        free(buf)
        free(tmp)


def lrn_within_backward(const real[:, :, :, ::1] x, const real[:, :, :, ::1] scale,
                        const real[:, :, :, ::1] gy, real[:, :, :, ::1] gx, Py_ssize_t size,
                        double alpha, double beta, int num_threads):
    """IN x, scale, gy (N, C, H, W); OUT gx (N, C, H, W)."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3], HW = H * W
    cdef Py_ssize_t lo = size // 2, hi = (size - 1) // 2
    cdef Py_ssize_t p, q
    cdef double coef = 2.0 * alpha * beta
    cdef double* buf = NULL  # per thread: t, row sums, box sums (3 planes, float64)
    cdef real* d = NULL  # per thread: d = scale**beta, in the input dtype
    cdef const real* xq
    cdef const real* sq
    cdef const real* gq
    cdef real* g
    if N * C * HW == 0:
        return
    cdef const real* xp = &x[0, 0, 0, 0]
    cdef const real* sp = &scale[0, 0, 0, 0]
    cdef const real* gyp = &gy[0, 0, 0, 0]
    cdef real* gxp = &gx[0, 0, 0, 0]
    with nogil, parallel(num_threads=num_threads):
        buf = _alloc(3 * HW)
        d = <real*> malloc(HW * sizeof(real))
        if d == NULL:
            abort()
        for p in prange(N * C, schedule="static"):  # one (image, channel) plane per task
            xq = xp + p * HW
            sq = sp + p * HW
            gq = gyp + p * HW
            _pow_into(sq, d, HW, beta)
            for q in range(HW):
                buf[q] = gq[q] * xq[q] / (d[q] * sq[q])
            _box(buf, buf + 2 * HW, buf + HW, H, W, hi, lo)
            g = gxp + p * HW
            for q in range(HW):
                g[q] = <real>(gq[q] / d[q] - coef * xq[q] * buf[2 * HW + q])
        free(buf)
        free(d)
