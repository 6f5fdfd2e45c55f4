/* Register-bound FMA loop: the compute roof of this CPU (benchmarks/_harness.py compiles and calls it).
 *
 * Twelve independent accumulator chains (enough to cover the FMA latency x FMA pipes of current x86
 * cores), each `a = a * b + c` on one SIMD register per iteration: no loads, no stores, so the loop runs
 * at the core's FMA issue rate. One function per ISA via GCC's target attribute, so the file builds with
 * plain `cc -O2` on any x86-64 and on other architectures (where only the generic version exists).
 * fma_run() spreads the loop over `threads` pthreads at once; the caller times it.
 * Flops per call: threads * iters * 12 chains * lanes * 2.
 */
#include <pthread.h>

#define BODY(V)                                                                          \
    V a0 = zero + x, a1 = zero + x * 2, a2 = zero + x * 3, a3 = zero + x * 4;            \
    V a4 = zero + x * 5, a5 = zero + x * 6, a6 = zero + x * 7, a7 = zero + x * 8;        \
    V a8 = zero + x * 9, a9 = zero + x * 10, a10 = zero + x * 11, a11 = zero + x * 12;   \
    V b = zero + mul, c = zero + add;                                                    \
    for (long i = 0; i < iters; i++) {                                                   \
        a0 = a0 * b + c; a1 = a1 * b + c; a2 = a2 * b + c; a3 = a3 * b + c;              \
        a4 = a4 * b + c; a5 = a5 * b + c; a6 = a6 * b + c; a7 = a7 * b + c;              \
        a8 = a8 * b + c; a9 = a9 * b + c; a10 = a10 * b + c; a11 = a11 * b + c;          \
    }                                                                                    \
    V s = ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7)) + ((a8 + a9) + (a10 + a11)); \
    float r = 0;                                                                         \
    for (unsigned k = 0; k < sizeof(V) / sizeof(float); k++) r += s[k];                  \
    return r;

#if defined(__x86_64__) || defined(__i386__)
typedef float v16f __attribute__((vector_size(64)));
typedef float v8f __attribute__((vector_size(32)));

__attribute__((target("avx512f"))) static float loop512(long iters, float x, float mul, float add) {
    v16f zero = {0};
    BODY(v16f)
}

__attribute__((target("avx2,fma"))) static float loop256(long iters, float x, float mul, float add) {
    v8f zero = {0};
    BODY(v8f)
}
#define X86 1
#endif

typedef float v4f __attribute__((vector_size(16)));

static float loop128(long iters, float x, float mul, float add) {
    v4f zero = {0};
    BODY(v4f)
}

/* Widest ISA usable here: 512 (AVX-512F), 256 (AVX2 + FMA), 128 (baseline vectors). */
int fma_widest(void) {
#ifdef X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return 512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return 256;
#endif
    return 128;
}

typedef struct {
    int bits;
    long iters;
    float out;
} job_t;

/* Read through volatiles so the compiler cannot fold the chains; mul < 1 keeps them finite. */
static volatile float g_x = 0.5f, g_mul = 0.999f, g_add = 0.002f;

static void *work(void *p) {
    job_t *j = (job_t *)p;
    float x = g_x, mul = g_mul, add = g_add;
#ifdef X86
    if (j->bits == 512) { j->out = loop512(j->iters, x, mul, add); return 0; }
    if (j->bits == 256) { j->out = loop256(j->iters, x, mul, add); return 0; }
#endif
    j->out = loop128(j->iters, x, mul, add);
    return 0;
}

/* Run the loop on `threads` threads at once (bits as fma_widest reports, or narrower); returns the sum
 * of the results (so nothing is optimised away), or -1 if a thread could not be started. */
double fma_run(int bits, int threads, long iters) {
    enum { MAXT = 256 };
    pthread_t tid[MAXT];
    job_t jobs[MAXT];
    if (threads < 1 || threads > MAXT) return -1;
    for (int t = 0; t < threads; t++) {
        jobs[t].bits = bits;
        jobs[t].iters = iters;
        jobs[t].out = 0;
    }
    int started = 1;
    for (int t = 1; t < threads; t++) {
        if (pthread_create(&tid[t], 0, work, &jobs[t]) != 0) { started = t; break; }
        started = t + 1;
    }
    work(&jobs[0]);
    double total = 0;
    for (int t = 1; t < started; t++) pthread_join(tid[t], 0);
    for (int t = 0; t < threads; t++) total += jobs[t].out;
    return started == threads ? total : -1;
}
