"""Callbacks: hooks that ``Model.fit`` calls around epochs and batches (the Keras protocol).

Every callback sees ``self.model`` (set by ``fit``) and the epoch's ``logs`` dict (``loss``,
``accuracy``, ``val_loss``, ``val_accuracy``, ``lr``). A callback asks ``fit`` to stop by setting
``model.stop_training = True``. Callbacks whose behaviour depends on the past (plateau counters,
best values) expose it through ``get_state``/``set_state`` so that ``fit(..., resume=path)``
continues exactly where the stopped run was; ndarray values in a state go into the checkpoint's
arrays, everything else into its JSON.

A checkpoint is data from outside the program, so restoring one applies only what each callback
*declares*: ``state_fields`` maps every field ``set_state`` may restore to its kind (``"float"``,
``"int"``, ``"rate"``, ``"history"``, ``"epochs"``, ``"arrays"``, see ``STATE_KINDS``). A field of
the wrong type, or one the callback does not declare, is a ``ValueError`` naming it, and nothing of
that state is applied. Paths, file handles, monitors and modes are never state: they come only from
the code that built the callback (a checkpoint cannot redirect ``CSVLogger`` or ``ModelCheckpoint``).
A custom callback that saves more in ``get_state`` declares those fields in ``state_fields``.

>>> from corenet import callbacks
>>> cbs = [callbacks.ReduceLROnPlateau(patience=2), callbacks.EarlyStopping(patience=5)]
>>> # history = model.fit(x, y, epochs=50, validation_split=0.1, callbacks=cbs)  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import inspect
import math
import os

import numpy as np

__all__ = [
    "Callback",
    "History",
    "ReduceLROnPlateau",
    "EarlyStopping",
    "ModelCheckpoint",
    "TerminateOnNaN",
    "CSVLogger",
    "LearningRateScheduler",
]


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


class History(Callback):
    """Records every epoch's logs: ``history.history["val_accuracy"][e]``, ``history.epoch``."""

    state_fields = {"history": "history", "epoch": "epochs"}

    def __init__(self):
        self.history: dict[str, list] = {}
        self.epoch: list[int] = []

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(value)

    def get_state(self) -> dict:
        return {"history": {k: list(v) for k, v in self.history.items()}, "epoch": list(self.epoch)}


def _resolve_mode(name: str, mode: str, monitor: str) -> str:
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"{name}: mode must be 'auto', 'min' or 'max', received {mode!r}")
    if mode == "auto":
        return "max" if ("acc" in monitor or monitor.endswith("auc")) else "min"
    return mode


class _Monitor(Callback):
    """Shared logic of the callbacks that track the best value of one logged quantity."""

    def __init__(self, name, monitor, mode, min_delta):
        self.monitor = monitor
        self.mode = _resolve_mode(name, mode, monitor)
        self.min_delta = abs(float(min_delta))
        self.best = math.inf if self.mode == "min" else -math.inf

    def _improved(self, value: float, reference: float) -> bool:
        if self.mode == "min":
            return value < reference - self.min_delta
        return value > reference + self.min_delta

    def _value(self, logs, who: str):
        value = (logs or {}).get(self.monitor)
        if value is None:
            have = ", ".join(sorted(logs or {})) or "nothing"
            raise KeyError(
                f"{who}: monitored quantity {self.monitor!r} is not in the epoch logs (logged: {have}); "
                "validation metrics need validation_data or validation_split"
            )
        return float(value)


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


class EarlyStopping(_Monitor):
    """Stop when ``monitor`` has not improved for ``patience`` epochs.

    With ``restore_best_weights=True`` the weights and buffers of the best epoch are put back when
    training ends (also when it ran out of epochs instead of stopping early).
    """

    state_fields = {"best": "float", "wait": "int", "best_epoch": "int", "stopped_epoch": "int",
                    "best_weights": "arrays"}

    def __init__(self, monitor="val_loss", patience=0, mode="auto", min_delta=0.0, baseline=None,
                 restore_best_weights=False, start_from_epoch=0, verbose=0):
        super().__init__("EarlyStopping", monitor, mode, min_delta)
        self.patience, self.baseline = int(patience), baseline
        self.restore_best_weights, self.start_from_epoch = bool(restore_best_weights), int(start_from_epoch)
        self.verbose = verbose
        self.wait = 0
        self.stopped_epoch = -1
        self.best_epoch = -1
        self.best_weights = None
        if baseline is not None:
            self.best = float(baseline)

    def on_epoch_end(self, epoch, logs=None):
        value = self._value(logs, "EarlyStopping")
        if epoch < self.start_from_epoch:
            return
        if self._improved(value, self.best):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best_weights:
                self.best_weights = {k: np.array(v, copy=True) for k, v in self.model.state_dict().items()}
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = epoch
            self.model.stop_training = True
            if self.verbose:
                print(f"Epoch {epoch + 1}: early stopping ({self.monitor} best {self.best:.4g} at epoch "
                      f"{self.best_epoch + 1}).")

    def on_train_end(self, logs=None):
        if self.restore_best_weights and self.best_weights is not None:
            self.model.load_state_dict(self.best_weights)
            if self.verbose:
                print(f"Restoring model weights from the end of the best epoch: {self.best_epoch + 1}.")

    def get_state(self) -> dict:
        state = {"best": self.best, "wait": self.wait, "best_epoch": self.best_epoch,
                 "stopped_epoch": self.stopped_epoch}
        if self.best_weights is not None:
            state["best_weights"] = self.best_weights
        return state


class ModelCheckpoint(_Monitor):
    """Save the model (atomically, see ``corenet.io``) at the end of every epoch or of the best ones.

    ``path`` may hold format fields filled from the epoch (1-based) and the logs, e.g.
    ``"ckpt-{epoch:02d}-{val_accuracy:.3f}.npz"``. With ``save_best_only`` a file is written only
    when ``monitor`` improved; ``save_weights_only`` writes weights and buffers alone.
    """

    state_fields = {"best": "float"}  # never the path: it comes from the code that built the callback

    def __init__(self, path, monitor="val_loss", save_best_only=False, save_weights_only=False, mode="auto",
                 verbose=0):
        super().__init__("ModelCheckpoint", monitor, mode, 0.0)
        self.path, self.save_best_only, self.save_weights_only = os.fspath(path), save_best_only, save_weights_only
        self.verbose = verbose

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.save_best_only:
            value = self._value(logs, "ModelCheckpoint")
            if not self._improved(value, self.best):
                return
            self.best = value
        path = self.path.format(epoch=epoch + 1, **logs)
        if self.save_weights_only:
            self.model.save_weights(path)
        else:
            self.model.save(path)
        if self.verbose:
            print(f"Epoch {epoch + 1}: saved {path}")

    def get_state(self) -> dict:
        return {"best": self.best}


class TerminateOnNaN(Callback):
    """Stop training cleanly when a batch loss is NaN or infinite (the step is not applied)."""

    def on_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            print(f"Batch {batch}: invalid loss {loss}, terminating training")
            self.model.stop_training = True


class CSVLogger(Callback):
    """Write one CSV row per epoch (``epoch`` then the logged keys, sorted) to ``path``.

    ``append=True`` keeps an existing file and adds rows to it (the header is written only when
    the file is new), which is what a resumed run wants.
    """

    def __init__(self, path, separator=",", append=False):
        self.path, self.separator, self.append = os.fspath(path), separator, append
        self._file = None
        self._writer = None
        self._keys = None

    def on_train_begin(self, logs=None):
        exists = self.append and os.path.exists(self.path) and os.path.getsize(self.path) > 0
        self._keys = None
        if exists:
            with open(self.path, newline="") as f:
                header = f.readline().strip()
            self._keys = header.split(self.separator)[1:] if header else None
        self._file = open(self.path, "a" if exists else "w", newline="")  # closed in on_train_end
        self._writer = None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self._writer is None:
            if self._keys is None:
                self._keys = sorted(logs)
                self._file.write(self.separator.join(["epoch", *self._keys]) + "\n")
            self._writer = csv.writer(self._file, delimiter=self.separator, lineterminator="\n")
        self._writer.writerow([epoch, *(_csv_value(logs.get(k, "")) for k in self._keys)])
        self._file.flush()

    def on_train_end(self, logs=None):
        if self._file is not None:
            self._file.close()
            self._file = None


def _csv_value(v):
    return repr(float(v)) if isinstance(v, (float, np.floating)) else v


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
