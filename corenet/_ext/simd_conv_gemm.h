/* Design
 * ------
 * A GEMM split over OpenMP threads, each part one single-threaded call of the cblas_?gemm of the BLAS
 * that numpy loaded (its address found by the caller, corenet/kernels/_cpu_conv.py). corenet keeps
 * BLAS on one thread and used to split a big GEMM over Python threads (corenet/_blas.py): waking a
 * Python thread and waiting for it costs ~50 us here, as much as the whole product of a 1x1
 * convolution on a 4x4 map at batch 16 (14 M multiply-adds in 120 us per core); an OpenMP team is
 * woken in a few us. Row-major C (M, N) = op(A) @ op(B); the rows of C are split evenly, each
 * thread writes its own rows only.
 */
#ifndef CORENET_SIMD_CONV_GEMM_H
#define CORENET_SIMD_CONV_GEMM_H

#include <stdint.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define CS_ROW_MAJOR 101
#define CS_NO_TRANS 111
#define CS_TRANS 112

typedef void (*cs_sgemm64_fn)(int, int, int, int64_t, int64_t, int64_t, float, const float*, int64_t, const float*,
                              int64_t, float, float*, int64_t);
typedef void (*cs_sgemm32_fn)(int, int, int, int, int, int, float, const float*, int, const float*, int, float,
                              float*, int);
typedef void (*cs_dgemm64_fn)(int, int, int, int64_t, int64_t, int64_t, double, const double*, int64_t,
                              const double*, int64_t, double, double*, int64_t);
typedef void (*cs_dgemm32_fn)(int, int, int, int, int, int, double, const double*, int, const double*, int, double,
                              double*, int);

/* fn: the cblas_sgemm (dbl == 0) or cblas_dgemm (dbl == 1) entry point, with 64-bit (ilp64) or int sizes */
static void cs_gemm_rows(void* fn, int ilp64, int dbl, int ta, int tb, long M, long N, long K, const void* A,
                         long lda, const void* B, long ldb, void* C, long ldc, int nthreads)
{
    const size_t es = dbl ? sizeof(double) : sizeof(float);
    const int TA = ta ? CS_TRANS : CS_NO_TRANS, TB = tb ? CS_TRANS : CS_NO_TRANS;
#pragma omp parallel num_threads(nthreads < 1 ? 1 : nthreads)
    {
#ifdef _OPENMP
        const long t = omp_get_thread_num(), nt = omp_get_num_threads();
#else
        const long t = 0, nt = 1;
#endif
        const long i0 = M * t / nt, m = M * (t + 1) / nt - i0;
        if (m > 0) {
            const char* a = (const char*)A + (size_t)(ta ? i0 : i0 * lda) * es;
            char* c = (char*)C + (size_t)(i0 * ldc) * es;
            if (dbl && ilp64)
                ((cs_dgemm64_fn)fn)(CS_ROW_MAJOR, TA, TB, m, N, K, 1.0, (const double*)a, lda, (const double*)B, ldb,
                                    0.0, (double*)c, ldc);
            else if (dbl)
                ((cs_dgemm32_fn)fn)(CS_ROW_MAJOR, TA, TB, (int)m, (int)N, (int)K, 1.0, (const double*)a, (int)lda,
                                    (const double*)B, (int)ldb, 0.0, (double*)c, (int)ldc);
            else if (ilp64)
                ((cs_sgemm64_fn)fn)(CS_ROW_MAJOR, TA, TB, m, N, K, 1.0f, (const float*)a, lda, (const float*)B, ldb,
                                    0.0f, (float*)c, ldc);
            else
                ((cs_sgemm32_fn)fn)(CS_ROW_MAJOR, TA, TB, (int)m, (int)N, (int)K, 1.0f, (const float*)a, (int)lda,
                                    (const float*)B, (int)ldb, 0.0f, (float*)c, (int)ldc);
        }
    }
}

#endif
