# Design
# ------
# Activation, dropout and softmax kernels of the Cython backend, forward and backward side by
# side. Names and semantics are those of ``corenet/kernels/numba_cpu/act.py``; here every output
# is an OUT argument (the wrapper ``corenet/kernels/cython_cpu/act.py`` allocates and returns it)
# and the last argument is ``num_threads``.
#
# Elementwise kernels take flat C-contiguous 1-D views and one ``prange`` over the elements.
# Arithmetic stays in the array's dtype: scalars (slopes, alphas, dropout scale) arrive already
# cast to it and are cast back to ``real`` here (exact). In float32, the kernels that evaluate exp,
# tanh or erf (sigmoid, silu, tanh, gelu, elu) and the clamps of relu6, hardsigmoid and hardswish
# (nested selects: scalar, or SSE2 blends, from the loops here) run the range kernels of ``act_math.h`` (branch-free
# exp/expm1/tanh/erf that vectorise, compiled for AVX-512, AVX2 and SSE2, the same formulas as
# Numba's ``_vmath.py``) over fixed chunks of ``CHUNK`` elements, one task each; float64 calls libm.
# Where a formula has two sides (sigmoid's sign, elu's x > 0), both are computed into separate
# temporaries and then selected: an if/else keeps gcc scalar.
# Softmax kernels take ``(P, K, Q)`` views (``K`` = the softmax axis): one task per ``p``, ``k``
# outer and the contiguous ``q`` inner, the sums in float64 in per-thread buffers.
# relu6, hardsigmoid, hardswish and silu (the mobile architectures') repeat PyTorch's CPU
# arithmetic, kinks and NaN included (see ``corenet/functional/act_mobile.py``). ``drop_path_*``
# take ``(N, L)`` views and one keep flag per sample (one task per sample); ``channel_shuffle``
# transposes an ``(N, A, B, L)`` view into ``(N, B, A, L)`` (one task per output row ``(n, b)``).
# Every output element is computed by exactly one task: no races, no thread-count dependence.

from cython.parallel cimport parallel, prange
from libc.math cimport INFINITY, erf, exp, expm1, fabs, log, tanh
from libc.stdlib cimport abort, free, malloc

from ._types cimport real


cdef extern from "act_math.h" nogil:
    # float32 range kernels: y[i] = f(x[i]) / gx[i] = f(gy[i], x[i]) for i < n (see act_math.h)
    void cn_sigmoid_f32(const float* x, float* y, Py_ssize_t n)
    void cn_silu_f32(const float* x, float* y, Py_ssize_t n)
    void cn_silu_grad_f32(const float* gy, const float* x, float* gx, Py_ssize_t n)
    void cn_tanh_f32(const float* x, float* y, Py_ssize_t n)
    void cn_gelu_f32(const float* x, float* y, Py_ssize_t n)
    void cn_gelu_grad_f32(const float* gy, const float* x, float* gx, Py_ssize_t n)
    void cn_gelu_tanh_f32(const float* x, float* y, Py_ssize_t n)
    void cn_gelu_tanh_grad_f32(const float* gy, const float* x, float* gx, Py_ssize_t n)
    void cn_relu6_f32(const float* x, float* y, Py_ssize_t n)
    void cn_hardsigmoid_f32(const float* x, float* y, Py_ssize_t n)
    void cn_hardswish_f32(const float* x, float* y, Py_ssize_t n)
    void cn_elu_f32(const float* x, float* y, Py_ssize_t n, float alpha, float scale)
    void cn_elu_grad_f32(const float* gy, const float* x, float* gx, Py_ssize_t n, float alpha, float scale)


ctypedef void (*map1_f32)(const float*, float*, Py_ssize_t) noexcept nogil
ctypedef void (*map2_f32)(const float*, const float*, float*, Py_ssize_t) noexcept nogil

# elements per task of the float32 range kernels: a multiple of every vector length, and small
# enough (64 KiB) that two threads share out a few-thousand-element tensor
cdef enum:
    CHUNK = 16384


cdef inline Py_ssize_t _chunks(Py_ssize_t n) noexcept nogil:
    return (n + CHUNK - 1) // CHUNK


cdef inline Py_ssize_t _len(Py_ssize_t n, Py_ssize_t c) noexcept nogil:
    return CHUNK if n - c * CHUNK > CHUNK else n - c * CHUNK


cdef inline int _team(int num_threads, Py_ssize_t n) noexcept nogil:
    """No more threads than chunks: a thread without a chunk would only be woken and waited for."""
    cdef Py_ssize_t c = _chunks(n)
    return num_threads if c >= num_threads else (<int>c if c > 0 else 1)


cdef void _map1(map1_f32 f, const float[::1] x, float[::1] y, int num_threads) noexcept:
    cdef Py_ssize_t c, n = x.shape[0]
    for c in prange(_chunks(n), nogil=True, schedule="static", num_threads=_team(num_threads, n)):
        f(&x[c * CHUNK], &y[c * CHUNK], _len(n, c))


cdef void _map2(map2_f32 f, const float[::1] gy, const float[::1] x, float[::1] gx, int num_threads) noexcept:
    cdef Py_ssize_t c, n = x.shape[0]
    for c in prange(_chunks(n), nogil=True, schedule="static", num_threads=_team(num_threads, n)):
        f(&gy[c * CHUNK], &x[c * CHUNK], &gx[c * CHUNK], _len(n, c))


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
    cdef Py_ssize_t i, c, n = x.shape[0]
    cdef real v, m, r, e, a = <real>alpha, s = <real>scale
    if real is float:
        for c in prange(_chunks(n), nogil=True, schedule="static", num_threads=_team(num_threads, n)):
            cn_elu_f32(&x[c * CHUNK], &y[c * CHUNK], _len(n, c), a, s)
    else:
        for i in prange(n, nogil=True, schedule="static", num_threads=num_threads):
            v = x[i]
            m = 0 if v > 0 else v  # both sides computed, then selected (NaN kept)
            r = s * v
            e = s * a * expm1(m)
            y[i] = r if v > 0 else e


def elu_backward(const real[::1] gy, const real[::1] x, double alpha, double scale, real[::1] gx,
                 int num_threads):
    cdef Py_ssize_t i, c, n = x.shape[0]
    cdef real v, m, g, r, e, a = <real>alpha, s = <real>scale
    if real is float:
        for c in prange(_chunks(n), nogil=True, schedule="static", num_threads=_team(num_threads, n)):
            cn_elu_grad_f32(&gy[c * CHUNK], &x[c * CHUNK], &gx[c * CHUNK], _len(n, c), a, s)
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
        _map1(cn_gelu_tanh_f32 if tanh_approx else cn_gelu_f32, x, y, num_threads)
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
        _map2(cn_gelu_tanh_grad_f32 if tanh_approx else cn_gelu_grad_f32, gy, x, gx, num_threads)
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
        _map1(cn_sigmoid_f32, x, y, num_threads)
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
        _map1(cn_tanh_f32, x, y, num_threads)
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


# ------------------------------------------------------ relu6, hardsigmoid, hardswish, silu

def relu6_forward(const real[::1] x, real[::1] y, int num_threads):
    """``min(max(x, 0), 6)``; NaN and -0 pass through, as in PyTorch's hardtanh."""
    cdef Py_ssize_t i
    cdef real v, zero = 0.0, six = 6.0
    if real is float:  # the range kernel: vectorised for the CPU's widest vectors (see act_math.h)
        _map1(cn_relu6_f32, x, y, num_threads)
    else:
        for i in prange(x.shape[0], nogil=True, schedule="static", num_threads=num_threads):
            v = x[i]
            y[i] = zero if v < zero else (six if v > six else v)


def relu6_backward(const real[::1] gy, const real[::1] y, real[::1] gx, int num_threads):
    """``gy`` where ``0 < x < 6`` (read from the output: ``0 < y < 6`` exactly there), else 0 (NaN too)."""
    cdef Py_ssize_t i
    cdef real g, v
    for i in prange(gy.shape[0], nogil=True, schedule="static", num_threads=num_threads):
        g = gy[i]
        v = y[i]
        gx[i] = g if (v > 0 and v < 6) else 0


def hardsigmoid_forward(const real[::1] x, real[::1] y, int num_threads):
    """``min(max(x + 3, 0), 6) / 6``."""
    cdef Py_ssize_t i
    cdef real v, zero = 0.0, three = 3.0, six = 6.0
    if real is float:  # the range kernel: vectorised for the CPU's widest vectors (see act_math.h)
        _map1(cn_hardsigmoid_f32, x, y, num_threads)
    else:
        for i in prange(x.shape[0], nogil=True, schedule="static", num_threads=num_threads):
            v = x[i] + three
            y[i] = (zero if v < zero else (six if v > six else v)) / six


def hardsigmoid_backward(const real[::1] gy, const real[::1] x, real[::1] gx, int num_threads):
    """``gy / 6`` where ``-3 < x < 3``, else 0."""
    cdef Py_ssize_t i
    cdef real g, v, sixth = 1.0 / 6.0
    for i in prange(gy.shape[0], nogil=True, schedule="static", num_threads=num_threads):
        g = gy[i] * sixth
        v = x[i]
        gx[i] = g if (v > -3 and v < 3) else 0


def hardswish_forward(const real[::1] x, real[::1] y, int num_threads):
    """``x * min(max(x + 3, 0), 6) / 6``."""
    cdef Py_ssize_t i
    cdef real v, r, zero = 0.0, three = 3.0, six = 6.0
    if real is float:  # the range kernel: vectorised for the CPU's widest vectors (see act_math.h)
        _map1(cn_hardswish_f32, x, y, num_threads)
    else:
        for i in prange(x.shape[0], nogil=True, schedule="static", num_threads=num_threads):
            v = x[i]
            r = v + three
            y[i] = v * (zero if r < zero else (six if r > six else r)) / six


def hardswish_backward(const real[::1] gy, const real[::1] x, real[::1] gx, int num_threads):
    """0 where ``x <= -3``, ``gy`` where ``x >= 3``, else ``gy * (x / 3 + 1/2)`` (NaN for NaN)."""
    cdef Py_ssize_t i
    cdef real g, v, r, d, zero = 0.0, three = 3.0, half = 0.5
    for i in prange(gy.shape[0], nogil=True, schedule="static", num_threads=num_threads):
        g = gy[i]
        v = x[i]
        r = g * (v / three + half)  # every value computed, then selected: gcc vectorises it (if/elif
        d = g if v >= three else r  # branches, or r reassigned, cost 30x on mixed signs)
        gx[i] = zero if v <= -three else d


def silu_forward(const real[::1] x, real[::1] y, int num_threads):
    """``x / (1 + exp(-x))`` (exp overflows to inf for very negative x: the result is -0)."""
    cdef Py_ssize_t i
    cdef real v, one = 1.0
    if real is float:
        _map1(cn_silu_f32, x, y, num_threads)
    else:
        for i in prange(x.shape[0], nogil=True, schedule="static", num_threads=num_threads):
            v = x[i]
            y[i] = v / (one + exp(-v))


def silu_backward(const real[::1] gy, const real[::1] x, real[::1] gx, int num_threads):
    """``gy * s * (1 + x * (1 - s))`` with ``s = sigmoid(x)``."""
    cdef Py_ssize_t i
    cdef real v, s, one = 1.0
    if real is float:
        _map2(cn_silu_grad_f32, gy, x, gx, num_threads)
    else:
        for i in prange(gy.shape[0], nogil=True, schedule="static", num_threads=num_threads):
            v = x[i]
            s = one / (one + exp(-v))
            gx[i] = gy[i] * s * (one + v * (one - s))


# ----------------------------------------------------------- drop path, channel shuffle

def drop_path_forward(const real[:, ::1] x, const unsigned char[::1] keep, double scale, real[:, ::1] y,
                      int num_threads):
    """``y[n] = x[n] * scale`` where ``keep[n]`` (uint8) is 1, else 0; ``x (N, L)``."""
    cdef Py_ssize_t n, j, L = x.shape[1]
    cdef real s = <real>scale
    for n in prange(x.shape[0], nogil=True, schedule="static", num_threads=num_threads):
        if keep[n]:
            for j in range(L):
                y[n, j] = x[n, j] * s
        else:
            for j in range(L):
                y[n, j] = 0


def channel_shuffle(const real[:, :, :, ::1] x, real[:, :, :, ::1] y, int num_threads):
    """``y[n, b, a, :] = x[n, a, b, :]`` for ``x (N, A, B, L)``, ``y (N, B, A, L)``."""
    cdef Py_ssize_t A = x.shape[1], B = x.shape[2], L = x.shape[3]
    cdef Py_ssize_t t, n, b, a, j
    for t in prange(x.shape[0] * B, nogil=True, schedule="static", num_threads=num_threads):
        n = t // B
        b = t - n * B
        for a in range(A):
            for j in range(L):
                y[n, b, a, j] = x[n, a, b, j]
