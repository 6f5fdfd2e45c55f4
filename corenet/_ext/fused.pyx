# Design
# ------
# Fused elementwise epilogues of the Cython backend, for the contract of
# ``corenet/kernels/numba_cpu/fused.py``: batch norm + ReLU (or ReLU6) forward, the batch norm +
# ReLU (or ReLU6) input gradients, add + ReLU. Each is the composition of this backend's own norm and act kernels with
# the intermediate kept in a register, the same arithmetic in the same order, so fused and unfused
# results are identical bit for bit. (The masked backward reduction is composed in
# ``corenet/kernels/cython_cpu/fused.py`` instead: see there.) OUT arguments last but one; the
# last is ``num_threads``.
#
# Layout and threads as in norm.pyx: ``(N, C, L)`` views split into ``N*C`` blocks, one task per
# block, each writing only its own block of the output. No result depends on the thread count.

from cython.parallel cimport prange

from ._types cimport real


cdef inline real _relu_grad(real g, real y) noexcept nogil:
    # as act.pyx's relu_backward stores it: gy where y > 0, else 0 (a NaN gy where y <= 0 gives 0)
    return g if y > 0 else 0


cdef inline real _relu6_grad(real g, real y) noexcept nogil:
    # as act_mobile.pyx's relu6_backward stores it: gy where 0 < y < 6, else 0 (NaN y too)
    return g if (y > 0 and y < 6) else 0


def bn_relu_forward(const real[:, :, ::1] x, const real[::1] mean, const real[::1] scale,
                    const real[::1] shift, real[:, :, ::1] y, int num_threads):
    """IN x (N, C, L), mean/scale/shift (C,); OUT ``y = relu((x - mean)*scale + shift)``."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], L = x.shape[2]
    cdef Py_ssize_t t, c, i
    cdef real m, s, b, v
    cdef const real* xb
    cdef real* yb
    if N * C * L == 0:
        return
    for t in prange(N * C, nogil=True, schedule="static", num_threads=num_threads):
        c = t % C
        m = mean[c]
        s = scale[c]
        b = shift[c]
        xb = &x[0, 0, 0] + t * L
        yb = &y[0, 0, 0] + t * L
        for i in range(L):
            v = (xb[i] - m) * s + b
            yb[i] = 0 if v <= 0 else v  # NaN propagates, as relu_forward


def bn_relu_backward_gx(const real[:, :, ::1] gy, const real[:, :, ::1] y, const real[:, :, ::1] x,
                        const real[::1] mean, const real[::1] a, const real[::1] b, const real[::1] d,
                        real[:, :, ::1] gx, int num_threads):
    """OUT ``gx = a*g + b*(x - mean) + d`` with ``g = gy * (y > 0)``; coefficients (C,) of x's dtype."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], L = x.shape[2]
    cdef Py_ssize_t t, c, i
    cdef real m, ac, bc, dc
    cdef const real* gb
    cdef const real* yb
    cdef const real* xb
    cdef real* ob
    if N * C * L == 0:
        return
    for t in prange(N * C, nogil=True, schedule="static", num_threads=num_threads):
        c = t % C
        m = mean[c]
        ac = a[c]
        bc = b[c]
        dc = d[c]
        gb = &gy[0, 0, 0] + t * L
        yb = &y[0, 0, 0] + t * L
        xb = &x[0, 0, 0] + t * L
        ob = &gx[0, 0, 0] + t * L
        for i in range(L):
            ob[i] = ac * _relu_grad(gb[i], yb[i]) + bc * (xb[i] - m) + dc


def bn_relu_scale_gx(const real[:, :, ::1] gy, const real[:, :, ::1] y, const real[::1] a,
                     real[:, :, ::1] gx, int num_threads):
    """OUT ``gx = a * g`` with ``g = gy * (y > 0)`` (eval-mode statistics)."""
    cdef Py_ssize_t N = gy.shape[0], C = gy.shape[1], L = gy.shape[2]
    cdef Py_ssize_t t, c, i
    cdef real ac
    cdef const real* gb
    cdef const real* yb
    cdef real* ob
    if N * C * L == 0:
        return
    for t in prange(N * C, nogil=True, schedule="static", num_threads=num_threads):
        c = t % C
        ac = a[c]
        gb = &gy[0, 0, 0] + t * L
        yb = &y[0, 0, 0] + t * L
        ob = &gx[0, 0, 0] + t * L
        for i in range(L):
            ob[i] = ac * _relu_grad(gb[i], yb[i])


def add_relu_forward(const real[::1] a, const real[::1] b, real[::1] y, int num_threads):
    """OUT ``y = relu(a + b)`` for flat arrays of one length."""
    cdef Py_ssize_t n = a.shape[0], i
    cdef real v
    for i in prange(n, nogil=True, schedule="static", num_threads=num_threads):
        v = a[i] + b[i]
        y[i] = 0 if v <= 0 else v


def bn_relu6_forward(const real[:, :, ::1] x, const real[::1] mean, const real[::1] scale,
                     const real[::1] shift, real[:, :, ::1] y, int num_threads):
    """IN x (N, C, L), mean/scale/shift (C,); OUT ``y = relu6((x - mean)*scale + shift)``."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], L = x.shape[2]
    cdef Py_ssize_t t, c, i
    cdef real m, s, b, v, zero = 0.0, six = 6.0
    cdef const real* xb
    cdef real* yb
    if N * C * L == 0:
        return
    for t in prange(N * C, nogil=True, schedule="static", num_threads=num_threads):
        c = t % C
        m = mean[c]
        s = scale[c]
        b = shift[c]
        xb = &x[0, 0, 0] + t * L
        yb = &y[0, 0, 0] + t * L
        for i in range(L):
            v = (xb[i] - m) * s + b
            yb[i] = zero if v < zero else (six if v > six else v)  # as relu6_forward: NaN, -0 pass


def bn_relu6_backward_gx(const real[:, :, ::1] gy, const real[:, :, ::1] y, const real[:, :, ::1] x,
                         const real[::1] mean, const real[::1] a, const real[::1] b, const real[::1] d,
                         real[:, :, ::1] gx, int num_threads):
    """OUT ``gx = a*g + b*(x - mean) + d`` with ``g = gy * (0 < y < 6)``."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], L = x.shape[2]
    cdef Py_ssize_t t, c, i
    cdef real m, ac, bc, dc
    cdef const real* gb
    cdef const real* yb
    cdef const real* xb
    cdef real* ob
    if N * C * L == 0:
        return
    for t in prange(N * C, nogil=True, schedule="static", num_threads=num_threads):
        c = t % C
        m = mean[c]
        ac = a[c]
        bc = b[c]
        dc = d[c]
        gb = &gy[0, 0, 0] + t * L
        yb = &y[0, 0, 0] + t * L
        xb = &x[0, 0, 0] + t * L
        ob = &gx[0, 0, 0] + t * L
        for i in range(L):
            ob[i] = ac * _relu6_grad(gb[i], yb[i]) + bc * (xb[i] - m) + dc


def bn_relu6_scale_gx(const real[:, :, ::1] gy, const real[:, :, ::1] y, const real[::1] a,
                      real[:, :, ::1] gx, int num_threads):
    """OUT ``gx = a * g`` with ``g = gy * (0 < y < 6)`` (eval-mode statistics)."""
    cdef Py_ssize_t N = gy.shape[0], C = gy.shape[1], L = gy.shape[2]
    cdef Py_ssize_t t, c, i
    cdef real ac
    cdef const real* gb
    cdef const real* yb
    cdef real* ob
    if N * C * L == 0:
        return
    for t in prange(N * C, nogil=True, schedule="static", num_threads=num_threads):
        c = t % C
        ac = a[c]
        gb = &gy[0, 0, 0] + t * L
        yb = &y[0, 0, 0] + t * L
        ob = &gx[0, 0, 0] + t * L
        for i in range(L):
            ob[i] = ac * _relu6_grad(gb[i], yb[i])
