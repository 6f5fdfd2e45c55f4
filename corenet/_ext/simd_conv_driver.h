/* Design
 * ------
 * The OpenMP drivers of the direct convolution for one element type (included by simd_conv.h
 * once for float, once for double, with T and SUF defined): input and weight packing, the
 * choice of the tile kernel for the current instruction set, the task split over threads and the
 * workspace arithmetic. The workspace is the caller's (one buffer, sized by *_workspace), so no
 * call allocates memory.
 */

#define CS_CAT_(a, b) a##_##b
#define CS_CAT(a, b) CS_CAT_(a, b)
#define CS_F(name) CS_CAT(name, SUF)
#define CS_LANES CS_CAT(cs_lanes, SUF)[cs_get_isa()]

typedef void (*CS_F(cs_fwd_fn))(const T*, const T*, const long*, long, const T*, T*, long, long, long, long, long,
                                long, long, long, long);
typedef void (*CS_F(cs_ocvec_fn))(const T*, const T*, const long*, long, const T*, T*, const long*, long, long,
                                  long);
typedef void (*CS_F(cs_wgrad_ocvec_fn))(const T*, long, const T*, long, long, const long*, long, const long*, long,
                                        long, long, long, T*);
typedef void (*CS_F(cs_wgrad_fn))(const T*, long, const T*, long, long, const long*, const long*, long,
                                  const long*, long, long, long, long, long, long, void*, T*);

static CS_F(cs_fwd_fn) CS_F(cs_fwd_kernel)(int isa)
{
#if CS_X86
    if (isa == CS_AVX512)
        return CS_F(forward_image_avx512);
    if (isa == CS_AVX2)
        return CS_F(forward_image_avx2);
#endif
    (void)isa;
    return CS_F(forward_image_generic);
}

static CS_F(cs_ocvec_fn) CS_F(cs_ocvec_kernel)(int isa)
{
#if CS_X86
    if (isa == CS_AVX512)
        return CS_F(forward_ocvec_avx512);
    if (isa == CS_AVX2)
        return CS_F(forward_ocvec_avx2);
#endif
    (void)isa;
    return CS_F(forward_ocvec_generic);
}

/* Take the channel-vectorised tile when the output channels fill whole tile blocks and the pixel
 * vectors of the usual tile would leave more than 15% of their lanes empty (8x8: 20%, 7x7: 23%). */
static int CS_F(cs_use_ocvec)(const cs_geom* g)
{
    const long L = CS_LANES, blk = CS_OCVEC_V * L;
    if (g->OC % blk != 0 || g->Ho * g->Wo == 0)
        return 0;
    const long lanes = g->flat ? g->Pf : g->Ho * g->nxv * L;
    return (double)(g->Ho * g->Wo) < 0.85 * (double)lanes;
}

static CS_F(cs_wgrad_ocvec_fn) CS_F(cs_wgrad_ocvec_kernel)(int isa)
{
#if CS_X86
    if (isa == CS_AVX512)
        return CS_F(wgrad_ocvec_avx512);
    if (isa == CS_AVX2)
        return CS_F(wgrad_ocvec_avx2);
#endif
    (void)isa;
    return CS_F(wgrad_ocvec_generic);
}

static CS_F(cs_wgrad_fn) CS_F(cs_wgrad_kernel)(int isa)
{
#if CS_X86
    if (isa == CS_AVX512)
        return CS_F(wgrad_block_avx512);
    if (isa == CS_AVX2)
        return CS_F(wgrad_block_avx2);
#endif
    (void)isa;
    return CS_F(wgrad_block_generic);
}

/* elements between two packed images: the image size rounded up to 64 bytes */
static long CS_F(cs_img_stride)(const cs_geom* g)
{
    return (long)(cs_round64((size_t)g->img * sizeof(T)) / sizeof(T));
}

/* IN xi (C, H, W), one image; OUT xq (C, sw, Hq, Wq), see simd_conv.h */
static void CS_F(cs_pack_image)(const T* restrict xi, const cs_geom* g, T* restrict xq)
{
    for (long c = 0; c < g->C; c++)
        for (long ph = 0; ph < g->sw; ph++)
            for (long r = 0; r < g->Hq; r++) {
                T* dst = xq + ((c * g->sw + ph) * g->Hq + r) * g->Wq;
                long row = r - g->pt;
                if (row < 0 || row >= g->H) {
                    memset(dst, 0, (size_t)g->Wq * sizeof(T));
                    continue;
                }
                const T* src = xi + (c * g->H + row) * g->W;
                if (g->sw == 1) {
                    long lo = g->pl > 0 ? g->pl : 0, hi = g->pl + g->W; /* dst[i] = src[i - pl] on [lo, hi) */
                    if (lo > g->Wq)
                        lo = g->Wq;
                    if (hi > g->Wq)
                        hi = g->Wq;
                    if (hi < lo)
                        hi = lo;
                    memset(dst, 0, (size_t)lo * sizeof(T));
                    if (hi > lo)
                        memcpy(dst + lo, src + lo - g->pl, (size_t)(hi - lo) * sizeof(T));
                    memset(dst + hi, 0, (size_t)(g->Wq - hi) * sizeof(T));
                } else {
                    for (long i = 0; i < g->Wq; i++) {
                        long col = i * g->sw + ph - g->pl;
                        dst[i] = (col >= 0 && col < g->W) ? src[col] : (T)0;
                    }
                }
            }
}

/* elements of one image's flat output planes (flat mode only), rounded up to 64 bytes */
static long CS_F(cs_flat_stride)(const cs_geom* g)
{
    return g->flat ? (long)(cs_round64((size_t)(g->OC * g->Ho * g->Wq) * sizeof(T)) / sizeof(T)) : 0;
}

/* ------------------------------------------------------------------ forward */
static int CS_F(cs_fwd_per_image)(const cs_geom* g, int nthreads)
{
    return g->N >= 2 * (long)nthreads;
}

/* images per task in the per-image mode: enough output vectors to fill whole tiles of NV */
static long CS_F(cs_fwd_batch)(const cs_geom* g, int nthreads)
{
    const long nv = cs_nv[cs_get_isa()], L = CS_LANES;
    const long per = g->flat ? g->Pf / L : g->Ho * g->nxv;
    long most = g->N / (2 * (long)cs_threads(nthreads)); /* still two tasks per thread */
    if (most > 8)
        most = 8;
    long b = 1;
    while (b < most && (b * per < 4 * nv || (b * per) % nv != 0))
        b++;
    return b;
}

/* bytes of workspace cs_forward needs for these shapes and thread count */
static size_t CS_F(cs_forward_workspace)(const cs_geom* g, int nthreads)
{
    int isa = cs_get_isa();
    long ocb = cs_ocb[isa], nblk = (g->OC + ocb - 1) / ocb;
    long nbuf = CS_F(cs_fwd_per_image)(g, nthreads) ? cs_threads(nthreads) * CS_F(cs_fwd_batch)(g, nthreads) : g->N;
    if (CS_F(cs_use_ocvec)(g)) /* packed weights, the pixel table, one packed image per buffer */
        return 64 + cs_round64((size_t)(g->OC * g->K) * sizeof(T)) + cs_round64((size_t)g->K * sizeof(long)) +
               cs_round64((size_t)(g->Ho * g->Wo) * sizeof(long)) +
               (size_t)(CS_F(cs_fwd_per_image)(g, nthreads) ? cs_threads(nthreads) : g->N) *
                   (size_t)CS_F(cs_img_stride)(g) * sizeof(T);
    return 64 + cs_round64((size_t)(nblk * g->K * ocb) * sizeof(T)) + cs_round64((size_t)g->K * sizeof(long)) +
           (size_t)nbuf * (size_t)CS_F(cs_img_stride)(g) * sizeof(T) +
           (size_t)nbuf * (size_t)CS_F(cs_flat_stride)(g) * sizeof(T);
}

/* flat mode: y (OC, Ho, Wo) from the flat planes yf (OC, Ho*Wq) of one image */
static void CS_F(cs_unflatten)(const T* restrict yf, const cs_geom* g, T* restrict y)
{
    for (long r = 0; r < g->OC * g->Ho; r++)
        memcpy(y + r * g->Wo, yf + r * g->Wq, (size_t)g->Wo * sizeof(T));
}

/* output-channel blocks [b0, b1) of ``nimg`` images packed ``istride`` apart: into y directly (row
 * mode, images ``ys`` apart) or into their flat planes (``fstride`` apart) */
static inline void CS_F(cs_fwd_blocks)(CS_F(cs_fwd_fn) f, const T* xq, const T* wq, const long* toff,
                                       const T* bias, T* y, T* yf, const cs_geom* g, long b0, long b1, long nimg,
                                       long istride, long ys, long fstride)
{
    if (g->flat)
        f(xq, wq, toff, g->K, bias, yf, g->OC, 1, g->Ho * g->Wq, 0, b0, b1, nimg, istride, fstride);
    else
        f(xq, wq, toff, g->K, bias, y, g->OC, g->Ho, g->Wo, g->sh * g->Wq, b0, b1, nimg, istride, ys);
}

/* the channel-vectorised drivers for small planes, with the same macros */
#include "simd_conv_ocvec_driver.h"

/* IN x (N, C, H, W), w (OC, C, kh, kw), bias (OC,) or NULL; OUT y (N, OC, Ho, Wo) */
static void CS_F(cs_forward)(const T* x, const T* w, const T* bias, T* y, const cs_geom* g, char* ws, int nthreads)
{
    if (CS_F(cs_use_ocvec)(g)) {
        CS_F(cs_forward_ocvec)(x, w, bias, y, g, ws, nthreads);
        return;
    }
    const int isa = cs_get_isa();
    const long ocb = cs_ocb[isa], nblk = (g->OC + ocb - 1) / ocb, K = g->K;
    const long istride = CS_F(cs_img_stride)(g), xs = g->C * g->H * g->W, ys = g->OC * g->Ho * g->Wo;
    const long fstride = CS_F(cs_flat_stride)(g);
    const CS_F(cs_fwd_fn) f = CS_F(cs_fwd_kernel)(isa);
    char* p = cs_align64(ws);
    T* wq = (T*)p;
    p += cs_round64((size_t)(nblk * K * ocb) * sizeof(T));
    long* toff = (long*)p;
    p += cs_round64((size_t)K * sizeof(long));
    T* xq = (T*)p;
    nthreads = cs_threads(nthreads);
    const long B = CS_F(cs_fwd_batch)(g, nthreads);
    T* yf = xq + (CS_F(cs_fwd_per_image)(g, nthreads) ? nthreads * B : g->N) * istride;

    for (long b = 0; b < nblk; b++) /* wq[b, t, j] = w[b*ocb + j, t] */
        for (long t = 0; t < K; t++)
            for (long j = 0; j < ocb; j++) {
                long oc = b * ocb + j;
                wq[(b * K + t) * ocb + j] = oc < g->OC ? w[oc * K + t] : (T)0;
            }
    cs_tap_offsets(g, toff);

    if (CS_F(cs_fwd_per_image)(g, nthreads)) {
#pragma omp parallel num_threads(nthreads)
        {
#ifdef _OPENMP
            const long tid = omp_get_thread_num();
#else
            const long tid = 0;
#endif
            T* buf = xq + tid * B * istride;
            T* ybuf = yf + tid * B * fstride;
#pragma omp for schedule(dynamic, 1)
            for (long n0 = 0; n0 < g->N; n0 += B) {
                const long nb = g->N - n0 < B ? g->N - n0 : B;
                for (long b = 0; b < nb; b++)
                    CS_F(cs_pack_image)(x + (n0 + b) * xs, g, buf + b * istride);
                CS_F(cs_fwd_blocks)(f, buf, wq, toff, bias, y + n0 * ys, ybuf, g, 0, nblk, nb, istride, ys, fstride);
                if (g->flat)
                    for (long b = 0; b < nb; b++)
                        CS_F(cs_unflatten)(ybuf + b * fstride, g, y + (n0 + b) * ys);
            }
        }
    } else {
#pragma omp parallel for num_threads(nthreads) schedule(static)
        for (long n = 0; n < g->N; n++)
            CS_F(cs_pack_image)(x + n * xs, g, xq + n * istride);
#pragma omp parallel for num_threads(nthreads) schedule(dynamic, 1)
        for (long task = 0; task < g->N * nblk; task++) {
            long n = task / nblk, b = task - n * nblk;
            CS_F(cs_fwd_blocks)(f, xq + n * istride, wq, toff, bias, y + n * ys, yf + n * fstride, g, b, b + 1, 1,
                                istride, ys, fstride);
        }
        if (g->flat)
#pragma omp parallel for num_threads(nthreads) schedule(static)
            for (long n = 0; n < g->N; n++)
                CS_F(cs_unflatten)(yf + n * fstride, g, y + n * ys);
    }
}

/* Elements of one image's packed gradient planes for ``nch`` channels: flat mode's padded-width
 * planes, or rows padded to whole vectors when Wo is not a multiple of the lanes; 0 when gy is
 * used as it is. */
static long CS_F(cs_gq_image)(const cs_geom* g, long nch)
{
    const long L = CS_LANES;
    return g->flat ? nch * g->Pf : g->Wo % L ? nch * g->Ho * g->nxv * L : 0;
}

/* IN gy_n (nch, Ho, Wo) of one image; OUT gq_n in the layout cs_gq_image counts, with zeros past
 * each row's end (and the flat plane's), so full vectors read exact sums */
static void CS_F(cs_pack_gradient)(const T* restrict gy_n, const cs_geom* g, long nch, T* restrict gq_n)
{
    const long L = CS_LANES, Ho = g->Ho, Wo = g->Wo, nxv = g->nxv;
    if (g->flat)
        for (long c = 0; c < nch; c++) {
            T* dst = gq_n + c * g->Pf;
            memset(dst, 0, (size_t)g->Pf * sizeof(T));
            for (long oy = 0; oy < Ho; oy++)
                memcpy(dst + oy * g->Wq, gy_n + (c * Ho + oy) * Wo, (size_t)Wo * sizeof(T));
        }
    else
        for (long r = 0; r < nch * Ho; r++) {
            T* dst = gq_n + r * nxv * L;
            memcpy(dst, gy_n + r * Wo, (size_t)Wo * sizeof(T));
            memset(dst + Wo, 0, (size_t)(nxv * L - Wo) * sizeof(T));
        }
}

/* ------------------------------------------------------------------ weight gradient */
/* batch segments of the weight gradient: fixed by the shapes (never by the thread count) */
static long CS_F(cs_wgrad_segments)(const cs_geom* g)
{
    long nblk = (g->OC + cs_wocb[cs_get_isa()] - 1) / cs_wocb[cs_get_isa()];
    long s = (16 + nblk - 1) / nblk;
    return s < 1 ? 1 : (s > g->N ? (g->N > 0 ? g->N : 1) : s);
}

static size_t CS_F(cs_wgrad_workspace)(const cs_geom* g, int nthreads)
{
    if (CS_F(cs_use_ocvec)(g)) /* tap offsets, pixel table, packed images, gy transposed, partial sums */
        return 64 + cs_round64((size_t)g->K * sizeof(long)) + cs_round64((size_t)(g->Ho * g->Wo) * sizeof(long)) +
               (size_t)g->N * (size_t)CS_F(cs_img_stride)(g) * sizeof(T) +
               cs_round64((size_t)(g->N * g->Ho * g->Wo * g->OC) * sizeof(T)) +
               cs_round64((size_t)(CS_F(cs_wgrad_ocvec_segments)(g) * g->OC * g->K) * sizeof(T));
    const long wocb = cs_wocb[cs_get_isa()];
    size_t gq = cs_round64((size_t)(g->N * CS_F(cs_gq_image)(g, g->OC)) * sizeof(T));
    nthreads = cs_threads(nthreads);
    const long npos = g->flat ? g->Pf / CS_LANES : g->Ho * g->nxv;
    const long nchunk = 128 / npos > 1 ? 128 / npos : 1;
    return 64 + cs_round64((size_t)g->K * sizeof(long)) + (size_t)g->N * (size_t)CS_F(cs_img_stride)(g) * sizeof(T) +
           2 * cs_round64((size_t)(nchunk * npos) * sizeof(long)) +
           gq + (size_t)nthreads * cs_round64((size_t)(g->K * wocb * CS_LANES) * sizeof(T)) +
           cs_round64((size_t)(CS_F(cs_wgrad_segments)(g) * g->OC * g->K) * sizeof(T));
}

/* IN x (N, C, H, W), gy (N, OC, Ho, Wo); OUT gw (OC, C, kh, kw) */
static void CS_F(cs_wgrad)(const T* x, const T* gy, T* gw, const cs_geom* g, char* ws, int nthreads)
{
    if (CS_F(cs_use_ocvec)(g)) {
        CS_F(cs_wgrad_ocvec)(x, gy, gw, g, ws, nthreads);
        return;
    }
    const int isa = cs_get_isa();
    const long L = CS_LANES, wocb = cs_wocb[isa], nblk = (g->OC + wocb - 1) / wocb, K = g->K, S = CS_F(cs_wgrad_segments)(g);
    const long istride = CS_F(cs_img_stride)(g), xs = g->C * g->H * g->W, N = g->N, OC = g->OC;
    const long Ho = g->Ho, Wo = g->Wo, nxv = g->nxv, acc_stride = (long)(cs_round64((size_t)(K * wocb * L) * sizeof(T)));
    const CS_F(cs_wgrad_fn) f = CS_F(cs_wgrad_kernel)(isa);
    char* p = cs_align64(ws);
    long* toff = (long*)p;
    p += cs_round64((size_t)K * sizeof(long));
    T* xq = (T*)p;
    p += (size_t)N * (size_t)istride * sizeof(T);
    const long gqi = CS_F(cs_gq_image)(g, OC);
    T* gq = gqi ? (T*)p : 0;
    p += cs_round64((size_t)(N * gqi) * sizeof(T));
    const long npos = g->flat ? g->Pf / L : Ho * nxv;
    const long nchunk = 128 / npos > 1 ? 128 / npos : 1; /* images whose vectors form one loop */
    long* xpos = (long*)p;
    p += cs_round64((size_t)(nchunk * npos) * sizeof(long));
    long* gpos = (long*)p;
    p += cs_round64((size_t)(nchunk * npos) * sizeof(long));
    char* accs = p;
    nthreads = cs_threads(nthreads);
    p += (size_t)nthreads * (size_t)acc_stride;
    T* part = (T*)p;
    cs_tap_offsets(g, toff);

#pragma omp parallel for num_threads(nthreads) schedule(static)
    for (long n = 0; n < N; n++) {
        CS_F(cs_pack_image)(x + n * xs, g, xq + n * istride);
        if (gq != 0)
            CS_F(cs_pack_gradient)(gy + n * OC * Ho * Wo, g, OC, gq + n * gqi);
    }
    const T* gsrc = gq != 0 ? gq : gy;
    /* flat mode: one row of Pf/L vectors per plane */
    const long rows = g->flat ? 1 : Ho, rvec = g->flat ? g->Pf / L : nxv;
    const long grow = g->flat ? g->Pf : gq != 0 ? nxv * L : Wo, gch = rows * grow, gimg = OC * gch;
    for (long b = 0, q = 0; b < nchunk; b++) /* the output vectors of a chunk of images, in order */
        for (long r = 0; r < rows; r++)
            for (long v = 0; v < rvec; v++, q++) {
                xpos[q] = b * istride + r * g->sh * g->Wq + v * L;
                gpos[q] = b * gimg + r * grow + v * L;
            }

#pragma omp parallel num_threads(nthreads)
    {
#ifdef _OPENMP
        char* acc = accs + (long)omp_get_thread_num() * acc_stride;
#else
        char* acc = accs;
#endif
#pragma omp for schedule(dynamic, 1)
        for (long task = 0; task < nblk * S; task++) {
            long b = task / S, s = task - b * S, oc0 = b * wocb;
            long ocn = OC - oc0 < wocb ? OC - oc0 : wocb;
            f(xq, istride, gsrc, gimg, gch, xpos, gpos, npos, toff, K, oc0, ocn, s * N / S, (s + 1) * N / S, nchunk,
              acc, part + (s * OC + oc0) * K);
        }
    }
    for (long i = 0; i < OC * K; i++) { /* the segments in order */
        T sum = part[i];
        for (long s = 1; s < S; s++)
            sum += part[s * OC * K + i];
        gw[i] = sum;
    }
}

/* the depthwise drivers, with the same macros */
#include "simd_conv_dw_driver.h"
#include "simd_conv_dwc_driver.h"

#undef CS_F
#undef CS_LANES
#undef CS_CAT
#undef CS_CAT_
