"""Training: what ``Model`` inherits to compile, fit, evaluate and predict (as Keras's ``Model`` inherits
its trainer), the epoch loop behind ``fit`` and what it prints.

- :mod:`corenet.training.trainer`: ``TrainingMixin`` (compile / train_on_batch / fit / evaluate /
  predict / save);
- :mod:`corenet.training.checks`: the checks of the arrays handed to them;
- :mod:`corenet.training.loop`: the epoch loop (``run_fit``): arrays served by a
  ``corenet.data.DataLoader`` (dtypes kept), callbacks, validation, progress;
- :mod:`corenet.training.state`: the training state a checkpoint carries (``training_state``) and
  the exact resume (``restore``);
- :mod:`corenet.training.progress`: the Keras-style progress bar and epoch lines.

Floors: training imports io (checkpoints over plain state dicts), callbacks, data, metrics, losses,
optim, functional and ``corenet.distributed``'s world and fit hooks; ``corenet.model`` imports
training (``Model`` inherits ``TrainingMixin``), never the reverse.

The callbacks (``History`` among them) are the public package :mod:`corenet.callbacks`, one floor
below: they see the model only through the methods ``fit`` gives them (``model.save``,
``model.optimizer``, ``model.stop_training``), so none of them imports io or training.
"""

from __future__ import annotations

from .trainer import TrainingMixin, check_array_dtype

__all__ = ["TrainingMixin", "check_array_dtype"]
