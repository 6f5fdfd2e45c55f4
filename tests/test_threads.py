"""Parallel kernels under two threads, on inputs small enough to read (issue 12): the primitives.

The other kernel tests use inputs below the size at which a kernel goes parallel and call each
case once, so they could not see a race. Here ``config.set_parallel_threshold(0)`` (the
``two_threads`` fixture of conftest.py) forces every CPU kernel of both backends onto 2 threads
whatever the size, and each call is repeated: every primitive of
``corenet/kernels/{numba_cpu,cython_cpu}`` is run with 1 thread and then REPEAT times with 2, into
output buffers followed by a guard region; the guard must stay untouched and the 2-thread results
must equal the 1-thread ones bit for bit (every kernel's contract says its results do not depend
on the thread count). The output itself is prefilled with a different sentinel on each run, so an
element a kernel forgets to write shows too.

The functional ops on 2 threads against the oracles, and 2-thread training: tests/test_threads_ops.py.
The OpenMP build (sleeping workers, no shared local written through its address in a prange):
tests/test_openmp.py.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import CPU_BACKENDS

import corenet
from corenet import kernels

REPEAT = 5  # calls per case on 2 threads: a race rarely shows on every call
GUARD = 61  # elements of guard region after each output buffer (odd: not a whole vector)
SENTINELS = (7777.25, -3333.5)  # float outputs; int32 outputs get the int part


def _threads(n):
    corenet.set_num_threads(n)


# ------------------------------------------------------------------------- primitive cases
class Out:
    """Placeholder for an output argument: the harness passes a guarded buffer of this shape."""

    def __init__(self, shape, dtype):
        self.shape, self.dtype = tuple(shape), np.dtype(dtype)


def _call_guarded(fn, args, sentinel):
    """Call ``fn`` with each ``Out`` replaced by the head of a bigger buffer; check the tails.

    Returns the outputs (copies) followed by whatever ``fn`` returned (allocating kernels)."""
    real, bufs = [], []
    for a in args:
        if isinstance(a, Out):
            n = math.prod(a.shape)
            fill = int(sentinel) if a.dtype.kind == "i" else sentinel
            buf = np.full(n + GUARD, fill, a.dtype)
            bufs.append((buf, n, fill))
            real.append(buf[:n].reshape(a.shape))
        else:
            real.append(a)
    ret = fn(*real)
    for k, (buf, n, fill) in enumerate(bufs):
        changed = np.count_nonzero(buf[n:] != fill)
        assert changed == 0, f"{fn.__name__} wrote past output {k}: {changed} of {GUARD} guard elements changed"
    outs = [buf[:n].copy() for buf, n, _ in bufs]
    if ret is not None and not bufs:  # a kernel that allocates its results (bn_stats, ...)
        outs += [np.asarray(r).copy() for r in (ret if isinstance(ret, tuple) else (ret,))]
    return outs


def _conv_geometry(H, W, kh, kw, s, p, d):
    """(ho, wo) of a convolution with pads ``p = (top, bottom, left, right)``."""
    ho = (H + p[0] + p[1] - d[0] * (kh - 1) - 1) // s[0] + 1
    wo = (W + p[2] + p[3] - d[1] * (kw - 1) - 1) // s[1] + 1
    return ho, wo


# (name, H, W, kh, kw, stride, pads (t, b, l, r), dilation): the two repros, in which the
# left padding is wider than the whole output row, and an ordinary strided one.
CONV_GEOMS = [
    ("same_dil3_1x1", 1, 1, 3, 3, (1, 1), (3, 3, 3, 3), (3, 3)),
    ("pad5_dil4", 3, 1, 1, 2, (1, 1), (0, 0, 5, 0), (1, 4)),
    ("strided", 7, 6, 3, 2, (2, 1), (1, 0, 2, 1), (1, 2)),
]


def _conv_cases(rng, dt):
    cases = []
    for name, H, W, kh, kw, s, p, d in CONV_GEOMS:
        # C = 3 (odd), N = 2: an im2col segment that zero-fills past its end (issue 12, item 1)
        # then lies just before the boundary of the two threads' static halves of the tasks
        N, C, groups, cout = 2, 3, 3, 6
        ho, wo = _conv_geometry(H, W, kh, kw, s, p, d)
        x = rng.standard_normal((N, C, H, W)).astype(dt)
        col = rng.standard_normal((C * kh * kw, N * ho * wo)).astype(dt)
        w = rng.standard_normal((cout, C // groups, kh, kw)).astype(dt)
        w1 = rng.standard_normal((cout, C, kh, kw)).astype(dt)
        b = rng.standard_normal(cout).astype(dt)
        gy = rng.standard_normal((N, cout, ho, wo)).astype(dt)
        wd = rng.standard_normal((C, 1, kh, kw)).astype(dt)
        gyd = rng.standard_normal((N, C, ho, wo)).astype(dt)
        geo = (s[0], s[1], p[0], p[2], d[0], d[1])
        cases += [
            (f"conv.im2col[{name}]", "conv", "im2col", [x, kh, kw, *geo, ho, wo, Out(col.shape, dt)]),
            (f"conv.col2im[{name}]", "conv", "col2im", [col, kh, kw, *geo, ho, wo, Out(x.shape, dt)]),
            (f"conv.direct_forward[{name}]", "conv", "direct_forward",
             [x, w, b, groups, *geo, Out((N, cout, ho, wo), dt)]),
            (f"conv.direct_backward_input[{name}]", "conv", "direct_backward_input",
             [gy, w, groups, *geo, Out(x.shape, dt)]),
            (f"conv.direct_backward_weight[{name}]", "conv", "direct_backward_weight",
             [x, gy, groups, *geo, Out(w.shape, dt)]),
            # the Cython backend's register-tiled kernels (groups = 1; absent from Numba's)
            (f"conv.simd_forward[{name}]", "conv", "simd_forward", [x, w1, b, s, p, d, Out(gy.shape, dt)]),
            (f"conv.simd_wgrad[{name}]", "conv", "simd_wgrad", [x, gy, s, p, d, Out(w1.shape, dt)]),
            # depthwise (one channel per group): x's 3 channels, multiplier 1
            (f"conv.simd_dw_forward[{name}]", "conv", "simd_dw_forward",
             [x, wd, b[:C].copy(), s, p, d, Out((N, C, ho, wo), dt)]),
            (f"conv.simd_dw_wgrad[{name}]", "conv", "simd_dw_wgrad", [x, gyd, s, p, d, Out(wd.shape, dt)]),
            # depthwise with channels as the vector lanes (small maps; any stride)
            (f"conv.simd_dwc_forward[{name}]", "conv", "simd_dwc_forward",
             [x, wd, b[:C].copy(), s, p, d, Out((N, C, ho, wo), dt)]),
            (f"conv.simd_dwc_backward_input[{name}]", "conv", "simd_dwc_backward_input",
             [gyd, wd, s, p, d, Out(x.shape, dt)]),
            (f"conv.simd_dwc_wgrad[{name}]", "conv", "simd_dwc_wgrad", [x, gyd, s, p, d, Out(wd.shape, dt)]),
        ]
    return cases


def _pool_cases(rng, dt):
    N, C, H, W = 2, 3, 7, 6
    kh, kw, sh, sw, pt, pb, pl, pr, dh, dw = 3, 2, 2, 1, 1, 1, 1, 0, 1, 2
    ho, wo = _conv_geometry(H, W, kh, kw, (sh, sw), (pt, pb, pl, pr), (dh, dw))
    x = rng.standard_normal((N, C, H, W)).astype(dt)
    x[0, 0, 1, 1] = x[0, 0, 1, 2]  # a tie: the first maximum must win
    gy = rng.standard_normal((N, C, ho, wo)).astype(dt)
    idx = rng.integers(-1, H * W, (N, C, ho, wo)).astype(np.int32)  # any valid index works for the scatter
    gya = rng.standard_normal((N, C, 3, 4)).astype(dt)
    idxa = rng.integers(-1, H * W, gya.shape).astype(np.int32)
    avg = (kh, kw, sh, sw, pt, pb, pl, pr, dh, dw)
    return [
        ("pool.extreme_pool_forward[max]", "pool", "extreme_pool_forward",
         [x, Out(gy.shape, dt), Out(gy.shape, np.int32), kh, kw, sh, sw, pt, pl, dh, dw, False]),
        ("pool.extreme_pool_forward[min]", "pool", "extreme_pool_forward",
         [x, Out(gy.shape, dt), Out(gy.shape, np.int32), kh, kw, sh, sw, pt, pl, dh, dw, True]),
        ("pool.extreme_pool_backward", "pool", "extreme_pool_backward",
         [gy, idx, Out(x.shape, dt), kh, kw, sh, sw, pt, pl, dh, dw]),
        ("pool.avg_pool_forward", "pool", "avg_pool_forward", [x, Out(gy.shape, dt), *avg, True, 0.0]),
        ("pool.avg_pool_forward[excl]", "pool", "avg_pool_forward", [x, Out(gy.shape, dt), *avg, False, 0.0]),
        ("pool.avg_pool_backward", "pool", "avg_pool_backward", [gy, Out(x.shape, dt), *avg, True, 0.0]),
        ("pool.adaptive_avg_pool_forward", "pool", "adaptive_avg_pool_forward", [x, Out(gya.shape, dt)]),
        ("pool.adaptive_avg_pool_backward", "pool", "adaptive_avg_pool_backward", [gya, Out(x.shape, dt)]),
        ("pool.adaptive_max_pool_forward", "pool", "adaptive_max_pool_forward",
         [x, Out(gya.shape, dt), Out(gya.shape, np.int32)]),
        ("pool.adaptive_max_pool_backward", "pool", "adaptive_max_pool_backward",
         [gya, idxa, Out(x.shape, dt)]),
    ]


def _lrn_cases(rng, dt):
    N, C, H, W = 2, 7, 5, 6
    x = rng.standard_normal((N, C, H, W)).astype(dt)
    gy = rng.standard_normal(x.shape).astype(dt)
    scale = (2.0 + rng.random(x.shape)).astype(dt)  # any positive scale will do for the backward
    size, alpha, beta, k = 5, 1e-2, 0.75, 2.0
    none = np.empty((0, 0, 0, 0), dt)
    return [
        ("lrn.lrn_across_forward", "lrn", "lrn_across_forward",
         [x, Out(x.shape, dt), Out(x.shape, dt), size, alpha, beta, k]),
        ("lrn.lrn_across_forward[no scale]", "lrn", "lrn_across_forward",
         [x, Out(x.shape, dt), none, size, alpha, beta, k]),
        ("lrn.lrn_across_backward", "lrn", "lrn_across_backward",
         [x, scale, gy, Out(x.shape, dt), size, alpha, beta]),
        ("lrn.lrn_within_forward", "lrn", "lrn_within_forward",
         [x, Out(x.shape, dt), Out(x.shape, dt), 3, alpha, 0.6, k]),
        ("lrn.lrn_within_backward", "lrn", "lrn_within_backward",
         [x, scale, gy, Out(x.shape, dt), 3, alpha, 0.6]),
    ]


def _norm_cases(rng, dt):
    cases = []
    for tag, shape in (("NCL", (6, 5, 7)), ("NC", (9, 5, 1))):
        x = (3.0 + rng.standard_normal(shape)).astype(dt)
        gy = rng.standard_normal(shape).astype(dt)
        C = shape[1]
        m64 = x.mean(axis=(0, 2), dtype=np.float64)
        vecs = [rng.standard_normal(C).astype(dt) for _ in range(3)]
        cases += [
            (f"norm.bn_stats[{tag}]", "norm", "bn_stats", [x]),
            (f"norm.bn_affine[{tag}]", "norm", "bn_affine", [x, m64.astype(dt), *vecs[:2], Out(shape, dt)]),
            (f"norm.bn_backward_reduce[{tag}]", "norm", "bn_backward_reduce", [gy, x, m64]),
            (f"norm.bn_backward_gx[{tag}]", "norm", "bn_backward_gx",
             [gy, x, m64.astype(dt), *vecs, Out(shape, dt)]),
            (f"norm.bn_scale_gx[{tag}]", "norm", "bn_scale_gx", [gy, vecs[0], Out(shape, dt)]),
        ]
    # the (C,) steps between those kernels: plain numpy on both CPU backends, run here all the same
    # (the running statistics are only read: use_running=True, update=False keeps the inputs fixed)
    C, M = 5, 42
    m64, v64 = rng.standard_normal(C), rng.random(C) + 0.5
    g, b = rng.standard_normal(C).astype(dt), rng.standard_normal(C).astype(dt)
    rm, rv = rng.standard_normal(C).astype(np.float32), (rng.random(C) + 0.5).astype(np.float32)
    sg, sgx = rng.standard_normal(C), rng.standard_normal(C)
    cases += [
        ("norm.bn_prepare[batch]", "norm", "bn_prepare", [m64, v64, g, b, None, None, False, False, 0.1, M, 1e-5, dt]),
        ("norm.bn_prepare[running]", "norm", "bn_prepare",
         [None, None, g, None, rm, rv, True, False, 0.1, M, 1e-5, dt]),
        ("norm.bn_backward_coeffs", "norm", "bn_backward_coeffs", [sg, sgx, g, 1.0 / np.sqrt(v64), m64, M, True, dt]),
    ]
    return cases


def _act_cases(rng, dt):
    n = 1001
    x = rng.standard_normal(n).astype(dt)
    y = np.abs(rng.standard_normal(n)).astype(dt) * 0.5  # in (0, 1)-ish, any values will do
    gy = rng.standard_normal(n).astype(dt)
    keep = (rng.random(n) < 0.7).astype(np.uint8)
    x3 = rng.standard_normal((3, 5, 4)).astype(dt)
    y3 = rng.random((3, 5, 4)).astype(dt)
    g3 = rng.standard_normal((3, 5, 4)).astype(dt)
    o, o3 = Out((n,), dt), Out(x3.shape, dt)
    return [
        ("act.relu_forward", "act", "relu_forward", [x, o]),
        ("act.relu_backward", "act", "relu_backward", [gy, x, o]),
        ("act.leaky_relu_forward", "act", "leaky_relu_forward", [x, 0.1, o]),
        ("act.leaky_relu_backward", "act", "leaky_relu_backward", [gy, x, 0.1, o]),
        ("act.elu_forward", "act", "elu_forward", [x, 1.5, 1.05, o]),
        ("act.elu_backward", "act", "elu_backward", [gy, x, 1.5, 1.05, o]),
        ("act.gelu_forward[erf]", "act", "gelu_forward", [x, False, o]),
        ("act.gelu_forward[tanh]", "act", "gelu_forward", [x, True, o]),
        ("act.gelu_backward[erf]", "act", "gelu_backward", [gy, x, False, o]),
        ("act.gelu_backward[tanh]", "act", "gelu_backward", [gy, x, True, o]),
        ("act.sigmoid_forward", "act", "sigmoid_forward", [x, o]),
        ("act.sigmoid_backward", "act", "sigmoid_backward", [gy, y, o]),
        ("act.tanh_forward", "act", "tanh_forward", [x, o]),
        ("act.tanh_backward", "act", "tanh_backward", [gy, y, o]),
        ("act.dropout_forward", "act", "dropout_forward", [x, keep, 1 / 0.7, o]),
        ("act.dropout_backward", "act", "dropout_backward", [gy, keep, 1 / 0.7, o]),
        ("act.softmax_forward", "act", "softmax_forward", [x3, False, o3]),
        ("act.softmax_forward[log]", "act", "softmax_forward", [x3, True, o3]),
        ("act.softmax_backward", "act", "softmax_backward", [g3, y3, False, o3]),
        ("act.softmax_backward[log]", "act", "softmax_backward", [g3, -y3, True, o3]),
    ] + _act_mobile_cases(rng, dt) + _act_chunk_cases(rng, dt)


def _act_chunk_cases(rng, dt):
    """The float32 exp/tanh/erf kernels that the Cython backend runs in chunks of 16384 elements
    (act_math.h's runners): three chunks, the last one partial, so the two threads split them unevenly."""
    n = 2 * 16384 + 1001
    x, gy, o = (rng.standard_normal(n) * 6).astype(dt), rng.standard_normal(n).astype(dt), Out((n,), dt)
    cases = [(f"act.{name}_forward[chunks]", "act", f"{name}_forward", [x, o]) for name in ("sigmoid", "tanh", "silu")]
    cases.append(("act.silu_backward[chunks]", "act", "silu_backward", [gy, x, o]))
    for approx in (False, True):
        cases += [(f"act.gelu_forward[chunks, {approx}]", "act", "gelu_forward", [x, approx, o]),
                  (f"act.gelu_backward[chunks, {approx}]", "act", "gelu_backward", [gy, x, approx, o])]
    return cases + [("act.elu_forward[chunks]", "act", "elu_forward", [x, 1.5, 1.05, o]),
                    ("act.elu_backward[chunks]", "act", "elu_backward", [gy, x, 1.5, 1.05, o])]


def _act_mobile_cases(rng, dt):
    """relu6 ... silu over every piece (x spread over [-12, 12]), drop path on 7 samples, channel
    shuffle on 3 x 4 x 5 rows (the two threads split the samples and the (n, b) rows unevenly)."""
    n = 1001
    x = (rng.standard_normal(n) * 4).astype(dt)
    gy = rng.standard_normal(n).astype(dt)
    x2, g2 = rng.standard_normal((7, 143)).astype(dt), rng.standard_normal((7, 143)).astype(dt)
    keep = np.array([1, 0, 1, 1, 0, 0, 1], np.uint8)
    x4 = rng.standard_normal((3, 4, 5, 7)).astype(dt)
    o, o2 = Out((n,), dt), Out(x2.shape, dt)
    cases = [("act.relu6_forward", "act", "relu6_forward", [x, o]),
             ("act.relu6_backward", "act", "relu6_backward", [gy, x, o])]
    for name in ("hardsigmoid", "hardswish", "silu"):
        cases += [(f"act.{name}_forward", "act", f"{name}_forward", [x, o]),
                  (f"act.{name}_backward", "act", f"{name}_backward", [gy, x, o])]
    return cases + [
        ("act.drop_path_forward", "act", "drop_path_forward", [x2, keep, dt(1 / 0.6), o2]),
        ("act.drop_path_backward", "act", "drop_path_backward", [g2, keep, dt(1 / 0.6), o2]),
        ("act.channel_shuffle", "act", "channel_shuffle", [x4, Out((3, 5, 4, 7), dt)]),
        ("act.channel_shuffle[back]", "act", "channel_shuffle", [x4.reshape(3, 5, 4, 7), Out((3, 4, 5, 7), dt)]),
    ]


def _resample_cases(rng, dt):
    """Tables of a 2.2x nearest and a 5 -> 11 / 4 -> 7 bilinear upsampling: several outputs per input
    element, so the backward's scatter-add adds into one element from several outputs."""
    from corenet.functional.resample import _axis_table

    N, C, H, W, Ho, Wo = 2, 3, 5, 4, 11, 7
    x = rng.standard_normal((N, C, H, W)).astype(dt)
    gy = rng.standard_normal((N, C, Ho, Wo)).astype(dt)
    ih, iw = _axis_table(H, Ho, 2.2, "nearest", False, dt)[0], _axis_table(W, Wo, None, "nearest", False, dt)[0]
    rows, cols = _axis_table(H, Ho, None, "bilinear", False, dt), _axis_table(W, Wo, 1.75, "bilinear", True, dt)
    return [
        ("resample.nearest_forward", "resample", "nearest_forward", [x, ih, iw, Out(gy.shape, dt)]),
        ("resample.nearest_backward", "resample", "nearest_backward", [gy, ih, iw, Out(x.shape, dt)]),
        ("resample.bilinear_forward", "resample", "bilinear_forward", [x, *rows, *cols, Out(gy.shape, dt)]),
        ("resample.bilinear_backward", "resample", "bilinear_backward", [gy, *rows, *cols, Out(x.shape, dt)]),
    ]


def _cases(dt):
    rng = np.random.default_rng(12)
    builders = (_conv_cases, _pool_cases, _lrn_cases, _norm_cases, _act_cases, _resample_cases)
    return [case for build in builders for case in build(rng, dt)]


CASE_IDS = [c[0] for c in _cases(np.float32)]
# contract entry points that orchestrate primitives (covered by the functional tests of test_threads_ops.py)
ORCHESTRATION = {"conv2d_forward", "conv2d_backward"}


@pytest.mark.parametrize("backend_name", CPU_BACKENDS)
def test_every_primitive_has_a_thread_and_guard_case(backend_name):
    """A primitive added to a backend must be added to the table above."""
    be = kernels.require(backend_name)
    covered = {(fam, name) for _, fam, name, _ in _cases(np.float32)}
    for fam in ("conv", "pool", "lrn", "norm", "act", "resample"):
        module = getattr(be, fam)
        missing = [n for n in module.__all__ if (fam, n) not in covered and n not in ORCHESTRATION]
        assert not missing, f"{backend_name}.{fam}: no thread/guard case in tests/test_threads.py for {missing}"


@pytest.mark.parametrize("dt", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("backend_name", CPU_BACKENDS)
def test_primitives_two_threads_bitwise_and_guarded(backend_name, dt, two_threads):
    """1 thread, then REPEAT runs on 2 forced threads: same bits, guard regions untouched."""
    be = kernels.require(backend_name)
    failures = []
    for case_id, fam, name, args in _cases(dt):
        fn = getattr(getattr(be, fam), name, None)
        if fn is None:  # a kernel only some backends have
            continue
        _threads(1)
        ref = _call_guarded(fn, args, SENTINELS[0])
        _threads(2)
        for r in range(REPEAT):
            got = _call_guarded(fn, args, SENTINELS[(r + 1) % 2])
            bad = [k for k, (a, b) in enumerate(zip(ref, got))
                   if not np.array_equal(a.view(np.uint8), b.view(np.uint8))]
            if bad:
                failures.append(f"{case_id}: output {bad} differs from 1 thread on call {r}")
                break
    assert not failures, "\n".join(failures)
