"""The callback protocol: ``Callback`` (the hooks ``fit`` calls) and the checked state it may restore
(``STATE_KINDS``). See :mod:`corenet.callbacks`."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["Callback", "STATE_KINDS"]


def _number(v):
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise TypeError
    return float(v)


def _integer(v):
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        raise TypeError
    return int(v)


def _rate(v):
    v = _number(v)
    if not (math.isfinite(v) and v >= 0):
        raise TypeError
    return v


def _history(v):
    if not isinstance(v, dict) or not all(isinstance(k, str) and isinstance(s, list) for k, s in v.items()):
        raise TypeError
    return {k: [_number(x) for x in s] for k, s in v.items()}


def _epochs(v):
    if not isinstance(v, list):
        raise TypeError
    return [_integer(e) for e in v]


def _arrays(v):
    if not isinstance(v, dict) or not all(isinstance(k, str) and isinstance(a, np.ndarray) and a.dtype.kind in "fiu"
                                          for k, a in v.items()):
        raise TypeError
    return {k: np.array(a, copy=True) for k, a in v.items()}


#: kind -> (what it is, converter raising TypeError): the types a callback state field may declare.
STATE_KINDS = {
    "float": ("a real number", _number),
    "int": ("an integer", _integer),
    "rate": ("a finite number >= 0", _rate),
    "history": ("a dict of name -> list of numbers", _history),
    "epochs": ("a list of integers", _epochs),
    "arrays": ("a dict of name -> numeric ndarray", _arrays),
}


class Callback:
    """Base class: override the hooks you need. ``epoch`` and ``batch`` count from 0.

    ``state_fields`` declares what :meth:`set_state` restores: field name -> kind in ``STATE_KINDS``.
    """

    model = None
    state_fields: dict[str, str] = {}

    def set_model(self, model) -> None:
        self.model = model

    def on_train_begin(self, logs=None):
        pass

    def on_train_end(self, logs=None):
        pass

    def on_epoch_begin(self, epoch, logs=None):
        pass

    def on_epoch_end(self, epoch, logs=None):
        pass

    def on_batch_begin(self, batch, logs=None):
        pass

    def on_batch_end(self, batch, logs=None):
        pass

    def get_state(self) -> dict:
        """What a resumed run needs to behave as if it had never stopped (JSON values or ndarrays)."""
        return {}

    def set_state(self, state: dict) -> None:
        """Restore the declared fields of ``state`` (see ``state_fields``); anything else is a ValueError."""
        for key, value in self.checked_state(state).items():
            setattr(self, key, value)

    def checked_state(self, state) -> dict:
        """``state`` with every field checked against ``state_fields`` and converted; raises ValueError
        naming the field for an unknown or mistyped one (before anything is applied)."""
        name = f"{type(self).__name__}.set_state"
        if not isinstance(state, dict):
            raise ValueError(f"{name}: a state must be a dict of declared fields. Received: {type(state).__name__}")
        unknown = sorted(map(str, set(state) - set(self.state_fields)))
        if unknown:
            raise ValueError(f"{name}: unknown state field(s) {unknown}; this callback restores only its declared "
                             f"fields {sorted(self.state_fields)}. Received: fields {sorted(map(str, state))}")
        out = {}
        for key, value in state.items():
            what, convert = STATE_KINDS[self.state_fields[key]]
            try:
                out[key] = convert(value)
            except (TypeError, ValueError):
                shown = type(value).__name__ if isinstance(value, (dict, list, np.ndarray)) else repr(value)
                raise ValueError(f"{name}: state field {key!r} must be {what}. Received: {shown}") from None
        return out
