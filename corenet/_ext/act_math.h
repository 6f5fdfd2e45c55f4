/* Design
 * ------
 * Branch-free float32 exp, expm1 (of non-positive arguments), tanh and erf for the activation
 * kernels (act.pyx, act_mobile.pyx). glibc's expf/tanhf/erff are scalar calls with data-dependent
 * branches inside, so a loop that calls them never vectorises: sigmoid, silu, tanh, gelu and elu
 * cost 7-50 ms on 3.2M float32 elements where relu costs 0.5. These functions are inline and made
 * of arithmetic, comparisons-as-selects and integer bit moves only, so gcc vectorises the loops
 * that call them (SSE2 at the baseline x86-64 target, wider where the build targets more).
 * The Numba backend has the same functions (corenet/kernels/numba_cpu/_vmath.py), operation for
 * operation.
 *
 * exp: Cephes' expf. v = k*ln2 + r with k = round(v*log2(e)) (taken from the low mantissa bits of
 * v*log2(e) + 1.5*2^23, so no float-to-int conversion ever sees a NaN), r from a two-part ln2
 * (exact products), exp(r) = 1 + r + r^2*P(r) (degree 5; < 1 ulp on |r| <= ln2/2), then times
 * 2^(k>>1) * 2^(k-(k>>1)): two normal powers of two, so subnormal results are rounded once and
 * overflow gives inf. v is clamped to [-104, 89] first (exp is 0 below and inf above in float32);
 * the clamps are written `v < lo ? lo : v`, which keeps a NaN, and a NaN comes out NaN. Integer
 * arithmetic on the bits is unsigned (a NaN's bits must not make it signed overflow).
 * expm1 of v <= 0: the same reduction; expm1(v) = 2^k*expm1(r) + (2^k - 1) with expm1(r) =
 * r + r^2*P(r), so k = 0 (|v| <= ln2/2) gives expm1(r) itself: full relative accuracy near 0.
 * Below -30 the result is -1 (exactly, as expm1f gives).
 * tanh(v) = sign(v) * (-t / (t + 2)) with t = expm1(-2|v|) in (-1, 0]: no cancellation near 0,
 * 1 at saturation, -0 kept, NaN propagated. ~3 ulp.
 * erf: Abramowitz-Stegun 7.1.26 (absolute error < 1.5e-7), the formula of PyTorch's vectorised
 * CPU erf (ATen's Vectorized<float>::erf), which its float32 GELU uses.
 */

#ifndef CORENET_ACT_MATH_H
#define CORENET_ACT_MATH_H

/* The functions here are compiled with -fno-trapping-math (pushed here, popped at the end of the
 * file). With -ftrapping-math (the default), gcc threads a select whose arm is a constant (a clamp,
 * sigmoid's "1 if v >= 0 else e") into a branch with the arithmetic that follows copied into it,
 * and a floating-point operation that "could trap" is not if-converted back: the loop stays scalar
 * ("control flow in loop"). No kernel reads the floating-point exception flags, and the results
 * do not change: only where exceptions may be raised does. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC push_options
#pragma GCC optimize("no-trapping-math")
#pragma GCC optimize("no-associative-math") /* even under CFLAGS=-ffast-math: keep (t + magic) - magic */
#endif

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

static inline float cn_from_bits(uint32_t i) { float f; memcpy(&f, &i, 4); return f; }
static inline uint32_t cn_to_bits(float f) { uint32_t i; memcpy(&i, &f, 4); return i; }

#define CN_EXP_MAGIC 12582912.0f /* 1.5 * 2^23: adding it rounds to an integer in the low bits */
#define CN_LOG2E 1.44269504088896341f
#define CN_LN2_HI 0.693359375f   /* 355/512: k * CN_LN2_HI is exact for |k| < 2^15 */
#define CN_LN2_LO -2.12194440e-4f

/* k = round(v * log2 e) as km = v*log2e + magic (its bits minus magic's bits), r = v - k ln2,
 * em1r = expm1(r) = r + r^2 P(r) */
static inline float cn_reduce(float v, float* km_out) {
    float km = v * CN_LOG2E + CN_EXP_MAGIC;
    float k = km - CN_EXP_MAGIC;
    float r = v - k * CN_LN2_HI;
    r = r - k * CN_LN2_LO;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    *km_out = km;
    return p * (r * r) + r;
}

static inline uint32_t cn_k(float km) { return cn_to_bits(km) - cn_to_bits(CN_EXP_MAGIC); }

static inline float cn_expf(float v) {
    float km;
    v = v < -104.0f ? -104.0f : v;
    v = v > 89.0f ? 89.0f : v;
    float e = cn_reduce(v, &km) + 1.0f;
    uint32_t k = cn_k(km);
    uint32_t k1 = (uint32_t)((int32_t)k >> 1);  /* arithmetic shift: floor(k / 2) */
    uint32_t k2 = k - k1;
    return e * cn_from_bits((k1 + 127u) << 23) * cn_from_bits((k2 + 127u) << 23);
}

/* expm1(v) for v <= 0 (or NaN) */
static inline float cn_expm1f_neg(float v) {
    float km;
    v = v < -30.0f ? -30.0f : v;
    float em1r = cn_reduce(v, &km);
    float s = cn_from_bits((cn_k(km) + 127u) << 23);  /* 2^k, k in [-44, 0] */
    return s * em1r + (s - 1.0f);
}

static inline float cn_tanhf(float v) {
    float t = cn_expm1f_neg(-2.0f * fabsf(v));
    return copysignf(-t / (t + 2.0f), v);
}

static inline float cn_erff(float v) {
    float a = fabsf(v);
    float t = 1.0f / (1.0f + 0.3275911f * a);
    float p = 1.061405429f;
    p = p * t - 1.453152027f;
    p = p * t + 1.421413741f;
    p = p * t - 0.284496736f;
    p = p * t + 0.254829592f;
    return copysignf(1.0f - p * t * cn_expf(-a * a), v);
}

/* ------------------------------------------------------------- float32 range kernels
 * y[i] = f(x[i]) (or gx[i] = f(gy[i], x[i])) for 0 <= i < n: the runners at the end of this file
 * run them over fixed chunks on OpenMP threads. On x86-64 glibc systems with gcc 11+ each is compiled three times (AVX-512,
 * AVX2+FMA, baseline SSE2) and the loader picks the best the CPU has (target_clones, an ifunc);
 * elsewhere once, for the build's target. The AVX2/AVX-512 versions contract a*b+c into FMAs, so
 * float32 results may differ in the last bit from one CPU to another (never with the thread
 * count). */
#if defined(__GNUC__)
#define CN_STATIC static __attribute__((unused)) /* each .pyx that includes this uses some of them */
#else
#define CN_STATIC static
#endif
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 11 && defined(__x86_64__) && defined(__GLIBC__)
/* (the x86-64-v3/v4 names need gcc 11; the ifunc that picks a clone needs glibc) */
#define CN_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define CN_CLONES
#endif

#define CN_MAP1(name, expr)                                                              \
    CN_CLONES CN_STATIC void name(const float* restrict x, float* restrict y, ptrdiff_t n) { \
        for (ptrdiff_t i = 0; i < n; i++) {                                              \
            float v = x[i];                                                              \
            y[i] = (expr);                                                               \
        }                                                                                \
    }
#define CN_MAP2(name, expr)                                                                             \
    CN_CLONES CN_STATIC void name(const float* restrict gy, const float* restrict x, float* restrict gx,  \
                               ptrdiff_t n) {                                                          \
        for (ptrdiff_t i = 0; i < n; i++) {                                                             \
            float g = gy[i], v = x[i];                                                                  \
            gx[i] = (expr);                                                                             \
        }                                                                                               \
    }

static inline float cn_sigmoidf(float v) {
    float e = cn_expf(-fabsf(v));   /* never overflows */
    float num = v >= 0.0f ? 1.0f : e; /* 1/(1 + exp(-v)) for v >= 0, exp(v)/(1 + exp(v)) below */
    return num / (1.0f + e);
}

static inline float cn_silu_gradf(float g, float v) {
    float s = 1.0f / (1.0f + cn_expf(-v));
    return g * s * (1.0f + v * (1.0f - s));
}

#define CN_RSQRT2 0.7071067811865476f
#define CN_RSQRT2PI 0.3989422804014327f
#define CN_K0 0.7978845608028654f /* sqrt(2/pi) */
#define CN_K1 0.044715f

static inline float cn_gelu_tanh_gradf(float g, float v) {
    float t = cn_tanhf(CN_K0 * (v + CN_K1 * v * v * v));
    float d = 0.5f * (1.0f + t) + 0.5f * v * (1.0f - t * t) * CN_K0 * (1.0f + (3 * CN_K1) * v * v);
    return g * d;
}

CN_MAP1(cn_sigmoid_f32, cn_sigmoidf(v))
CN_MAP1(cn_silu_f32, v / (1.0f + cn_expf(-v)))
CN_MAP2(cn_silu_grad_f32, cn_silu_gradf(g, v))
CN_MAP1(cn_tanh_f32, cn_tanhf(v))
CN_MAP1(cn_gelu_f32, 0.5f * v * (1.0f + cn_erff(v * CN_RSQRT2)))
CN_MAP2(cn_gelu_grad_f32, g * (0.5f * (1.0f + cn_erff(v * CN_RSQRT2)) + v * CN_RSQRT2PI * cn_expf(-0.5f * v * v)))
CN_MAP1(cn_gelu_tanh_f32, 0.5f * v * (1.0f + cn_tanhf(CN_K0 * (v + CN_K1 * v * v * v))))
CN_MAP2(cn_gelu_tanh_grad_f32, cn_gelu_tanh_gradf(g, v))

/* relu6, hardsigmoid, hardswish: PyTorch's arithmetic (no a*b+c, so no FMA: the same bits on
 * every CPU); clamp6 keeps NaN and -0 */
static inline float cn_clamp6(float v) { return v < 0.0f ? 0.0f : (v > 6.0f ? 6.0f : v); }

CN_MAP1(cn_relu6_f32, cn_clamp6(v))
CN_MAP1(cn_hardsigmoid_f32, cn_clamp6(v + 3.0f) / 6.0f)
CN_MAP1(cn_hardswish_f32, v * cn_clamp6(v + 3.0f) / 6.0f)

/* scale * (v if v > 0 else alpha * expm1(v)); both sides computed, then selected (NaN kept) */
CN_CLONES CN_STATIC void cn_elu_f32(const float* restrict x, float* restrict y, ptrdiff_t n, float alpha, float scale) {
    for (ptrdiff_t i = 0; i < n; i++) {
        float v = x[i];
        float e = scale * alpha * cn_expm1f_neg(v > 0.0f ? 0.0f : v);
        float r = scale * v;
        y[i] = v > 0.0f ? r : e;
    }
}

CN_CLONES CN_STATIC void cn_elu_grad_f32(const float* restrict gy, const float* restrict x, float* restrict gx,
                                      ptrdiff_t n, float alpha, float scale) {
    for (ptrdiff_t i = 0; i < n; i++) {
        float g = gy[i], v = x[i];
        float e = g * (scale * alpha * cn_expf(v > 0.0f ? 0.0f : v));
        float r = g * scale;
        gx[i] = v > 0.0f ? r : e;
    }
}

/* ------------------------------------------------------------- chunked parallel runners
 * f over [0, n) in chunks of CN_CHUNK elements (a multiple of every vector length; 64 KiB), one
 * OpenMP task per chunk (static schedule), with no more threads than chunks (a thread without a
 * chunk would only be woken and waited for). Every element is written by one call: no result
 * depends on the thread count. */
#define CN_CHUNK 16384

typedef void (*cn_map1)(const float* restrict, float* restrict, ptrdiff_t);
typedef void (*cn_map2)(const float* restrict, const float* restrict, float* restrict, ptrdiff_t);

static inline ptrdiff_t cn_chunks(ptrdiff_t n) { return (n + CN_CHUNK - 1) / CN_CHUNK; }
static inline ptrdiff_t cn_len(ptrdiff_t n, ptrdiff_t c) {
    return n - c * CN_CHUNK < CN_CHUNK ? n - c * CN_CHUNK : CN_CHUNK;
}
static inline int cn_team(int threads, ptrdiff_t n) {
    ptrdiff_t c = cn_chunks(n);
    return c >= threads ? threads : (c > 0 ? (int)c : 1);
}

CN_STATIC void cn_run1(cn_map1 f, const float* x, float* y, ptrdiff_t n, int threads) {
    ptrdiff_t c, nc = cn_chunks(n);
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(cn_team(threads, n))
#endif
    for (c = 0; c < nc; c++) f(x + c * CN_CHUNK, y + c * CN_CHUNK, cn_len(n, c));
    (void)threads;
}

CN_STATIC void cn_run2(cn_map2 f, const float* gy, const float* x, float* gx, ptrdiff_t n, int threads) {
    ptrdiff_t c, nc = cn_chunks(n);
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(cn_team(threads, n))
#endif
    for (c = 0; c < nc; c++) f(gy + c * CN_CHUNK, x + c * CN_CHUNK, gx + c * CN_CHUNK, cn_len(n, c));
    (void)threads;
}

CN_STATIC void cn_run_elu(const float* x, float* y, ptrdiff_t n, float alpha, float scale, int threads) {
    ptrdiff_t c, nc = cn_chunks(n);
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(cn_team(threads, n))
#endif
    for (c = 0; c < nc; c++) cn_elu_f32(x + c * CN_CHUNK, y + c * CN_CHUNK, cn_len(n, c), alpha, scale);
    (void)threads;
}

CN_STATIC void cn_run_elu_grad(const float* gy, const float* x, float* gx, ptrdiff_t n, float alpha, float scale,
                            int threads) {
    ptrdiff_t c, nc = cn_chunks(n);
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(cn_team(threads, n))
#endif
    for (c = 0; c < nc; c++)
        cn_elu_grad_f32(gy + c * CN_CHUNK, x + c * CN_CHUNK, gx + c * CN_CHUNK, cn_len(n, c), alpha, scale);
    (void)threads;
}

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC pop_options
#endif

#endif
