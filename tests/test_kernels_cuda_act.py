"""The cuda backend's relu6, hardsigmoid, hardswish, silu, drop path and channel shuffle kernels
(issue 17) against the plain-loop oracles of tests/naive.py and the numba CPU kernels, numpy and
device arrays in, and the functional ops and layers on device arrays. How these run without a GPU
(numba's CUDA simulator, in a child pytest): see tests/cuda_sim.py.
"""

import naive
import numpy as np
import pytest
from cuda_sim import DTYPES, IN_SIM, close, needs_cuda, run_under_simulator

import corenet
from corenet import F

if not IN_SIM:

    def test_simulator_run():
        """Every kernel test of this file on numba's CUDA simulator, in a fresh interpreter."""
        run_under_simulator(__file__)


ACTS = ("relu6", "hardsigmoid", "hardswish", "silu")
SPECIAL = [-np.inf, -7.0, -3.0, -2.5, -1e-30, -0.0, 0.0, 1e-30, 2.5, 3.0, 5.99, 6.0, 7.0, np.nan, np.inf]


@needs_cuda
@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("name", ACTS)
def test_act_kernels_against_oracle_and_cpu(name, dt):
    from numba import cuda

    from corenet.kernels.cuda import _runtime, act
    from corenet.kernels.numba_cpu import act as cpu

    rng = np.random.default_rng(6)
    x = np.concatenate([SPECIAL, rng.standard_normal(25) * 4]).astype(dt)
    gy = rng.standard_normal(x.size).astype(dt)
    fwd, bwd = getattr(act, f"{name}_forward"), getattr(act, f"{name}_backward")
    y = fwd(x, np.empty_like(x))
    assert y.dtype == dt
    close(y, naive.__dict__[name](x), dt)  # NaN where the oracle has NaN
    saved = y if name == "relu6" else x  # relu6's backward reads the output
    gx = bwd(gy, saved, np.empty_like(x))
    close(gx, gy.astype(np.float64) * naive.__dict__[name + "_grad"](x), dt)
    cy = getattr(cpu, f"{name}_forward")(x, np.empty_like(x))
    cg = getattr(cpu, f"{name}_backward")(gy, cy if name == "relu6" else x, np.empty_like(x))
    close(y, cy, dt)
    close(gx, cg, dt)
    if name == "relu6":  # exact in any precision
        np.testing.assert_array_equal(y, cy)
        np.testing.assert_array_equal(gx, cg)
    dy = fwd(cuda.to_device(x), cuda.device_array(x.shape, dt))  # device in, device out
    assert _runtime.is_device(dy)
    np.testing.assert_array_equal(dy.copy_to_host(), y)
    dg = bwd(cuda.to_device(gy), cuda.to_device(saved), cuda.device_array(x.shape, dt))
    np.testing.assert_array_equal(dg.copy_to_host(), gx)


@needs_cuda
@pytest.mark.parametrize("dt", DTYPES)
def test_act_drop_path_and_channel_shuffle_kernels_equal_cpu(dt):
    from numba import cuda

    from corenet.kernels.cuda import _runtime, act
    from corenet.kernels.numba_cpu import act as cpu

    rng = np.random.default_rng(7)
    x2 = rng.standard_normal((5, 13)).astype(dt)
    keep = np.array([1, 0, 0, 1, 1], np.uint8)
    scale = dt(1 / 0.6)
    want = cpu.drop_path_forward(x2, keep, scale, np.empty_like(x2))
    np.testing.assert_array_equal(act.drop_path_forward(x2, keep, scale, np.empty_like(x2)), want)
    np.testing.assert_array_equal(act.drop_path_backward(x2, keep, scale, np.empty_like(x2)), want)
    x4 = rng.standard_normal((2, 3, 4, 5)).astype(dt)
    y4 = act.channel_shuffle(x4, np.empty((2, 4, 3, 5), dt))
    np.testing.assert_array_equal(y4, x4.transpose(0, 2, 1, 3))
    d4 = act.channel_shuffle(cuda.to_device(x4), cuda.device_array((2, 4, 3, 5), dt))  # device in, device out
    assert _runtime.is_device(d4) and d4.shape == (2, 4, 3, 5)
    np.testing.assert_array_equal(act.channel_shuffle(d4, cuda.device_array(x4.shape, dt)).copy_to_host(), x4)


@needs_cuda
def test_act_functional_ops_on_device_arrays():
    """The functional ops take device arrays and give device arrays; drop path's flags come from the
    caller's generator, so the result is the CPU's for the same seed."""
    from numba import cuda

    rng = np.random.default_rng(8)
    x = (rng.standard_normal((4, 6, 3, 2)) * 4).astype(np.float32)
    gy = rng.standard_normal(x.shape).astype(np.float32)
    dx, dgy = cuda.to_device(x), cuda.to_device(gy)
    for name in ACTS:
        y, st = getattr(F, name)(dx, return_state=True)
        gx = getattr(F, name + "_backward")(dgy, st)
        y_cpu, st_cpu = getattr(F, name)(x, return_state=True)
        close(y.copy_to_host(), y_cpu, np.float32)
        close(gx.copy_to_host(), getattr(F, name + "_backward")(gy, st_cpu), np.float32)
    y, st = F.channel_shuffle(dx, 3, return_state=True)
    np.testing.assert_array_equal(y.copy_to_host(), naive.channel_shuffle(x, 3).astype(np.float32))
    np.testing.assert_array_equal(F.channel_shuffle_backward(y, st).copy_to_host(), x)
    y, st = F.drop_path(dx, 0.5, np.random.default_rng(3), return_state=True)
    y_cpu, st_cpu = F.drop_path(x, 0.5, np.random.default_rng(3), return_state=True)
    np.testing.assert_array_equal(y.copy_to_host(), y_cpu)
    np.testing.assert_array_equal(F.drop_path_backward(dgy, st).copy_to_host(), F.drop_path_backward(gy, st_cpu))


@needs_cuda
def test_act_separable_conv_layers_on_the_cuda_backend():
    """numpy in, numpy out through the cuda kernels: a small block with every new layer."""
    from corenet import Input, Model
    from corenet import layers as L

    x_in = Input((4, 5, 5))
    h = L.SeparableConv2d(6, 3, padding=1, depth_multiplier=2)(x_in)
    h = L.ChannelShuffle(2)(L.Hardswish()(h))
    h = L.Hardsigmoid()(L.SiLU()(L.ReLU6()(h)))
    model = Model(x_in, L.DropPath(0.5, seed=1)(h), seed=0).astype(np.float64)
    x = np.random.default_rng(9).standard_normal((2, 4, 5, 5))
    want = model.forward(x, training=False)
    previous = corenet.get_backend()
    try:
        corenet.set_backend("cuda")
        got = model.forward(x, training=False)
    finally:
        corenet.set_backend(previous)
    close(got, want, np.float64)
