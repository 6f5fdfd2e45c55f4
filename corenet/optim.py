"""Optimizers with the textbook update rules (Goodfellow, Bengio & Courville, *Deep Learning*, ch. 8).

Usage::

    opt = optim.SGD(lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    opt.step(params, grads)           # dicts name -> ndarray; params are updated in place
    opt.step(params, grads, lr_mult={"fc.weight": 10.0})   # per-parameter learning-rate multipliers

Every step does, in this order:

1. gradient clipping, on a copy (the caller's gradients are never modified):
   ``clip_value=c`` clips each element to ``[-c, c]``; then ``clip_norm=c`` rescales all the
   gradients of the step together by ``c / ||g||`` when their global L2 norm ``||g|| > c``;
2. L2 weight decay (``weight_decay=wd``, every optimizer but AdamW): ``g <- g + wd * theta``;
3. the optimizer's rule with ``eps = lr * lr_mult[name]`` (a missing name has multiplier 1).

Names in ``grads`` are updated; names in ``params`` without a gradient (frozen) are left alone.
``state_dict()`` is a flat ``{str: ndarray}`` (for ``np.savez``) from which ``load_state_dict``
restores hyper-parameters, ``iterations`` and every slot exactly, so a run continues identically.
A state dict may come from a file, so ``load_state_dict`` restores only what the optimizer declares
(``_hyper``, ``_slots``), checks every entry's type and range first, and applies nothing when one is wrong.
The rules run as ``corenet.functional`` ops (``sgd_update``, ``adam_update``, ``adagrad_update``,
``rmsprop_update``, ``clip_gradients``) on the parameters' kind of array: numpy in-place ufuncs on
the CPU (a few passes over the parameters, small next to a training step's convolutions), fused
kernels for parameters on the GPU (without clipping); slots are made in the parameters' kind.
"""

from __future__ import annotations

import math

import numpy as np

from . import functional as F
from .schedules import CosineAnnealingLR, ExponentialLR, Schedule, StepLR

__all__ = ["Optimizer", "SGD", "AdaGrad", "RMSProp", "Adam", "AdamW", "get",
           "Schedule", "StepLR", "ExponentialLR", "CosineAnnealingLR"]


def _number(cls, name, v, low=0.0, high=math.inf, allow_none=False, inclusive_high=False):
    if v is None and allow_none:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise TypeError(f"{cls}: {name} must be a number, received {v!r}") from None
    if not (low <= f and (f <= high if inclusive_high else f < high)):
        raise ValueError(f"{cls}: {name} must be in [{low}, {high}{']' if inclusive_high else ')'}, received {v!r}")
    return f


def _scalar(op, key, v, kinds) -> int:
    a = np.asarray(v)
    if a.ndim != 0 or a.dtype.kind not in kinds:
        raise ValueError(f"{op}: {key!r} must be an integer scalar. Received: dtype {a.dtype}, shape {a.shape}")
    return int(a)


class Optimizer:
    """Base class: clipping, L2 weight decay, per-parameter lr multipliers, state (de)serialisation.

    Subclasses list their hyper-parameters in ``_hyper`` and implement ``_update``.
    """

    _hyper: tuple[str, ...] = ("lr", "weight_decay", "clip_norm", "clip_value")
    _flags: tuple[str, ...] = ()  # hyper-parameters that are booleans
    _optional: tuple[str, ...] = ("clip_norm", "clip_value")  # may be None (stored as NaN)
    _below_one: tuple[str, ...] = ()  # in [0, 1)
    _slots: tuple[str, ...] = ()  # per-parameter float arrays; Adam's "t" holds integer step counts
    _decoupled = False  # AdamW applies weight decay itself, not as an L2 gradient term

    def __init__(self, lr, weight_decay=0.0, clip_norm=None, clip_value=None):
        cls = type(self).__name__
        self.lr = _number(cls, "lr", lr)
        self.weight_decay = _number(cls, "weight_decay", weight_decay)
        self.clip_norm = _number(cls, "clip_norm", clip_norm, allow_none=True)
        self.clip_value = _number(cls, "clip_value", clip_value, allow_none=True)
        self.iterations = 0
        self.slots: dict[str, dict[str, np.ndarray]] = {}  # slot name -> param name -> array

    # ------------------------------------------------------------------------------ the step
    def step(self, params: dict, grads: dict, lr_mult: dict | None = None) -> None:
        """Update ``params[name]`` in place for every ``name`` in ``grads``."""
        cls = type(self).__name__
        lr_mult = lr_mult or {}
        for name, g in grads.items():
            p = params.get(name)
            if p is None:
                raise ValueError(f"{cls}.step: gradient {name!r} has no parameter; parameters: {sorted(params)}")
            F.check_update(f"{cls}.step", name, p, g)
        unknown = sorted(set(lr_mult) - set(params))
        if unknown:
            raise ValueError(f"{cls}.step: lr_mult names unknown parameters {unknown}")
        grads = F.clip_gradients(f"{cls}.step", grads, self.clip_value, self.clip_norm)
        for name, g in grads.items():
            self._update(name, params[name], g, self.lr * float(lr_mult.get(name, 1.0)))
        self.iterations += 1

    def _update(self, name: str, p: np.ndarray, g: np.ndarray, lr: float) -> None:
        """One step of the rule on ``p`` in place, L2 weight decay included (``g`` is never written)."""
        raise NotImplementedError

    def _slot(self, slot: str, name: str, p: np.ndarray, fill: float = 0.0) -> np.ndarray:
        per = self.slots.setdefault(slot, {})
        a = per.get(name)
        if a is None or tuple(a.shape) != tuple(p.shape):
            a = per[name] = F.full_like(p, fill)  # in the parameter's kind of array
        return a

    # ---------------------------------------------------------------------------- state
    def get_config(self) -> dict:
        return {k: getattr(self, k) for k in self._hyper}

    def state_dict(self) -> dict[str, np.ndarray]:
        """Flat ``{str: ndarray}``: ``"class"``, ``"iterations"``, ``"hp/<name>"`` (None stored as
        NaN) and ``"slot/<slot>/<param name>"``; savable with ``np.savez`` without pickling."""
        d = {"class": np.array(type(self).__name__), "iterations": np.array(self.iterations, np.int64)}
        for k in self._hyper:
            v = getattr(self, k)
            d[f"hp/{k}"] = np.array(v) if isinstance(v, bool) else np.array(np.nan if v is None else v, np.float64)
        for slot, per in self.slots.items():
            for name, a in per.items():
                d[f"slot/{slot}/{name}"] = F.host_copy(a)
        return d

    def load_state_dict(self, d: dict) -> None:
        """Restore what :meth:`state_dict` saved (hyper-parameters, iterations, slots) exactly.

        Only declared entries are accepted: ``class``, ``iterations``, ``hp/<name>`` for every name in
        ``_hyper`` and ``slot/<slot>/<param>`` for the slots in ``_slots``. Everything is checked before
        anything is applied; an unknown, missing or mistyped entry is a ValueError naming it.
        """
        cls = type(self).__name__
        op = f"{cls}.load_state_dict"
        if not isinstance(d, dict):
            raise ValueError(f"{op}: a state must be a dict of arrays. Received: {type(d).__name__}")
        saved = np.asarray(d.get("class", ""))
        saved = str(saved) if saved.ndim == 0 and saved.dtype.kind == "U" else repr(saved)
        if saved != cls:
            raise ValueError(f"{op}: the state was saved by {saved or 'no optimizer'!r}, not {cls}")
        hyper = {f"hp/{k}": k for k in self._hyper}
        unknown = sorted(str(k) for k in d if k not in ("class", "iterations") and k not in hyper
                         and not (isinstance(k, str) and k.count("/") >= 2 and k.split("/")[0] == "slot"
                                  and k.split("/")[1] in self._slots and k.split("/", 2)[2]))
        if unknown:
            raise ValueError(f"{op}: unknown entries {unknown}; {cls} restores 'class', 'iterations', "
                             f"{sorted(hyper)} and slots {list(self._slots)} ('slot/<slot>/<parameter>')")
        missing = sorted(k for k in ("iterations", *hyper) if k not in d)
        if missing:
            raise ValueError(f"{op}: missing entries {missing}")
        values = {k: self._checked_hyper(op, k, d[key]) for key, k in hyper.items()}
        iterations = _scalar(op, "iterations", d["iterations"], "iu")
        if iterations < 0:
            raise ValueError(f"{op}: 'iterations' must be >= 0. Received: {iterations}")
        slots: dict[str, dict[str, np.ndarray]] = {}
        for key, a in d.items():
            if not key.startswith("slot/"):
                continue
            slot, name = key[5:].split("/", 1)
            if slot == "t":  # a step count
                t = _scalar(op, key, a, "iu")
                if t < 0:
                    raise ValueError(f"{op}: {key!r} must be >= 0. Received: {t}")
                a = np.array(t, np.int64)
            elif not isinstance(a, np.ndarray) or a.dtype.kind != "f":
                raise ValueError(f"{op}: {key!r} must be a float array. Received: "
                                 f"{getattr(a, 'dtype', type(a).__name__)}")
            slots.setdefault(slot, {})[name] = np.array(a, copy=True)
        for k, v in values.items():
            setattr(self, k, v)
        self.iterations = iterations
        self.slots = slots

    def _checked_hyper(self, op: str, k: str, v):
        """A saved hyper-parameter, checked as the constructor checks it."""
        a = np.asarray(v)
        if a.ndim != 0:
            raise ValueError(f"{op}: 'hp/{k}' must be a scalar. Received: shape {a.shape}")
        if k in self._flags:
            if a.dtype != np.bool_:
                raise ValueError(f"{op}: 'hp/{k}' must be a boolean. Received: dtype {a.dtype}")
            return bool(a)
        if a.dtype.kind not in "fiu":
            raise ValueError(f"{op}: 'hp/{k}' must be a number. Received: dtype {a.dtype}")
        f = float(a)
        if math.isnan(f) and k in self._optional:
            return None
        try:
            return _number(type(self).__name__, k, f, high=1.0 if k in self._below_one else math.inf)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{op}: 'hp/{k}': {e}") from None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.get_config().items())})"


class SGD(Optimizer):
    """Stochastic gradient descent, with optional (Nesterov) momentum, in the textbook form.

    - plain: ``theta <- theta - eps g``;
    - momentum ``alpha``: ``v <- alpha v - eps g``, ``theta <- theta + v``. With a constant
      learning rate this equals PyTorch's ``b <- mu b + g, theta <- theta - lr b`` (``v = -lr b``);
      when the learning rate changes, the velocity keeps the old rate's scale (PyTorch's does not);
    - Nesterov: the gradient is taken at the look-ahead point; in the form that needs the gradient
      at ``theta`` only (Sutskever et al., 2013): ``v <- alpha v - eps g``,
      ``theta <- theta + alpha v - eps g`` (PyTorch's ``nesterov=True`` up to the same scaling).
    """

    _hyper = Optimizer._hyper + ("momentum", "nesterov")
    _flags = ("nesterov",)
    _below_one = ("momentum",)
    _slots = ("velocity",)

    def __init__(self, lr=0.01, momentum=0.0, nesterov=False, weight_decay=0.0, clip_norm=None, clip_value=None):
        super().__init__(lr, weight_decay, clip_norm, clip_value)
        self.momentum = _number("SGD", "momentum", momentum, high=1.0)
        self.nesterov = bool(nesterov)
        if self.nesterov and self.momentum == 0:
            raise ValueError("SGD: nesterov=True needs momentum > 0")

    def _update(self, name, p, g, lr):
        v = self._slot("velocity", name, p) if self.momentum else None
        F.sgd_update(p, g, v, lr, self.momentum, self.nesterov, self.weight_decay)


class AdaGrad(Optimizer):
    """AdaGrad (Duchi et al., 2011): ``r <- r + g*g``, ``theta <- theta - eps g / (delta + sqrt(r))``.

    ``delta`` (``eps`` here, default 1e-7 as in the textbook and Keras) is added *outside* the
    square root. PyTorch's Adagrad has the same form with ``eps=1e-10``.
    """

    _hyper = Optimizer._hyper + ("eps", "initial_accumulator_value")
    _slots = ("sum_sq",)

    def __init__(self, lr=0.01, eps=1e-7, initial_accumulator_value=0.0, weight_decay=0.0,
                 clip_norm=None, clip_value=None):
        super().__init__(lr, weight_decay, clip_norm, clip_value)
        self.eps = _number("AdaGrad", "eps", eps)
        self.initial_accumulator_value = _number("AdaGrad", "initial_accumulator_value", initial_accumulator_value)

    def _update(self, name, p, g, lr):
        r = self._slot("sum_sq", name, p, self.initial_accumulator_value)
        F.adagrad_update(p, g, r, lr, self.eps, self.weight_decay)


class RMSProp(Optimizer):
    """RMSProp (Hinton, 2012): ``r <- rho r + (1 - rho) g*g``, ``theta <- theta - eps g / (delta + sqrt(r))``.

    ``delta`` (``eps``, default 1e-7 as in Keras) is added *outside* the square root, as in
    PyTorch and Keras (the textbook's Algorithm 8.5 puts it inside: ``sqrt(delta + r)``).
    Defaults ``rho=0.9`` (textbook, Keras); PyTorch's are ``alpha=0.99, eps=1e-8``.
    """

    _hyper = Optimizer._hyper + ("rho", "eps")
    _below_one = ("rho",)
    _slots = ("mean_sq",)

    def __init__(self, lr=0.001, rho=0.9, eps=1e-7, weight_decay=0.0, clip_norm=None, clip_value=None):
        super().__init__(lr, weight_decay, clip_norm, clip_value)
        self.rho = _number("RMSProp", "rho", rho, high=1.0)
        self.eps = _number("RMSProp", "eps", eps)

    def _update(self, name, p, g, lr):
        r = self._slot("mean_sq", name, p)
        F.rmsprop_update(p, g, r, lr, self.rho, self.eps, self.weight_decay)


class Adam(Optimizer):
    """Adam (Kingma & Ba, 2015) with bias correction::

        m <- b1 m + (1 - b1) g          v <- b2 v + (1 - b2) g*g          t <- t + 1
        theta <- theta - eps * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + delta)

    ``t`` counts the steps of each parameter (a parameter frozen for a while keeps its own count).
    ``weight_decay`` is the coupled L2 term added to ``g`` (``torch.optim.Adam``'s); see
    :class:`AdamW` for the decoupled one.
    """

    _hyper = Optimizer._hyper + ("beta1", "beta2", "eps")
    _below_one = ("beta1", "beta2")
    _slots = ("m", "v", "t")

    def __init__(self, lr=0.001, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, clip_norm=None, clip_value=None):
        super().__init__(lr, weight_decay, clip_norm, clip_value)
        cls = type(self).__name__
        self.beta1 = _number(cls, "betas[0]", betas[0], high=1.0)
        self.beta2 = _number(cls, "betas[1]", betas[1], high=1.0)
        self.eps = _number(cls, "eps", eps)

    def _update(self, name, p, g, lr):
        m = self._slot("m", name, p)
        v = self._slot("v", name, p)
        t = self.slots.setdefault("t", {}).get(name)
        t = self.slots["t"][name] = np.array(1 if t is None else int(t) + 1, np.int64)
        F.adam_update(p, g, m, v, int(t), lr, self.beta1, self.beta2, self.eps, self.weight_decay,
                      decoupled=self._decoupled)


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter, 2019), as ``torch.optim.AdamW``:
    ``theta <- theta - eps * wd * theta`` first, then the :class:`Adam` step without any L2 term.
    Default ``weight_decay=0.01`` (PyTorch's)."""

    _decoupled = True

    def __init__(self, lr=0.001, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01, clip_norm=None, clip_value=None):
        super().__init__(lr, betas, eps, weight_decay, clip_norm, clip_value)



_BY_NAME = {"sgd": SGD, "adagrad": AdaGrad, "rmsprop": RMSProp, "adam": Adam, "adamw": AdamW}


def get(identifier) -> Optimizer:
    """An optimizer from a name (``"sgd"``, ``"adam"``, ... with default settings) or an instance."""
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, str) and identifier.strip().lower() in _BY_NAME:
        return _BY_NAME[identifier.strip().lower()]()
    raise ValueError(f"unknown optimizer {identifier!r}; expected an Optimizer or one of {sorted(_BY_NAME)}")
