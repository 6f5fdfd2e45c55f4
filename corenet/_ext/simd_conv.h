/* Design
 * ------
 * Direct convolution (groups = 1, any kernel size, stride, dilation and padding) that never builds
 * the column matrix of im2col: the output is computed in register tiles (simd_conv_tile.h) from a
 * packed copy of the input, with the OpenMP loops and the packing here. The forward kernel also
 * gives the stride-1 input gradient (a forward convolution of gy with the flipped, swapped
 * weights; corenet/kernels/_cpu_conv.py arranges that), and a second kernel gives the weight
 * gradient.
 *
 * One source, several instruction sets: the tiles are compiled for AVX-512 (VL, 32 registers:
 * bigger tiles), AVX2 + FMA, and a portable generic version (GCC vector extensions, lowered to
 * whatever the target has). The best one the CPU supports is picked at first use from the CPU's
 * flags (__builtin_cpu_supports), so one build runs on any x86-64 and the source builds elsewhere
 * (there only the generic tile exists). cs_set_isa() forces one, for tests and benchmarks.
 * The vector length L is 256 bits (8 floats, 4 doubles) for the generic and AVX2 tiles and 512 bits
 * for AVX-512 (on CPUs with a full-width 512-bit FMA this doubles the peak); the packed layouts
 * below depend on it, so the drivers read it from the instruction set at each call.
 *
 * Layouts (C-contiguous, elements)
 *   x  (N, C, H, W)    y (N, OC, Ho, Wo)    w (OC, C, kh, kw)    gy (N, OC, Ho, Wo)
 *   packed image xq    (C, sw, Hq, Wq): xq[c, ph, r, i] = xpad[c, r, i*sw + ph], xpad the zero-
 *                      padded input; Hq = (Ho-1)*sh + (kh-1)*dh + 1 rows (the ones read) and
 *                      Wq = ceil(Wo/L)*L + (kw-1)*dw/sw columns, so every vector read is in bounds.
 *                      Tap t = (c*kh + i)*kw + j of output (oy, ox) reads
 *                      xq[c, (j*dw) % sw, oy*sh + i*dh, ox + (j*dw) / sw]: contiguous along ox.
 *   packed weights wq  (ceil(OC/OCB), K, OCB), K = C*kh*kw, zero past OC.
 *
 * Threads: the forward pass owns one image (or, for batches smaller than the thread count, one
 * block of output channels of one image) per task; the weight gradient owns one (block of output
 * channels, segment of the batch) per task, with the number of segments fixed by the shapes alone
 * and the segments summed in order at the end. No result depends on the thread count, and every
 * write lands in a task's own part of the output or workspace.
 */

#ifndef CORENET_SIMD_CONV_H
#define CORENET_SIMD_CONV_H

#include <stdint.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define CS_GENERIC 0
#define CS_AVX2 1
#define CS_AVX512 2

#if defined(__GNUC__)
/* the generic tile passes vectors by value inside this file only: no ABI crosses a library boundary */
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

#if defined(__GNUC__) && !defined(__clang__) && (defined(__x86_64__) || defined(__i386__))
#define CS_X86 1
#else
#define CS_X86 0
#endif

/* channels per block of the channel-vectorised depthwise kernels (simd_conv_dwc_*.h) */
#define CS_DWC_CB 16

/* ------------------------------------------------------------------ tile instantiations */
/* generic: no target attribute (SSE2 on x86-64) */
#define T float
#define L 8
#define OCB 4
#define NV 2
#define WOCB 4
#define WTT 2
#define FN(x) x##_generic_f32
#include "simd_conv_tile.h"
#undef FN
#undef T
#undef L
#define T double
#define L 4
#define FN(x) x##_generic_f64
#include "simd_conv_tile.h"
#undef FN
#undef T
#undef L
#undef OCB
#undef NV
#undef WOCB
#undef WTT

#if CS_X86
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#define OCB 6
#define NV 2
#define WOCB 4
#define WTT 2
#define T float
#define L 8
#define FN(x) x##_avx2_f32
#include "simd_conv_tile.h"
#undef FN
#undef T
#undef L
#define T double
#define L 4
#define FN(x) x##_avx2_f64
#include "simd_conv_tile.h"
#undef FN
#undef T
#undef L
#undef OCB
#undef NV
#undef WOCB
#undef WTT
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx2,fma,avx512f,avx512vl")
#define OCB 8
#define NV 3
#define WOCB 4
#define WTT 6
#define T float
#define L 16
#define FN(x) x##_avx512_f32
#include "simd_conv_tile.h"
#undef FN
#undef T
#undef L
#define T double
#define L 8
#define FN(x) x##_avx512_f64
#include "simd_conv_tile.h"
#undef FN
#undef T
#undef L
#undef OCB
#undef NV
#undef WOCB
#undef WTT
#pragma GCC pop_options
#endif

/* tile sizes and vector lanes per instruction set, as instantiated above */
static const long cs_ocb[3] = {4, 6, 8};
static const long cs_wocb[3] = {4, 4, 4};
static const long cs_nv[3] = {2, 2, 3};
#define CS_OCVEC_V 2 /* output-channel vectors of a forward_ocvec tile (its OCV) */
static const long cs_lanes_f32[3] = {8, 8, 16};
static const long cs_lanes_f64[3] = {4, 4, 8};

/* ------------------------------------------------------------------ instruction set */
static int cs_isa_current = -1;

static int cs_isa_supported(int isa)
{
    if (isa == CS_GENERIC)
        return 1;
#if CS_X86
    __builtin_cpu_init();
    if (isa == CS_AVX2)
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (isa == CS_AVX512)
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
               __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl");
#endif
    return 0;
}

static int cs_get_isa(void)
{
    if (cs_isa_current < 0) {
        int best = CS_GENERIC;
        if (cs_isa_supported(CS_AVX2))
            best = CS_AVX2;
        if (cs_isa_supported(CS_AVX512))
            best = CS_AVX512;
        cs_isa_current = best;
    }
    return cs_isa_current;
}

/* 1 when set, 0 when the CPU lacks it (nothing changes then). */
static int cs_set_isa(int isa)
{
    if (isa < 0 || isa > 2 || !cs_isa_supported(isa))
        return 0;
    cs_isa_current = isa;
    return 1;
}

/* vector lanes of the current instruction set for elements of ``itemsize`` bytes */
static long cs_lanes(int itemsize)
{
    return itemsize == 4 ? cs_lanes_f32[cs_get_isa()] : cs_lanes_f64[cs_get_isa()];
}

static int cs_threads(int requested)
{
    return requested < 1 ? 1 : requested;
}

/* ------------------------------------------------------------------ geometry */
typedef struct {
    long N, C, H, W, OC, kh, kw, sh, sw, pt, pl, dh, dw, Ho, Wo;
    /* derived: taps, packed rows/cols, vectors per output row, plane and image sizes; in flat mode
     * the length of the flat output plane rounded up to whole vectors */
    long K, Hq, Wq, nxv, plane, img, flat, Pf;
} cs_geom;

/* Two ways to lay vectors over an output plane. Row mode: each vector covers L pixels of one row,
 * the last one of a row partly empty (an 8-pixel row fills half of a 16-lane vector). Flat mode
 * (stride 1 only): the packed input rows are exactly as wide as the padded input, Wq, and the
 * output is computed as one flat plane of Ho rows of Wq pixels, the Wq - Wo pixels past each row's
 * end wasted (they read the next row's left edge) and dropped when the plane is copied into y;
 * taps stay contiguous across rows. Flat mode is taken where it wastes fewer lanes. */
static void cs_geom_init(cs_geom* g, long lanes)
{
    g->K = g->C * g->kh * g->kw;
    g->nxv = (g->Wo + lanes - 1) / lanes;
    g->Hq = (g->Ho - 1) * g->sh + (g->kh - 1) * g->dh + 1;
    g->Wq = g->nxv * lanes + ((g->kw - 1) * g->dw) / g->sw;
    g->flat = 0;
    g->Pf = 0;
    if (g->sh == 1 && g->sw == 1 && g->Wo > 0) {
        long wq = g->Wo + (g->kw - 1) * g->dw;
        if (wq * g->Ho * 100 < g->nxv * lanes * g->Ho * 95) { /* at least 5% fewer wasted lanes */
            g->flat = 1;
            g->Wq = wq;
            g->Pf = (g->Ho * wq + lanes - 1) / lanes * lanes;
            g->Hq = (g->Pf + (g->kw - 1) * g->dw + wq - 1) / wq + (g->kh - 1) * g->dh;
        }
    }
    g->plane = g->Hq * g->Wq;
    g->img = g->C * g->sw * g->plane;
}

static void cs_tap_offsets(const cs_geom* g, long* toff)
{
    for (long c = 0; c < g->C; c++)
        for (long i = 0; i < g->kh; i++)
            for (long j = 0; j < g->kw; j++) {
                long ph = (j * g->dw) % g->sw;
                toff[(c * g->kh + i) * g->kw + j] = (c * g->sw + ph) * g->plane + i * g->dh * g->Wq + (j * g->dw) / g->sw;
            }
}

/* bytes rounded up to a 64-byte boundary, so every region of a workspace stays aligned */
static inline size_t cs_round64(size_t nbytes)
{
    return (nbytes + 63) & ~(size_t)63;
}

static inline char* cs_align64(char* p)
{
    return (char*)(((uintptr_t)p + 63) & ~(uintptr_t)63);
}

/* ------------------------------------------------------------------ drivers (per dtype) */
#define T float
#define SUF f32
#include "simd_conv_driver.h"
#undef T
#undef SUF
#define T double
#define SUF f64
#include "simd_conv_driver.h"
#undef T
#undef SUF

#endif
