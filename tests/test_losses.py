"""Losses: values against hand-computed formulas, gradients against float64 finite differences,
stability, label smoothing, target forms and bad labels."""

import math

import numpy as np
import pytest

from corenet import losses


def numerical_grad(f, x, eps=1e-6):
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + eps
        fp = f(x)
        x[i] = old - eps
        fm = f(x)
        x[i] = old
        g[i] = (fp - fm) / (2 * eps)
    return g


def test_cross_entropy_value_by_hand():
    z = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    loss, g = losses.CrossEntropy()(z, np.array([2, 0]))
    l0 = -(3 - math.log(math.e + math.e**2 + math.e**3))
    l1 = math.log(3)
    assert loss == pytest.approx((l0 + l1) / 2, rel=1e-12)
    p0 = np.exp(z[0]) / np.exp(z[0]).sum()
    np.testing.assert_allclose(g[0], (p0 - [0, 0, 1]) / 2, rtol=1e-12)
    np.testing.assert_allclose(g[1], (np.full(3, 1 / 3) - [1, 0, 0]) / 2, rtol=1e-12)
    loss_sum, g_sum = losses.CrossEntropy(reduction="sum")(z, np.array([2, 0]))
    assert loss_sum == pytest.approx(l0 + l1, rel=1e-12)
    np.testing.assert_allclose(g_sum, 2 * g)


def test_cross_entropy_huge_logits_are_stable():
    z = np.array([[1e30, 0.0, -1e30], [3e38, 3e38, -3e38]], np.float32)
    loss, g = losses.CrossEntropy()(z, np.array([0, 1]))
    assert math.isfinite(loss) and np.all(np.isfinite(g)) and g.dtype == np.float32
    assert loss == pytest.approx(math.log(2) / 2, rel=1e-6)  # row 0: exactly right, row 1: two tied


def test_cross_entropy_one_hot_equals_labels_and_probabilities(rng):
    z = rng.standard_normal((6, 4)).astype(np.float32)
    y = np.array([0, 3, 1, 1, 2, 3])
    onehot = np.eye(4, dtype=np.float32)[y]
    for ls in (0.0, 0.2):
        fn = losses.CrossEntropy(label_smoothing=ls)
        a, ga = fn(z, y)
        b, gb = fn(z, onehot)
        c, gc = fn(z, onehot.astype(np.int64))
        assert a == pytest.approx(b, rel=1e-12) and a == pytest.approx(c, rel=1e-12)
        np.testing.assert_array_equal(ga, gb)
        np.testing.assert_array_equal(ga, gc)
    # float labels holding whole numbers are accepted as labels (Keras does)
    assert fn(z, y.astype(np.float32))[0] == pytest.approx(a)


def test_cross_entropy_label_smoothing_formula(rng):
    z = rng.standard_normal((5, 7))
    y = rng.integers(0, 7, 5)
    ls = 0.1
    loss, g = losses.CrossEntropy(label_smoothing=ls)(z, y)
    logp = z - z.max(1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(1, keepdims=True))
    # PyTorch: (1 - ls) * nll + ls * mean_k(-log p_k)
    nll = -logp[np.arange(5), y]
    expect = np.mean((1 - ls) * nll + ls * (-logp).mean(1))
    assert loss == pytest.approx(expect, rel=1e-12)
    num = numerical_grad(lambda z_: losses.CrossEntropy(label_smoothing=ls)(z_, y)[0], z.copy())
    np.testing.assert_allclose(g, num, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_cross_entropy_soft_targets_gradient(rng, reduction):
    z = rng.standard_normal((4, 5))
    t = rng.random((4, 5))
    t /= t.sum(1, keepdims=True)
    fn = losses.CrossEntropy(reduction=reduction)
    loss, g = fn(z, t)
    num = numerical_grad(lambda z_: fn(z_, t)[0], z.copy())
    np.testing.assert_allclose(g, num, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("bad", [10, -1, 11])
def test_cross_entropy_bad_labels(bad):
    z = np.zeros((3, 10), np.float32)
    with pytest.raises(ValueError, match=rf"label {bad} .* out of range for 10 classes"):
        losses.CrossEntropy()(z, np.array([1, bad, 2]))


def test_cross_entropy_bad_shapes_and_types():
    z = np.zeros((3, 10), np.float32)
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        losses.CrossEntropy()(z, np.array([1, 2]))
    with pytest.raises(ValueError, match="target must be labels"):
        losses.CrossEntropy()(z, np.zeros((3, 9), np.float32))
    with pytest.raises(ValueError, match=r"\(N, K\)"):
        losses.CrossEntropy()(np.zeros(10, np.float32), np.array([1]))
    # (N, K, L) logits are per-element: labels (N, L) expected (tests/test_losses_spatial.py)
    with pytest.raises(ValueError, match=r"labels \(3, 2\) or probabilities \(3, 10, 2\)"):
        losses.CrossEntropy()(np.zeros((3, 10, 2), np.float32), np.array([1, 2, 3]))
    with pytest.raises(ValueError, match="whole numbers"):
        losses.CrossEntropy()(z, np.array([1.0, 2.5, 0.0]))
    with pytest.raises(ValueError, match="label_smoothing"):
        losses.CrossEntropy(label_smoothing=1.5)
    with pytest.raises(TypeError, match="float32/float64"):
        losses.CrossEntropy()(np.zeros((3, 10), np.int32), np.array([1, 2, 3]))


def test_mse_reductions(rng):
    o = rng.standard_normal((3, 4)).astype(np.float32)
    t = rng.standard_normal((3, 4)).astype(np.float32)
    d = o.astype(np.float64) - t
    loss, g = losses.MSE()(o, t)
    assert loss == pytest.approx(np.mean(d**2), rel=1e-12)
    np.testing.assert_allclose(g, 2 * d / d.size, rtol=1e-6)
    assert g.dtype == np.float32
    loss, g = losses.MSE("sum")(o, t)
    assert loss == pytest.approx(np.sum(d**2), rel=1e-12)
    np.testing.assert_allclose(g, 2 * d, rtol=1e-6)
    loss, g = losses.MSE("half_sum")(o, t)  # E = 1/2 sum (t - o)^2 of the lecture notes
    assert loss == pytest.approx(0.5 * np.sum((t.astype(np.float64) - o) ** 2), rel=1e-12)
    np.testing.assert_allclose(g, d, rtol=1e-6)
    o64, t64 = o.astype(np.float64), t.astype(np.float64)
    for red in ("mean", "sum", "half_sum"):
        num = numerical_grad(lambda o_, red=red: losses.MSE(red)(o_, t64)[0], o64.copy())
        np.testing.assert_allclose(losses.MSE(red)(o64, t64)[1], num, rtol=1e-6, atol=1e-9)
    with pytest.raises(ValueError, match="shape"):
        losses.MSE()(o, t[:2])
    with pytest.raises(ValueError, match="reduction"):
        losses.MSE("avg")


def test_bce_with_logits(rng):
    z = rng.standard_normal((4, 3)) * 3
    t = rng.random((4, 3))
    loss, g = losses.BCEWithLogits()(z, t)
    s = 1 / (1 + np.exp(-z))
    assert loss == pytest.approx(np.mean(-t * np.log(s) - (1 - t) * np.log(1 - s)), rel=1e-10)
    num = numerical_grad(lambda z_: losses.BCEWithLogits()(z_, t)[0], z.copy())
    np.testing.assert_allclose(g, num, rtol=1e-6, atol=1e-9)
    big = np.array([[1e4, -1e4]], np.float32)
    loss, g = losses.BCEWithLogits("sum")(big, np.array([[1.0, 0.0]]))
    assert loss == 0.0 and np.array_equal(g, [[0.0, 0.0]])
    loss, _ = losses.BCEWithLogits("sum")(big, np.array([[0.0, 1.0]]))
    assert loss == pytest.approx(2e4)


def test_get_and_accuracy():
    assert isinstance(losses.get("cross_entropy"), losses.CrossEntropy)
    assert isinstance(losses.get("MSE"), losses.MSE)
    assert isinstance(losses.get("bce_with_logits"), losses.BCEWithLogits)
    obj = losses.CrossEntropy(0.1)
    assert losses.get(obj) is obj
    with pytest.raises(ValueError, match="unknown loss"):
        losses.get("hinge")
    out = np.array([[0.1, 0.9, 0.0], [0.8, 0.1, 0.1], [0.2, 0.3, 0.5]])
    assert losses.accuracy(out, np.array([1, 0, 0])) == pytest.approx(2 / 3)
    assert losses.accuracy(out, np.eye(3)[[1, 0, 0]]) == pytest.approx(2 / 3)
    assert losses.top_k_accuracy(out, np.array([1, 0, 0]), k=2) == pytest.approx(2 / 3)
    assert losses.top_k_accuracy(out, np.array([0, 1, 1]), k=2) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="out of range for 3 classes"):
        losses.accuracy(out, np.array([1, 0, 3]))


def test_against_torch(rng):
    torch = pytest.importorskip("torch")
    z = rng.standard_normal((6, 5))
    y = rng.integers(0, 5, 6)
    for ls in (0.0, 0.15):
        zt = torch.tensor(z, requires_grad=True)
        lt = torch.nn.functional.cross_entropy(zt, torch.tensor(y), label_smoothing=ls)
        lt.backward()
        loss, g = losses.CrossEntropy(label_smoothing=ls)(z, y)
        assert loss == pytest.approx(lt.item(), rel=1e-10)
        np.testing.assert_allclose(g, zt.grad.numpy(), rtol=1e-10, atol=1e-12)
