"""Device-resident training (``model.to("cuda")``): the same small nets trained on the GPU and on
the CPU reach the same weights, nothing but the loss returns to the host during a step, and a
model moves back to the CPU intact. Runs under numba's CUDA simulator in a child pytest when there
is no GPU (see tests/cuda_sim.py); shapes are tiny because the simulator runs one Python thread
per CUDA thread.
"""

import sys

import numpy as np
import pytest
from cuda_sim import CUDA_OK, IN_SIM, needs_cuda, run_under_simulator

from corenet import Input, Model, optim
from corenet import layers as L

if not IN_SIM:

    def test_simulator_run():
        """Every test of this file on numba's CUDA simulator, in a fresh interpreter."""
        run_under_simulator(__file__)


TOL = dict(rtol=1e-9, atol=1e-11)
DT = np.float64


def _plain_net(seed=3, dtype=DT):
    """conv - BN - ReLU - maxpool - flatten - linear."""
    x = Input((2, 6, 6), dtype)
    h = L.ReLU()(L.BatchNorm2d()(L.Conv2d(3, 3, padding=1, bias=False)(x)))
    out = L.Linear(4)(L.Flatten()(L.MaxPool2d(2)(h)))
    return Model(x, out, seed=seed)


def _merge_net(seed=5):
    """A residual Add and an Inception-style Concat; ``x`` fans out to three branches, so the graph
    sums device gradients too; ZeroPad2d and average pooling on the way."""
    x = Input((2, 5, 5), DT)
    h = L.ReLU()(L.BatchNorm2d()(L.Conv2d(3, 3, padding=1, bias=False)(x)))
    y = L.Add()([h, L.Conv2d(3, 1)(x)])
    z = L.Concat()([y, L.MaxPool2d(3, 1, padding=1)(x)])
    z = L.AvgPool2d(2)(L.ZeroPad2d(((0, 1), (0, 1)))(z))
    out = L.Linear(3)(L.Flatten()(z))
    return Model(x, out, seed=seed)


def _gated_net(seed=7):
    """Squeeze-and-excitation gates ((N, C) times (N, C, H, W)) and a same-shape Multiply."""
    x = Input((2, 4, 4), DT)
    h = L.Tanh()(L.Conv2d(3, 3, padding=1)(x))
    gate = L.Sigmoid()(L.Linear(3)(L.Flatten()(L.GlobalAvgPool2d()(h))))
    h = L.Multiply()([h, gate])
    h = L.Multiply()([h, L.Conv2d(3, 1)(x)])
    out = L.Linear(3)(L.Flatten()(L.AvgPool2d(2)(h)))
    return Model(x, out, seed=seed)


def _lrn_net(seed=11):
    """AlexNet-style pieces: strided conv, LRN across and within channels, ELU, global max pooling."""
    x = Input((2, 7, 7), DT)
    h = L.LocalResponseNorm(3, alpha=0.5, k=2.0)(L.Conv2d(4, 3, stride=2, padding=1)(x))
    h = L.LocalResponseNorm(3, alpha=0.5, mode="within")(L.ELU()(h))
    out = L.Linear(3)(L.Flatten()(L.GlobalMaxPool2d()(h)))
    return Model(x, out, seed=seed)


def _shuffle_net(seed=13):
    """ShuffleNet v2's unit in small: the channel split (two ChannelSlice), a separable convolution,
    Hardswish, Concat and ChannelShuffle; a ChannelPad (the CIFAR ResNet's option-A shortcut)."""
    x = Input((4, 4, 4), DT)
    left, right = L.ChannelPad(1, 1)(L.ChannelSlice(0, 2)(x)), L.ChannelSlice(2, 4)(x)
    right = L.Hardswish()(L.SeparableConv2d(2, 3, padding=1)(right))
    h = L.ChannelShuffle(2)(L.Concat()([left, right]))
    out = L.Linear(3)(L.Flatten()(L.AvgPool2d(2)(h)))
    return Model(x, out, seed=seed)


def _data(shape, k, n=4, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, *shape)).astype(DT), rng.integers(0, k, n)


def _host(a):
    return a if isinstance(a, np.ndarray) else a.copy_to_host()


def _assert_same_state(cpu, gpu):
    ref, got = cpu.state_dict(), gpu.state_dict()
    assert ref.keys() == got.keys()
    for k in ref:
        np.testing.assert_allclose(_host(got[k]), ref[k], **TOL, err_msg=k)


@pytest.fixture(autouse=True)
def host_copies(monkeypatch):
    """Device-to-host copies, recorded by shape: explicit ``copy_to_host`` calls and implicit numpy
    conversions. The simulator's device array also does numpy arithmetic (``a + b``), which a real
    device array does not: that is switched off here, so the simulator fails where a GPU would."""
    if not CUDA_OK:
        return []
    from corenet.kernels.cuda._runtime import cuda

    cls = type(cuda.to_device(np.zeros(1)))
    calls = []
    original = cls.copy_to_host

    def spy(self, *args, **kwargs):
        calls.append(tuple(self.shape))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(cls, "copy_to_host", spy)
    if IN_SIM:
        getattr_ = cls.__getattr__

        def getattr_spy(self, name):
            # numpy asking for the host buffer, other than inside the simulator's own device code
            # (its device-to-device copy_to_device is an np.copyto)
            if name in ("__array__", "__array_interface__", "__array_struct__") and \
                    "simulator" not in sys._getframe(1).f_code.co_filename:
                calls.append(tuple(self.shape))
            return getattr_(self, name)

        def no_arithmetic(self, other):
            raise TypeError("arithmetic on a device array (the simulator allows it, numba.cuda does not)")

        monkeypatch.setattr(cls, "__getattr__", getattr_spy)
        for op in ("__add__", "__sub__", "__mul__", "__truediv__", "__floordiv__", "__mod__", "__pow__"):
            monkeypatch.setattr(cls, op, no_arithmetic)
    return calls


@needs_cuda
@pytest.mark.parametrize("make, opt", [
    (_plain_net, lambda: optim.SGD(lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3)),
    (_merge_net, lambda: optim.Adam(lr=0.01, weight_decay=1e-3)),
    (_gated_net, lambda: optim.AdamW(lr=0.01)),
    (_lrn_net, lambda: optim.SGD(lr=0.1)),
    (_plain_net, lambda: optim.RMSProp(lr=0.01, weight_decay=1e-3)),
    (_shuffle_net, lambda: optim.SGD(lr=0.1, momentum=0.9)),
], ids=["conv-bn-relu-pool-linear/sgd", "add-concat/adam", "multiply-gates/adamw", "lrn-elu-globalmax/sgd",
        "conv-bn-relu-pool-linear/rmsprop", "channel-slice-pad-shuffle/sgd"])
def test_device_training_matches_cpu(make, opt, host_copies):
    cpu, gpu = make(), make()
    x, y = _data(cpu.inputs[0].shape, cpu.outputs[0].shape[0])
    cpu.compile(opt(), "cross_entropy")
    gpu.compile(opt(), "cross_entropy")
    gpu.to("cuda")
    assert gpu.device == "cuda" and not isinstance(gpu.parameters()["linear.weight"], np.ndarray)
    for step in range(2):
        del host_copies[:]
        loss_gpu = gpu.train_on_batch(x, y)
        assert host_copies == [(1,)], f"step {step}: device-to-host copies {host_copies} (only the loss may come back)"
        np.testing.assert_allclose(loss_gpu, cpu.train_on_batch(x, y), **TOL)
    _assert_same_state(cpu, gpu)
    grads = gpu.gradients()
    for k, g in cpu.gradients().items():
        np.testing.assert_allclose(_host(grads[k]), g, **TOL, err_msg=k)
    slots = gpu.optimizer.state_dict()
    ref = cpu.optimizer.state_dict()
    assert slots.keys() == ref.keys() and int(slots["iterations"]) == int(ref["iterations"]) == 2
    for k in (k for k in ref if k.startswith("slot/")):
        np.testing.assert_allclose(slots[k], ref[k], **TOL, err_msg=k)


@needs_cuda
def test_to_cpu_round_trip_and_eval_outputs():
    cpu, gpu = _plain_net(), _plain_net()
    x, y = _data((2, 6, 6), 4)
    for m in (cpu, gpu):
        m.compile(optim.SGD(lr=0.1, momentum=0.9), "cross_entropy")
    gpu.to("cuda")
    gpu.train_on_batch(x, y)
    cpu.train_on_batch(x, y)
    out = gpu.forward(x)  # forward keeps device arrays; predict and evaluate answer in numpy
    assert not isinstance(out, np.ndarray)
    np.testing.assert_allclose(out.copy_to_host(), cpu.forward(x), **TOL)
    pred = gpu.predict(x, batch_size=3)
    assert isinstance(pred, np.ndarray)
    np.testing.assert_allclose(pred, cpu.predict(x, batch_size=3), **TOL)
    ev_gpu, ev_cpu = gpu.evaluate(x, y), cpu.evaluate(x, y)
    assert ev_gpu.keys() == ev_cpu.keys()
    for k in ev_cpu:
        np.testing.assert_allclose(ev_gpu[k], ev_cpu[k], **TOL)
    gpu.to("cpu")  # back: every array numpy again, and training continues exactly as on the CPU
    assert gpu.device == "cpu"
    for d in (gpu.state_dict(), gpu.gradients(), *gpu.optimizer.slots.values()):
        assert all(isinstance(v, np.ndarray) for v in d.values())
    gpu.train_on_batch(x, y)
    cpu.train_on_batch(x, y)
    _assert_same_state(cpu, gpu)


@needs_cuda
def test_fit_on_device_matches_cpu():
    cpu, gpu = _plain_net(), _plain_net()
    x, y = _data((2, 6, 6), 4, n=6)
    for m in (cpu, gpu):
        m.compile(optim.SGD(lr=0.05), "cross_entropy", metrics=("accuracy",))
    gpu.to("cuda")
    h_cpu = cpu.fit(x, y, batch_size=3, epochs=1, seed=1, verbose=0).history
    h_gpu = gpu.fit(x, y, batch_size=3, epochs=1, seed=1, verbose=0).history
    for k in ("loss", "accuracy"):
        np.testing.assert_allclose(h_gpu[k], h_cpu[k], **TOL)
    _assert_same_state(cpu, gpu)


@needs_cuda
def test_dropout_on_device_draws_its_mask_on_the_gpu():
    x_in = Input((8,), DT)
    model = Model(x_in, L.Linear(2)(L.Dropout(0.5)(L.Linear(8)(x_in))), seed=0)
    model.compile(optim.SGD(lr=0.1), "cross_entropy")
    model.to("cuda")
    x, y = _data((8,), 2)
    assert np.isfinite(model.train_on_batch(x, y))
    drop = model.get_layer("dropout")
    h = model.get_layer("linear").forward(model._as_inputs(x)[0])
    kept = drop.forward(h, training=True, retain=False).copy_to_host() != 0
    assert 0 < kept.mean() < 1


@needs_cuda
def test_unsupported_on_device_says_what_is_supported():
    model = _plain_net()
    model.compile(optim.RMSProp(clip_norm=1.0), "cross_entropy")
    model.to("cuda")
    x, y = _data((2, 6, 6), 4)
    with pytest.raises(NotImplementedError, match="clipping on device arrays .*SGD .*Adam.*RMSProp"):
        model.train_on_batch(x, y)


@needs_cuda
def test_save_and_load_weights_of_a_model_on_device(tmp_path):
    gpu, cpu = _plain_net(seed=3), _plain_net(seed=4)
    x, y = _data((2, 6, 6), 4)
    gpu.compile(optim.SGD(lr=0.1, momentum=0.9), "cross_entropy")
    gpu.to("cuda")
    gpu.train_on_batch(x, y)
    gpu.save_weights(tmp_path / "w.npz")  # device arrays are written as numpy
    cpu.load_weights(tmp_path / "w.npz")
    _assert_same_state(cpu, gpu)
    fresh = _plain_net(seed=9).to("cuda")
    fresh.load_weights(tmp_path / "w.npz")  # into device arrays, in place
    assert not isinstance(fresh.parameters()["linear.weight"], np.ndarray)
    _assert_same_state(cpu, fresh)


@needs_cuda
def test_float32_and_frozen_batch_norm():
    """float32 end to end (float32 running statistics, the update kernels' float32 scalars), and a
    frozen batch norm (running statistics in training, the eval-mode backward)."""
    for dtype, freeze, tol in ((np.float32, False, dict(rtol=2e-4, atol=2e-5)), (DT, True, TOL)):
        cpu, gpu = _plain_net(dtype=dtype), _plain_net(dtype=dtype)
        x, y = _data((2, 6, 6), 4)
        for m in (cpu, gpu):
            m.get_layer("batch_norm2d").trainable = not freeze
            m.compile(optim.SGD(lr=0.1, momentum=0.9), "cross_entropy")
        gpu.to("cuda")
        for _ in range(2):
            np.testing.assert_allclose(gpu.train_on_batch(x.astype(dtype), y), cpu.train_on_batch(x.astype(dtype), y),
                                       **tol)
        ref, got = cpu.state_dict(), gpu.state_dict()
        for k in ref:
            assert _host(got[k]).dtype == ref[k].dtype, k
            np.testing.assert_allclose(_host(got[k]), ref[k], **tol, err_msg=k)


@needs_cuda
@pytest.mark.parametrize("make", [_plain_net, _merge_net, _gated_net], ids=["plain", "merge", "gated"])
def test_a_training_step_reuses_device_memory_and_uploads_only_the_batch(make, host_copies, monkeypatch):
    """From the third step on, every device allocation of a step (outputs, partials, gradients:
    dozens) is served by the caching allocator, none by a new allocation (the first step fills the
    cache; in the second, the first step's retained activations and gradients are still alive
    until replaced, so it adds their blocks once); the only host-to-device copies are the batch
    (inputs and labels), the only device-to-host copy the loss."""
    import gc

    from corenet.kernels.cuda import _runtime

    if not _runtime.alloc_stats():
        pytest.skip("CORENET_CUDA_ALLOCATOR=numba: numba's own manager, no cache to count")
    model = make()
    x, y = _data(model.inputs[0].shape, model.outputs[0].shape[0])
    model.compile(optim.Adam(lr=0.01), "cross_entropy")
    model.to("cuda")
    uploads = []
    to_device = _runtime.cuda.to_device

    def spy(a, *args, **kwargs):
        uploads.append(np.shape(a))
        return to_device(a, *args, **kwargs)

    monkeypatch.setattr(_runtime.cuda, "to_device", spy)
    for _ in range(2):  # the optimizer's slots, and the cache filled
        model.train_on_batch(x, y)
    gc.collect()
    for step in (3, 4):
        del uploads[:], host_copies[:]
        before = _runtime.alloc_stats()
        model.train_on_batch(x, y)
        after = _runtime.alloc_stats()
        requests = after["requests"] - before["requests"]
        new = after["raw_allocs"] - before["raw_allocs"]
        assert requests > 20 and new == 0, f"step {step}: {requests} device allocations, {new} of them new"
        assert sorted(uploads) == sorted([x.shape, y.shape]), f"step {step}: host-to-device copies {uploads}"
        assert host_copies == [(1,)], f"step {step}: device-to-host copies {host_copies}"
