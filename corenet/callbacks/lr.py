"""Callbacks that set the learning rate: ``ReduceLROnPlateau`` and ``LearningRateScheduler``."""

from __future__ import annotations

import inspect
import math

from .base import Callback
from .monitor import _Monitor

__all__ = ["ReduceLROnPlateau", "LearningRateScheduler"]


class ReduceLROnPlateau(_Monitor):
    """Multiply the learning rate by ``factor`` when ``monitor`` stops improving.

    The AlexNet recipe (Krizhevsky et al., 2012: "divide the learning rate by 10 when the
    validation error rate stopped improving") is the default: ``monitor="val_accuracy"``,
    ``factor=0.1``. After ``patience`` epochs without an improvement larger than ``min_delta``
    the rate becomes ``max(lr * factor, min_lr)``, then ``cooldown`` epochs pass before counting again.
    """

    state_fields = {"best": "float", "wait": "int", "cooldown_counter": "int"}

    def __init__(self, monitor="val_accuracy", factor=0.1, patience=10, mode="auto", min_delta=1e-4,
                 cooldown=0, min_lr=0.0, verbose=0):
        if not 0.0 < factor < 1.0:
            raise ValueError(f"ReduceLROnPlateau: factor must be in (0, 1), received {factor}")
        super().__init__("ReduceLROnPlateau", monitor, mode, min_delta)
        self.factor, self.patience, self.cooldown = float(factor), int(patience), int(cooldown)
        self.min_lr, self.verbose = float(min_lr), verbose
        self.wait = 0
        self.cooldown_counter = 0

    def on_epoch_end(self, epoch, logs=None):
        value = self._value(logs, "ReduceLROnPlateau")
        in_cooldown = self.cooldown_counter > 0  # epochs in cooldown never count as bad (PyTorch's rule)
        if in_cooldown:
            self.cooldown_counter -= 1
            self.wait = 0
        if self._improved(value, self.best):
            self.best, self.wait = value, 0
            return
        if in_cooldown:
            return
        self.wait += 1
        if self.wait >= self.patience:
            opt = self.model.optimizer
            old = float(opt.lr)
            new = max(old * self.factor, self.min_lr)
            if new < old:
                opt.lr = new
                if self.verbose:
                    print(f"Epoch {epoch + 1}: ReduceLROnPlateau reducing learning rate from {old:.4g} to {new:.4g}.")
            self.cooldown_counter, self.wait = self.cooldown, 0

    def get_state(self) -> dict:
        return {"best": self.best, "wait": self.wait, "cooldown_counter": self.cooldown_counter}


class LearningRateScheduler(Callback):
    """Set the optimizer's learning rate at the start of every epoch from ``schedule``.

    ``schedule`` is one of
    - a ``corenet.optim`` schedule (``StepLR``, ``ExponentialLR``, ``CosineAnnealingLR``), called with
      the 0-based epoch; without ``base_lr`` it starts from the optimizer's rate at the first
      ``fit`` (kept in checkpoints, so a resumed run does not restart from a decayed rate);
    - an object with ``get_lr(epoch)``;
    - a function ``schedule(epoch, lr) -> new_lr`` (Keras) or ``schedule(epoch) -> new_lr``.
    The rate is a function of the epoch number alone, so a resumed run lands on the same values.
    """

    state_fields = {"base_lr": "rate"}

    def __init__(self, schedule, verbose=0):
        self.schedule, self.verbose = schedule, verbose

    def on_train_begin(self, logs=None):
        # a corenet.optim schedule without base_lr takes the optimizer's rate at the start of the
        # first run; a resumed run gets it back from the checkpoint (get_state) instead
        if getattr(self.schedule, "base_lr", 0.0) is None:
            self.schedule.base_lr = float(self.model.optimizer.lr)

    def get_state(self) -> dict:
        base = getattr(self.schedule, "base_lr", None)
        return {} if base is None else {"base_lr": float(base)}

    def set_state(self, state: dict) -> None:
        state = self.checked_state(state)
        if "base_lr" in state:
            self.schedule.base_lr = state["base_lr"]

    def _lr(self, epoch: int, lr: float) -> float:
        s = self.schedule
        if hasattr(s, "get_lr"):
            return float(s.get_lr(epoch))
        return float(s(epoch, lr) if _n_positional(s) >= 2 else s(epoch))

    def on_epoch_begin(self, epoch, logs=None):
        opt = self.model.optimizer
        new = self._lr(epoch, float(opt.lr))
        if not math.isfinite(new) or new < 0:
            raise ValueError(f"LearningRateScheduler: schedule returned an invalid learning rate {new!r} "
                             f"at epoch {epoch}")
        opt.lr = new
        if self.verbose:
            print(f"Epoch {epoch + 1}: LearningRateScheduler setting learning rate to {new:.4g}.")


def _n_positional(fn) -> int:
    """How many positional arguments ``fn`` accepts (2 for ``*args``); 1 when it cannot be inspected."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return 1
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return 2
    return sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params)
