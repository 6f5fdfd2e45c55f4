"""Parallel kernels under two threads, on inputs small enough to read (issue 12).

The other kernel tests use inputs below the size at which a kernel goes parallel and call each
case once, so they could not see a race. Here ``config.set_parallel_threshold(0)`` forces every
CPU kernel of both backends onto 2 threads whatever the size, and each call is repeated:

- every primitive of ``corenet/kernels/{numba_cpu,cython_cpu}`` is run with 1 thread and then
  REPEAT times with 2, into output buffers followed by a guard region; the guard must stay
  untouched and the 2-thread results must equal the 1-thread ones bit for bit (every kernel's
  contract says its results do not depend on the thread count). The output itself is prefilled
  with a different sentinel on each run, so an element a kernel forgets to write shows too;
- the functional ops on 2 threads against the plain-loop oracles of ``tests/naive.py`` (or a
  float64 formula), again repeated, including the geometries of the issue's repros;
- 40 training steps of a small conv/BN/ReLU/pool/linear network on 2 threads, run twice, must
  give bitwise-equal weights on each CPU backend.
"""

from __future__ import annotations

import glob
import math
import os
import re
import subprocess
import sys

import naive
import numpy as np
import pytest
from conftest import CPU_BACKENDS

import corenet
from corenet import F, config, kernels

REPEAT = 5  # calls per case on 2 threads: a race rarely shows on every call
GUARD = 61  # elements of guard region after each output buffer (odd: not a whole vector)
SENTINELS = (7777.25, -3333.5)  # float outputs; int32 outputs get the int part


@pytest.fixture(params=CPU_BACKENDS)
def backend(request):
    """Each CPU backend (the conftest fixture may add cuda, which has no thread count)."""
    previous = corenet.get_backend()
    corenet.set_backend(request.param)
    try:
        yield request.param
    finally:
        corenet.set_backend(previous)


@pytest.fixture
def two_threads():
    """2 threads for every kernel, whatever the input size; restores the configuration."""
    prev = config.get_num_threads(), config.get_parallel_threshold(), config.get_backend()
    try:
        corenet.set_num_threads(2)
    except ValueError:
        pytest.skip("fewer than 2 threads allowed here (NUMBA_NUM_THREADS)")
    config.set_parallel_threshold(0)
    try:
        yield
    finally:
        corenet.set_num_threads(prev[0])
        config.set_parallel_threshold(prev[1])
        corenet.set_backend(prev[2])


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


# (name, H, W, kh, kw, stride, pads (t, b, l, r), dilation): the issue's two repros, in which the
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
    (act.pyx): three chunks, the last one partial, so the two threads split them unevenly."""
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
# contract entry points that orchestrate primitives (covered by the functional tests below)
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


# --------------------------------------------------------------- functional ops vs oracles
def _tol(dt):
    return dict(rtol=1e-4, atol=1e-5) if dt == np.float32 else dict(rtol=1e-10, atol=1e-12)


def _pad_arg(p):
    return ((p[0], p[1]), (p[2], p[3]))


@pytest.mark.parametrize("geom", CONV_GEOMS, ids=[g[0] for g in CONV_GEOMS])
@pytest.mark.parametrize("groups", [1, 3])
def test_conv2d_two_threads_against_oracle(backend, geom, groups, two_threads):
    _, H, W, kh, kw, s, p, d = geom
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, H, W))
    w = rng.standard_normal((6, 3 // groups, kh, kw))
    b = rng.standard_normal(6)
    ref = naive.conv2d(x, w, b, s, p, d, groups)
    gy = rng.standard_normal(ref.shape)
    gref = naive.conv2d_backward(x, w, gy, s, p, d, groups)
    for _ in range(REPEAT):
        y, state = F.conv2d(x, w, b, s, _pad_arg(p), d, groups, return_state=True)
        np.testing.assert_allclose(y, ref, **_tol(np.float64))
        got = F.conv2d_backward(gy, state)
        for g, r in zip(got, gref):
            np.testing.assert_allclose(g, r, **_tol(np.float64))


def test_issue12_conv_repros(backend, two_threads):
    """The two calls of issue 12, item 1, repeated: wrong on 2 Cython threads before the fix."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 1, 1, 1)).astype(np.float32)
    w = rng.standard_normal((4, 1, 3, 3)).astype(np.float32)
    ref = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w), padding="same", dilation=3).numpy()
    x2 = np.array([1, 2, 3], np.float32).reshape(1, 1, 3, 1)
    w2 = np.array([[[[1, 10]]]], np.float32)
    want2 = np.array([[0, 10], [0, 20], [0, 30]], np.float32).reshape(1, 1, 3, 2)
    for _ in range(40):
        np.testing.assert_allclose(F.conv2d(x, w, padding="same", dilation=3), ref, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(F.conv2d(x2, w2, padding=((0, 0), (5, 0)), dilation=(1, 4)), want2)


@pytest.mark.parametrize("shape", [(128, 64, 2, 2), (64, 64, 2, 4)])
def test_issue12_batch_norm_repro_against_torch(backend, shape):
    """Issue 12, item 2, at the default threshold (these shapes go parallel anyway)."""
    torch = pytest.importorskip("torch")
    prev = config.get_num_threads()
    try:
        corenet.set_num_threads(2)
    except ValueError:
        pytest.skip("fewer than 2 threads allowed here")
    try:
        rng = np.random.default_rng(1)
        x = (rng.standard_normal(shape) * 2 + 1).astype(np.float32)
        gy = rng.standard_normal(shape).astype(np.float32)
        gamma = rng.standard_normal(shape[1]).astype(np.float32)
        beta = rng.standard_normal(shape[1]).astype(np.float32)
        tx = torch.tensor(x, requires_grad=True)
        tg, tb = torch.tensor(gamma, requires_grad=True), torch.tensor(beta, requires_grad=True)
        ty = torch.nn.functional.batch_norm(tx, None, None, tg, tb, training=True, eps=1e-5)
        ty.backward(torch.tensor(gy))
        for _ in range(20):
            y, state = F.batch_norm(x, gamma, beta, None, None, True, return_state=True)
            np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-4, atol=1e-4)
            gx, ggamma, gbeta = F.batch_norm_backward(gy, state)
            np.testing.assert_allclose(gx, tx.grad.numpy(), rtol=1e-3, atol=1e-4)
            np.testing.assert_allclose(ggamma, tg.grad.numpy(), rtol=1e-4, atol=1e-3)
            np.testing.assert_allclose(gbeta, tb.grad.numpy(), rtol=1e-4, atol=1e-3)
    finally:
        corenet.set_num_threads(prev)


@pytest.mark.parametrize("shape", [(5, 3, 4, 3), (7, 6)])
def test_batch_norm_two_threads_against_float64_formula(backend, shape, two_threads):
    rng = np.random.default_rng(2)
    x = rng.standard_normal(shape) * 3 + 2
    gy = rng.standard_normal(shape)
    gamma, beta = rng.standard_normal(shape[1]), rng.standard_normal(shape[1])
    axes = (0,) + tuple(range(2, len(shape)))
    bshape = (1, -1) + (1,) * (len(shape) - 2)
    mu, var = x.mean(axis=axes), x.var(axis=axes)
    xhat = (x - mu.reshape(bshape)) / np.sqrt(var + 1e-5).reshape(bshape)
    yref = xhat * gamma.reshape(bshape) + beta.reshape(bshape)
    M = x.size // shape[1]
    sg, sgx = gy.sum(axis=axes), (gy * xhat).sum(axis=axes)
    gxref = (gamma / np.sqrt(var + 1e-5)).reshape(bshape) * (
        gy - sg.reshape(bshape) / M - xhat * sgx.reshape(bshape) / M)
    for _ in range(REPEAT):
        y, state = F.batch_norm(x, gamma, beta, None, None, True, return_state=True)
        np.testing.assert_allclose(y, yref, rtol=1e-9, atol=1e-9)
        gx, ggamma, gbeta = F.batch_norm_backward(gy, state)
        np.testing.assert_allclose(gx, gxref, rtol=1e-8, atol=1e-9)
        np.testing.assert_allclose(ggamma, sgx, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(gbeta, sg, rtol=1e-9, atol=1e-9)


POOL_CASES = [  # kernel, stride, pads (t, b, l, r), dilation, mode, ceil_mode, count_include_pad
    ((3, 2), (2, 1), (1, 1, 1, 0), (1, 2), "max", False, True),
    ((3, 3), (2, 2), (1, 1, 1, 1), (1, 1), "min", True, True),
    ((3, 2), (2, 1), (1, 1, 1, 0), (1, 2), "avg", True, False),
    ((2, 3), (1, 2), (0, 1, 1, 1), (1, 1), "avg", False, True),
    ((2, 2), (2, 2), (0, 0, 0, 0), (1, 1), "sum", False, True),
]


@pytest.mark.parametrize("case", POOL_CASES, ids=[c[4] + str(i) for i, c in enumerate(POOL_CASES)])
def test_pool2d_two_threads_against_oracle(backend, case, two_threads):
    kernel, stride, p, dil, mode, ceil_mode, cip = case
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 3, 7, 6))
    ref, _ = naive.pool2d(x, kernel, stride, p, dil, mode, ceil_mode, cip)
    gy = rng.standard_normal(ref.shape)
    gref = naive.pool2d_backward(x, gy, kernel, stride, p, dil, mode, ceil_mode, cip)
    for _ in range(REPEAT):
        y, state = F.pool2d(x, kernel, stride, _pad_arg(p), mode, dil, ceil_mode, cip, return_state=True)
        np.testing.assert_allclose(y, ref, **_tol(np.float64))
        np.testing.assert_allclose(F.pool2d_backward(gy, state), gref, **_tol(np.float64))


def test_adaptive_max_pool_two_threads_against_oracle(backend, two_threads):
    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, 3, 7, 5))
    x[1, 2, 2:4, 1] = 5.0  # a tie inside overlapping bins: the first maximum takes the gradient
    ref, _ = naive.adaptive_max_pool2d(x, (3, 4))
    gy = rng.standard_normal(ref.shape)
    gref = naive.adaptive_max_pool2d_backward(x, gy)
    for _ in range(REPEAT):
        y, state = F.adaptive_max_pool2d(x, (3, 4), return_state=True)
        np.testing.assert_array_equal(y, ref)
        np.testing.assert_allclose(F.pool2d_backward(gy, state), gref, **_tol(np.float64))


def test_adaptive_avg_pool_two_threads_against_oracle(backend, two_threads):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 3, 7, 5))
    ref = naive.adaptive_avg_pool2d(x, (3, 4))
    gy = rng.standard_normal(ref.shape)
    gref = naive.adaptive_avg_pool2d_backward(x.shape, gy)
    for _ in range(REPEAT):
        y, state = F.adaptive_avg_pool2d(x, (3, 4), return_state=True)
        np.testing.assert_allclose(y, ref, **_tol(np.float64))
        np.testing.assert_allclose(F.pool2d_backward(gy, state), gref, **_tol(np.float64))


@pytest.mark.parametrize("mode, align_corners", [("nearest", None), ("bilinear", False), ("bilinear", True)])
def test_upsample_two_threads_against_oracle(backend, mode, align_corners, two_threads):
    rng = np.random.default_rng(8)
    x = rng.standard_normal((2, 3, 4, 5))
    ref = naive.upsample(x, (9, 12), (2.3, 2.5), mode, bool(align_corners))
    gy = rng.standard_normal(ref.shape)
    gref = naive.upsample_backward(x.shape, gy, (2.3, 2.5), mode, bool(align_corners))
    for _ in range(REPEAT):
        y, state = F.upsample(x, scale_factor=(2.3, 2.5), mode=mode, align_corners=align_corners, return_state=True)
        np.testing.assert_allclose(y, ref, **_tol(np.float64))
        np.testing.assert_allclose(F.upsample_backward(gy, state), gref, **_tol(np.float64))


def test_conv_transpose2d_two_threads_against_oracle(backend, two_threads):
    """Through the convolution paths it borrows (forward = a convolution's input gradient)."""
    rng = np.random.default_rng(9)
    x, w, b = rng.standard_normal((2, 4, 3, 4)), rng.standard_normal((4, 3, 3, 2)), rng.standard_normal(6)
    args = dict(stride=(2, 1), padding=((1, 0), (0, 1)), output_padding=(1, 0), groups=2, dilation=(1, 2))
    pads = (1, 0, 0, 1)
    ref = naive.conv_transpose2d(x, w, b, (2, 1), pads, (1, 0), (1, 2), 2)
    gy = rng.standard_normal(ref.shape)
    gref = naive.conv_transpose2d_backward(x, w, gy, (2, 1), pads, (1, 2), 2)
    for _ in range(REPEAT):
        y, state = F.conv_transpose2d(x, w, b, **args, return_state=True)
        np.testing.assert_allclose(y, ref, **_tol(np.float64))
        for g, r in zip(F.conv_transpose2d_backward(gy, state), gref):
            np.testing.assert_allclose(g, r, **_tol(np.float64))


@pytest.mark.parametrize("mode", ["across", "within"])
def test_lrn_two_threads_against_oracle(backend, mode, two_threads):
    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, 7, 4, 5))
    size, alpha, beta, k = (5, 0.3, 0.75, 2.0) if mode == "across" else (3, 0.5, 0.6, 1.5)
    ref, _ = naive.lrn(x, size, alpha, beta, k, mode)
    gy = rng.standard_normal(x.shape)
    gref = naive.lrn_backward(x, gy, size, alpha, beta, k, mode)
    for _ in range(REPEAT):
        y, state = F.local_response_norm(x, size, alpha, beta, k, mode, return_state=True)
        np.testing.assert_allclose(y, ref, **_tol(np.float64))
        np.testing.assert_allclose(F.local_response_norm_backward(gy, state), gref, rtol=1e-9, atol=1e-11)


def _erf(v):
    return np.vectorize(math.erf)(v)


ACTS = {  # op: (forward oracle, derivative oracle in terms of x), float64
    "relu": (lambda x: np.maximum(x, 0), lambda x: (x > 0).astype(float)),
    "sigmoid": (lambda x: 1 / (1 + np.exp(-x)), lambda x: np.exp(-x) / (1 + np.exp(-x)) ** 2),
    "tanh": (np.tanh, lambda x: 1 - np.tanh(x) ** 2),
    "elu": (lambda x: np.where(x > 0, x, np.expm1(x)), lambda x: np.where(x > 0, 1.0, np.exp(x))),
    "gelu": (lambda x: 0.5 * x * (1 + _erf(x / np.sqrt(2))),
             lambda x: 0.5 * (1 + _erf(x / np.sqrt(2))) + x * np.exp(-x * x / 2) / np.sqrt(2 * np.pi)),
    "leaky_relu": (lambda x: np.where(x > 0, x, 0.01 * x), lambda x: np.where(x > 0, 1.0, 0.01)),
}


@pytest.mark.parametrize("op", sorted(ACTS))
def test_activations_two_threads_against_formula(backend, op, two_threads):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((3, 4, 5, 7))
    gy = rng.standard_normal(x.shape)
    fwd, der = ACTS[op]
    for _ in range(REPEAT):
        y, state = getattr(F, op)(x, return_state=True)
        np.testing.assert_allclose(y, fwd(x), rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(getattr(F, op + "_backward")(gy, state), gy * der(x), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("log", [False, True])
def test_softmax_two_threads_against_formula(backend, log, two_threads):
    rng = np.random.default_rng(8)
    x = rng.standard_normal((3, 6, 5))
    gy = rng.standard_normal(x.shape)
    e = np.exp(x - x.max(axis=1, keepdims=True))
    s = e / e.sum(axis=1, keepdims=True)
    ref = np.log(s) if log else s
    gref = gy - s * gy.sum(axis=1, keepdims=True) if log else s * (gy - (gy * s).sum(axis=1, keepdims=True))
    op = "log_softmax" if log else "softmax"
    for _ in range(REPEAT):
        y, state = getattr(F, op)(x, return_state=True)
        np.testing.assert_allclose(y, ref, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(getattr(F, op + "_backward")(gy, state), gref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("op", ["relu6", "hardsigmoid", "hardswish", "silu"])
def test_mobile_activations_two_threads_against_oracle(backend, op, two_threads):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((3, 4, 5, 7)) * 4
    x[0, 0, 0, :5] = [-3.0, 0.0, 3.0, 6.0, -0.0]  # the kinks
    gy = rng.standard_normal(x.shape)
    ref, gref = getattr(naive, op)(x), gy * getattr(naive, op + "_grad")(x)
    for _ in range(REPEAT):
        y, state = getattr(F, op)(x, return_state=True)
        np.testing.assert_allclose(y, ref, rtol=1e-13, atol=1e-15)
        np.testing.assert_allclose(getattr(F, op + "_backward")(gy, state), gref, rtol=1e-13, atol=1e-15)


def test_channel_shuffle_and_drop_path_two_threads_against_oracle(backend, two_threads):
    rng = np.random.default_rng(11)
    x = rng.standard_normal((5, 6, 3, 4))
    gy = rng.standard_normal(x.shape)
    keep = np.random.default_rng(12).random(5, dtype=np.float32) >= np.float32(0.4)
    for _ in range(REPEAT):
        y, state = F.channel_shuffle(x, 3, return_state=True)
        np.testing.assert_array_equal(y, naive.channel_shuffle(x, 3))
        np.testing.assert_array_equal(F.channel_shuffle_backward(gy, state), naive.channel_shuffle_backward(gy, 3))
        y, state = F.drop_path(x, 0.4, np.random.default_rng(12), return_state=True)
        np.testing.assert_allclose(y, naive.drop_path(x, keep, 0.4), rtol=1e-15)
        np.testing.assert_allclose(F.drop_path_backward(gy, state), naive.drop_path(gy, keep, 0.4), rtol=1e-15)


def test_dropout_two_threads_matches_its_mask(backend, two_threads):
    x = np.random.default_rng(9).standard_normal((4, 3, 5, 5))
    gy = np.ones_like(x)
    for _ in range(REPEAT):
        y, state = F.dropout(x, 0.3, np.random.default_rng(10), return_state=True)
        kept = y != 0
        np.testing.assert_allclose(y[kept], x[kept] / 0.7, rtol=1e-15)
        np.testing.assert_array_equal(F.dropout_backward(gy, state) != 0, kept)


# ------------------------------------------------------------------------ training is reproducible
def _train_small_convnet(steps=40):
    from corenet import Input, Model, optim
    from corenet import layers as L

    x_in = Input((3, 8, 8))
    h = L.ReLU()(L.BatchNorm2d(6)(L.Conv2d(6, 3, padding=1, bias=False)(x_in)))
    h = L.MaxPool2d(2)(h)
    out = L.Linear(5)(L.Flatten()(h))
    model = Model(x_in, out, seed=0)
    model.compile(optim.SGD(lr=0.05, momentum=0.9), "cross_entropy")
    rng = np.random.default_rng(11)
    x = rng.standard_normal((16, 3, 8, 8)).astype(np.float32)
    y = rng.integers(0, 5, 16)
    for _ in range(steps):
        model.train_on_batch(x, y)
    return {k: v.copy() for k, v in model.parameters().items()}


def test_two_thread_training_is_bitwise_reproducible(backend, two_threads):
    """40 steps of conv, BN, ReLU, pool, linear on 2 threads, twice: the same weights, bit for bit."""
    first = _train_small_convnet()
    second = _train_small_convnet()
    assert first.keys() == second.keys()
    for name in first:
        assert np.array_equal(first[name], second[name]), f"{name} differs between two identical runs"


# ---------------------------------------------------------------------------- the Cython build
def test_openmp_workers_sleep_between_regions():
    """With the default environment the Cython backend's OpenMP workers spin only briefly after a
    region, then sleep (issue 12, item 12): no CPU time to speak of while the main thread sleeps."""
    if "cython" not in CPU_BACKENDS:
        pytest.skip("the Cython backend is not built")
    code = (
        "import time, numpy as np, corenet\n"
        "from corenet._ext import openmp_status\n"
        "from corenet.kernels.cython_cpu import act\n"
        "corenet.set_num_threads(2)\n"
        "x = np.ones(1 << 18, np.float32); y = np.empty_like(x)\n"
        "idle_cpu = 0.0\n"
        "for _ in range(6):\n"
        "    act.relu_forward(x, y)\n"
        "    t0 = time.process_time(); time.sleep(0.02); idle_cpu += time.process_time() - t0\n"
        "print(1e3 * idle_cpu, openmp_status()['wait_policy'])\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    # OpenBLAS starts its worker threads when numpy loads and they spin for a while (~60 ms of CPU
    # seen in a fresh virtual environment): not what this test measures
    env["OPENBLAS_NUM_THREADS"] = "1"
    try:
        env["CORENET_NUM_THREADS"] = "2"
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail("the child process hung")
    if out.returncode != 0 and "expected 1 <= n" in out.stderr:
        pytest.skip("fewer than 2 threads allowed here")
    assert out.returncode == 0, out.stderr[-2000:]
    cpu_ms, policy = out.stdout.split(maxsplit=1)
    assert policy.strip() == "spin 1000 then sleep (set by corenet)"
    # libgomp's default spin is ~4 ms of CPU after each region (GOMP_SPINCOUNT=300000), so 6
    # regions would show ~20 ms; 1000 spins are a few microseconds each
    assert float(cpu_ms) < 4.0, f"{cpu_ms} ms of CPU in 6 idle 20 ms pauses after a region: OpenMP workers spin"


# The issue's repros in a process whose OpenMP workers spin (OMP_WAIT_POLICY=active, as before
# the fix of item 12): then both threads start a region at once, which is when a shared
# accumulator races; with sleeping workers the batch-norm race of item 2 hardly ever showed.
_SPINNING_CHILD = """
import numpy as np, corenet
from corenet import F, config
corenet.set_backend("cython"); corenet.set_num_threads(2); config.set_parallel_threshold(0)
rng = np.random.default_rng(0)
bad = []
for shape, calls in (((128, 64, 2, 2), 20), ((64, 64, 2, 4), 20), ((512, 64, 2, 2), 20)):
    x = (rng.standard_normal(shape) * 2 + 1).astype(np.float32)
    gy = rng.standard_normal(shape).astype(np.float32)
    x64, g64 = x.astype(np.float64), gy.astype(np.float64)
    mu, var = x64.mean((0, 2, 3), keepdims=True), x64.var((0, 2, 3), keepdims=True)
    xhat = (x64 - mu) / np.sqrt(var + 1e-5)
    gx = (g64 - g64.mean((0, 2, 3), keepdims=True) - xhat * (g64 * xhat).mean((0, 2, 3), keepdims=True))
    gx /= np.sqrt(var + 1e-5)
    one, zero = np.ones(shape[1], np.float32), np.zeros(shape[1], np.float32)
    for _ in range(calls):
        y, st = F.batch_norm(x, one, zero, None, None, True, return_state=True)
        e1 = np.abs(y - xhat).max()
        e2 = np.abs(F.batch_norm_backward(gy, st)[0] - gx).max()
        if e1 > 1e-4 or e2 > 1e-3:
            bad.append(f"batch_norm {shape}: forward error {e1:.3g}, backward error {e2:.3g}")
x = rng.standard_normal((2, 1, 1, 1)).astype(np.float32)
w = rng.standard_normal((4, 1, 3, 3)).astype(np.float32)
want = (x[:, :, None] * w[None, :, :, 1, 1][..., None, None]).reshape(2, 4, 1, 1)
x2, w2 = np.array([1, 2, 3], np.float32).reshape(1, 1, 3, 1), np.array([[[[1, 10]]]], np.float32)
want2 = np.array([[0, 10], [0, 20], [0, 30]], np.float32).reshape(1, 1, 3, 2)
for _ in range(40):
    if not np.allclose(F.conv2d(x, w, padding="same", dilation=3), want, rtol=1e-5, atol=1e-6):
        bad.append("conv2d same, dilation 3")
    if not np.array_equal(F.conv2d(x2, w2, padding=((0, 0), (5, 0)), dilation=(1, 4)), want2):
        bad.append("conv2d left padding 5, dilation (1, 4)")
print(len(bad)); print("\\n".join(sorted(set(bad))))
"""


def test_issue12_repros_with_spinning_openmp_workers():
    if "cython" not in CPU_BACKENDS:
        pytest.skip("the Cython backend is not built")
    env = dict(os.environ, OMP_WAIT_POLICY="active", CORENET_NUM_THREADS="2")
    out = subprocess.run([sys.executable, "-c", _SPINNING_CHILD], env=env, capture_output=True, text=True,
                         timeout=300)
    if out.returncode != 0 and "expected 1 <= n" in out.stderr:
        pytest.skip("fewer than 2 threads allowed here")
    assert out.returncode == 0, out.stderr[-2000:]
    count, _, detail = out.stdout.partition("\n")
    assert count.strip() == "0", f"{count.strip()} wrong results on 2 spinning threads:\n{detail}"


def _omp_regions(src):
    """(line, region text) of every ``#pragma omp parallel`` block of a generated C file."""
    for m in re.finditer(r"#pragma omp parallel[^\n]*\n", src):
        i = src.index("{", m.end())
        depth = 0
        for j in range(i, len(src)):
            depth += {"{": 1, "}": -1}.get(src[j], 0)
            if depth == 0:
                break
        yield src.count("\n", 0, m.start()) + 1, src[m.start():j]


def test_no_shared_local_is_written_through_its_address_in_a_prange():
    """Cython privatises only the locals a prange body assigns; a local passed by address
    (``f(&s)``) stays shared between threads (issue 12, item 2). Checked on the generated C."""
    sources = sorted(glob.glob(os.path.join(os.path.dirname(corenet.__file__), "_ext", "*.c")))
    if not sources:
        pytest.skip("no generated C beside the .pyx files (not built in place)")
    found = []
    for path in sources:
        with open(path) as f:
            src = f.read()
        for line, region in _omp_regions(src):
            private = set()
            for names in re.findall(r"private\(([^)]*)\)", region):
                private |= {n.strip() for n in names.split(",")}
            taken = set(re.findall(r"&__pyx_v_(\w+)\b(?![.\[]|->)", region))
            shared = sorted(n for n in taken if "__pyx_v_" + n not in private)
            if shared:
                found.append(f"{os.path.basename(path)}:{line}: {shared}")
    assert not found, "locals passed by address inside a parallel region, shared by the threads:\n" + "\n".join(found)
