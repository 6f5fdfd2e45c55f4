# Design
# ------
# The act family's kernels for the mobile architectures (Cython backend), beside ``act.pyx`` as
# ``corenet/kernels/numba_cpu/_act_mobile.py`` is beside ``act.py``; ``corenet/kernels/cython_cpu/act.py``
# wraps both. relu6, hardsigmoid, hardswish and silu repeat PyTorch's CPU arithmetic, kinks and
# NaN included (see ``corenet/functional/act_mobile.py``); in float32 their forwards (and silu's
# backward) run the range kernels of ``act_math.h`` on its chunked OpenMP runner (the clamps'
# nested selects and silu's exp stay scalar in a prange loop), float64 the loops here.
# ``drop_path_*`` take ``(N, L)`` views and one keep flag per sample (one task per sample);
# ``channel_shuffle`` transposes an ``(N, A, B, L)`` view into ``(N, B, A, L)`` (one task per
# output row ``(n, b)``). Every output element is computed by exactly one task: no races, no
# thread-count dependence. OUT arguments last but one; the last is ``num_threads``.

from cython.parallel cimport prange
from libc.math cimport exp

from ._types cimport real


cdef extern from "act_math.h" nogil:
    ctypedef void (*cn_map1)(const float*, float*, Py_ssize_t)
    ctypedef void (*cn_map2)(const float*, const float*, float*, Py_ssize_t)
    void cn_relu6_f32(const float* x, float* y, Py_ssize_t n)
    void cn_hardsigmoid_f32(const float* x, float* y, Py_ssize_t n)
    void cn_hardswish_f32(const float* x, float* y, Py_ssize_t n)
    void cn_silu_f32(const float* x, float* y, Py_ssize_t n)
    void cn_silu_grad_f32(const float* gy, const float* x, float* gx, Py_ssize_t n)
    void cn_run1(cn_map1 f, const float* x, float* y, Py_ssize_t n, int threads)
    void cn_run2(cn_map2 f, const float* gy, const float* x, float* gx, Py_ssize_t n, int threads)


# ------------------------------------------------------ relu6, hardsigmoid, hardswish, silu

def relu6_forward(const real[::1] x, real[::1] y, int num_threads):
    """``min(max(x, 0), 6)``; NaN and -0 pass through, as in PyTorch's hardtanh."""
    cdef Py_ssize_t i
    cdef real v, zero = 0.0, six = 6.0
    if real is float:
        with nogil:
            cn_run1(cn_relu6_f32, &x[0], &y[0], x.shape[0], num_threads)
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
    if real is float:
        with nogil:
            cn_run1(cn_hardsigmoid_f32, &x[0], &y[0], x.shape[0], num_threads)
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
    if real is float:
        with nogil:
            cn_run1(cn_hardswish_f32, &x[0], &y[0], x.shape[0], num_threads)
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
        with nogil:
            cn_run1(cn_silu_f32, &x[0], &y[0], x.shape[0], num_threads)
    else:
        for i in prange(x.shape[0], nogil=True, schedule="static", num_threads=num_threads):
            v = x[i]
            y[i] = v / (one + exp(-v))


def silu_backward(const real[::1] gy, const real[::1] x, real[::1] gx, int num_threads):
    """``gy * s * (1 + x * (1 - s))`` with ``s = sigmoid(x)``."""
    cdef Py_ssize_t i
    cdef real v, s, one = 1.0
    if real is float:
        with nogil:
            cn_run2(cn_silu_grad_f32, &gy[0], &x[0], &gx[0], x.shape[0], num_threads)
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
