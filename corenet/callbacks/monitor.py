"""Callbacks that track the best value of one logged quantity: ``EarlyStopping``, ``ModelCheckpoint``
(and ``ReduceLROnPlateau``, in :mod:`corenet.callbacks.lr`, on the same ``_Monitor``)."""

from __future__ import annotations

import math
import os

import numpy as np

from .base import Callback

__all__ = ["EarlyStopping", "ModelCheckpoint"]


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
