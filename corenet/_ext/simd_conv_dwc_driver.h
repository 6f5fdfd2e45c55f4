/* Design
 * ------
 * OpenMP drivers of the channel-vectorised depthwise convolution (tiles: simd_conv_dwc_tile.h),
 * included by simd_conv_driver.h for each element type (T, SUF, CS_F). For small maps, where the
 * row-vector kernels of simd_conv_dw_driver.h leave most lanes empty: each task transposes
 * CS_DWC_CB channels of one image into a pixel-major block (padded for the input; channels past C
 * are zeros), runs the tile, and transposes the result back. Any stride, dilation and padding >= 0.
 * Forward and input gradient: one task per (channel block, image), each output written by one
 * task. Weight gradient: one task per (channel block, batch segment), segments fixed by the shapes
 * and summed in order, so results do not depend on the thread count.
 */

/* Planes of up to this many pixels are transposed a pixel at a time (all channels of the block),
 * larger ones a channel plane at a time: a pixel's channels in a large plane lie 4 KiB or more
 * apart, and writing them together thrashes the cache (3x slower on 32x32 planes). The input is
 * always gathered a pixel at a time (reads only; faster at every size measured). */
#define CS_DWC_SMALL_PLANE 64

typedef struct {
    long Hp, Wp, K, nblk, xblk, yblk;
} CS_F(cs_dwc_dims);

static CS_F(cs_dwc_dims) CS_F(cs_dwc_geom)(const cs_geom* g)
{
    CS_F(cs_dwc_dims) d;
    d.Hp = (g->Ho - 1) * g->sh + (g->kh - 1) * g->dh + 1;
    d.Wp = (g->Wo - 1) * g->sw + (g->kw - 1) * g->dw + 1;
    d.K = g->kh * g->kw;
    d.nblk = (g->C + CS_DWC_CB - 1) / CS_DWC_CB;
    d.xblk = (long)(cs_round64((size_t)(d.Hp * d.Wp * CS_DWC_CB) * sizeof(T)) / sizeof(T));
    d.yblk = (long)(cs_round64((size_t)(g->Ho * g->Wo * CS_DWC_CB) * sizeof(T)) / sizeof(T));
    return d;
}

/* elements of one thread's buffers: input block, output block, weights and bias */
static long CS_F(cs_dwc_thread_elems)(const CS_F(cs_dwc_dims) * d)
{
    return d->xblk + d->yblk + (long)(cs_round64((size_t)((d->K + 1) * CS_DWC_CB) * sizeof(T)) / sizeof(T));
}

static long CS_F(cs_dwc_segments)(const cs_geom* g, const CS_F(cs_dwc_dims) * d)
{
    long s = (16 + d->nblk - 1) / d->nblk;
    return s < 1 ? 1 : (s > g->N ? (g->N > 0 ? g->N : 1) : s);
}

static size_t CS_F(cs_dwc_workspace)(const cs_geom* g, int nthreads)
{
    CS_F(cs_dwc_dims) d = CS_F(cs_dwc_geom)(g);
    size_t part = (size_t)(CS_F(cs_dwc_segments)(g, &d) * d.nblk * d.K * CS_DWC_CB) * sizeof(T);
    return 64 + (size_t)cs_threads(nthreads) * (size_t)CS_F(cs_dwc_thread_elems)(&d) * sizeof(T) + part;
}

/* OUT xb: channels c0 .. c0+cb of one image x (C, H, W), padded into Hp x Wp pixels */
static void CS_F(cs_dwc_pack_input)(const T* x, long cb, const cs_geom* g, const CS_F(cs_dwc_dims) * d, T* xb)
{
    memset(xb, 0, (size_t)(d->Hp * d->Wp * CS_DWC_CB) * sizeof(T));
    const long HW = g->H * g->W;
    for (long h = 0; h < g->H && h + g->pt < d->Hp; h++)
        for (long w = 0; w < g->W && w + g->pl < d->Wp; w++) {
            const T* xp = x + h * g->W + w;
            T* px = xb + ((h + g->pt) * d->Wp + w + g->pl) * CS_DWC_CB;
            for (long c = 0; c < cb; c++)
                px[c] = xp[c * HW];
        }
}

/* OUT yb: channels c0 .. c0+cb of one (C, P) plane set, pixel-major; channels past cb zeroed */
static void CS_F(cs_dwc_pack_plain)(const T* y, long cb, long P, T* yb)
{
    if (cb < CS_DWC_CB)
        memset(yb, 0, (size_t)(P * CS_DWC_CB) * sizeof(T));
    if (P <= CS_DWC_SMALL_PLANE)
        for (long p = 0; p < P; p++)
            for (long c = 0; c < cb; c++)
                yb[p * CS_DWC_CB + c] = y[c * P + p];
    else
        for (long c = 0; c < cb; c++)
            for (long p = 0; p < P; p++)
                yb[p * CS_DWC_CB + c] = y[c * P + p];
}

/* OUT wt (taps x CS_DWC_CB), bt: the weights (C, 1, kh, kw) and bias of channels c0 .. c0+cb */
static void CS_F(cs_dwc_pack_weights)(const T* w, const T* bias, long c0, long cb, long K, T* wt, T* bt)
{
    memset(wt, 0, (size_t)((K + 1) * CS_DWC_CB) * sizeof(T));
    for (long c = 0; c < cb; c++) {
        for (long t = 0; t < K; t++)
            wt[t * CS_DWC_CB + c] = w[(c0 + c) * K + t];
        if (bt != 0 && bias != 0)
            bt[c] = bias[c0 + c];
    }
}

static void CS_F(cs_dwc_tiles)(int isa, void (**fwd)(const T*, const T*, const T*, T*, long, long, long, long, long,
                                                      long, long, long, long),
                               void (**bwd)(const T*, const T*, T*, long, long, long, long, long, long, long, long,
                                            long, long),
                               void (**wgr)(const T*, const T*, T*, long, long, long, long, long, long, long, long,
                                            long))
{
#if CS_X86
    if (isa == CS_AVX512) {
        *fwd = CS_F(dwc_forward_block_avx512), *bwd = CS_F(dwc_backward_block_avx512);
        *wgr = CS_F(dwc_wgrad_block_avx512);
        return;
    }
    if (isa == CS_AVX2) {
        *fwd = CS_F(dwc_forward_block_avx2), *bwd = CS_F(dwc_backward_block_avx2);
        *wgr = CS_F(dwc_wgrad_block_avx2);
        return;
    }
#endif
    (void)isa;
    *fwd = CS_F(dwc_forward_block_generic), *bwd = CS_F(dwc_backward_block_generic);
    *wgr = CS_F(dwc_wgrad_block_generic);
}

/* Forward (gx == 0): IN x (N, C, H, W), w (C, 1, kh, kw), bias or NULL; OUT y (N, C, Ho, Wo).
 * Input gradient (y == 0): IN gy (passed as x), w; OUT gx (N, C, H, W). */
static void CS_F(cs_dwc_run)(const T* x, const T* w, const T* bias, T* y, T* gx, const cs_geom* g, char* ws,
                             int nthreads)
{
    const CS_F(cs_dwc_dims) d = CS_F(cs_dwc_geom)(g);
    const long C = g->C, N = g->N, P = g->Ho * g->Wo, HW = g->H * g->W, te = CS_F(cs_dwc_thread_elems)(&d);
    void (*fwd)(const T*, const T*, const T*, T*, long, long, long, long, long, long, long, long, long);
    void (*bwd)(const T*, const T*, T*, long, long, long, long, long, long, long, long, long, long);
    void (*wgr)(const T*, const T*, T*, long, long, long, long, long, long, long, long, long);
    CS_F(cs_dwc_tiles)(cs_get_isa(), &fwd, &bwd, &wgr);
    T* base = (T*)cs_align64(ws);
    nthreads = cs_threads(nthreads);
#pragma omp parallel num_threads(nthreads)
    {
#ifdef _OPENMP
        const long tid = omp_get_thread_num();
#else
        const long tid = 0;
#endif
        T* xb = base + tid * te;
        T* yb = xb + d.xblk;
        T* wt = yb + d.yblk;
        T* bt = wt + d.K * CS_DWC_CB;
        long have = -1;
#pragma omp for schedule(static)
        for (long task = 0; task < d.nblk * N; task++) {
            const long blk = task / N, n = task - blk * N, c0 = blk * CS_DWC_CB;
            const long cb = C - c0 < CS_DWC_CB ? C - c0 : CS_DWC_CB;
            if (blk != have) {
                CS_F(cs_dwc_pack_weights)(w, bias, c0, cb, d.K, wt, bt);
                have = blk;
            }
            if (y != 0) {
                CS_F(cs_dwc_pack_input)(x + (n * C + c0) * HW, cb, g, &d, xb);
                fwd(xb, wt, bt, yb, g->Ho, g->Wo, d.Wp, g->kh, g->kw, g->sh, g->sw, g->dh, g->dw);
                T* yn = y + (n * C + c0) * P;
                if (P <= CS_DWC_SMALL_PLANE)
                    for (long p = 0; p < P; p++)
                        for (long c = 0; c < cb; c++)
                            yn[c * P + p] = yb[p * CS_DWC_CB + c];
                else
                    for (long c = 0; c < cb; c++)
                        for (long p = 0; p < P; p++)
                            yn[c * P + p] = yb[p * CS_DWC_CB + c];
            } else {
                CS_F(cs_dwc_pack_plain)(x + (n * C + c0) * P, cb, P, yb);
                bwd(yb, wt, xb, d.Hp, g->Ho, g->Wo, d.Wp, g->kh, g->kw, g->sh, g->sw, g->dh, g->dw);
                T* gn = gx + (n * C + c0) * HW;
                if (HW <= CS_DWC_SMALL_PLANE)
                    for (long h = 0; h < g->H; h++)
                        for (long w_ = 0; w_ < g->W; w_++) {
                            const long hp = h + g->pt, wp = w_ + g->pl;
                            T* gp = gn + h * g->W + w_;
                            if (hp < d.Hp && wp < d.Wp) {
                                const T* src = xb + (hp * d.Wp + wp) * CS_DWC_CB;
                                for (long c = 0; c < cb; c++)
                                    gp[c * HW] = src[c];
                            } else {
                                for (long c = 0; c < cb; c++)
                                    gp[c * HW] = (T)0;
                            }
                        }
                else
                    for (long c = 0; c < cb; c++)
                        for (long h = 0; h < g->H; h++)
                            for (long w_ = 0; w_ < g->W; w_++) {
                                const long hp = h + g->pt, wp = w_ + g->pl;
                                gn[(c * g->H + h) * g->W + w_] =
                                    hp < d.Hp && wp < d.Wp ? xb[(hp * d.Wp + wp) * CS_DWC_CB + c] : (T)0;
                            }
            }
        }
    }
}

static void CS_F(cs_dwc_forward)(const T* x, const T* w, const T* bias, T* y, const cs_geom* g, char* ws,
                                 int nthreads)
{
    CS_F(cs_dwc_run)(x, w, bias, y, 0, g, ws, nthreads);
}

/* IN gy (N, C, Ho, Wo), w (C, 1, kh, kw); OUT gx (N, C, H, W) */
static void CS_F(cs_dwc_backward_input)(const T* gy, const T* w, T* gx, const cs_geom* g, char* ws, int nthreads)
{
    CS_F(cs_dwc_run)(gy, w, 0, 0, gx, g, ws, nthreads);
}

/* IN x (N, C, H, W), gy (N, C, Ho, Wo); OUT gw (C, 1, kh, kw) */
static void CS_F(cs_dwc_wgrad)(const T* x, const T* gy, T* gw, const cs_geom* g, char* ws, int nthreads)
{
    const CS_F(cs_dwc_dims) d = CS_F(cs_dwc_geom)(g);
    const long C = g->C, N = g->N, P = g->Ho * g->Wo, HW = g->H * g->W, te = CS_F(cs_dwc_thread_elems)(&d);
    const long S = CS_F(cs_dwc_segments)(g, &d), KB = d.K * CS_DWC_CB;
    void (*fwd)(const T*, const T*, const T*, T*, long, long, long, long, long, long, long, long, long);
    void (*bwd)(const T*, const T*, T*, long, long, long, long, long, long, long, long, long, long);
    void (*wgr)(const T*, const T*, T*, long, long, long, long, long, long, long, long, long);
    CS_F(cs_dwc_tiles)(cs_get_isa(), &fwd, &bwd, &wgr);
    nthreads = cs_threads(nthreads);
    T* base = (T*)cs_align64(ws);
    T* part = base + nthreads * te;
#pragma omp parallel num_threads(nthreads)
    {
#ifdef _OPENMP
        const long tid = omp_get_thread_num();
#else
        const long tid = 0;
#endif
        T* xb = base + tid * te;
        T* gyb = xb + d.xblk;
#pragma omp for schedule(dynamic, 1)
        for (long task = 0; task < d.nblk * S; task++) {
            const long blk = task / S, s = task - blk * S, c0 = blk * CS_DWC_CB;
            const long cb = C - c0 < CS_DWC_CB ? C - c0 : CS_DWC_CB;
            T* acc = part + task * KB;
            memset(acc, 0, (size_t)KB * sizeof(T));
            for (long n = s * N / S; n < (s + 1) * N / S; n++) {
                CS_F(cs_dwc_pack_input)(x + (n * C + c0) * HW, cb, g, &d, xb);
                CS_F(cs_dwc_pack_plain)(gy + (n * C + c0) * P, cb, P, gyb);
                wgr(xb, gyb, acc, g->Ho, g->Wo, d.Wp, g->kh, g->kw, g->sh, g->sw, g->dh, g->dw);
            }
        }
    }
    for (long blk = 0; blk < d.nblk; blk++) {
        const long c0 = blk * CS_DWC_CB, cb = C - c0 < CS_DWC_CB ? C - c0 : CS_DWC_CB;
        for (long c = 0; c < cb; c++)
            for (long t = 0; t < d.K; t++) {
                T sum = part[blk * S * KB + t * CS_DWC_CB + c];
                for (long s = 1; s < S; s++)
                    sum += part[(blk * S + s) * KB + t * CS_DWC_CB + c];
                gw[(c0 + c) * d.K + t] = sum;
            }
    }
}
