# Design
# ------
# Activation, dropout and softmax kernels of the Cython backend, forward and backward side by
# side. Names and semantics are those of ``corenet/kernels/numba_cpu/act.py``; here every output
# is an OUT argument (the wrapper ``corenet/kernels/cython_cpu/act.py`` allocates and returns it)
# and the last argument is ``num_threads``. The mobile architectures' kernels (relu6, hardsigmoid,
# hardswish, silu, drop path, channel shuffle) are in ``act_mobile.pyx``.
#
# Elementwise kernels take flat C-contiguous 1-D views and one ``prange`` over the elements.
# Arithmetic stays in the array's dtype: scalars (slopes, alphas, dropout scale) arrive already
# cast to it and are cast back to ``real`` here (exact). In float32, the kernels that evaluate exp,
# tanh or erf (sigmoid, tanh, gelu, elu) run the range kernels of ``act_math.h`` (branch-free
# exp/expm1/tanh/erf that vectorise, compiled for AVX-512, AVX2 and SSE2, the same formulas as
# Numba's ``_vmath.py``) on its chunked OpenMP runners; float64 calls libm in the loops here.
# Where a formula has two sides (sigmoid's sign, elu's x > 0), both are computed into separate
# temporaries and then selected: an if/else keeps gcc scalar.
# Softmax kernels take ``(P, K, Q)`` views (``K`` = the softmax axis): one task per ``p``, ``k``
# outer and the contiguous ``q`` inner, the sums in float64 in per-thread buffers.
# Every output element is computed by exactly one task: no races, no thread-count dependence.

from cython.parallel cimport parallel, prange
from libc.math cimport INFINITY, erf, exp, expm1, fabs, log, tanh
from libc.stdlib cimport abort, free, malloc

from ._types cimport real


cdef extern from "act_math.h" nogil:
    # float32 range kernels (y[i] = f(x[i]), gx[i] = f(gy[i], x[i])) and the chunked OpenMP runners
    ctypedef void (*cn_map1)(const float*, float*, Py_ssize_t)
    ctypedef void (*cn_map2)(const float*, const float*, float*, Py_ssize_t)
    void cn_sigmoid_f32(const float* x, float* y, Py_ssize_t n)
    void cn_tanh_f32(const float* x, float* y, Py_ssize_t n)
    void cn_gelu_f32(const float* x, float* y, Py_ssize_t n)
    void cn_gelu_grad_f32(const float* gy, const float* x, float* gx, Py_ssize_t n)
    void cn_gelu_tanh_f32(const float* x, float* y, Py_ssize_t n)
    void cn_gelu_tanh_grad_f32(const float* gy, const float* x, float* gx, Py_ssize_t n)
    void cn_run1(cn_map1 f, const float* x, float* y, Py_ssize_t n, int threads)
    void cn_run2(cn_map2 f, const float* gy, const float* x, float* gx, Py_ssize_t n, int threads)
    void cn_run_elu(const float* x, float* y, Py_ssize_t n, float alpha, float scale, int threads)
    void cn_run_elu_grad(const float* gy, const float* x, float* gx, Py_ssize_t n, float alpha, float scale,
                         int threads)


# ------------------------------------------------------------------------------- relu family

def relu_forward(const real[::1] x, real[::1] y, int num_threads):
    cdef Py_ssize_t i
    cdef real v
    for i in prange(x.shape[0], nogil=True, schedule="static", num_threads=num_threads):
        v = x[i]
        y[i] = 0 if v <= 0 else v  # NaN propagates (NaN <= 0 is false)


def relu_backward(const real[::1] gy, const real[::1] y, real[::1] gx, int num_threads):
    cdef Py_ssize_t i
    cdef real g
    for i in prange(gy.shape[0], nogil=True, schedule="static", num_threads=num_threads):
        g = gy[i]  # loaded unconditionally, so the compiler selects instead of branching
        gx[i] = g if y[i] > 0 else 0


def leaky_relu_forward(const real[::1] x, double slope, real[::1] y, int num_threads):
    cdef Py_ssize_t i
    cdef real v, s = <real>slope
    for i in prange(x.shape[0], nogil=True, schedule="static", num_threads=num_threads):
        v = x[i]
        y[i] = v if v > 0 else v * s


def leaky_relu_backward(const real[::1] gy, const real[::1] x, double slope, real[::1] gx, int num_threads):
    cdef Py_ssize_t i
    cdef real g, s = <real>slope
    for i in prange(gy.shape[0], nogil=True, schedule="static", num_threads=num_threads):
        g = gy[i]
        gx[i] = g if x[i] > 0 else g * s


def elu_forward(const real[::1] x, double alpha, double scale, real[::1] y, int num_threads):
    """``scale * (x if x > 0 else alpha * (exp(x) - 1))`` (SELU is ELU with fixed alpha, scale)."""
    cdef Py_ssize_t i, n = x.shape[0]
    cdef real v, m, r, e, a = <real>alpha, s = <real>scale
    if real is float:
        with nogil:
            cn_run_elu(&x[0], &y[0], n, a, s, num_threads)
    else:
        for i in prange(n, nogil=True, schedule="static", num_threads=num_threads):
            v = x[i]
            m = 0 if v > 0 else v  # both sides computed, then selected (NaN kept)
            r = s * v
            e = s * a * expm1(m)
            y[i] = r if v > 0 else e


def elu_backward(const real[::1] gy, const real[::1] x, double alpha, double scale, real[::1] gx,
                 int num_threads):
    cdef Py_ssize_t i, n = x.shape[0]
    cdef real v, m, g, r, e, a = <real>alpha, s = <real>scale
    if real is float:
        with nogil:
            cn_run_elu_grad(&gy[0], &x[0], &gx[0], n, a, s, num_threads)
    else:
        for i in prange(n, nogil=True, schedule="static", num_threads=num_threads):
            v = x[i]
            g = gy[i]
            m = 0 if v > 0 else v
            r = g * s
            e = g * (s * a * exp(m))
            gx[i] = r if v > 0 else e


# -------------------------------------------------------------------------------------- gelu

def gelu_forward(const real[::1] x, bint tanh_approx, real[::1] y, int num_threads):
    cdef Py_ssize_t i
    cdef real v
    cdef real h = 0.5, one = 1.0, rsqrt2 = 0.7071067811865476
    cdef real k0 = 0.7978845608028654, k1 = 0.044715  # sqrt(2/pi) and the cubic coefficient
    if real is float:
        with nogil:
            cn_run1(cn_gelu_tanh_f32 if tanh_approx else cn_gelu_f32, &x[0], &y[0], x.shape[0], num_threads)
    elif tanh_approx:
        for i in prange(x.shape[0], nogil=True, schedule="static", num_threads=num_threads):
            v = x[i]
            y[i] = h * v * (one + tanh(k0 * (v + k1 * v * v * v)))
    else:
        for i in prange(x.shape[0], nogil=True, schedule="static", num_threads=num_threads):
            v = x[i]
            y[i] = h * v * (one + erf(v * rsqrt2))


def gelu_backward(const real[::1] gy, const real[::1] x, bint tanh_approx, real[::1] gx, int num_threads):
    cdef Py_ssize_t i
    cdef real v, t, d
    cdef real h = 0.5, one = 1.0, rsqrt2 = 0.7071067811865476, rsqrt2pi = 0.3989422804014327
    cdef real k0 = 0.7978845608028654, k1 = 0.044715, k3 = 3 * 0.044715
    if real is float:
        with nogil:
            cn_run2(cn_gelu_tanh_grad_f32 if tanh_approx else cn_gelu_grad_f32, &gy[0], &x[0], &gx[0], x.shape[0],
                    num_threads)
    elif tanh_approx:
        for i in prange(x.shape[0], nogil=True, schedule="static", num_threads=num_threads):
            v = x[i]
            t = tanh(k0 * (v + k1 * v * v * v))
            d = h * (one + t) + h * v * (one - t * t) * k0 * (one + k3 * v * v)
            gx[i] = gy[i] * d
    else:
        for i in prange(x.shape[0], nogil=True, schedule="static", num_threads=num_threads):
            v = x[i]
            d = h * (one + erf(v * rsqrt2)) + v * rsqrt2pi * exp(-h * v * v)
            gx[i] = gy[i] * d


# ----------------------------------------------------------------------------- sigmoid, tanh

def sigmoid_forward(const real[::1] x, real[::1] y, int num_threads):
    cdef Py_ssize_t i
    cdef real v, e, n, one = 1.0
    if real is float:
        with nogil:
            cn_run1(cn_sigmoid_f32, &x[0], &y[0], x.shape[0], num_threads)
    else:
        for i in prange(x.shape[0], nogil=True, schedule="static", num_threads=num_threads):
            v = x[i]
            e = exp(-fabs(v))  # never overflows
            n = one if v >= 0 else e  # 1 / (1 + exp(-v)) for v >= 0, exp(v) / (1 + exp(v)) below
            y[i] = n / (one + e)


def sigmoid_backward(const real[::1] gy, const real[::1] y, real[::1] gx, int num_threads):
    cdef Py_ssize_t i
    cdef real one = 1.0
    for i in prange(gy.shape[0], nogil=True, schedule="static", num_threads=num_threads):
        gx[i] = gy[i] * y[i] * (one - y[i])


def tanh_forward(const real[::1] x, real[::1] y, int num_threads):
    cdef Py_ssize_t i
    if real is float:
        with nogil:
            cn_run1(cn_tanh_f32, &x[0], &y[0], x.shape[0], num_threads)
    else:
        for i in prange(x.shape[0], nogil=True, schedule="static", num_threads=num_threads):
            y[i] = tanh(x[i])


def tanh_backward(const real[::1] gy, const real[::1] y, real[::1] gx, int num_threads):
    cdef Py_ssize_t i
    cdef real one = 1.0
    for i in prange(gy.shape[0], nogil=True, schedule="static", num_threads=num_threads):
        gx[i] = gy[i] * (one - y[i] * y[i])


# ----------------------------------------------------------------------------------- dropout

def dropout_forward(const real[::1] x, const unsigned char[::1] keep, double scale, real[::1] y,
                    int num_threads):
    """``y = x * scale`` where ``keep`` (uint8) is 1, else 0."""
    cdef Py_ssize_t i
    cdef real v, s = <real>scale
    for i in prange(x.shape[0], nogil=True, schedule="static", num_threads=num_threads):
        v = x[i] * s  # computed unconditionally, so the compiler selects instead of branching
        y[i] = v if keep[i] else 0


def dropout_backward(const real[::1] gy, const unsigned char[::1] keep, double scale, real[::1] gx,
                     int num_threads):
    cdef Py_ssize_t i
    cdef real g, s = <real>scale
    for i in prange(gy.shape[0], nogil=True, schedule="static", num_threads=num_threads):
        g = gy[i] * s
        gx[i] = g if keep[i] else 0


# ----------------------------------------------------------------------------------- softmax

cdef double* _alloc(Py_ssize_t n) noexcept nogil:
    cdef double* buf = <double*> malloc((n if n > 0 else 1) * sizeof(double))
    if buf == NULL:
        abort()
    return buf


def softmax_forward(const real[:, :, ::1] x, bint log_, real[:, :, ::1] y, int num_threads):
    """Softmax (or log-softmax when ``log_``) over axis 1 of ``x (P, K, Q)``."""
    cdef Py_ssize_t P = x.shape[0], K = x.shape[1], Q = x.shape[2]
    cdef Py_ssize_t p, k, q
    cdef double v, e
    cdef double* m = NULL
    cdef double* s = NULL
    if P * K * Q == 0:
        return
    with nogil, parallel(num_threads=num_threads):
        m = _alloc(Q)  # per-thread running max and sum over k, one per q
        s = _alloc(Q)
        for p in prange(P, schedule="static"):
            for q in range(Q):
                m[q] = -INFINITY
                s[q] = 0.0
            for k in range(K):
                for q in range(Q):
                    v = x[p, k, q]
                    if v > m[q]:
                        m[q] = v
            for k in range(K):
                for q in range(Q):
                    e = exp(<double>x[p, k, q] - m[q])
                    s[q] += e
                    if not log_:
                        y[p, k, q] = <real>e
            if log_:
                for q in range(Q):
                    s[q] = m[q] + log(s[q])
                for k in range(K):
                    for q in range(Q):
                        y[p, k, q] = <real>(<double>x[p, k, q] - s[q])
            else:
                for q in range(Q):
                    s[q] = 1.0 / s[q]
                for k in range(K):
                    for q in range(Q):
                        y[p, k, q] = <real>(y[p, k, q] * s[q])
        free(m)
        free(s)


def softmax_backward(const real[:, :, ::1] gy, const real[:, :, ::1] y, bint log_, real[:, :, ::1] gx,
                     int num_threads):
    """softmax: ``gx = y * (gy - sum_k gy*y)``; log-softmax: ``gx = gy - exp(y) * sum_k gy``."""
    cdef Py_ssize_t P = y.shape[0], K = y.shape[1], Q = y.shape[2]
    cdef Py_ssize_t p, k, q
    cdef double* s = NULL
    if P * K * Q == 0:
        return
    with nogil, parallel(num_threads=num_threads):
        s = _alloc(Q)  # per-thread sums over k, one per q
        for p in prange(P, schedule="static"):
            for q in range(Q):
                s[q] = 0.0
            for k in range(K):
                for q in range(Q):
                    if log_:
                        s[q] += <double>gy[p, k, q]
                    else:
                        s[q] += <double>gy[p, k, q] * <double>y[p, k, q]
            for k in range(K):
                for q in range(Q):
                    if log_:
                        gx[p, k, q] = <real>(<double>gy[p, k, q] - exp(<double>y[p, k, q]) * s[q])
                    else:
                        gx[p, k, q] = <real>(<double>y[p, k, q] * (<double>gy[p, k, q] - s[q]))
        free(s)
