# Design
# ------
# Python entry points of the direct SIMD convolution written in C (simd_conv.h, its register tiles
# in simd_conv_tile.h and OpenMP drivers in simd_conv_driver.h). This file only unpacks shapes,
# checks the caller's workspace is big enough, and releases the GIL around the C call; the C code
# trusts its inputs as every kernel does (C-contiguous arrays of one float dtype, groups = 1,
# non-negative padding, the output shape of corenet.functional).
#
# The instruction set (generic, avx2, avx512) is picked at first use from the CPU's flags;
# ``set_isa`` forces one (tests run every one the CPU has against the oracles).

cdef extern from "simd_conv.h" nogil:
    ctypedef struct cs_geom:
        long N, C, H, W, OC, kh, kw, sh, sw, pt, pl, dh, dw, Ho, Wo
        long K, Hq, Wq, nxv, plane, img
    int CS_GENERIC, CS_AVX2, CS_AVX512
    void cs_geom_init(cs_geom* g, long lanes)
    int cs_get_isa()
    int cs_set_isa(int isa)
    int cs_isa_supported(int isa)
    long cs_lanes(int itemsize)
    size_t cs_forward_workspace_f32(const cs_geom* g, int nthreads)
    size_t cs_forward_workspace_f64(const cs_geom* g, int nthreads)
    void cs_forward_f32(const float* x, const float* w, const float* bias, float* y, const cs_geom* g,
                        char* ws, int nthreads)
    void cs_forward_f64(const double* x, const double* w, const double* bias, double* y, const cs_geom* g,
                        char* ws, int nthreads)
    size_t cs_wgrad_workspace_f32(const cs_geom* g, int nthreads)
    size_t cs_wgrad_workspace_f64(const cs_geom* g, int nthreads)
    void cs_wgrad_f32(const float* x, const float* gy, float* gw, const cs_geom* g, char* ws, int nthreads)
    void cs_wgrad_f64(const double* x, const double* gy, double* gw, const cs_geom* g, char* ws, int nthreads)
    size_t cs_dw_forward_workspace_f32(const cs_geom* g, int nthreads)
    size_t cs_dw_forward_workspace_f64(const cs_geom* g, int nthreads)
    void cs_dw_forward_f32(const float* x, const float* w, const float* bias, float* y, const cs_geom* g,
                           char* ws, int nthreads)
    void cs_dw_forward_f64(const double* x, const double* w, const double* bias, double* y, const cs_geom* g,
                           char* ws, int nthreads)
    size_t cs_dw_wgrad_workspace_f32(const cs_geom* g, int nthreads)
    size_t cs_dw_wgrad_workspace_f64(const cs_geom* g, int nthreads)
    void cs_dw_wgrad_f32(const float* x, const float* gy, float* gw, const cs_geom* g, char* ws, int nthreads)
    void cs_dw_wgrad_f64(const double* x, const double* gy, double* gw, const cs_geom* g, char* ws,
                         int nthreads)

    size_t cs_dwc_workspace_f32(const cs_geom* g, int nthreads)
    size_t cs_dwc_workspace_f64(const cs_geom* g, int nthreads)
    void cs_dwc_forward_f32(const float* x, const float* w, const float* bias, float* y, const cs_geom* g,
                            char* ws, int nthreads)
    void cs_dwc_forward_f64(const double* x, const double* w, const double* bias, double* y, const cs_geom* g,
                            char* ws, int nthreads)
    void cs_dwc_backward_input_f32(const float* gy, const float* w, float* gx, const cs_geom* g, char* ws,
                                   int nthreads)
    void cs_dwc_backward_input_f64(const double* gy, const double* w, double* gx, const cs_geom* g, char* ws,
                                   int nthreads)
    void cs_dwc_wgrad_f32(const float* x, const float* gy, float* gw, const cs_geom* g, char* ws, int nthreads)
    void cs_dwc_wgrad_f64(const double* x, const double* gy, double* gw, const cs_geom* g, char* ws,
                          int nthreads)

cdef extern from "simd_conv_gemm.h" nogil:
    void cs_gemm_rows(void* fn, int ilp64, int dbl, int ta, int tb, long M, long N, long K, const void* A, long lda,
                      const void* B, long ldb, void* C, long ldc, int nthreads)

from ._types cimport real

ISAS = ("generic", "avx2", "avx512")


def get_isa():
    """The instruction set the kernels run with now: ``"generic"``, ``"avx2"`` or ``"avx512"``."""
    return ISAS[cs_get_isa()]


def supported_isas():
    """The instruction sets this CPU can run, slowest first."""
    return [name for i, name in enumerate(ISAS) if cs_isa_supported(i)]


def set_isa(str name):
    """Force the kernels' instruction set (one of ``supported_isas()``)."""
    if name not in ISAS or not cs_set_isa(ISAS.index(name)):
        raise ValueError(f"set_isa: {name!r} is not supported on this CPU; supported: {supported_isas()}")


cdef cs_geom _geom(tuple xs, tuple ws_, long sh, long sw, long pt, long pl, long dh, long dw, long Ho, long Wo,
                   long lanes):
    cdef cs_geom g
    g.N, g.C, g.H, g.W = xs
    g.OC, _, g.kh, g.kw = ws_
    g.sh, g.sw, g.pt, g.pl, g.dh, g.dw, g.Ho, g.Wo = sh, sw, pt, pl, dh, dw, Ho, Wo
    cs_geom_init(&g, lanes)
    return g


def forward_workspace(tuple x_shape, tuple w_shape, long sh, long sw, long dh, long dw, long Ho, long Wo,
                      itemsize, int num_threads):
    """Bytes of workspace :func:`forward` needs."""
    cdef cs_geom g = _geom(x_shape, w_shape, sh, sw, 0, 0, dh, dw, Ho, Wo, cs_lanes(itemsize))
    return cs_forward_workspace_f32(&g, num_threads) if itemsize == 4 else cs_forward_workspace_f64(&g, num_threads)


def wgrad_workspace(tuple x_shape, tuple w_shape, long sh, long sw, long dh, long dw, long Ho, long Wo,
                    itemsize, int num_threads):
    """Bytes of workspace :func:`wgrad` needs."""
    cdef cs_geom g = _geom(x_shape, w_shape, sh, sw, 0, 0, dh, dw, Ho, Wo, cs_lanes(itemsize))
    return cs_wgrad_workspace_f32(&g, num_threads) if itemsize == 4 else cs_wgrad_workspace_f64(&g, num_threads)


def forward(const real[:, :, :, ::1] x, const real[:, :, :, ::1] w, const real[::1] b, long sh, long sw,
            long pt, long pl, long dh, long dw, real[:, :, :, ::1] y, unsigned char[::1] ws, int num_threads):
    """IN x (N, C, H, W), w (OC, C, kh, kw), b (OC,) or None; OUT y (N, OC, Ho, Wo); ws: workspace."""
    cdef long lanes = cs_lanes(sizeof(real))
    cdef cs_geom g = _geom((x.shape[0], x.shape[1], x.shape[2], x.shape[3]),
                           (w.shape[0], w.shape[1], w.shape[2], w.shape[3]), sh, sw, pt, pl, dh, dw, y.shape[2],
                           y.shape[3], lanes)
    cdef size_t need = cs_forward_workspace_f32(&g, num_threads) if real is float else \
        cs_forward_workspace_f64(&g, num_threads)
    if <size_t>ws.shape[0] < need:
        raise ValueError(f"simd_conv.forward: workspace of {ws.shape[0]} bytes, {need} needed")
    if g.N * g.OC * g.Ho * g.Wo == 0:
        return
    cdef const real* bp = &b[0] if b is not None else NULL
    with nogil:
        if real is float:
            cs_forward_f32(&x[0, 0, 0, 0], &w[0, 0, 0, 0], bp, &y[0, 0, 0, 0], &g, <char*>&ws[0], num_threads)
        else:
            cs_forward_f64(&x[0, 0, 0, 0], &w[0, 0, 0, 0], bp, &y[0, 0, 0, 0], &g, <char*>&ws[0], num_threads)


def wgrad(const real[:, :, :, ::1] x, const real[:, :, :, ::1] gy, long sh, long sw, long pt, long pl, long dh,
          long dw, real[:, :, :, ::1] gw, unsigned char[::1] ws, int num_threads):
    """IN x (N, C, H, W), gy (N, OC, Ho, Wo); OUT gw (OC, C, kh, kw); ws: workspace."""
    cdef long lanes = cs_lanes(sizeof(real))
    cdef cs_geom g = _geom((x.shape[0], x.shape[1], x.shape[2], x.shape[3]),
                           (gw.shape[0], gw.shape[1], gw.shape[2], gw.shape[3]), sh, sw, pt, pl, dh, dw,
                           gy.shape[2], gy.shape[3], lanes)
    cdef size_t need = cs_wgrad_workspace_f32(&g, num_threads) if real is float else \
        cs_wgrad_workspace_f64(&g, num_threads)
    if <size_t>ws.shape[0] < need:
        raise ValueError(f"simd_conv.wgrad: workspace of {ws.shape[0]} bytes, {need} needed")
    if g.OC * g.K == 0:
        return
    cdef Py_ssize_t i
    if g.N * g.Ho * g.Wo == 0:
        for i in range(gw.shape[0]):
            gw[i, :, :, :] = 0
        return
    with nogil:
        if real is float:
            cs_wgrad_f32(&x[0, 0, 0, 0], &gy[0, 0, 0, 0], &gw[0, 0, 0, 0], &g, <char*>&ws[0], num_threads)
        else:
            cs_wgrad_f64(&x[0, 0, 0, 0], &gy[0, 0, 0, 0], &gw[0, 0, 0, 0], &g, <char*>&ws[0], num_threads)


# ------------------------------------------------------------------ depthwise (one channel per group)

def dw_forward_workspace(tuple x_shape, tuple w_shape, long sh, long sw, long dh, long dw, long Ho, long Wo,
                         itemsize, int num_threads):
    """Bytes of workspace :func:`dw_forward` needs (w_shape ``(C, 1, kh, kw)``)."""
    cdef cs_geom g = _geom(x_shape, w_shape, sh, sw, 0, 0, dh, dw, Ho, Wo, cs_lanes(itemsize))
    return (cs_dw_forward_workspace_f32(&g, num_threads) if itemsize == 4
            else cs_dw_forward_workspace_f64(&g, num_threads))


def dw_wgrad_workspace(tuple x_shape, tuple w_shape, long sh, long sw, long dh, long dw, long Ho, long Wo,
                       itemsize, int num_threads):
    """Bytes of workspace :func:`dw_wgrad` needs."""
    cdef cs_geom g = _geom(x_shape, w_shape, sh, sw, 0, 0, dh, dw, Ho, Wo, cs_lanes(itemsize))
    return (cs_dw_wgrad_workspace_f32(&g, num_threads) if itemsize == 4
            else cs_dw_wgrad_workspace_f64(&g, num_threads))


def dw_forward(const real[:, :, :, ::1] x, const real[:, :, :, ::1] w, const real[::1] b, long sh, long sw,
               long pt, long pl, long dh, long dw, real[:, :, :, ::1] y, unsigned char[::1] ws, int num_threads):
    """IN x (N, C, H, W), w (C, 1, kh, kw), b (C,) or None; OUT y (N, C, Ho, Wo); ws: workspace."""
    cdef cs_geom g = _geom((x.shape[0], x.shape[1], x.shape[2], x.shape[3]),
                           (w.shape[0], w.shape[1], w.shape[2], w.shape[3]), sh, sw, pt, pl, dh, dw, y.shape[2],
                           y.shape[3], cs_lanes(sizeof(real)))
    cdef size_t need = cs_dw_forward_workspace_f32(&g, num_threads) if real is float else \
        cs_dw_forward_workspace_f64(&g, num_threads)
    if <size_t>ws.shape[0] < need:
        raise ValueError(f"simd_conv.dw_forward: workspace of {ws.shape[0]} bytes, {need} needed")
    if g.N * g.C * g.Ho * g.Wo == 0:
        return
    cdef const real* bp = &b[0] if b is not None else NULL
    with nogil:
        if real is float:
            cs_dw_forward_f32(&x[0, 0, 0, 0], &w[0, 0, 0, 0], bp, &y[0, 0, 0, 0], &g, <char*>&ws[0], num_threads)
        else:
            cs_dw_forward_f64(&x[0, 0, 0, 0], &w[0, 0, 0, 0], bp, &y[0, 0, 0, 0], &g, <char*>&ws[0], num_threads)


def dw_wgrad(const real[:, :, :, ::1] x, const real[:, :, :, ::1] gy, long sh, long sw, long pt, long pl, long dh,
             long dw, real[:, :, :, ::1] gw, unsigned char[::1] ws, int num_threads):
    """IN x (N, C, H, W), gy (N, C, Ho, Wo); OUT gw (C, 1, kh, kw); ws: workspace."""
    cdef cs_geom g = _geom((x.shape[0], x.shape[1], x.shape[2], x.shape[3]),
                           (gw.shape[0], gw.shape[1], gw.shape[2], gw.shape[3]), sh, sw, pt, pl, dh, dw,
                           gy.shape[2], gy.shape[3], cs_lanes(sizeof(real)))
    cdef size_t need = cs_dw_wgrad_workspace_f32(&g, num_threads) if real is float else \
        cs_dw_wgrad_workspace_f64(&g, num_threads)
    if <size_t>ws.shape[0] < need:
        raise ValueError(f"simd_conv.dw_wgrad: workspace of {ws.shape[0]} bytes, {need} needed")
    if g.C * g.kh * g.kw == 0:
        return
    cdef Py_ssize_t i
    if g.N * g.Ho * g.Wo == 0:
        for i in range(gw.shape[0]):
            gw[i, :, :, :] = 0
        return
    with nogil:
        if real is float:
            cs_dw_wgrad_f32(&x[0, 0, 0, 0], &gy[0, 0, 0, 0], &gw[0, 0, 0, 0], &g, <char*>&ws[0], num_threads)
        else:
            cs_dw_wgrad_f64(&x[0, 0, 0, 0], &gy[0, 0, 0, 0], &gw[0, 0, 0, 0], &g, <char*>&ws[0], num_threads)


# ------------------------------------------------------------- depthwise, channels as vector lanes
def dwc_workspace(tuple x_shape, tuple w_shape, long sh, long sw, long dh, long dw, long Ho, long Wo, itemsize,
                  int num_threads):
    """Bytes of workspace each of :func:`dwc_forward`, :func:`dwc_backward_input`, :func:`dwc_wgrad` needs."""
    cdef cs_geom g = _geom(x_shape, w_shape, sh, sw, 0, 0, dh, dw, Ho, Wo, cs_lanes(itemsize))
    return cs_dwc_workspace_f32(&g, num_threads) if itemsize == 4 else cs_dwc_workspace_f64(&g, num_threads)


cdef cs_geom _dwc_geom(str name, tuple xs, tuple ws_, long sh, long sw, long pt, long pl, long dh, long dw,
                       long Ho, long Wo, size_t have, size_t itemsize, int num_threads) except *:
    if pt < 0 or pl < 0:
        raise ValueError(f"simd_conv.{name}: padding ({pt}, {pl}) received, non-negative expected")
    cdef cs_geom g = _geom(xs, ws_, sh, sw, pt, pl, dh, dw, Ho, Wo, cs_lanes(itemsize))
    cdef size_t need = cs_dwc_workspace_f32(&g, num_threads) if itemsize == 4 else \
        cs_dwc_workspace_f64(&g, num_threads)
    if have < need:
        raise ValueError(f"simd_conv.{name}: workspace of {have} bytes, {need} needed")
    return g


def dwc_forward(const real[:, :, :, ::1] x, const real[:, :, :, ::1] w, const real[::1] b, long sh, long sw,
                long pt, long pl, long dh, long dw, real[:, :, :, ::1] y, unsigned char[::1] ws, int num_threads):
    """IN x (N, C, H, W), w (C, 1, kh, kw), b (C,) or None; OUT y (N, C, Ho, Wo); ws: workspace."""
    cdef cs_geom g = _dwc_geom("dwc_forward", (x.shape[0], x.shape[1], x.shape[2], x.shape[3]),
                               (w.shape[0], w.shape[1], w.shape[2], w.shape[3]), sh, sw, pt, pl, dh, dw,
                               y.shape[2], y.shape[3], ws.shape[0], sizeof(real), num_threads)
    if g.N * g.C * g.Ho * g.Wo == 0:
        return
    cdef const real* bp = &b[0] if b is not None else NULL
    with nogil:
        if real is float:
            cs_dwc_forward_f32(&x[0, 0, 0, 0], &w[0, 0, 0, 0], bp, &y[0, 0, 0, 0], &g, <char*>&ws[0], num_threads)
        else:
            cs_dwc_forward_f64(&x[0, 0, 0, 0], &w[0, 0, 0, 0], bp, &y[0, 0, 0, 0], &g, <char*>&ws[0], num_threads)


def dwc_backward_input(const real[:, :, :, ::1] gy, const real[:, :, :, ::1] w, long sh, long sw, long pt, long pl,
                       long dh, long dw, real[:, :, :, ::1] gx, unsigned char[::1] ws, int num_threads):
    """IN gy (N, C, Ho, Wo), w (C, 1, kh, kw); OUT gx (N, C, H, W): the input gradient of :func:`dwc_forward`."""
    cdef cs_geom g = _dwc_geom("dwc_backward_input", (gx.shape[0], gx.shape[1], gx.shape[2], gx.shape[3]),
                               (w.shape[0], w.shape[1], w.shape[2], w.shape[3]), sh, sw, pt, pl, dh, dw,
                               gy.shape[2], gy.shape[3], ws.shape[0], sizeof(real), num_threads)
    if g.N * g.C * g.H * g.W == 0:
        return
    cdef Py_ssize_t i
    if g.Ho * g.Wo == 0:
        for i in range(gx.shape[0]):
            gx[i, :, :, :] = 0
        return
    with nogil:
        if real is float:
            cs_dwc_backward_input_f32(&gy[0, 0, 0, 0], &w[0, 0, 0, 0], &gx[0, 0, 0, 0], &g, <char*>&ws[0],
                                      num_threads)
        else:
            cs_dwc_backward_input_f64(&gy[0, 0, 0, 0], &w[0, 0, 0, 0], &gx[0, 0, 0, 0], &g, <char*>&ws[0],
                                      num_threads)


def dwc_wgrad(const real[:, :, :, ::1] x, const real[:, :, :, ::1] gy, long sh, long sw, long pt, long pl, long dh,
              long dw, real[:, :, :, ::1] gw, unsigned char[::1] ws, int num_threads):
    """IN x (N, C, H, W), gy (N, C, Ho, Wo); OUT gw (C, 1, kh, kw); ws: workspace."""
    cdef cs_geom g = _dwc_geom("dwc_wgrad", (x.shape[0], x.shape[1], x.shape[2], x.shape[3]),
                               (gw.shape[0], gw.shape[1], gw.shape[2], gw.shape[3]), sh, sw, pt, pl, dh, dw,
                               gy.shape[2], gy.shape[3], ws.shape[0], sizeof(real), num_threads)
    if g.C * g.kh * g.kw == 0:
        return
    cdef Py_ssize_t i
    if g.N * g.Ho * g.Wo == 0:
        for i in range(gw.shape[0]):
            gw[i, :, :, :] = 0
        return
    with nogil:
        if real is float:
            cs_dwc_wgrad_f32(&x[0, 0, 0, 0], &gy[0, 0, 0, 0], &gw[0, 0, 0, 0], &g, <char*>&ws[0], num_threads)
        else:
            cs_dwc_wgrad_f64(&x[0, 0, 0, 0], &gy[0, 0, 0, 0], &gw[0, 0, 0, 0], &g, <char*>&ws[0], num_threads)


# ------------------------------------------------------------- GEMM split over OpenMP threads
def gemm_rows(size_t fn, bint ilp64, bint dbl, bint ta, bint tb, long M, long N, long K, size_t A, long lda,
              size_t B, long ldb, size_t C, long ldc, int num_threads):
    """Row-major ``C (M, N) = op(A) @ op(B)`` through the BLAS entry point at address ``fn`` (cblas_sgemm, or
    cblas_dgemm when ``dbl``), the rows of C split over ``num_threads`` OpenMP threads (simd_conv_gemm.h).
    Raw addresses: the caller (corenet.kernels._cpu_conv.gemm) checks the arrays and keeps them alive."""
    if fn == 0 or A == 0 or B == 0 or C == 0:
        raise ValueError("simd_conv.gemm_rows: a null address received, BLAS function and array addresses expected")
    with nogil:
        cs_gemm_rows(<void*>fn, ilp64, dbl, ta, tb, M, N, K, <const void*>A, lda, <const void*>B, ldb, <void*>C, ldc,
                     num_threads)
