"""Weight initializers: every one draws from an explicit ``np.random.Generator``.

Every initializer has the signature ``f(shape, rng, dtype=np.float32, *, fan_in=None, fan_out=None,
**hyper) -> ndarray``. Fans default to PyTorch's rule for the weight's layout (``_calculate_fan_in_and_fan_out``):
for ``(out, in, *kernel)`` the receptive field is ``prod(kernel)``, ``fan_in = in * rf`` and
``fan_out = out * rf``; a bias passes the fan-in of its weight explicitly.

==================  =================================================  ==========================
name                distribution                                       reference
==================  =================================================  ==========================
``kaiming_normal``  ``N(0, gain^2/fan)``, gain ``sqrt(2)`` for ReLU      He et al. 2015
``kaiming_uniform``  ``U(-b, b)``, ``b = gain*sqrt(3/fan)``             He et al. 2015
``xavier_normal``   ``N(0, gain^2 * 2/(fan_in+fan_out))``               Glorot & Bengio 2010
``xavier_uniform``  ``U(-b, b)``, ``b = gain*sqrt(6/(fan_in+fan_out))``  Glorot & Bengio 2010
``lecun_normal``    ``N(0, 1/fan_in)``                                  LeCun et al. 1998
``lecun_uniform``   ``U(-b, b)``, ``b = sqrt(3/fan_in)``                LeCun et al. 1998
``fan_in_uniform``  ``U(-b, b)``, ``b = 1/sqrt(fan_in)``                PyTorch's Conv2d/Linear default
``normal``          ``N(mean, std^2)`` (AlexNet: std 0.01)              Krizhevsky et al. 2012
``zeros``, ``ones``, ``constant(value)``
==================  =================================================  ==========================

``fan_in_uniform`` is the default of :class:`~corenet.layers.Conv2d` and :class:`~corenet.layers.Linear`
for weight *and* bias: PyTorch's ``kaiming_uniform_(a=sqrt(5))`` reduces to exactly this bound.
``he_*`` and ``glorot_*`` are aliases. Layers name an initializer by string, by a dict such as
``{"name": "kaiming_normal", "mode": "fan_out"}`` (both JSON-serialisable), or by a callable.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "calculate_gain", "fans", "kaiming_normal", "kaiming_uniform", "he_normal", "he_uniform",
    "xavier_normal", "xavier_uniform", "glorot_normal", "glorot_uniform", "lecun_normal",
    "lecun_uniform", "fan_in_uniform", "normal", "zeros", "ones", "constant", "get", "make",
]


def fans(shape) -> tuple[int, int]:
    """``(fan_in, fan_out)`` of a weight of ``shape`` by PyTorch's rule (1-D: both are ``shape[0]``)."""
    shape = tuple(shape)
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    rf = math.prod(shape[2:])
    return shape[1] * rf, shape[0] * rf


def calculate_gain(nonlinearity: str = "relu", param: float | None = None) -> float:
    """PyTorch's ``calculate_gain``: the std gain that keeps activations' variance through ``nonlinearity``."""
    if nonlinearity in ("linear", "conv2d", "sigmoid", "identity"):
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3.0
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        a = 0.01 if param is None else float(param)
        return math.sqrt(2.0 / (1.0 + a * a))
    if nonlinearity == "selu":
        return 0.75
    raise ValueError(f"calculate_gain: unknown nonlinearity {nonlinearity!r}")


def _fan(shape, fan_in, fan_out):
    fi, fo = fans(shape)
    return (fi if fan_in is None else int(fan_in)), (fo if fan_out is None else int(fan_out))


def _check_rng(rng):
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"initializers take an explicit np.random.Generator, received {type(rng).__name__}")


def _normal(shape, rng, dtype, std, mean=0.0):
    _check_rng(rng)
    a = rng.standard_normal(tuple(shape), dtype=np.float64) * std + mean
    return a.astype(dtype, copy=False)


def _uniform(shape, rng, dtype, bound):
    _check_rng(rng)
    return rng.uniform(-bound, bound, size=tuple(shape)).astype(dtype, copy=False)


def kaiming_normal(shape, rng, dtype=np.float32, *, fan_in=None, fan_out=None, mode="fan_in",
                   nonlinearity="relu", a=0.0):
    """He normal: ``N(0, std^2)``, ``std = gain / sqrt(fan)``, fan by ``mode`` (``'fan_in'``/``'fan_out'``)."""
    fi, fo = _fan(shape, fan_in, fan_out)
    gain = calculate_gain(nonlinearity, a)
    return _normal(shape, rng, dtype, gain / math.sqrt(fi if mode == "fan_in" else fo))


def kaiming_uniform(shape, rng, dtype=np.float32, *, fan_in=None, fan_out=None, mode="fan_in",
                    nonlinearity="relu", a=0.0):
    """He uniform: ``U(-b, b)``, ``b = gain * sqrt(3 / fan)``."""
    fi, fo = _fan(shape, fan_in, fan_out)
    gain = calculate_gain(nonlinearity, a)
    return _uniform(shape, rng, dtype, gain * math.sqrt(3.0 / (fi if mode == "fan_in" else fo)))


def xavier_normal(shape, rng, dtype=np.float32, *, fan_in=None, fan_out=None, gain=1.0):
    """Glorot normal: ``N(0, std^2)``, ``std = gain * sqrt(2 / (fan_in + fan_out))``."""
    fi, fo = _fan(shape, fan_in, fan_out)
    return _normal(shape, rng, dtype, gain * math.sqrt(2.0 / (fi + fo)))


def xavier_uniform(shape, rng, dtype=np.float32, *, fan_in=None, fan_out=None, gain=1.0):
    """Glorot uniform: ``U(-b, b)``, ``b = gain * sqrt(6 / (fan_in + fan_out))``."""
    fi, fo = _fan(shape, fan_in, fan_out)
    return _uniform(shape, rng, dtype, gain * math.sqrt(6.0 / (fi + fo)))


def lecun_normal(shape, rng, dtype=np.float32, *, fan_in=None, fan_out=None):
    """LeCun normal: ``N(0, 1/fan_in)`` (plain normal, not Keras' truncated one)."""
    fi, _ = _fan(shape, fan_in, fan_out)
    return _normal(shape, rng, dtype, 1.0 / math.sqrt(fi))


def lecun_uniform(shape, rng, dtype=np.float32, *, fan_in=None, fan_out=None):
    """LeCun uniform: ``U(-b, b)``, ``b = sqrt(3 / fan_in)``."""
    fi, _ = _fan(shape, fan_in, fan_out)
    return _uniform(shape, rng, dtype, math.sqrt(3.0 / fi))


def fan_in_uniform(shape, rng, dtype=np.float32, *, fan_in=None, fan_out=None):
    """PyTorch's default for Conv2d/Linear weight and bias: ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``."""
    fi, _ = _fan(shape, fan_in, fan_out)
    return _uniform(shape, rng, dtype, 1.0 / math.sqrt(fi) if fi > 0 else 0.0)


def normal(shape, rng, dtype=np.float32, *, fan_in=None, fan_out=None, std=0.01, mean=0.0):
    """``N(mean, std^2)`` (AlexNet's weights: ``std=0.01``)."""
    return _normal(shape, rng, dtype, float(std), float(mean))


def constant(shape, rng=None, dtype=np.float32, *, fan_in=None, fan_out=None, value=0.0):
    """Every element ``value``."""
    return np.full(tuple(shape), value, dtype=dtype)


def zeros(shape, rng=None, dtype=np.float32, *, fan_in=None, fan_out=None):
    return np.zeros(tuple(shape), dtype=dtype)


def ones(shape, rng=None, dtype=np.float32, *, fan_in=None, fan_out=None):
    return np.ones(tuple(shape), dtype=dtype)


he_normal, he_uniform = kaiming_normal, kaiming_uniform
glorot_normal, glorot_uniform = xavier_normal, xavier_uniform

_REGISTRY = {
    f.__name__: f for f in (kaiming_normal, kaiming_uniform, xavier_normal, xavier_uniform, lecun_normal,
                            lecun_uniform, fan_in_uniform, normal, constant, zeros, ones)
}
_REGISTRY.update(he_normal=he_normal, he_uniform=he_uniform, glorot_normal=glorot_normal,
                 glorot_uniform=glorot_uniform)


def get(spec):
    """An initializer callable from a name, a ``{"name": ..., **hyper}`` dict or a callable."""
    if callable(spec):
        return spec
    if isinstance(spec, str):
        name, hyper = spec, {}
    elif isinstance(spec, dict) and isinstance(spec.get("name"), str):
        name, hyper = spec["name"], {k: v for k, v in spec.items() if k != "name"}
    else:
        raise TypeError(f"initializer must be a name, a dict with 'name' or a callable, received {spec!r}")
    if name not in _REGISTRY:
        raise ValueError(f"unknown initializer {name!r}; known: {sorted(_REGISTRY)}")
    f = _REGISTRY[name]
    if not hyper:
        return f
    return lambda shape, rng, dtype=np.float32, **fans_: f(shape, rng, dtype, **fans_, **hyper)


def make(spec, shape, rng, dtype=np.float32, fan_in=None, fan_out=None) -> np.ndarray:
    """Draw an array of ``shape`` from initializer ``spec`` (see :func:`get`), cast to ``dtype``."""
    a = get(spec)(tuple(shape), rng, dtype, fan_in=fan_in, fan_out=fan_out)
    a = np.asarray(a, dtype=dtype)
    if a.shape != tuple(shape):
        raise ValueError(f"initializer {spec!r} returned shape {a.shape}, expected {tuple(shape)}")
    return a if a.flags.c_contiguous else a.copy(order="C")


def to_config(spec):
    """``spec`` in JSON-serialisable form (a registered callable becomes its name)."""
    if isinstance(spec, (str, dict)):
        return spec
    name = getattr(spec, "__name__", None)
    if name in _REGISTRY and _REGISTRY[name] is spec:
        return name
    raise ValueError(f"cannot serialise custom initializer {spec!r}; pass a name or a {{'name': ...}} dict")
