/* Design
 * ------
 * The OpenMP drivers of the channel-vectorised tiles (forward_ocvec, wgrad_ocvec in
 * simd_conv_tile.h), included by simd_conv_driver.h for each element type with its macros (T, SUF,
 * CS_F, CS_LANES). They take over from the pixel-vector drivers when cs_use_ocvec says the output
 * channels fill whole blocks and pixel vectors would leave over 15% of their lanes empty (8x8 and
 * 7x7 planes). Same packed image as every other driver; a table gives each output pixel's offset
 * in it. The forward owns one image (small batches: one (image, channel block)) per task; the
 * weight gradient one (channel block, batch segment) per task, with gy transposed per image to
 * (pixel, channel) first and the segments, fixed by the shapes, summed in order.
 */

/* the channel-vectorised forward (see cs_use_ocvec): same packing, one image per task */
static void CS_F(cs_forward_ocvec)(const T* x, const T* w, const T* bias, T* y, const cs_geom* g, char* ws,
                                   int nthreads)
{
    const long bo = CS_OCVEC_V * CS_LANES, nblk = g->OC / bo, K = g->K, P = g->Ho * g->Wo;
    const long istride = CS_F(cs_img_stride)(g), xs = g->C * g->H * g->W, ys = g->OC * P;
    const CS_F(cs_ocvec_fn) f = CS_F(cs_ocvec_kernel)(cs_get_isa());
    char* p = cs_align64(ws);
    T* wq = (T*)p;
    p += cs_round64((size_t)(g->OC * K) * sizeof(T));
    long* toff = (long*)p;
    p += cs_round64((size_t)K * sizeof(long));
    long* pofs = (long*)p;
    p += cs_round64((size_t)P * sizeof(long));
    T* xq = (T*)p;
    nthreads = cs_threads(nthreads);
    for (long b = 0; b < nblk; b++) /* wq[b, t, j] = w[b*bo + j, t] */
        for (long t = 0; t < K; t++)
            for (long j = 0; j < bo; j++)
                wq[(b * K + t) * bo + j] = w[(b * bo + j) * K + t];
    cs_tap_offsets(g, toff);
    for (long oy = 0, q = 0; oy < g->Ho; oy++) /* output pixel -> its tap (0, 0) in the packed image */
        for (long ox = 0; ox < g->Wo; ox++, q++)
            pofs[q] = oy * g->sh * g->Wq + ox;
    if (CS_F(cs_fwd_per_image)(g, nthreads)) {
#pragma omp parallel num_threads(nthreads)
        {
#ifdef _OPENMP
            T* buf = xq + (long)omp_get_thread_num() * istride;
#else
            T* buf = xq;
#endif
#pragma omp for schedule(dynamic, 1)
            for (long n = 0; n < g->N; n++) {
                CS_F(cs_pack_image)(x + n * xs, g, buf);
                f(buf, wq, toff, K, bias, y + n * ys, pofs, P, 0, nblk);
            }
        }
    } else {
#pragma omp parallel for num_threads(nthreads) schedule(static)
        for (long n = 0; n < g->N; n++)
            CS_F(cs_pack_image)(x + n * xs, g, xq + n * istride);
#pragma omp parallel for num_threads(nthreads) schedule(dynamic, 1)
        for (long task = 0; task < g->N * nblk; task++) {
            long n = task / nblk, b = task - n * nblk;
            f(xq + n * istride, wq, toff, K, bias, y + n * ys, pofs, P, b, b + 1);
        }
    }
}

/* batch segments of the channel-vectorised weight gradient (fixed by the shapes) */
static long CS_F(cs_wgrad_ocvec_segments)(const cs_geom* g)
{
    long nblk = g->OC / (CS_OCVEC_V * CS_LANES), s = (16 + nblk - 1) / nblk;
    return s < 1 ? 1 : (s > g->N ? (g->N > 0 ? g->N : 1) : s);
}

/* the channel-vectorised weight gradient (see cs_use_ocvec) */
static void CS_F(cs_wgrad_ocvec)(const T* x, const T* gy, T* gw, const cs_geom* g, char* ws, int nthreads)
{
    const long bo = CS_OCVEC_V * CS_LANES, nblk = g->OC / bo, K = g->K, P = g->Ho * g->Wo, N = g->N, OC = g->OC;
    const long S = CS_F(cs_wgrad_ocvec_segments)(g), istride = CS_F(cs_img_stride)(g), xs = g->C * g->H * g->W;
    const CS_F(cs_wgrad_ocvec_fn) f = CS_F(cs_wgrad_ocvec_kernel)(cs_get_isa());
    char* p = cs_align64(ws);
    long* toff = (long*)p;
    p += cs_round64((size_t)K * sizeof(long));
    long* pofs = (long*)p;
    p += cs_round64((size_t)P * sizeof(long));
    T* xq = (T*)p;
    p += (size_t)N * (size_t)istride * sizeof(T);
    T* gyT = (T*)p;
    p += cs_round64((size_t)(N * P * OC) * sizeof(T));
    T* part = (T*)p; /* [S][nblk][K][bo] */
    nthreads = cs_threads(nthreads);
    cs_tap_offsets(g, toff);
    for (long oy = 0, q = 0; oy < g->Ho; oy++)
        for (long ox = 0; ox < g->Wo; ox++, q++)
            pofs[q] = oy * g->sh * g->Wq + ox;
#pragma omp parallel for num_threads(nthreads) schedule(static)
    for (long n = 0; n < N; n++) {
        CS_F(cs_pack_image)(x + n * xs, g, xq + n * istride);
        const T* src = gy + n * OC * P;
        T* dst = gyT + n * P * OC;
        for (long oc = 0; oc < OC; oc++) /* (OC, P) -> (P, OC) */
            for (long q = 0; q < P; q++)
                dst[q * OC + oc] = src[oc * P + q];
    }
#pragma omp parallel for num_threads(nthreads) schedule(dynamic, 1)
    for (long task = 0; task < nblk * S; task++) {
        long b = task / S, s = task - b * S;
        f(xq, istride, gyT, P * OC, OC, pofs, P, toff, K, b * bo, s * N / S, (s + 1) * N / S,
          part + (s * nblk + b) * K * bo);
    }
    for (long b = 0; b < nblk; b++) /* the segments in order, transposed back to (OC, K) */
        for (long t = 0; t < K; t++)
            for (long j = 0; j < bo; j++) {
                T sum = part[(b * K + t) * bo + j];
                for (long s = 1; s < S; s++)
                    sum += part[((s * nblk + b) * K + t) * bo + j];
                gw[(b * bo + j) * K + t] = sum;
            }
}

