"""Per-element (segmentation) cross-entropy: logits ``(N, K, d1, ...)`` against labels ``(N, d1, ...)``
or distributions of the logits' shape, ``ignore_index``, label smoothing and the three reductions,
against a plain-loop oracle, PyTorch's ``F.cross_entropy`` and float64 finite differences; dtype
preservation, shape errors, device arrays (numba's CUDA simulator, in a child pytest), pixel
accuracy, and ``fit`` of a small fully-convolutional model on per-pixel labels."""

import math

import numpy as np
import pytest
from cuda_sim import IN_SIM, needs_cuda, run_under_simulator
from gradcheck import numerical_grad

from corenet import F, Input, Model, losses, metrics, optim
from corenet import layers as L

if not IN_SIM:

    def test_simulator_run():
        """The device tests of this file on numba's CUDA simulator, in a fresh interpreter."""
        run_under_simulator(__file__)


def xent_oracle(z, t, ls=0.0, reduction="mean", ignore_index=-100):
    """Straight from the definition, one element (sample, pixel) at a time, in float64."""
    z = np.asarray(z, np.float64)
    K, rest = z.shape[1], z.shape[2:]
    loss = np.zeros((z.shape[0], *rest))
    grad = np.zeros_like(z)
    count = 0
    for n in range(z.shape[0]):
        for pos in np.ndindex(*rest):
            row = (n, slice(None), *pos)
            if t.shape == z.shape:
                q = np.asarray(t[row], np.float64)
            elif int(t[(n, *pos)]) == ignore_index:
                continue
            else:
                q = np.eye(K)[int(t[(n, *pos)])]
            count += 1
            q = (1 - ls) * q + ls / K
            zz = z[row]
            lse = zz.max() + math.log(sum(math.exp(v - zz.max()) for v in zz))
            loss[(n, *pos)] = -sum(q[k] * (zz[k] - lse) for k in range(K))
            grad[row] = np.exp(zz - lse) * q.sum() - q
    if reduction == "none":
        return loss, grad
    if reduction == "sum":
        return loss.sum(), grad
    return (loss.sum() / count, grad / count) if count else (math.nan, grad)


def _labels(rng, shape, k, ignored=0.0, ignore_index=-100):
    y = rng.integers(0, k, shape)
    y[rng.random(shape) < ignored] = ignore_index
    return y


def _probabilities(rng, shape):
    p = rng.random(shape)
    return p / p.sum(axis=1, keepdims=True)


SHAPES = [(2, 3, 4, 5), (3, 4, 6), (2, 3, 2, 2, 3), (4, 5)]  # (N, K, H, W), (N, K, L), 3-D, plain rows


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_matches_the_oracle(rng, shape, reduction):
    z = rng.standard_normal(shape) * 3
    label_shape = shape[:1] + shape[2:]
    cases = [(_labels(rng, label_shape, shape[1], 0.3), 0.0, -100), (_labels(rng, label_shape, shape[1]), 0.2, -100),
             (_labels(rng, label_shape, shape[1], 0.3, 2), 0.1, 2),  # an in-range class ignored
             (_probabilities(rng, shape), 0.0, -100), (_probabilities(rng, shape), 0.25, -100)]
    for t, ls, ii in cases:
        loss, g = losses.CrossEntropy(ls, reduction, ii)(z, t)
        want, want_g = xent_oracle(z, t, ls, reduction, ii)
        np.testing.assert_allclose(loss, want, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(g, want_g, rtol=1e-12, atol=1e-14)
        assert g.shape == z.shape and g.flags.c_contiguous
        if reduction == "none":
            assert loss.shape == label_shape and loss.dtype == np.float64
        else:
            assert isinstance(loss, float)


@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (3, 4, 6)])
def test_against_torch(rng, shape):
    torch = pytest.importorskip("torch")
    tf = torch.nn.functional
    z = rng.standard_normal(shape)
    label_shape = shape[:1] + shape[2:]
    cases = [(_labels(rng, label_shape, shape[1]), dict()),
             (_labels(rng, label_shape, shape[1], 0.4), dict(label_smoothing=0.1)),
             (_labels(rng, label_shape, shape[1], 0.4, 1), dict(ignore_index=1, label_smoothing=0.2)),
             (_probabilities(rng, shape), dict()), (_probabilities(rng, shape), dict(label_smoothing=0.15))]
    for t, kw in cases:
        for reduction in ("mean", "sum", "none"):
            zt = torch.tensor(z, requires_grad=True)
            lt = tf.cross_entropy(zt, torch.tensor(t), reduction=reduction, **kw)
            lt.sum().backward()
            loss, g = losses.CrossEntropy(reduction=reduction, **kw)(z, t)
            np.testing.assert_allclose(loss, lt.detach().numpy(), rtol=1e-10, atol=1e-12)
            np.testing.assert_allclose(g, zt.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_every_label_ignored_is_nan_as_in_torch(rng):
    z = rng.standard_normal((2, 3, 2, 2))
    y = np.full((2, 2, 2), -100)
    loss, g = losses.CrossEntropy()(z, y)
    assert math.isnan(loss) and g.shape == z.shape and not g.any()
    loss, g = losses.CrossEntropy(label_smoothing=0.1, reduction="sum")(z, y)
    assert loss == 0.0 and not g.any()
    loss, g = losses.CrossEntropy(reduction="none")(z, y)
    assert loss.shape == (2, 2, 2) and not loss.any() and not g.any()
    torch = pytest.importorskip("torch")
    zt = torch.tensor(z, requires_grad=True)
    lt = torch.nn.functional.cross_entropy(zt, torch.tensor(y))
    lt.backward()
    assert math.isnan(lt.item()) and not zt.grad.numpy().any()


def test_rows_accept_ignore_index_and_stay_as_before(rng):
    """(N, K) logits: -100 labels are skipped now (torch's default) and the mean is over the rest."""
    z = rng.standard_normal((6, 4))
    y = np.array([0, -100, 3, 1, -100, 2])
    loss, g = losses.CrossEntropy()(z, y)
    kept, g_kept = losses.CrossEntropy()(z[y >= 0], y[y >= 0])
    assert loss == kept and np.array_equal(g[y >= 0], g_kept) and not g[y < 0].any()
    with pytest.raises(ValueError, match=r"label -1 \(at index 1\) is out of range for 4 classes; expected "
                                         r"0 <= label < 4 or label == ignore_index \(-100\)"):
        losses.CrossEntropy()(z, np.array([0, -1, 3, 1, 0, 2]))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_gradient_is_float64_finite_differences(rng, reduction):
    z = rng.standard_normal((2, 3, 3, 2))
    y = _labels(rng, (2, 3, 2), 3, 0.3)
    p = _probabilities(rng, z.shape)
    y0 = _labels(rng, (2, 3, 2), 3, 0.3, 0)  # class 0 ignored
    for fn, t in [(losses.CrossEntropy(0.1, reduction), y), (losses.CrossEntropy(0.2, reduction), p),
                  (losses.CrossEntropy(0.0, reduction, ignore_index=0), y0)]:
        _, g = fn(z, t)
        work = z.copy()
        num = numerical_grad(lambda fn=fn, t=t, work=work: float(np.sum(fn(work, t)[0])), work)
        np.testing.assert_allclose(g, num, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_dtype_is_preserved(rng, reduction):
    z = rng.standard_normal((2, 4, 3, 3)).astype(np.float32)
    y = _labels(rng, (2, 3, 3), 4, 0.2)
    for t in (y, _probabilities(rng, z.shape).astype(np.float32)):
        loss32, g32 = losses.CrossEntropy(0.1, reduction)(z, t)
        loss64, g64 = losses.CrossEntropy(0.1, reduction)(z.astype(np.float64), t)
        assert g32.dtype == np.float32 and g64.dtype == np.float64
        if reduction == "none":
            assert loss32.dtype == np.float32 and loss64.dtype == np.float64
        else:
            assert isinstance(loss32, float) and isinstance(loss64, float)
        np.testing.assert_allclose(loss32, loss64, rtol=1e-5)
        np.testing.assert_allclose(g32, g64, rtol=1e-4, atol=1e-7)


def test_bad_shapes_and_arguments_name_the_op():
    z = np.zeros((2, 3, 4, 5), np.float32)
    fn = losses.CrossEntropy()
    with pytest.raises(ValueError, match=r"cross_entropy: integer targets must have shape \(2, 4, 5\) .*received "
                                         r"target.shape=\(2, 4, 4\)"):
        fn(z, np.zeros((2, 4, 4), np.int64))
    with pytest.raises(ValueError, match=r"cross_entropy: target must be labels \(2, 4, 5\) or probabilities "
                                         r"\(2, 3, 4, 5\) .*received target.shape=\(2, 3, 4, 4\)"):
        fn(z, np.zeros((2, 3, 4, 4), np.float32))
    with pytest.raises(ValueError, match=r"received target.shape=\(2, 20\)"):
        fn(z, np.zeros((2, 20), np.int64))
    with pytest.raises(ValueError, match=r"cross_entropy: label 3 \(at index \(1, 2, 0\)\) is out of range for 3"):
        y = np.zeros((2, 4, 5), np.int64)
        y[1, 2, 0] = 3
        fn(z, y)
    with pytest.raises(ValueError, match=r"cross_entropy: output must be logits of shape \(N, K\) or \(N, K, d1, "
                                         r"\.\.\.\), received output.shape=\(5,\)"):
        fn(np.zeros(5, np.float32), np.zeros(5, np.int64))
    with pytest.raises(ValueError, match=r"cross_entropy: .*received output.shape=\(2, 3, 0, 5\)"):
        fn(np.zeros((2, 3, 0, 5), np.float32), np.zeros((2, 0, 5), np.int64))
    with pytest.raises(TypeError, match="CrossEntropy: ignore_index must be an int"):
        losses.CrossEntropy(ignore_index=1.5)
    with pytest.raises(ValueError, match=r"CrossEntropy: reduction must be one of \('mean', 'sum', 'none'\)"):
        losses.CrossEntropy(reduction="avg")


def test_config_round_trip():
    fn = losses.CrossEntropy(0.1, "sum", ignore_index=255)
    assert fn.get_config() == {"label_smoothing": 0.1, "reduction": "sum", "ignore_index": 255}
    assert losses.CrossEntropy(**fn.get_config()).get_config() == fn.get_config()
    assert "ignore_index=255" in repr(fn)


def test_pixel_accuracy_metrics(rng):
    out = rng.standard_normal((2, 3, 4, 4))
    y = out.argmax(axis=1)
    y[0, 0, :2] = (y[0, 0, :2] + 1) % 3  # two wrong pixels
    y[1, 3, :3] = -100  # three ignored
    assert metrics.accuracy(out, y) == (32 - 3 - 2, 32 - 3)
    assert metrics.accuracy(out, np.moveaxis(np.eye(3)[out.argmax(axis=1)], -1, 1)) == (32, 32)
    assert losses.accuracy(out, y) == pytest.approx(27 / 29)
    assert losses.top_k_accuracy(out, y, k=3) == 1.0
    with pytest.raises(ValueError, match=r"accuracy: targets must be class indices of shape \(2, 4, 4\)"):
        metrics.accuracy(out, y[:, :3])


def test_fit_fully_convolutional_model_on_pixel_labels(rng):
    """Each pixel's class is the arg-max of a fixed mix of its two input channels (learnable by a 1x1
    head); pixels labelled -100 are left out of the loss and of the reported pixel accuracy."""
    x = rng.standard_normal((64, 2, 6, 6)).astype(np.float32)
    mix = np.array([[1.0, 0.0], [-1.0, 1.0], [0.0, -1.0]], np.float32)
    y = np.einsum("kc,nchw->nkhw", mix, x).argmax(axis=1)
    y[:, 0, :] = -100  # the first row of every image carries no label
    inp = Input((2, 6, 6))
    h = L.ReLU()(L.Conv2d(8, 3, padding=1, name="c1")(inp))
    model = Model(inp, L.Conv2d(3, 1, name="head")(L.Concat()([h, inp])), seed=0)
    model.compile(optim.Adam(lr=0.02), losses.CrossEntropy(), metrics=["accuracy"])
    start = model.evaluate(x, y)
    history = model.fit(x, y, batch_size=16, epochs=8, seed=0, verbose=0, validation_data=(x[:16], y[:16]))
    logs = history.history
    assert logs["loss"][-1] < 0.5 * logs["loss"][0] and logs["accuracy"][-1] > 0.9
    assert "val_accuracy" in logs
    end = model.evaluate(x, y)
    assert end["loss"] < start["loss"] and end["accuracy"] > 0.9
    pred = model.predict(x).argmax(axis=1)
    assert end["accuracy"] == pytest.approx(np.mean(pred[:, 1:] == y[:, 1:]))  # the -100 row is left out


# ------------------------------------------------------------------------ device arrays
@needs_cuda
def test_device_logits_take_rows_only_and_say_so(rng):
    z = rng.standard_normal((2, 3, 2, 2)).astype(np.float32)
    y = _labels(rng, (2, 2, 2), 3)
    with pytest.raises(NotImplementedError, match=r"cross_entropy: device \(GPU\) logits must have shape \(N, K\), "
                                                  r"received \(2, 3, 2, 2\); per-element .* CPU only"):
        losses.CrossEntropy()(F.move(z, "cuda"), y)
    rows, labels = z.reshape(8, 3), y.reshape(8)
    with pytest.raises(NotImplementedError, match=r"cross_entropy: reduction='none' runs on the CPU only"):
        losses.CrossEntropy(reduction="none")(F.move(rows, "cuda"), labels)
    labels[3] = -100
    with pytest.raises(NotImplementedError, match=r"cross_entropy: labels equal to ignore_index \(-100\)"):
        losses.CrossEntropy()(F.move(rows, "cuda"), labels)
    labels[3] = 1
    loss, g = losses.CrossEntropy(0.1)(F.move(rows, "cuda"), labels)
    want, want_g = losses.CrossEntropy(0.1)(rows, labels)
    assert F.item(loss) == pytest.approx(want, rel=1e-6)
    np.testing.assert_allclose(F.to_host(g), want_g, rtol=1e-4, atol=1e-6)


def test_compile_refuses_a_per_element_loss():
    from corenet import Sequential

    model = Sequential([L.Flatten(), L.Linear(3)], input_shape=(1, 2, 2))
    with pytest.raises(ValueError, match=r"compile: the loss CrossEntropy\(reduction='none'\).*expected reduction"):
        model.compile("sgd", losses.CrossEntropy(reduction="none"))
    model.compile("sgd", losses.CrossEntropy(reduction="sum"))  # one number: accepted
