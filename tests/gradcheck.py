"""Float64 central finite differences for models and layers (a helper shared by the test files).

``check_model(model, xs)`` compares ``model.backward`` (input gradients) and ``model.gradients()``
(trainable parameters) against ``(L(a + eps) - L(a - eps)) / (2 eps)`` of the scalar loss
``L = sum_k sum(w_k * y_k)`` with fixed random weights ``w_k`` per output. Random generators of
layers (dropout) are rewound before every forward so that each evaluation sees the same mask.
"""

from __future__ import annotations

import numpy as np


def numerical_grad(loss, a: np.ndarray, eps: float = 1e-6, index=None) -> np.ndarray:
    """Central differences of ``loss()`` with respect to ``a`` (perturbed in place), at ``index`` (flat) or all."""
    flat = a.reshape(-1)
    idx = range(flat.size) if index is None else index
    g = np.zeros(flat.size)
    for i in idx:
        old = flat[i]
        flat[i] = old + eps
        up = loss()
        flat[i] = old - eps
        down = loss()
        flat[i] = old
        g[i] = (up - down) / (2 * eps)
    return g.reshape(a.shape)


def vjp_grad(f, x: np.ndarray, gy: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Central differences of ``sum(gy * f(x))`` with respect to every element of ``x`` (not modified)."""
    x = np.array(x, copy=True)
    return numerical_grad(lambda: float(np.sum(gy * f(x))), x, eps)


def _rng_states(model):
    return [(layer, layer.rng.bit_generator.state) for layer in model.layers if getattr(layer, "rng", None) is not None]


def check_model(model, xs, *, training=True, eps=1e-6, atol=1e-6, rtol=1e-5, max_elems=40, seed=0,
                check_inputs=True, check_params=True):
    """Assert that the model's analytic gradients match finite differences; returns the max abs error.

    ``model`` is cast to float64 in place; ``xs`` (array or list) are copied to float64. At most
    ``max_elems`` random elements of each array are checked.
    """
    model.astype(np.float64)
    single = not isinstance(xs, (list, tuple))
    xs = [np.array(x, dtype=np.float64) for x in ([xs] if single else xs)]
    rng = np.random.default_rng(seed)
    rewind = _rng_states(model)
    buffers = [(a, a.copy()) for layer in model.layers for a in layer.buffers.values()]

    def run():
        for layer, st in rewind:
            layer.rng.bit_generator.state = st
        for a, start in buffers:  # batch-norm running statistics move in training: put them back
            a[...] = start
        ys = model.forward(xs[0] if single else xs, training=training, retain_state=True)
        return [ys] if not isinstance(ys, list) else ys

    ys = run()
    ws = [rng.standard_normal(y.shape) for y in ys]

    def loss():
        return float(sum(np.sum(w * y) for w, y in zip(ws, run())))

    ys = run()
    model.zero_grad()
    gxs = model.backward(ws[0] if len(ws) == 1 and not isinstance(model.output, list) else ws)
    gxs = [gxs] if single else gxs
    analytic = model.gradients()
    worst = 0.0
    targets = []
    if check_inputs:
        targets += [(f"input {i}", x, gx) for i, (x, gx) in enumerate(zip(xs, gxs))]
    if check_params:
        params = model.trainable_parameters()
        targets += [(k, params[k], analytic[k].copy()) for k in params]
    for name, a, g in targets:
        if g is None:
            g = np.zeros_like(a)
        idx = rng.choice(a.size, size=min(a.size, max_elems), replace=False)
        num = numerical_grad(loss, a, eps, idx).reshape(-1)[idx]
        ana = np.asarray(g).reshape(-1)[idx]
        err = np.abs(num - ana)
        worst = max(worst, float(err.max(initial=0)))
        bad = err > atol + rtol * np.abs(num)
        if bad.any():
            i = int(np.argmax(err))
            raise AssertionError(f"gradient of {name}: {int(bad.sum())}/{idx.size} elements off; worst at flat "
                                 f"{idx[i]}: analytic {ana[i]:.8g} vs numeric {num[i]:.8g}")
    return worst


def check_layer(layer, input_shapes, *, batch=2, seed=0, **kw):
    """Wrap ``layer`` in a one-layer model on float64 inputs of ``input_shapes`` (a list for merges) and check it."""
    from corenet import Input, Model

    rng = np.random.default_rng(seed)
    multi = isinstance(input_shapes, list)
    shapes = input_shapes if multi else [input_shapes]
    ins = [Input(s, np.float64) for s in shapes]
    model = Model(ins if multi else ins[0], layer(ins if multi else ins[0]), seed=seed)
    xs = [rng.standard_normal((batch, *s)) for s in shapes]
    return check_model(model, xs if multi else xs[0], seed=seed, **kw)
