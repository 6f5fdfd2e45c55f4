"""Optimizers against their textbook update rules written out step by step; weight decay,
clipping, lr multipliers, state round trips and schedules."""

import io
import math

import numpy as np
import pytest

from corenet import optim

STEPS = 5


def problem(seed=0, dtype=np.float64):
    """Parameters and a fixed sequence of gradients for STEPS steps."""
    rng = np.random.default_rng(seed)
    params = {"a.weight": rng.standard_normal((3, 4)).astype(dtype), "a.bias": rng.standard_normal(3).astype(dtype)}
    grads = [{k: rng.standard_normal(v.shape).astype(dtype) for k, v in params.items()} for _ in range(STEPS)]
    return params, grads


def run(opt, params, grads, **kw):
    params = {k: v.copy() for k, v in params.items()}
    for g in grads:
        opt.step(params, g, **kw)
    return params


def textbook(rule, params, grads):
    """Apply ``rule(theta, g, state, t) -> theta`` per parameter for every step (t from 1)."""
    out = {}
    for k, theta in params.items():
        theta, state = theta.astype(np.float64), {}
        for t, g in enumerate(grads, 1):
            theta = rule(theta, g[k].astype(np.float64), state, t)
        out[k] = theta
    return out


def assert_params(a, b, rtol=1e-12):
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=rtol, atol=rtol)


def test_sgd():
    params, grads = problem()
    assert_params(run(optim.SGD(lr=0.1), params, grads), textbook(lambda th, g, s, t: th - 0.1 * g, params, grads))


def test_momentum_textbook_form():
    params, grads = problem()

    def rule(th, g, s, t):
        s["v"] = 0.9 * s.get("v", 0.0) - 0.1 * g  # v <- alpha v - eps g
        return th + s["v"]  # theta <- theta + v

    assert_params(run(optim.SGD(lr=0.1, momentum=0.9), params, grads), textbook(rule, params, grads))


def test_momentum_equals_pytorch_form_at_constant_lr():
    params, grads = problem()

    def torch_rule(th, g, s, t):
        s["b"] = g if t == 1 else 0.9 * s["b"] + g
        return th - 0.1 * s["b"]

    assert_params(run(optim.SGD(lr=0.1, momentum=0.9), params, grads), textbook(torch_rule, params, grads))


def test_nesterov():
    params, grads = problem()

    def rule(th, g, s, t):
        s["v"] = 0.9 * s.get("v", 0.0) - 0.1 * g
        return th + 0.9 * s["v"] - 0.1 * g

    def torch_rule(th, g, s, t):  # torch.optim.SGD(nesterov=True)
        s["b"] = g if t == 1 else 0.9 * s["b"] + g
        return th - 0.1 * (g + 0.9 * s["b"])

    got = run(optim.SGD(lr=0.1, momentum=0.9, nesterov=True), params, grads)
    assert_params(got, textbook(rule, params, grads))
    assert_params(got, textbook(torch_rule, params, grads))
    with pytest.raises(ValueError, match="nesterov"):
        optim.SGD(lr=0.1, nesterov=True)


def test_adagrad():
    params, grads = problem()

    def rule(th, g, s, t):
        s["r"] = s.get("r", 0.0) + g * g
        return th - 0.05 * g / (1e-7 + np.sqrt(s["r"]))

    assert_params(run(optim.AdaGrad(lr=0.05), params, grads), textbook(rule, params, grads))


def test_rmsprop_delta_outside_the_root():
    params, grads = problem()

    def rule(th, g, s, t):
        s["r"] = 0.8 * s.get("r", 0.0) + 0.2 * g * g
        return th - 0.01 * g / (1e-3 + np.sqrt(s["r"]))

    assert_params(run(optim.RMSProp(lr=0.01, rho=0.8, eps=1e-3), params, grads), textbook(rule, params, grads))


def adam_rule(lr, b1=0.9, b2=0.999, eps=1e-8, l2=0.0, decoupled=0.0):
    def rule(th, g, s, t):
        g = g + l2 * th
        th = th - lr * decoupled * th
        s["m"] = b1 * s.get("m", 0.0) + (1 - b1) * g
        s["v"] = b2 * s.get("v", 0.0) + (1 - b2) * g * g
        mhat, vhat = s["m"] / (1 - b1**t), s["v"] / (1 - b2**t)
        return th - lr * mhat / (np.sqrt(vhat) + eps)

    return rule


def test_adam_and_adamw():
    params, grads = problem()
    assert_params(run(optim.Adam(lr=0.01), params, grads), textbook(adam_rule(0.01), params, grads))
    assert_params(run(optim.Adam(lr=0.01, betas=(0.8, 0.99), weight_decay=0.1), params, grads),
                  textbook(adam_rule(0.01, 0.8, 0.99, l2=0.1), params, grads))
    assert_params(run(optim.AdamW(lr=0.01, weight_decay=0.1), params, grads),
                  textbook(adam_rule(0.01, decoupled=0.1), params, grads))


def test_l2_weight_decay_adds_wd_theta():
    params, grads = problem()

    def rule(th, g, s, t):
        s["v"] = 0.9 * s.get("v", 0.0) - 0.1 * (g + 5e-4 * th)
        return th + s["v"]

    got = run(optim.SGD(lr=0.1, momentum=0.9, weight_decay=5e-4), params, grads)
    assert_params(got, textbook(rule, params, grads))


def test_clip_by_value_and_global_norm():
    params, grads = problem()
    before = {k: v.copy() for k, v in grads[0].items()}
    got = run(optim.SGD(lr=1.0, clip_value=0.5), params, grads[:1])
    assert_params(got, {k: params[k] - np.clip(grads[0][k], -0.5, 0.5) for k in params})
    norm = math.sqrt(sum(float((g**2).sum()) for g in grads[0].values()))
    got = run(optim.SGD(lr=1.0, clip_norm=1.0), params, grads[:1])
    assert_params(got, {k: params[k] - grads[0][k] / norm for k in params})
    got = run(optim.SGD(lr=1.0, clip_norm=norm * 2), params, grads[:1])  # under the limit: untouched
    assert_params(got, {k: params[k] - grads[0][k] for k in params})
    for k in before:  # the caller's gradients are never modified
        assert np.array_equal(before[k], grads[0][k])


def test_lr_mult_and_frozen_parameters():
    params, grads = problem()
    got = run(optim.SGD(lr=0.1), params, [{"a.weight": g["a.weight"]} for g in grads],
              lr_mult={"a.weight": 10.0, "a.bias": 0.0})
    expect = textbook(lambda th, g, s, t: th - 1.0 * g, {"a.weight": params["a.weight"]}, grads)
    np.testing.assert_allclose(got["a.weight"], expect["a.weight"], rtol=1e-12)
    assert np.array_equal(got["a.bias"], params["a.bias"])  # no gradient: frozen
    opt = optim.SGD(lr=0.1)
    with pytest.raises(ValueError, match="lr_mult names unknown"):
        opt.step(dict(params), grads[0], lr_mult={"nope": 2.0})
    with pytest.raises(ValueError, match="has no parameter"):
        opt.step({"a.bias": params["a.bias"].copy()}, grads[0])
    with pytest.raises(ValueError, match="one shape"):
        opt.step(dict(params), {"a.bias": np.zeros(4)})


@pytest.mark.parametrize("make", [
    lambda: optim.SGD(lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3, clip_norm=2.0),
    lambda: optim.AdaGrad(lr=0.1),
    lambda: optim.RMSProp(lr=0.01),
    lambda: optim.Adam(lr=0.01, clip_value=1.0),
    lambda: optim.AdamW(lr=0.01),
])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_state_dict_round_trip_continues_identically(make, dtype):
    params, grads = problem(dtype=dtype)
    full = run(make(), params, grads)
    opt = make()
    half = {k: v.copy() for k, v in params.items()}
    for g in grads[:2]:
        opt.step(half, g)
    buf = io.BytesIO()
    np.savez(buf, **opt.state_dict())  # flat str -> ndarray: no pickling needed
    buf.seek(0)
    with np.load(buf, allow_pickle=False) as f:
        saved = dict(f)
    fresh = type(opt)()  # default hyper-parameters: all restored from the state
    fresh.load_state_dict(saved)
    assert fresh.iterations == 2 and repr(fresh) == repr(opt)
    for g in grads[2:]:
        fresh.step(half, g)
    for k in full:
        assert half[k].dtype == dtype
        np.testing.assert_array_equal(half[k], full[k])
    with pytest.raises(ValueError, match="saved by"):
        (optim.SGD() if not isinstance(opt, optim.SGD) else optim.Adam()).load_state_dict(saved)


def test_lr_is_settable_and_iterations_count():
    params, grads = problem()
    opt = optim.SGD(lr=0.1)
    p = {k: v.copy() for k, v in params.items()}
    opt.step(p, grads[0])
    opt.lr = 0.01
    opt.step(p, grads[1])
    assert opt.iterations == 2
    np.testing.assert_allclose(p["a.bias"], params["a.bias"] - 0.1 * grads[0]["a.bias"] - 0.01 * grads[1]["a.bias"])
    assert isinstance(optim.get("adam"), optim.Adam)
    with pytest.raises(ValueError, match="unknown optimizer"):
        optim.get("lbfgs")
    with pytest.raises(ValueError, match="lr"):
        optim.SGD(lr=-1)


def test_schedules():
    step = optim.StepLR(3, gamma=0.5, base_lr=0.1)
    assert [step(e) for e in range(7)] == pytest.approx([0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.025])
    assert optim.ExponentialLR(0.9, base_lr=2.0)(3) == pytest.approx(2.0 * 0.9**3)
    cos = optim.CosineAnnealingLR(10, eta_min=0.001, base_lr=0.1)
    assert cos(0) == pytest.approx(0.1) and cos(10) == pytest.approx(0.001)
    assert cos(5) == pytest.approx(0.001 + 0.099 * 0.5)
    opt = optim.SGD(lr=0.2, momentum=0.9)
    sched = optim.StepLR(2, gamma=0.1).attach(opt)
    lrs = [sched.step() for _ in range(4)]
    assert lrs == pytest.approx([0.2, 0.02, 0.02, 0.002]) and opt.lr == pytest.approx(0.002)
    again = optim.StepLR(2, gamma=0.1)
    again.load_state_dict(sched.state_dict())
    assert again.step() == pytest.approx(sched.step())
    with pytest.raises(ValueError, match="base learning rate"):
        optim.ExponentialLR(0.9)(1)


def test_against_torch():
    torch = pytest.importorskip("torch")
    params, grads = problem()
    for ours, theirs in ((optim.Adam(lr=0.01, weight_decay=0.01), torch.optim.Adam),
                         (optim.AdamW(lr=0.01, weight_decay=0.1), torch.optim.AdamW),
                         (optim.SGD(lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3), torch.optim.SGD)):
        got = run(ours, params, grads)
        tp = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
        kw = {"lr": ours.lr, "weight_decay": ours.weight_decay}
        kw.update({"momentum": 0.9, "nesterov": True} if theirs is torch.optim.SGD else {})
        topt = theirs(list(tp.values()), **kw)
        for g in grads:
            for k, t in tp.items():
                t.grad = torch.tensor(g[k])
            topt.step()
        for k in got:
            np.testing.assert_allclose(got[k], tp[k].detach().numpy(), rtol=1e-10, atol=1e-12)
