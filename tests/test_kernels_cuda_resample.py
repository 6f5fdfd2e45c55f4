"""The cuda backend's resample kernels (nearest/bilinear upsampling, gathers in the backward) and
conv_transpose2d on device arrays through the convolution contract, against tests/naive.py and the
Numba backend. How these run without a GPU (numba's CUDA simulator, in a child pytest): see
tests/cuda_sim.py."""

import naive
import numpy as np
import pytest
from cuda_sim import DTYPES, IN_SIM, close, needs_cuda, run_under_simulator

from corenet import F, kernels
from corenet.functional.resample import _axis_table

if not IN_SIM:

    def test_simulator_run():
        """Every kernel test of this file on numba's CUDA simulator, in a fresh interpreter."""
        run_under_simulator(__file__)


@needs_cuda
@pytest.mark.parametrize("dt", DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("mode, sf, ac", [("nearest", 2.2, False), ("nearest", None, False),
                                          ("bilinear", None, False), ("bilinear", 1.75, True)])
def test_resample_kernels_match_numba_bit_for_bit(dt, mode, sf, ac):
    """The gathers add in the CPU scatter's order: equal bits, not only close values."""
    cu, nb = kernels.require("cuda").resample, kernels.require("numba").resample
    rng = np.random.default_rng(3)
    N, C, H, W, Ho, Wo = 2, 2, 4, 3, 9, 7
    x = rng.standard_normal((N, C, H, W)).astype(dt)
    gy = rng.standard_normal((N, C, Ho, Wo)).astype(dt)
    rows = _axis_table(H, Ho, sf, mode, ac, dt)
    cols = _axis_table(W, Wo, None, mode, ac, dt)
    fwd, bwd = f"{mode}_forward", f"{mode}_backward"
    for args, out_shape, name in ((x, gy.shape, fwd), (gy, x.shape, bwd)):
        want, got = np.empty(out_shape, dt), np.full(out_shape, np.nan, dt)
        getattr(nb, name)(args, *rows, *cols, want)
        getattr(cu, name)(args, *rows, *cols, got)
        np.testing.assert_array_equal(got, want)


@needs_cuda
@pytest.mark.parametrize("dt", DTYPES, ids=["f64", "f32"])
def test_upsample_on_device_arrays(dt):
    from numba import cuda

    from corenet.kernels.cuda._runtime import is_device

    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 3, 3, 4)).astype(dt)
    for mode, ac in (("nearest", None), ("bilinear", False), ("bilinear", True)):
        y, st = F.upsample(cuda.to_device(x), scale_factor=(2, 1.5), mode=mode, align_corners=ac, return_state=True)
        assert is_device(y)
        close(y.copy_to_host(), naive.upsample(x, (6, 6), (2, 1.5), mode, bool(ac)), dt)
        gy = rng.standard_normal(y.shape).astype(dt)
        gx = F.upsample_backward(cuda.to_device(gy), st)
        assert is_device(gx)
        close(gx.copy_to_host(), naive.upsample_backward(x.shape, gy, (2, 1.5), mode, bool(ac)), dt)


@needs_cuda
@pytest.mark.parametrize("dt", DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("case", [
    # stride, pads (t, b, l, r), output_padding, dilation, groups: the direct and implicit-GEMM
    # convolution paths, and an output_padding beyond the bottom padding (zero rows appended)
    ((2, 2), (1, 1, 1, 1), (1, 1), (1, 1), 1),
    ((1, 2), (0, 0, 1, 0), (1, 0), (2, 1), 2),
], ids=["stride2", "grouped_dilated_extra_row"])
def test_conv_transpose2d_on_device_arrays(dt, case):
    """Forward (a convolution's input gradient), gx (a convolution), gw and the bias on device."""
    from numba import cuda

    from corenet.kernels.cuda._runtime import is_device

    stride, pads, opad, dil, groups = case
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 4, 3, 3)).astype(dt)
    w = rng.standard_normal((4, 2, 3, 2)).astype(dt)
    b = rng.standard_normal(2 * groups).astype(dt)
    padding = ((pads[0], pads[1]), (pads[2], pads[3]))
    y, st = F.conv_transpose2d(cuda.to_device(x), cuda.to_device(w), cuda.to_device(b), stride, padding, opad,
                               groups, dil, return_state=True)
    assert is_device(y)
    close(y.copy_to_host(), naive.conv_transpose2d(x, w, b, stride, pads, opad, dil, groups), dt)
    gy = rng.standard_normal(y.shape).astype(dt)
    grads = F.conv_transpose2d_backward(cuda.to_device(gy), st)
    assert all(is_device(g) for g in grads)
    for g, r in zip(grads, naive.conv_transpose2d_backward(x, w, gy, stride, pads, dil, groups)):
        close(g.copy_to_host(), r, dt)


@needs_cuda
def test_encoder_decoder_trains_on_device_like_on_cpu(monkeypatch):
    """ConvTranspose2d (bias, output_padding) and Upsample inside a graph on ``model.to("cuda")``:
    two SGD steps give the CPU's weights, and only the loss comes back to the host."""
    from corenet import Input, Model, optim
    from corenet import layers as L
    from corenet.kernels.cuda._runtime import cuda

    def net():
        x = Input((2, 6, 6), np.float64)
        h = L.ReLU()(L.Conv2d(3, 3, stride=2, padding=1)(x))                                    # (3, 3, 3)
        h = L.ConvTranspose2d(2, 3, stride=2, padding=1, output_padding=1)(h)                   # (2, 6, 6)
        h = L.MaxPool2d(2)(L.Concat()([h, x]))                                                  # (4, 3, 3)
        h = L.Conv2d(2, 1)(L.Upsample(scale_factor=2, mode="bilinear")(h))                      # (2, 6, 6)
        return Model(x, L.Linear(3)(L.Flatten()(L.Upsample(size=(4, 5))(h))), seed=2)

    cpu, gpu = net(), net()
    for m in (cpu, gpu):
        m.compile(optim.SGD(lr=0.1, momentum=0.9), "cross_entropy")
    gpu.to("cuda")
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((4, 2, 6, 6)), rng.integers(0, 3, 4)
    cls = type(cuda.to_device(np.zeros(1)))
    copies, original = [], cls.copy_to_host
    monkeypatch.setattr(cls, "copy_to_host", lambda self, *a, **k: copies.append(tuple(self.shape))
                        or original(self, *a, **k))
    for _ in range(2):
        del copies[:]
        np.testing.assert_allclose(gpu.train_on_batch(x, y), cpu.train_on_batch(x, y), rtol=1e-9)
        assert copies == [(1,)], f"device-to-host copies {copies} (only the loss may come back)"
    monkeypatch.undo()
    ref, got = cpu.state_dict(), gpu.state_dict()
    for k in ref:
        close(got[k] if isinstance(got[k], np.ndarray) else got[k].copy_to_host(), ref[k], np.float64)
