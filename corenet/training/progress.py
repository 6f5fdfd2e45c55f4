"""What ``fit`` prints: a Keras-style progress bar on a terminal, one line per epoch otherwise.

``verbose="auto"`` picks the bar when stdout is a TTY and the epoch lines when it is a file, a pipe
or a CI log (so logs are not flooded with carriage returns); ``verbose=0`` prints nothing,
``1`` forces the bar and ``2`` forces one line per epoch.

Bar (redrawn in place, at most every ``interval`` seconds)::

    Epoch 1/5
     94/157 [=================>............] - ETA: 2s - loss: 0.3456 - accuracy: 0.9012

Epoch line::

    Epoch 1/5 - 157/157 - 3s - 19ms/step - loss: 0.3456 - accuracy: 0.9012 - val_loss: 0.2001 - lr: 0.001
"""

from __future__ import annotations

import sys
import time

__all__ = ["resolve_verbose", "format_logs", "EpochProgress"]


def resolve_verbose(verbose, stream=None) -> int:
    """``"auto"`` -> 1 on a TTY, 2 otherwise; 0, 1, 2 are returned as they are."""
    if verbose == "auto":
        stream = sys.stdout if stream is None else stream
        isatty = getattr(stream, "isatty", None)
        return 1 if (isatty is not None and isatty()) else 2
    if verbose not in (0, 1, 2):
        raise ValueError(f"fit: verbose must be 'auto', 0, 1 or 2, received {verbose!r}")
    return int(verbose)


def _fmt(key: str, value) -> str:
    if isinstance(value, str):
        return f"{key}: {value}"
    v = float(value)
    if key == "lr" or key.endswith("_lr"):
        return f"{key}: {v:.4g}"
    return f"{key}: {v:.4f}" if (v == 0 or 1e-3 <= abs(v) < 1e5) else f"{key}: {v:.4e}"


def format_logs(logs: dict) -> str:
    """``" - loss: 0.1234 - accuracy: 0.9600"`` for the logged values, in insertion order."""
    return "".join(f" - {_fmt(k, v)}" for k, v in logs.items())


def _duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{int(seconds // 3600)}:{int(seconds % 3600 // 60):02d}:{int(seconds % 60):02d}"
    if seconds >= 60:
        return f"{int(seconds // 60)}:{int(seconds % 60):02d}"
    return f"{seconds:.0f}s"


def _per_step(seconds: float, steps: int) -> str:
    per = seconds / max(steps, 1)
    if per >= 1:
        return f"{per:.1f}s/step"
    if per >= 1e-3:
        return f"{per * 1e3:.0f}ms/step"
    return f"{per * 1e6:.0f}us/step"


class EpochProgress:
    """Progress of one epoch: ``update(step, logs)`` after each batch, ``end(logs)`` once at the end.

    Parameters
    ----------
    epoch, epochs : int
        0-based epoch index and the total number of epochs (shown 1-based).
    steps : int
        Batches in the epoch.
    verbose : int
        0 silent, 1 bar, 2 one line at the end of the epoch.
    """

    def __init__(self, epoch: int, epochs: int, steps: int, verbose: int, stream=None, width: int = 30,
                 interval: float = 0.05):
        self.epoch, self.epochs, self.steps = epoch, epochs, steps
        self.verbose, self.width, self.interval = verbose, width, interval
        self.stream = sys.stdout if stream is None else stream
        self.start = time.perf_counter()
        self._last_draw = 0.0
        self._last_len = 0
        if verbose == 1:
            self.stream.write(f"Epoch {epoch + 1}/{epochs}\n")
            self.stream.flush()

    def update(self, step: int, logs: dict) -> None:
        """Redraw the bar after ``step`` (1-based) batches when ``interval`` seconds have passed."""
        if self.verbose != 1:
            return
        now = time.perf_counter()
        if now - self._last_draw < self.interval and step < self.steps:
            return
        self._last_draw = now
        elapsed = now - self.start
        eta = elapsed / step * (self.steps - step) if step else 0.0
        self._draw(f"{self._bar(step)} - ETA: {_duration(eta)}{format_logs(logs)}")

    def end(self, logs: dict) -> None:
        """Finish the epoch: final bar line (verbose 1) or the one epoch line (verbose 2)."""
        elapsed = time.perf_counter() - self.start
        timing = f"{_duration(elapsed)} {_per_step(elapsed, self.steps)}"
        if self.verbose == 1:
            self._draw(f"{self._bar(self.steps)} - {timing}{format_logs(logs)}")
            self.stream.write("\n")
        elif self.verbose == 2:
            self.stream.write(
                f"Epoch {self.epoch + 1}/{self.epochs} - {self.steps}/{self.steps} - {_duration(elapsed)} - "
                f"{_per_step(elapsed, self.steps)}{format_logs(logs)}\n"
            )
        if self.verbose:
            self.stream.flush()

    def _bar(self, step: int) -> str:
        digits = len(str(self.steps))
        done = int(self.width * step / max(self.steps, 1))
        if step >= self.steps:
            fill = "=" * self.width
        else:
            fill = "=" * max(done - 1, 0) + ">" + "." * (self.width - max(done, 1))
        return f"{step:>{digits}}/{self.steps} [{fill}]"

    def _draw(self, text: str) -> None:
        pad = " " * max(self._last_len - len(text), 0)
        self.stream.write("\r" + text + pad)
        self.stream.flush()
        self._last_len = len(text)
