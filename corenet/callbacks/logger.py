"""Callbacks that watch the logs: ``TerminateOnNaN`` and ``CSVLogger``."""

from __future__ import annotations

import csv
import math
import os

import numpy as np

from .base import Callback

__all__ = ["TerminateOnNaN", "CSVLogger"]


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
