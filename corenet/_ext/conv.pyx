# Design
# ------
# Convolution primitives of the Cython backend: im2col/col2im in the transposed column layout
# and the direct kernels of grouped (depthwise) convolution. They mirror, name for name and
# argument for argument, the primitives documented at the top of
# ``corenet/kernels/numba_cpu/conv.py``; ``corenet/kernels/_cpu_conv.py`` turns either set into a
# convolution with BLAS GEMMs. Every function takes one extra last argument, ``num_threads``,
# which ``corenet/kernels/cython_cpu/conv.py`` fills in from ``corenet.config``.
#
# Layout: every array is C-contiguous (checked once by ``corenet.functional``, never here). The
# public ``def`` functions take typed memoryviews (``const`` for inputs, so read-only arrays are
# accepted); the per-task ``noexcept nogil`` workers take raw pointers to the planes they touch,
# so the inner loops are plain C loops the compiler vectorises.
#
# Races: the same partitioning as the Numba kernels. im2col writes one (column row, image)
# segment per task; col2im and direct_backward_input own one (image, channel) plane of ``gx``;
# direct_forward owns one (image, output channel) plane of ``y``; direct_backward_weight owns one
# output channel of ``gw`` and sums the batch in a fixed order into a per-thread float64 row.
# No result depends on the thread count.

from cython.parallel cimport parallel, prange
from libc.stdlib cimport abort, free, malloc

from ._types cimport real, valid_range


# ----------------------------------------------------------------------------- im2col / col2im

cdef void _im2col_segment(const real* src, real* dst, Py_ssize_t H, Py_ssize_t W,
                          Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t off_h, Py_ssize_t off_w,
                          Py_ssize_t ho, Py_ssize_t wo) noexcept nogil:
    """IN src: one (H, W) input plane. OUT dst: its ``ho*wo`` column entries for one tap.

    The tap reads ``src[oh*sh + off_h, ow*sw + off_w]``; taps in the padding give 0.
    """
    cdef Py_ssize_t lo, hi, oh, ow, ih
    cdef const real* row
    valid_range(off_w, sw, W, wo, &lo, &hi)
    for oh in range(ho):
        ih = oh * sh + off_h
        if ih < 0 or ih >= H:
            for ow in range(wo):
                dst[ow] = 0
        else:
            row = src + ih * W
            for ow in range(lo):
                dst[ow] = 0
            if sw == 1:
                for ow in range(lo, hi):
                    dst[ow] = row[ow + off_w]
            else:
                for ow in range(lo, hi):
                    dst[ow] = row[ow * sw + off_w]
            for ow in range(hi, wo):
                dst[ow] = 0
        dst += wo


cdef void _col2im_segment(const real* src, real* dst, Py_ssize_t H, Py_ssize_t W,
                          Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t off_h, Py_ssize_t off_w,
                          Py_ssize_t ho, Py_ssize_t wo) noexcept nogil:
    """Adjoint of ``_im2col_segment``: IN src ``ho*wo`` column entries, OUT dst plane (+=)."""
    cdef Py_ssize_t lo, hi, oh, ow, ih
    cdef real* row
    valid_range(off_w, sw, W, wo, &lo, &hi)
    for oh in range(ho):
        ih = oh * sh + off_h
        if ih >= 0 and ih < H:
            row = dst + ih * W
            if sw == 1:
                for ow in range(lo, hi):
                    row[ow + off_w] += src[ow]
            else:
                for ow in range(lo, hi):
                    row[ow * sw + off_w] += src[ow]
        src += wo


def im2col(const real[:, :, :, ::1] x, Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw,
           Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t ho, Py_ssize_t wo,
           real[:, ::1] col, int num_threads):
    """IN x (N, C, H, W); OUT col (C*kh*kw, N*ho*wo), row ``(c*kh + i)*kw + j``, column ``(n*ho + oh)*wo + ow``."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t K = C * kh * kw, P = ho * wo
    cdef Py_ssize_t task, r, n, c, i, j
    if K * N == 0 or P == 0:
        return
    cdef const real* xp = &x[0, 0, 0, 0]
    cdef real* cp = &col[0, 0]
    for task in prange(K * N, nogil=True, schedule="static", num_threads=num_threads):
        r = task // N  # one (row, image) segment of col per task: disjoint writes
        n = task - r * N
        c = r // (kh * kw)
        i = (r // kw) % kh
        j = r % kw
        _im2col_segment(xp + (n * C + c) * H * W, cp + r * N * P + n * P, H, W, sh, sw,
                        i * dh - pt, j * dw - pl, ho, wo)


def col2im(const real[:, ::1] col, Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw,
           Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t ho, Py_ssize_t wo,
           real[:, :, :, ::1] gx, int num_threads):
    """IN col (C*kh*kw, N*ho*wo); OUT gx (N, C, H, W), every column entry summed into its pixel."""
    cdef Py_ssize_t N = gx.shape[0], C = gx.shape[1], H = gx.shape[2], W = gx.shape[3]
    cdef Py_ssize_t P = ho * wo, HW = H * W
    cdef Py_ssize_t task, n, c, i, j, q, r
    cdef real* plane
    if N * C * HW == 0:
        return
    cdef const real* cp = &col[0, 0] if P > 0 else NULL
    cdef real* gp = &gx[0, 0, 0, 0]
    for task in prange(N * C, nogil=True, schedule="static", num_threads=num_threads):
        n = task // C  # one (image, channel) plane of gx per task: no races
        c = task - n * C
        plane = gp + task * HW
        for q in range(HW):
            plane[q] = 0
        for i in range(kh):
            for j in range(kw):
                r = (c * kh + i) * kw + j
                _col2im_segment(cp + r * N * P + n * P, plane, H, W, sh, sw,
                                i * dh - pt, j * dw - pl, ho, wo)


# ------------------------------------------------------------------ direct (grouped) convolution

cdef void _correlate_plane(const real* src, real* out, real wv, Py_ssize_t H, Py_ssize_t W,
                           Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t off_h, Py_ssize_t off_w,
                           Py_ssize_t ho, Py_ssize_t wo) noexcept nogil:
    """OUT out (ho, wo) += wv * src[oh*sh + off_h, ow*sw + off_w] over the taps inside src (H, W)."""
    cdef Py_ssize_t lo, hi, oh, ow, ih
    cdef const real* row
    cdef real* orow
    valid_range(off_w, sw, W, wo, &lo, &hi)
    for oh in range(ho):
        ih = oh * sh + off_h
        if ih >= 0 and ih < H:
            row = src + ih * W
            orow = out + oh * wo
            if sw == 1:
                for ow in range(lo, hi):
                    orow[ow] += wv * row[ow + off_w]
            else:
                for ow in range(lo, hi):
                    orow[ow] += wv * row[ow * sw + off_w]


cdef void _scatter_plane(const real* src, real* out, real wv, Py_ssize_t H, Py_ssize_t W,
                         Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t off_h, Py_ssize_t off_w,
                         Py_ssize_t ho, Py_ssize_t wo) noexcept nogil:
    """Adjoint of ``_correlate_plane``: OUT out (H, W) += wv * src (ho, wo) at the tap positions."""
    cdef Py_ssize_t lo, hi, oh, ow, ih
    cdef const real* srow
    cdef real* row
    valid_range(off_w, sw, W, wo, &lo, &hi)
    for oh in range(ho):
        ih = oh * sh + off_h
        if ih >= 0 and ih < H:
            row = out + ih * W
            srow = src + oh * wo
            if sw == 1:
                for ow in range(lo, hi):
                    row[ow + off_w] += wv * srow[ow]
            else:
                for ow in range(lo, hi):
                    row[ow * sw + off_w] += wv * srow[ow]


cdef void _correlate_acc(const real* src, const real* g, double* acc, Py_ssize_t H, Py_ssize_t W,
                         Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t off_h, Py_ssize_t off_w,
                         Py_ssize_t ho, Py_ssize_t wo) noexcept nogil:
    """OUT acc (wo,) += sum over oh of g[oh, ow] * src[oh*sh + off_h, ow*sw + off_w], in float64."""
    cdef Py_ssize_t lo, hi, oh, ow, ih
    cdef const real* row
    cdef const real* grow
    valid_range(off_w, sw, W, wo, &lo, &hi)
    for oh in range(ho):
        ih = oh * sh + off_h
        if ih >= 0 and ih < H:
            row = src + ih * W
            grow = g + oh * wo
            if sw == 1:
                for ow in range(lo, hi):
                    acc[ow] += <double>(grow[ow] * row[ow + off_w])
            else:
                for ow in range(lo, hi):
                    acc[ow] += <double>(grow[ow] * row[ow * sw + off_w])


def direct_forward(const real[:, :, :, ::1] x, const real[:, :, :, ::1] w, const real[::1] b,
                   Py_ssize_t groups, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t pt, Py_ssize_t pl,
                   Py_ssize_t dh, Py_ssize_t dw, real[:, :, :, ::1] y, int num_threads):
    """IN x (N, C_in, H, W), w (C_out, C_in/groups, kh, kw), b (C_out,); OUT y (N, C_out, ho, wo)."""
    cdef Py_ssize_t N = x.shape[0], C_in = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t C_out = w.shape[0], cg = w.shape[1], kh = w.shape[2], kw = w.shape[3]
    cdef Py_ssize_t ho = y.shape[2], wo = y.shape[3]
    cdef Py_ssize_t cog = C_out // groups, P = ho * wo
    cdef Py_ssize_t task, n, co, c0, cl, i, j, q
    cdef real* out
    if N * C_out * P == 0:
        return
    cdef const real* xp = &x[0, 0, 0, 0]
    cdef const real* wp = &w[0, 0, 0, 0]
    cdef real* yp = &y[0, 0, 0, 0]
    for task in prange(N * C_out, nogil=True, schedule="static", num_threads=num_threads):
        n = task // C_out  # one (image, output channel) plane of y per task
        co = task - n * C_out
        out = yp + task * P
        for q in range(P):
            out[q] = b[co]
        c0 = (co // cog) * cg
        for cl in range(cg):
            for i in range(kh):
                for j in range(kw):
                    _correlate_plane(xp + (n * C_in + c0 + cl) * H * W, out,
                                     wp[((co * cg + cl) * kh + i) * kw + j], H, W, sh, sw,
                                     i * dh - pt, j * dw - pl, ho, wo)


def direct_backward_input(const real[:, :, :, ::1] gy, const real[:, :, :, ::1] w, Py_ssize_t groups,
                          Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t dh,
                          Py_ssize_t dw, real[:, :, :, ::1] gx, int num_threads):
    """IN gy (N, C_out, ho, wo), w (C_out, C_in/groups, kh, kw); OUT gx (N, C_in, H, W)."""
    cdef Py_ssize_t N = gx.shape[0], C_in = gx.shape[1], H = gx.shape[2], W = gx.shape[3]
    cdef Py_ssize_t C_out = w.shape[0], cg = w.shape[1], kh = w.shape[2], kw = w.shape[3]
    cdef Py_ssize_t ho = gy.shape[2], wo = gy.shape[3]
    cdef Py_ssize_t cog = C_out // groups, HW = H * W
    cdef Py_ssize_t task, n, c, g, cl, co, i, j, q
    cdef real* plane
    if N * C_in * HW == 0:
        return
    cdef const real* gyp = &gy[0, 0, 0, 0] if ho * wo > 0 else NULL
    cdef const real* wp = &w[0, 0, 0, 0]
    cdef real* gxp = &gx[0, 0, 0, 0]
    for task in prange(N * C_in, nogil=True, schedule="static", num_threads=num_threads):
        n = task // C_in  # one (image, input channel) plane of gx per task
        c = task - n * C_in
        plane = gxp + task * HW
        for q in range(HW):
            plane[q] = 0
        g = c // cg
        cl = c - g * cg
        for co in range(g * cog, (g + 1) * cog):
            for i in range(kh):
                for j in range(kw):
                    _scatter_plane(gyp + (n * C_out + co) * ho * wo, plane,
                                   wp[((co * cg + cl) * kh + i) * kw + j], H, W, sh, sw,
                                   i * dh - pt, j * dw - pl, ho, wo)


def direct_backward_weight(const real[:, :, :, ::1] x, const real[:, :, :, ::1] gy, Py_ssize_t groups,
                           Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t dh,
                           Py_ssize_t dw, real[:, :, :, ::1] gw, int num_threads):
    """IN x (N, C_in, H, W), gy (N, C_out, ho, wo); OUT gw (C_out, C_in/groups, kh, kw)."""
    cdef Py_ssize_t N = x.shape[0], C_in = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t C_out = gw.shape[0], cg = gw.shape[1], kh = gw.shape[2], kw = gw.shape[3]
    cdef Py_ssize_t ho = gy.shape[2], wo = gy.shape[3]
    cdef Py_ssize_t cog = C_out // groups, HW = H * W, P = ho * wo
    cdef Py_ssize_t co, c0, cl, i, j, n, q
    cdef double s
    cdef double* acc = NULL
    cdef real* gwp
    if C_out * cg * kh * kw == 0:
        return
    gwp = &gw[0, 0, 0, 0]
    if N * P * HW == 0:
        for q in range(C_out * cg * kh * kw):
            gwp[q] = 0
        return
    cdef const real* xp = &x[0, 0, 0, 0]
    cdef const real* gyp = &gy[0, 0, 0, 0]
    with nogil, parallel(num_threads=num_threads):
        acc = <double*> malloc(wo * sizeof(double))  # per-thread row of partial sums
        if acc == NULL:
            abort()
        for co in prange(C_out, schedule="static"):  # one output channel of gw per task
            c0 = (co // cog) * cg
            for cl in range(cg):
                for i in range(kh):
                    for j in range(kw):
                        for q in range(wo):
                            acc[q] = 0
                        for n in range(N):  # the batch in a fixed order
                            _correlate_acc(xp + (n * C_in + c0 + cl) * HW, gyp + (n * C_out + co) * P,
                                           acc, H, W, sh, sw, i * dh - pt, j * dw - pl, ho, wo)
                        s = 0
                        for q in range(wo):
                            s = s + acc[q]
                        gwp[((co * cg + cl) * kh + i) * kw + j] = <real>s
        free(acc)
