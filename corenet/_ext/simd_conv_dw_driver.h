/* Design
 * ------
 * The OpenMP drivers of the depthwise direct convolution (one input channel per output channel),
 * included by simd_conv_driver.h for each element type with its macros (T, SUF, CS_F, CS_LANES):
 * the packed image and its geometry are those of the ungrouped kernels (simd_conv.h), the tiles
 * are dw_forward_plane / dw_wgrad_channel of simd_conv_tile.h. The forward owns one image (or, for
 * small batches, one (image, channel) plane) per task; the weight gradient one (channel, batch
 * segment) per task, with the segments fixed by the shapes and summed in order.
 */

/* ------------------------------------------------------------------ depthwise (multiplier 1) */
/* tap offsets inside one channel's packed planes, and the distance between two channels */
static void CS_F(cs_dw_offsets)(const cs_geom* g, long* toff)
{
    for (long i = 0; i < g->kh; i++)
        for (long j = 0; j < g->kw; j++)
            toff[i * g->kw + j] = ((j * g->dw) % g->sw * g->Hq + i * g->dh) * g->Wq + (j * g->dw) / g->sw;
}

static size_t CS_F(cs_dw_forward_workspace)(const cs_geom* g, int nthreads)
{
    long nbuf = CS_F(cs_fwd_per_image)(g, nthreads) ? nthreads : g->N;
    size_t flat = g->flat ? cs_round64((size_t)(g->Ho * g->Wq) * sizeof(T)) : 0;
    return 64 + cs_round64((size_t)(g->kh * g->kw) * sizeof(long)) +
           (size_t)nbuf * (size_t)CS_F(cs_img_stride)(g) * sizeof(T) + (size_t)cs_threads(nthreads) * flat;
}

/* one channel of one image: into y's plane directly, or through the flat plane yf */
static inline void CS_F(cs_dw_plane)(const T* xc, const T* wc, const long* toff, T bias, T* yc, T* yf,
                                     const cs_geom* g)
{
    const long K = g->kh * g->kw;
    const int isa = cs_get_isa();
#if CS_X86
    void (*f)(const T*, const T*, const long*, long, T, T*, long, long, long) =
        isa == CS_AVX512 ? CS_F(dw_forward_plane_avx512)
        : isa == CS_AVX2 ? CS_F(dw_forward_plane_avx2) : CS_F(dw_forward_plane_generic);
#else
    void (*f)(const T*, const T*, const long*, long, T, T*, long, long, long) = CS_F(dw_forward_plane_generic);
    (void)isa;
#endif
    if (g->flat) {
        f(xc, wc, toff, K, bias, yf, 1, g->Ho * g->Wq, 0);
        for (long r = 0; r < g->Ho; r++)
            memcpy(yc + r * g->Wo, yf + r * g->Wq, (size_t)g->Wo * sizeof(T));
    } else {
        f(xc, wc, toff, K, bias, yc, g->Ho, g->Wo, g->sh * g->Wq);
    }
}

/* IN x (N, C, H, W), w (C, 1, kh, kw), bias (C,) or NULL; OUT y (N, C, Ho, Wo) (g->OC == g->C) */
static void CS_F(cs_dw_forward)(const T* x, const T* w, const T* bias, T* y, const cs_geom* g, char* ws,
                                int nthreads)
{
    const long C = g->C, K = g->kh * g->kw, cstride = g->sw * g->plane, istride = CS_F(cs_img_stride)(g);
    const long xs = C * g->H * g->W, ys = C * g->Ho * g->Wo, fstride = g->flat ? (long)(cs_round64(
        (size_t)(g->Ho * g->Wq) * sizeof(T)) / sizeof(T)) : 0;
    char* p = cs_align64(ws);
    long* toff = (long*)p;
    p += cs_round64((size_t)K * sizeof(long));
    T* xq = (T*)p;
    nthreads = cs_threads(nthreads);
    const int per_image = CS_F(cs_fwd_per_image)(g, nthreads);
    T* yf = xq + (per_image ? nthreads : g->N) * istride;
    CS_F(cs_dw_offsets)(g, toff);
    if (per_image) {
#pragma omp parallel num_threads(nthreads)
        {
#ifdef _OPENMP
            const long tid = omp_get_thread_num();
#else
            const long tid = 0;
#endif
            T* buf = xq + tid * istride;
#pragma omp for schedule(dynamic, 1)
            for (long n = 0; n < g->N; n++) {
                CS_F(cs_pack_image)(x + n * xs, g, buf);
                for (long c = 0; c < C; c++)
                    CS_F(cs_dw_plane)(buf + c * cstride, w + c * K, toff, bias ? bias[c] : (T)0,
                                      y + n * ys + c * g->Ho * g->Wo, yf + tid * fstride, g);
            }
        }
    } else {
#pragma omp parallel for num_threads(nthreads) schedule(static)
        for (long n = 0; n < g->N; n++)
            CS_F(cs_pack_image)(x + n * xs, g, xq + n * istride);
#pragma omp parallel num_threads(nthreads)
        {
#ifdef _OPENMP
            const long tid = omp_get_thread_num();
#else
            const long tid = 0;
#endif
#pragma omp for schedule(dynamic, 4)
            for (long task = 0; task < g->N * C; task++) {
                long n = task / C, c = task - n * C;
                CS_F(cs_dw_plane)(xq + n * istride + c * cstride, w + c * K, toff, bias ? bias[c] : (T)0,
                                  y + n * ys + c * g->Ho * g->Wo, yf + tid * fstride, g);
            }
        }
    }
}

static long CS_F(cs_dw_segments)(const cs_geom* g)
{
    long s = (16 + g->C - 1) / g->C;
    return s < 1 ? 1 : (s > g->N ? (g->N > 0 ? g->N : 1) : s);
}

static size_t CS_F(cs_dw_wgrad_workspace)(const cs_geom* g, int nthreads)
{
    size_t gq = cs_round64((size_t)(g->N * CS_F(cs_gq_image)(g, g->C)) * sizeof(T));
    (void)nthreads;
    return 64 + cs_round64((size_t)(g->kh * g->kw) * sizeof(long)) +
           (size_t)g->N * (size_t)CS_F(cs_img_stride)(g) * sizeof(T) + gq +
           cs_round64((size_t)(CS_F(cs_dw_segments)(g) * g->C * g->kh * g->kw) * sizeof(T));
}

/* IN x (N, C, H, W), gy (N, C, Ho, Wo); OUT gw (C, 1, kh, kw) */
static void CS_F(cs_dw_wgrad)(const T* x, const T* gy, T* gw, const cs_geom* g, char* ws, int nthreads)
{
    const int isa = cs_get_isa();
    const long L = CS_LANES, C = g->C, N = g->N, Ho = g->Ho, Wo = g->Wo, nxv = g->nxv, K = g->kh * g->kw;
    const long S = CS_F(cs_dw_segments)(g), istride = CS_F(cs_img_stride)(g), xs = C * g->H * g->W;
    const long cstride = g->sw * g->plane;
    char* p = cs_align64(ws);
    long* toff = (long*)p;
    p += cs_round64((size_t)K * sizeof(long));
    T* xq = (T*)p;
    p += (size_t)N * (size_t)istride * sizeof(T);
    const long gqi = CS_F(cs_gq_image)(g, C);
    T* gq = gqi ? (T*)p : 0;
    p += cs_round64((size_t)(N * gqi) * sizeof(T));
    T* part = (T*)p;
    nthreads = cs_threads(nthreads);
    CS_F(cs_dw_offsets)(g, toff);
#pragma omp parallel for num_threads(nthreads) schedule(static)
    for (long n = 0; n < N; n++) {
        CS_F(cs_pack_image)(x + n * xs, g, xq + n * istride);
        if (gq != 0)
            CS_F(cs_pack_gradient)(gy + n * C * Ho * Wo, g, C, gq + n * gqi);
    }
    const T* gsrc = gq != 0 ? gq : gy;
    const long rows = g->flat ? 1 : Ho, rvec = g->flat ? g->Pf / L : nxv;
    const long grow = g->flat ? g->Pf : gq != 0 ? nxv * L : Wo, gch = rows * grow;
#if CS_X86
    void (*f)(const T*, long, const T*, long, long, const long*, long, long, long, long, long, long, T*) =
        isa == CS_AVX512 ? CS_F(dw_wgrad_channel_avx512)
        : isa == CS_AVX2 ? CS_F(dw_wgrad_channel_avx2) : CS_F(dw_wgrad_channel_generic);
#else
    void (*f)(const T*, long, const T*, long, long, const long*, long, long, long, long, long, long, T*) =
        CS_F(dw_wgrad_channel_generic);
    (void)isa;
#endif
#pragma omp parallel for num_threads(nthreads) schedule(dynamic, 1)
    for (long task = 0; task < C * S; task++) {
        long c = task / S, s = task - c * S;
        f(xq + c * cstride, istride, gsrc + c * gch, C * gch, grow, toff, K, s * N / S, (s + 1) * N / S, rows,
          rvec, g->sh * g->Wq, part + (s * C + c) * K);
    }
    for (long i = 0; i < C * K; i++) {
        T sum = part[i];
        for (long s = 1; s < S; s++)
            sum += part[s * C * K + i];
        gw[i] = sum;
    }
}

