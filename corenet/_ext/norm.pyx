# Design
# ------
# Batch-normalisation kernels of the Cython backend. Names and semantics are those of
# ``corenet/kernels/numba_cpu/norm.py``; here every output is an OUT argument (the wrapper
# ``corenet/kernels/cython_cpu/norm.py`` allocates it and returns it, as the Numba kernels do)
# and the last argument is ``num_threads``.
#
# Inputs are ``(N, C, L)`` C-contiguous views. Work is split into the ``N*C`` contiguous blocks
# ``x[n, c, :]``: each block is reduced serially by one task into float64 partials (shifted sums
# with the block's first element as shift, four accumulators, as in the Numba kernels), and the
# partials of a channel are combined serially in ``n`` order (Chan et al.'s pairwise update for
# the variance). Results therefore do not depend on the thread count at all.
# Thread safety: Cython makes a variable private to each OpenMP thread only when the ``prange``
# body *assigns* it; a local written only through its address (``f(&s)``) stays shared between
# the threads and races. So every per-task result here is written through a pointer into that
# task's own slot of an output or work array (``bmean[n, c]``, ``bg[n, c]``, a channel of
# ``mean``), never into a local of the body.
# For ``(N, C)`` input (``L == 1``) every block would hold one value, so, as in the Numba kernels,
# the channels are reduced as columns instead: one task per chunk of COLS channels, rows in ``n``
# order, the inner loop along the contiguous channel axis (same shifted-data method, shift = row 0).

from cython.parallel cimport prange

from ._types cimport real


cdef void _block_moments(const real* xb, Py_ssize_t L, double* mean, double* m2) noexcept nogil:
    """OUT ``mean`` and ``m2 = sum((x - mean)^2)`` of one block of ``L >= 1`` values, float64.

    Shifted sums with the block's first element as shift: ``s1 = sum(x - shift)``,
    ``s2 = sum((x - shift)^2)``, ``m2 = s2 - s1^2/L`` (clamped at 0).
    """
    cdef double shift = xb[0]
    cdef double s1, s2, v
    cdef double a0 = 0.0, a1 = 0.0, a2 = 0.0, a3 = 0.0
    cdef double q0 = 0.0, q1 = 0.0, q2 = 0.0, q3 = 0.0
    cdef double d0, d1, d2, d3
    cdef Py_ssize_t i = 0
    while i + 4 <= L:
        d0 = <double>xb[i] - shift
        d1 = <double>xb[i + 1] - shift
        d2 = <double>xb[i + 2] - shift
        d3 = <double>xb[i + 3] - shift
        a0 += d0
        a1 += d1
        a2 += d2
        a3 += d3
        q0 += d0 * d0
        q1 += d1 * d1
        q2 += d2 * d2
        q3 += d3 * d3
        i += 4
    while i < L:
        d0 = <double>xb[i] - shift
        a0 += d0
        q0 += d0 * d0
        i += 1
    s1 = (a0 + a1) + (a2 + a3)
    s2 = (q0 + q1) + (q2 + q3)
    mean[0] = shift + s1 / L
    v = s2 - s1 * s1 / L
    m2[0] = v if v > 0.0 else 0.0


cdef void _block_grad_sums(const real* gb, const real* xb, Py_ssize_t L, double m, double* sg,
                           double* sgx) noexcept nogil:
    """OUT ``sg = sum(gy)``, ``sgx = sum(gy * (x - m))`` of one block, float64."""
    cdef double a0 = 0.0, a1 = 0.0, a2 = 0.0, a3 = 0.0
    cdef double p0 = 0.0, p1 = 0.0, p2 = 0.0, p3 = 0.0
    cdef double g0, g1, g2, g3
    cdef Py_ssize_t i = 0
    while i + 4 <= L:
        g0 = gb[i]
        g1 = gb[i + 1]
        g2 = gb[i + 2]
        g3 = gb[i + 3]
        a0 += g0
        a1 += g1
        a2 += g2
        a3 += g3
        p0 += g0 * (<double>xb[i] - m)
        p1 += g1 * (<double>xb[i + 1] - m)
        p2 += g2 * (<double>xb[i + 2] - m)
        p3 += g3 * (<double>xb[i + 3] - m)
        i += 4
    while i < L:
        g0 = gb[i]
        a0 += g0
        p0 += g0 * (<double>xb[i] - m)
        i += 1
    sg[0] = (a0 + a1) + (a2 + a3)
    sgx[0] = (p0 + p1) + (p2 + p3)


cdef enum:
    COLS = 256  # channels per task of the (N, C) column reductions


cdef void _column_stats(const real* x, Py_ssize_t N, Py_ssize_t C, Py_ssize_t j0, Py_ssize_t m,
                        double* mean, double* var) noexcept nogil:
    """OUT mean, biased var of the ``m`` columns ``j0 ...`` of ``x (N, C)``, float64."""
    cdef double k[COLS]
    cdef double s1[COLS]
    cdef double s2[COLS]
    cdef double d
    cdef Py_ssize_t n, j
    for j in range(m):
        k[j] = x[j0 + j]
        s1[j] = 0.0
        s2[j] = 0.0
    for n in range(N):
        for j in range(m):
            d = <double>x[n * C + j0 + j] - k[j]
            s1[j] += d
            s2[j] += d * d
    for j in range(m):
        mean[j0 + j] = k[j] + s1[j] / N
        d = s2[j] - s1[j] * s1[j] / N
        var[j0 + j] = (d if d > 0.0 else 0.0) / N


cdef void _column_grad_sums(const real* gy, const real* x, const double* mean, Py_ssize_t N,
                            Py_ssize_t C, Py_ssize_t j0, Py_ssize_t m, double* sg,
                            double* sgx) noexcept nogil:
    """OUT ``sum(gy)``, ``sum(gy * (x - mean))`` of the ``m`` columns ``j0 ...`` of ``(N, C)``."""
    cdef double a[COLS]
    cdef double p[COLS]
    cdef double g
    cdef Py_ssize_t n, j
    for j in range(m):
        a[j] = 0.0
        p[j] = 0.0
    for n in range(N):
        for j in range(m):
            g = gy[n * C + j0 + j]
            a[j] += g
            p[j] += g * (<double>x[n * C + j0 + j] - mean[j0 + j])
    for j in range(m):
        sg[j0 + j] = a[j]
        sgx[j0 + j] = p[j]


def bn_stats(const real[:, :, ::1] x, double[:, ::1] bmean, double[:, ::1] bm2, double[::1] mean,
             double[::1] var, int num_threads):
    """IN x (N, C, L); WORK bmean, bm2 (N, C); OUT mean, biased var (C,), float64."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], L = x.shape[2]
    cdef Py_ssize_t t, n, c
    cdef double m, m2, delta
    if N * C * L == 0:
        return
    cdef const real* xp = &x[0, 0, 0]
    if L == 1:  # (N, C): channels as columns
        for t in prange((C + COLS - 1) // COLS, nogil=True, schedule="static", num_threads=num_threads):
            _column_stats(xp, N, C, t * COLS, C - t * COLS if C - t * COLS < COLS else COLS,
                          &mean[0], &var[0])
        return
    cdef double* bmp = &bmean[0, 0]
    cdef double* bm2p = &bm2[0, 0]
    for t in prange(N * C, nogil=True, schedule="static", num_threads=num_threads):
        # block t = (n, c) writes only its own (n, c) partials: nothing shared between threads
        _block_moments(xp + t * L, L, bmp + t, bm2p + t)
    for c in prange(C, nogil=True, schedule="static", num_threads=num_threads):
        m = bmean[0, c]
        m2 = bm2[0, c]
        for n in range(1, N):
            # Chan et al.: merge a block of L samples into the n*L seen so far
            delta = bmean[n, c] - m
            m = m + delta / (n + 1)
            m2 = m2 + (bm2[n, c] + delta * delta * <double>(n * L) / (n + 1))
        mean[c] = m
        var[c] = m2 / <double>(N * L)


def bn_affine(const real[:, :, ::1] x, const real[::1] mean, const real[::1] scale,
              const real[::1] shift, real[:, :, ::1] y, int num_threads):
    """IN x (N, C, L), mean/scale/shift (C,) of x's dtype; OUT ``y = (x - mean)*scale + shift``."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], L = x.shape[2]
    cdef Py_ssize_t t, c, i
    cdef real m, s, b
    cdef const real* xb
    cdef real* yb
    if N * C * L == 0:
        return
    if L == 1:  # (N, C): one row per task, along the channels
        for t in prange(N, nogil=True, schedule="static", num_threads=num_threads):
            xb = &x[0, 0, 0] + t * C
            yb = &y[0, 0, 0] + t * C
            for c in range(C):
                yb[c] = (xb[c] - mean[c]) * scale[c] + shift[c]
        return
    for t in prange(N * C, nogil=True, schedule="static", num_threads=num_threads):
        c = t % C
        m = mean[c]
        s = scale[c]
        b = shift[c]
        xb = &x[0, 0, 0] + t * L
        yb = &y[0, 0, 0] + t * L
        for i in range(L):
            yb[i] = (xb[i] - m) * s + b


def bn_backward_reduce(const real[:, :, ::1] gy, const real[:, :, ::1] x, const double[::1] mean,
                       double[:, ::1] bg, double[:, ::1] bgx, double[::1] sg, double[::1] sgx,
                       int num_threads):
    """IN gy, x (N, C, L), mean (C,) float64; WORK bg, bgx (N, C);
    OUT ``sg = sum(gy)``, ``sgx = sum(gy * (x - mean))`` per channel, float64 (C,)."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], L = x.shape[2]
    cdef Py_ssize_t t, n, c
    cdef double a, b
    if N * C * L == 0:
        return
    cdef const real* gp = &gy[0, 0, 0]
    cdef const real* xp = &x[0, 0, 0]
    if L == 1:  # (N, C): channels as columns
        for t in prange((C + COLS - 1) // COLS, nogil=True, schedule="static", num_threads=num_threads):
            _column_grad_sums(gp, xp, &mean[0], N, C, t * COLS,
                              C - t * COLS if C - t * COLS < COLS else COLS, &sg[0], &sgx[0])
        return
    for t in prange(N * C, nogil=True, schedule="static", num_threads=num_threads):
        n = t // C
        c = t - n * C
        _block_grad_sums(gp + t * L, xp + t * L, L, mean[c], &bg[n, c], &bgx[n, c])
    for c in prange(C, nogil=True, schedule="static", num_threads=num_threads):
        a = 0.0
        b = 0.0
        for n in range(N):
            a = a + bg[n, c]
            b = b + bgx[n, c]
        sg[c] = a
        sgx[c] = b


def bn_backward_gx(const real[:, :, ::1] gy, const real[:, :, ::1] x, const real[::1] mean,
                   const real[::1] a, const real[::1] b, const real[::1] d, real[:, :, ::1] gx,
                   int num_threads):
    """IN gy, x (N, C, L), coefficients (C,) of x's dtype; OUT ``gx = a*gy + b*(x - mean) + d``."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], L = x.shape[2]
    cdef Py_ssize_t t, c, i
    cdef real m, ac, bc, dc
    cdef const real* gb
    cdef const real* xb
    cdef real* ob
    if N * C * L == 0:
        return
    if L == 1:  # (N, C): one row per task, along the channels
        for t in prange(N, nogil=True, schedule="static", num_threads=num_threads):
            gb = &gy[0, 0, 0] + t * C
            xb = &x[0, 0, 0] + t * C
            ob = &gx[0, 0, 0] + t * C
            for c in range(C):
                ob[c] = a[c] * gb[c] + b[c] * (xb[c] - mean[c]) + d[c]
        return
    for t in prange(N * C, nogil=True, schedule="static", num_threads=num_threads):
        c = t % C
        m = mean[c]
        ac = a[c]
        bc = b[c]
        dc = d[c]
        gb = &gy[0, 0, 0] + t * L
        xb = &x[0, 0, 0] + t * L
        ob = &gx[0, 0, 0] + t * L
        for i in range(L):
            ob[i] = ac * gb[i] + bc * (xb[i] - m) + dc


def bn_scale_gx(const real[:, :, ::1] gy, const real[::1] a, real[:, :, ::1] gx, int num_threads):
    """IN gy (N, C, L), a (C,) of gy's dtype; OUT ``gx = a[c] * gy`` (eval-mode backward)."""
    cdef Py_ssize_t N = gy.shape[0], C = gy.shape[1], L = gy.shape[2]
    cdef Py_ssize_t t, c, i
    cdef real ac
    cdef const real* gb
    cdef real* ob
    if N * C * L == 0:
        return
    if L == 1:  # (N, C): one row per task, along the channels
        for t in prange(N, nogil=True, schedule="static", num_threads=num_threads):
            gb = &gy[0, 0, 0] + t * C
            ob = &gx[0, 0, 0] + t * C
            for c in range(C):
                ob[c] = a[c] * gb[c]
        return
    for t in prange(N * C, nogil=True, schedule="static", num_threads=num_threads):
        c = t % C
        ac = a[c]
        gb = &gy[0, 0, 0] + t * L
        ob = &gx[0, 0, 0] + t * L
        for i in range(L):
            ob[i] = ac * gb[i]
