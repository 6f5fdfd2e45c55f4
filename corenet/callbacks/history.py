"""``History``: the callback ``fit`` always runs first; it records every epoch's logs."""

from __future__ import annotations

from .base import Callback

__all__ = ["History"]


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

    def plot(self, path) -> str:
        """Write the learning curves (loss and metrics per epoch, training and validation) to ``path``
        (a PNG, or any format matplotlib knows by the name); see ``corenet.viz.plot_history``. Needs the
        ``viz`` extra (matplotlib). Returns ``path``."""
        from ..viz import plot_history  # the picture floor sits above training: imported on use only

        return plot_history(self, path)
