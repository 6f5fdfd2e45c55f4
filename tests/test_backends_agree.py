"""Every CPU backend computes the same thing: each op, forward and backward, on the same inputs.

The per-kernel tests already check every backend against the loop oracles; this file checks the
backends against each other directly, on inputs large enough to take the parallel and chunked
paths, so a divergence shows up as a difference between two kernels rather than as two
tolerances that both happen to pass. Ties in max/min pooling are built into the inputs: the
gradient must land on the same element in every backend, so pooling gradients agree exactly.
"""

import numpy as np
import pytest

import corenet
from corenet import F

CPU_BACKENDS = [b for b in corenet.backends() if b != "cuda"]

pytestmark = pytest.mark.skipif(
    len(CPU_BACKENDS) < 2,
    reason=f"needs two CPU backends to compare, available here: {corenet.backend_status()}",
)

TOL = {np.float64: dict(rtol=1e-11, atol=1e-12), np.float32: dict(rtol=2e-5, atol=2e-6)}


def _normal(rng, shape, dtype):
    return rng.standard_normal(shape).astype(dtype)


# --------------------------------------------------------------------------------------- ops
# Each case maps (rng, dtype) to the arrays to compare: forward outputs, then gradients.

CONV = {
    "gemm_pad1": dict(x=(3, 3, 9, 8), w=(4, 3, 3, 3), stride=1, padding=1),
    "gemm_stride_dilation_asym": dict(x=(2, 3, 10, 11), w=(5, 3, 3, 2), stride=(2, 1),
                                      padding=((1, 0), (2, 1)), dilation=(1, 2)),
    "gemm_same_stride2": dict(x=(2, 2, 9, 9), w=(3, 2, 4, 4), stride=2, padding="same"),
    "1x1": dict(x=(2, 6, 5, 7), w=(4, 6, 1, 1)),
    "depthwise": dict(x=(2, 8, 9, 7), w=(8, 1, 3, 3), stride=2, padding="same", groups=8),
    "depthwise_3x3_s1": dict(x=(2, 8, 9, 7), w=(8, 1, 3, 3), padding=1, groups=8),
    "grouped_direct_dilated": dict(x=(2, 6, 8, 8), w=(9, 2, 3, 3), padding=2, dilation=2, groups=3),
    "grouped_gemm": dict(x=(1, 32, 6, 6), w=(32, 16, 3, 3), padding=1, groups=2),
}


def conv_case(name):
    spec = CONV[name]
    options = {k: v for k, v in spec.items() if k not in ("x", "w")}

    def run(rng, dtype):
        x, w = _normal(rng, spec["x"], dtype), _normal(rng, spec["w"], dtype)
        b = _normal(rng, spec["w"][0], dtype)
        y, state = F.conv2d(x, w, b, return_state=True, **options)
        gx, gw, gb = F.conv2d_backward(_normal(rng, y.shape, dtype), state)
        return y, gx, gw, gb

    return run


POOL = {
    "max3s2": dict(kernel_size=3, stride=2, mode="max"),
    "max_pad_ceil_dilated": dict(kernel_size=3, stride=2, padding=1, dilation=2, ceil_mode=True, mode="max"),
    "min2": dict(kernel_size=2, mode="min"),
    "avg_pad_include": dict(kernel_size=3, stride=2, padding=1, mode="avg", ceil_mode=True),
    "avg_pad_exclude": dict(kernel_size=(3, 2), stride=(1, 2), padding=((1, 0), (1, 1)), mode="avg",
                            count_include_pad=False),
    "avg_divisor": dict(kernel_size=2, stride=1, mode="avg", divisor_override=3),
    "sum_same": dict(kernel_size=3, stride=2, padding="same", mode="sum"),
}


def pool_case(name, ties):
    def run(rng, dtype):
        shape = (2, 3, 11, 10)
        # small integers make ties inside windows: the argmax rule must agree exactly
        x = rng.integers(0, 3, shape).astype(dtype) if ties else _normal(rng, shape, dtype)
        y, state = F.pool2d(x, return_state=True, **POOL[name])
        return y, F.pool2d_backward(_normal(rng, y.shape, dtype), state)

    return run


def whole_plane_case(fn, *args):
    def run(rng, dtype):
        x = rng.integers(0, 4, (3, 4, 7, 9)).astype(dtype)
        y, state = fn(x, *args, return_state=True)
        return y, F.pool2d_backward(_normal(rng, y.shape, dtype), state)

    return run


LRN = {
    "across5_torch": dict(size=5, alpha=1e-2, beta=0.75, k=2.0),
    "across4_paper_pow": dict(size=4, alpha=1e-3, beta=0.6, k=1.0, convention="paper"),
    "across_window_wider_than_channels": dict(size=9, alpha=0.1, beta=0.5, k=1.0),
    "within3": dict(size=3, alpha=0.5, beta=0.75, k=1.0, mode="within"),
    "within4_beta1": dict(size=4, alpha=0.3, beta=1.0, k=1.0, mode="within"),
}


def lrn_case(name):
    def run(rng, dtype):
        # 40x30 pixels: more than one 1024-pixel block per image in the across kernels
        x = _normal(rng, (2, 7, 40, 30), dtype)
        y, state = F.local_response_norm(x, return_state=True, **LRN[name])
        return y, F.local_response_norm_backward(_normal(rng, y.shape, dtype), state)

    return run


def batch_norm_case(training, shape):
    def run(rng, dtype):
        C = shape[1]
        x = (_normal(rng, shape, dtype) * 3 + 5).astype(dtype)
        gamma, beta = _normal(rng, C, dtype), _normal(rng, C, dtype)
        rm, rv = rng.standard_normal(C), rng.random(C) + 0.5
        y, state = F.batch_norm(x, gamma, beta, rm, rv, training, return_state=True)
        gx, gg, gb = F.batch_norm_backward(_normal(rng, shape, dtype), state)
        return y, rm, rv, gx, gg, gb

    return run


def act_case(fn, backward, **kw):
    def run(rng, dtype):
        x = (_normal(rng, (4, 5, 6, 7), dtype) * 3).astype(dtype)
        y, state = fn(x, return_state=True, **kw)
        return y, backward(_normal(rng, y.shape, dtype), state)

    return run


def dropout_case(rng, dtype):
    x = _normal(rng, (4, 5, 6, 7), dtype)
    y, state = F.dropout(x, 0.3, np.random.default_rng(7), training=True, return_state=True)
    return y, F.dropout_backward(_normal(rng, y.shape, dtype), state)


def drop_path_case(rng, dtype):
    x = _normal(rng, (6, 5, 4, 3), dtype)
    y, state = F.drop_path(x, 0.5, np.random.default_rng(7), training=True, return_state=True)
    return y, F.drop_path_backward(_normal(rng, y.shape, dtype), state)


CASES = {
    **{f"conv_{name}": conv_case(name) for name in CONV},
    **{f"pool_{name}": pool_case(name, ties=False) for name in POOL},
    **{f"pool_{name}_ties": pool_case(name, ties=True) for name in POOL if POOL[name]["mode"] in ("max", "min")},
    "global_max_pool_ties": whole_plane_case(F.global_max_pool2d),
    "global_avg_pool": whole_plane_case(F.global_avg_pool2d),
    "adaptive_avg_pool_down": whole_plane_case(F.adaptive_avg_pool2d, (3, 4)),
    "adaptive_avg_pool_up": whole_plane_case(F.adaptive_avg_pool2d, (10, 11)),
    **{f"lrn_{name}": lrn_case(name) for name in LRN},
    "batch_norm_train": batch_norm_case(True, (4, 3, 9, 10)),
    "batch_norm_eval": batch_norm_case(False, (4, 3, 9, 10)),
    "batch_norm_train_2d": batch_norm_case(True, (16, 5)),
    "relu": act_case(F.relu, F.relu_backward),
    "leaky_relu": act_case(F.leaky_relu, F.leaky_relu_backward, negative_slope=0.2),
    "elu": act_case(F.elu, F.elu_backward, alpha=0.7),
    "selu": act_case(F.selu, F.selu_backward),
    "gelu": act_case(F.gelu, F.gelu_backward),
    "gelu_tanh": act_case(F.gelu, F.gelu_backward, approximate="tanh"),
    "sigmoid": act_case(F.sigmoid, F.sigmoid_backward),
    "tanh": act_case(F.tanh, F.tanh_backward),
    "softmax": act_case(F.softmax, F.softmax_backward),
    "log_softmax_last_axis": act_case(F.log_softmax, F.log_softmax_backward, axis=-1),
    "dropout": dropout_case,
    "relu6": act_case(F.relu6, F.relu6_backward),
    "hardsigmoid": act_case(F.hardsigmoid, F.hardsigmoid_backward),
    "hardswish": act_case(F.hardswish, F.hardswish_backward),
    "silu": act_case(F.silu, F.silu_backward),
    "channel_shuffle": act_case(F.channel_shuffle, F.channel_shuffle_backward, groups=5),
    "drop_path": drop_path_case,
}


def run_on(backend, case, dtype, seed=0):
    previous = corenet.get_backend()
    corenet.set_backend(backend)
    try:
        return CASES[case](np.random.default_rng(seed), dtype)
    finally:
        corenet.set_backend(previous)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", sorted(CASES))
def test_backends_agree(case, dtype):
    reference, *others = CPU_BACKENDS
    expected = run_on(reference, case, dtype)
    for other in others:
        got = run_on(other, case, dtype)
        assert len(got) == len(expected)
        for i, (a, e) in enumerate(zip(got, expected)):
            if e is None:
                assert a is None, f"{case}: output {i} is None on {reference} but not on {other}"
                continue
            assert a.dtype == e.dtype and a.shape == e.shape, f"{case}: output {i} differs in dtype/shape"
            np.testing.assert_allclose(a, e, err_msg=f"{case} output {i}: {other} vs {reference}", **TOL[dtype])


@pytest.mark.parametrize("case", ["pool_max3s2_ties", "pool_min2_ties", "global_max_pool_ties"])
def test_pooling_ties_route_to_the_same_element(case):
    """Max/min pooling gradients are exact copies of gy: identical in every backend, bit for bit."""
    reference, *others = CPU_BACKENDS
    _, gx_ref = run_on(reference, case, np.float32)
    for other in others:
        _, gx = run_on(other, case, np.float32)
        np.testing.assert_array_equal(gx, gx_ref)
