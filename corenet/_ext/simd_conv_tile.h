/* Design
 * ------
 * The register-tiled micro-kernels of the direct convolution, written once and compiled once per
 * instruction set by simd_conv.h (which defines the macros below before each inclusion):
 *
 *   T      element type (float or double)        L     lanes of one vector (8 floats / 4 doubles)
 *   OCB    output channels of a forward tile     NV    output vectors of a forward tile
 *   WOCB   output channels of a weight-gradient tile   WTT   taps of a weight-gradient tile
 *   FN(x)  the function name for this instantiation (x ## _avx2_f32, ...)
 *
 * Every array layout is described in simd_conv.h. A forward tile holds OCB x NV vectors of output
 * (OCB output channels times NV strips of L consecutive output pixels of one row) in registers;
 * the loop over every tap (input channel, kernel row, kernel column) is innermost, and each tap
 * costs NV unaligned input loads, OCB weight broadcasts and OCB*NV fused multiply-adds. The input
 * is pre-packed (padded, columns split by phase of the stride) so that a tap of a strip is one
 * contiguous vector at any stride and dilation.
 */

typedef T FN(vec) __attribute__((vector_size(L * sizeof(T))));

static inline FN(vec) FN(loadu)(const T* p)
{
    FN(vec) v;
    __builtin_memcpy(&v, p, sizeof v);
    return v;
}

static inline void FN(storeu)(T* p, FN(vec) v)
{
    __builtin_memcpy(p, &v, sizeof v);
}

static inline FN(vec) FN(splat)(T s)
{
    FN(vec) v = {0};
    return v + s;
}

/* y (OC, Ho, Wo) of ``nimg`` images from their packed inputs (``xq_img`` elements apart; outputs
 * ``y_img`` apart), output-channel blocks [blk0, blk1) only; wq packed per block of OCB output
 * channels as [block][tap][OCB]; toff[t] is tap t's offset inside a packed image; row_step =
 * sh * Wq. The output vectors of all the images form one list cut into tiles of NV, so a small
 * plane (ResNet's 8x8 stage: 5 vectors) does not leave most of its last tile empty. */
static void FN(forward_image)(const T* restrict xq, const T* restrict wq, const long* restrict toff, long K,
                              const T* restrict bias, T* restrict y, long OC, long Ho, long Wo, long row_step,
                              long blk0, long blk1, long nimg, long xq_img, long y_img)
{
    const long nxv = (Wo + L - 1) / L, Pi = Ho * nxv, P = nimg * Pi;
    for (long blk = blk0; blk < blk1; blk++) {
        const T* wb = wq + blk * K * OCB;
        const long oc0 = blk * OCB;
        for (long p0 = 0; p0 < P; p0 += NV) {
            long base[NV], yoff[NV], nval[NV];
            for (int v = 0; v < NV; v++) {
                long p = p0 + v < P ? p0 + v : P - 1; /* a short last tile repeats its last strip */
                long b = p / Pi, r = p - b * Pi;
                long oy = r / nxv, xs = (r - oy * nxv) * L;
                base[v] = b * xq_img + oy * row_step + xs;
                yoff[v] = b * y_img + oy * Wo + xs;
                nval[v] = p0 + v < P ? (Wo - xs < L ? Wo - xs : L) : 0;
            }
            FN(vec) acc[OCB][NV];
#pragma GCC unroll 16
            for (int j = 0; j < OCB; j++) {
                T b0 = (bias != 0 && oc0 + j < OC) ? bias[oc0 + j] : (T)0;
#pragma GCC unroll 8
                for (int v = 0; v < NV; v++)
                    acc[j][v] = FN(splat)(b0);
            }
            for (long t = 0; t < K; t++) {
                const T* xt = xq + toff[t];
                const T* wt = wb + t * OCB;
                FN(vec) in[NV];
#pragma GCC unroll 8
                for (int v = 0; v < NV; v++)
                    in[v] = FN(loadu)(xt + base[v]);
#pragma GCC unroll 16
                for (int j = 0; j < OCB; j++) {
                    FN(vec) wj = FN(splat)(wt[j]);
#pragma GCC unroll 8
                    for (int v = 0; v < NV; v++)
                        acc[j][v] += wj * in[v];
                }
            }
#pragma GCC unroll 16
            for (int j = 0; j < OCB; j++) {
                if (oc0 + j >= OC)
                    break;
                T* yc = y + (oc0 + j) * Ho * Wo;
#pragma GCC unroll 8
                for (int v = 0; v < NV; v++) {
                    if (nval[v] == L) {
                        FN(storeu)(yc + yoff[v], acc[j][v]);
                    } else if (nval[v] > 0) {
                        T tmp[L];
                        FN(storeu)(tmp, acc[j][v]);
                        for (long q = 0; q < nval[v]; q++)
                            yc[yoff[v] + q] = tmp[q];
                    }
                }
            }
        }
    }
}

/* Forward tile for small planes, vectorised over output channels instead of pixels: an 8x8 plane
 * fills only 80% of the lanes of pixel vectors even in flat mode (7x7: 77%), but 32 output
 * channels fill two vectors exactly. A tile is PT output pixels (any of the plane, in order:
 * ``pofs`` holds each pixel's offset in the packed image) x OCV vectors of L output channels;
 * each tap costs OCV weight-vector loads and PT broadcasts of input values, for PT*OCV fused
 * multiply-adds. wq is packed per block of OCV*L channels as [block][tap][OCV*L]; y (OC, P) is the
 * image's output with P = Ho*Wo pixels; blocks [blk0, blk1) only. */
#define PT 8
#define OCV 2
static void FN(forward_ocvec)(const T* restrict xq, const T* restrict wq, const long* restrict toff, long K,
                              const T* restrict bias, T* restrict y, const long* restrict pofs, long P,
                              long blk0, long blk1)
{
    for (long blk = blk0; blk < blk1; blk++) {
        const T* wb = wq + blk * K * (OCV * L);
        const long oc0 = blk * OCV * L;
        for (long p0 = 0; p0 < P; p0 += PT) {
            long po[PT];
            for (int i = 0; i < PT; i++)
                po[i] = pofs[p0 + i < P ? p0 + i : P - 1];
            FN(vec) acc[PT][OCV];
#pragma GCC unroll 4
            for (int v = 0; v < OCV; v++) {
                FN(vec) b0 = FN(splat)(0);
                if (bias != 0)
                    b0 = FN(loadu)(bias + oc0 + v * L);
#pragma GCC unroll 16
                for (int i = 0; i < PT; i++)
                    acc[i][v] = b0;
            }
            for (long t = 0; t < K; t++) {
                const T* xt = xq + toff[t];
                FN(vec) w[OCV];
#pragma GCC unroll 4
                for (int v = 0; v < OCV; v++)
                    w[v] = FN(loadu)(wb + (t * OCV + v) * L);
#pragma GCC unroll 16
                for (int i = 0; i < PT; i++) {
                    FN(vec) xi = FN(splat)(xt[po[i]]);
#pragma GCC unroll 4
                    for (int v = 0; v < OCV; v++)
                        acc[i][v] += w[v] * xi;
                }
            }
            const long np = P - p0 < PT ? P - p0 : PT;
            T tmp[PT][OCV * L];
#pragma GCC unroll 16
            for (int i = 0; i < PT; i++)
#pragma GCC unroll 4
                for (int v = 0; v < OCV; v++)
                    FN(storeu)(&tmp[i][v * L], acc[i][v]);
            for (long j = 0; j < OCV * L; j++) { /* transpose into NCHW: PT pixels of each channel */
                T* yc = y + (oc0 + j) * P + p0;
                for (long i = 0; i < np; i++)
                    yc[i] = tmp[i][j];
            }
        }
    }
}
#undef PT
#undef OCV

/* Weight gradient for small planes, vectorised over output channels (the companion of
 * forward_ocvec): out[t*OCB2 + j] = sum over images [n0, n1) and output pixels p of
 * gyT[n][p][oc0 + j] * xq[n][pofs[p] + toff[t]], for the OCB2 = OCV*L channels oc0.. of one block;
 * gyT is gy transposed per image to (pixel, channel), ``gy_img`` elements per image, ``OC`` per
 * pixel. A tile is WT taps x OCV channel vectors of accumulators, each pixel costing OCV loads
 * and WT broadcasts; the sum over pixels is in a fixed order, lane by lane (no horizontal sums). */
#define WT 12
#define OCV 2
static void FN(wgrad_ocvec)(const T* restrict xq, long xq_img, const T* restrict gyT, long gy_img, long OC,
                            const long* restrict pofs, long P, const long* restrict toff, long K, long oc0,
                            long n0, long n1, T* restrict out)
{
    for (long t0 = 0; t0 < K; t0 += WT) {
        const long nt = K - t0 < WT ? K - t0 : WT;
        long to[WT];
        for (int tt = 0; tt < WT; tt++)
            to[tt] = toff[t0 + (tt < nt ? tt : nt - 1)];
        FN(vec) acc[WT][OCV];
#pragma GCC unroll 16
        for (int tt = 0; tt < WT; tt++)
#pragma GCC unroll 4
            for (int v = 0; v < OCV; v++)
                acc[tt][v] = FN(splat)(0);
        for (long n = n0; n < n1; n++) {
            const T* xn = xq + n * xq_img;
            const T* gn = gyT + n * gy_img + oc0;
            for (long p = 0; p < P; p++) {
                const T* xp = xn + pofs[p];
                FN(vec) g[OCV];
#pragma GCC unroll 4
                for (int v = 0; v < OCV; v++)
                    g[v] = FN(loadu)(gn + p * OC + v * L);
#pragma GCC unroll 16
                for (int tt = 0; tt < WT; tt++) {
                    FN(vec) xv = FN(splat)(xp[to[tt]]);
#pragma GCC unroll 4
                    for (int v = 0; v < OCV; v++)
                        acc[tt][v] += g[v] * xv;
                }
            }
        }
        for (long tt = 0; tt < nt; tt++)
            for (int v = 0; v < OCV; v++)
                FN(storeu)(out + (t0 + tt) * (OCV * L) + v * L, acc[tt][v]);
    }
}
#undef WT
#undef OCV

/* Partial weight gradient of WOCB output channels (oc0 .. oc0+ocn-1) over images [n0, n1):
 * out[j*K + t] = sum over images, output vectors of gy[n, oc0+j, vector] * xq[n][tap t at vector].
 * Images are taken in chunks of ``nchunk``, so that the gradient rows and input planes of a chunk
 * stay in cache across all tap groups; the output vectors of a whole chunk are one flat loop over
 * the tables xpos (offsets in the chunk's packed images) and gpos (in its gradient planes, which
 * are ``gy_img`` apart per image, ``gy_ch`` per channel, with zeros past Wo in each row so full
 * vectors are safe), built by the caller for ``nchunk`` images of ``npos`` vectors: an 8x8 plane
 * is 5 vectors, too few for a loop of its own. accraw is a scratch of K*WOCB vectors. */
static void FN(wgrad_block)(const T* restrict xq, long xq_img, const T* restrict gy, long gy_img, long gy_ch,
                            const long* restrict xpos, const long* restrict gpos, long npos,
                            const long* restrict toff, long K, long oc0, long ocn, long n0, long n1, long nchunk,
                            void* accraw, T* restrict out)
{
    FN(vec)* restrict accbuf = (FN(vec)*)accraw; /* 64-byte aligned by the caller */
    const FN(vec) zero = FN(splat)(0);
    for (long i = 0; i < K * WOCB; i++)
        accbuf[i] = zero;
    for (long c0 = n0; c0 < n1; c0 += nchunk) {
        const long count = (c0 + nchunk < n1 ? nchunk : n1 - c0) * npos;
        const T* xb = xq + c0 * xq_img;
        const T* gb = gy + c0 * gy_img + oc0 * gy_ch;
        for (long t0 = 0; t0 < K; t0 += WTT) {
            const long nt = K - t0 < WTT ? K - t0 : WTT;
            long to[WTT];
            for (int tt = 0; tt < WTT; tt++)
                to[tt] = toff[t0 + (tt < nt ? tt : nt - 1)]; /* a short group repeats its last tap */
            FN(vec) acc[WOCB][WTT];
#pragma GCC unroll 16
            for (int j = 0; j < WOCB; j++)
#pragma GCC unroll 8
                for (int tt = 0; tt < WTT; tt++)
                    acc[j][tt] = accbuf[(t0 + tt < K ? t0 + tt : K - 1) * WOCB + j];
            for (long p = 0; p < count; p++) {
                const T* xr = xb + xpos[p];
                const T* gr = gb + gpos[p];
                /* the WTT input vectors stay in registers; one gradient vector at a time is
                 * loaded and multiplied into its row of accumulators (WOCB*WTT + WTT + 1 live) */
                FN(vec) in[WTT];
#pragma GCC unroll 8
                for (int tt = 0; tt < WTT; tt++)
                    in[tt] = FN(loadu)(xr + to[tt]);
#pragma GCC unroll 16
                for (int j = 0; j < WOCB; j++) {
                    FN(vec) gj = j < ocn ? FN(loadu)(gr + j * gy_ch) : zero;
#pragma GCC unroll 8
                    for (int tt = 0; tt < WTT; tt++)
                        acc[j][tt] += gj * in[tt];
                }
            }
#pragma GCC unroll 16
            for (int j = 0; j < WOCB; j++)
#pragma GCC unroll 8
                for (int tt = 0; tt < WTT; tt++)
                    if (tt < nt)
                        accbuf[(t0 + tt) * WOCB + j] = acc[j][tt];
        }
    }
    for (long j = 0; j < ocn; j++)
        for (long t = 0; t < K; t++) {
            T tmp[L];
            FN(storeu)(tmp, accbuf[t * WOCB + j]);
            T s = 0;
            for (int q = 0; q < L; q++)
                s += tmp[q];
            out[j * K + t] = s;
        }
}

/* Depthwise (one input channel per output channel, multiplier 1): y (Ho, Wo) of one channel from
 * its packed planes xq (the channel's part of a packed image), K = kh*kw taps with offsets toff,
 * weights wc (K,). Tiles of DNV output vectors; each tap costs DNV loads, one broadcast and DNV
 * fused multiply-adds (the plane stays in L1: load-bound by design, as every depthwise kernel). */
#define DNV 8
static void FN(dw_forward_plane)(const T* restrict xq, const T* restrict wc, const long* restrict toff, long K,
                                 T bias, T* restrict y, long Ho, long Wo, long row_step)
{
    const long nxv = (Wo + L - 1) / L, P = Ho * nxv;
    for (long p0 = 0; p0 < P; p0 += DNV) {
        long base[DNV], yoff[DNV], nval[DNV];
        for (int v = 0; v < DNV; v++) {
            long p = p0 + v < P ? p0 + v : P - 1;
            long oy = p / nxv, xs = (p - oy * nxv) * L;
            base[v] = oy * row_step + xs;
            yoff[v] = oy * Wo + xs;
            nval[v] = p0 + v < P ? (Wo - xs < L ? Wo - xs : L) : 0;
        }
        FN(vec) acc[DNV];
#pragma GCC unroll 8
        for (int v = 0; v < DNV; v++)
            acc[v] = FN(splat)(bias);
        for (long t = 0; t < K; t++) {
            const T* xt = xq + toff[t];
            FN(vec) wt = FN(splat)(wc[t]);
#pragma GCC unroll 8
            for (int v = 0; v < DNV; v++)
                acc[v] += wt * FN(loadu)(xt + base[v]);
        }
#pragma GCC unroll 8
        for (int v = 0; v < DNV; v++) {
            if (nval[v] == L) {
                FN(storeu)(y + yoff[v], acc[v]);
            } else if (nval[v] > 0) {
                T tmp[L];
                FN(storeu)(tmp, acc[v]);
                for (long q = 0; q < nval[v]; q++)
                    y[yoff[v] + q] = tmp[q];
            }
        }
    }
}

/* Depthwise weight gradient of one channel over images [n0, n1): out[t] = sum over images and
 * output pixels of gy * xq[tap t]; gy and xq addressed as in wgrad_block (gy rows zero past Wo),
 * taps in groups of DWT accumulators. */
#define DWT 8
static void FN(dw_wgrad_channel)(const T* restrict xq, long xq_img, const T* restrict gy, long gy_img, long gy_row,
                                 const long* restrict toff, long K, long n0, long n1, long Ho, long nxv,
                                 long row_step, T* restrict out)
{
    for (long t0 = 0; t0 < K; t0 += DWT) {
        const long nt = K - t0 < DWT ? K - t0 : DWT;
        long to[DWT];
        for (int tt = 0; tt < DWT; tt++)
            to[tt] = toff[t0 + (tt < nt ? tt : nt - 1)];
        FN(vec) acc[DWT];
#pragma GCC unroll 8
        for (int tt = 0; tt < DWT; tt++)
            acc[tt] = FN(splat)(0);
        for (long n = n0; n < n1; n++) {
            const T* xn = xq + n * xq_img;
            const T* gn = gy + n * gy_img;
            for (long oy = 0; oy < Ho; oy++) {
                const T* xr = xn + oy * row_step;
                const T* gr = gn + oy * gy_row;
                for (long xs = 0; xs < nxv * L; xs += L) {
                    FN(vec) g = FN(loadu)(gr + xs);
#pragma GCC unroll 8
                    for (int tt = 0; tt < DWT; tt++)
                        acc[tt] += g * FN(loadu)(xr + to[tt] + xs);
                }
            }
        }
        for (long tt = 0; tt < nt; tt++) {
            T tmp[L];
            FN(storeu)(tmp, acc[tt]);
            T s = 0;
            for (int q = 0; q < L; q++)
                s += tmp[q];
            out[t0 + tt] = s;
        }
    }
}
#undef DNV
#undef DWT
#include "simd_conv_dwc_tile.h"
