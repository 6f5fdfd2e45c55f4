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

from .base import STATE_KINDS, Callback  # noqa: F401  (STATE_KINDS: the state field kinds)
from .history import History
from .logger import CSVLogger, TerminateOnNaN
from .lr import LearningRateScheduler, ReduceLROnPlateau
from .monitor import EarlyStopping, ModelCheckpoint

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
