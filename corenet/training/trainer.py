"""``TrainingMixin``: compile / train_on_batch / fit / evaluate / predict / save for ``Model``.

The mixin only uses the model's low-level API (``forward``, ``backward``, ``zero_grad``,
``parameters``, ``gradients``, ``state_dict``, ``layers``), so custom loops and ``fit`` run the
same code. One training step::

    outputs = forward(x, training=True)
    loss, gy = sum_i w_i * loss_i(outputs_i, y_i)      # loss weights, e.g. GoogLeNet's aux heads 0.3
    backward(gy); optimizer.step(trainable params, grads, lr_mult)

Reproducibility: the sample order of epoch ``e`` is a pure function of ``(seed, e)``, and the
checkpoint ``fit(..., resume=path)`` writes after every epoch holds weights, buffers, optimizer
state, every layer's random generator state (dropout), the learning rate, callback states and the
history; so N epochs in one run and the same N epochs with stops and resumes in between give
bitwise-identical weights (same seed, same thread count).
"""

from __future__ import annotations

import math

import numpy as np

from .. import functional as F
from .. import io
from .. import metrics as _metrics
from ..distributed import fit as dist_fit
from .checks import _as_list, _host, _take, check_array_dtype, check_batch_size, check_data
from .loop import run_fit
from .state import training_state

__all__ = ["TrainingMixin", "check_array_dtype"]


class TrainingMixin:
    """Keras-style training for a model that has the low-level forward/backward API."""

    optimizer = None
    stop_training = False

    # --------------------------------------------------------------------------------- compile
    def compile(self, optimizer="sgd", loss="cross_entropy", metrics=("accuracy",), loss_weights=None):
        """Choose the optimizer, the loss(es) and the metrics.

        Parameters
        ----------
        optimizer : str or optimizer
            ``"sgd"``, ``"adam"``, ``"adamw"``, ``"rmsprop"``, ``"adagrad"`` (default settings) or an instance.
        loss : str, loss object, or a list / dict (by output name) of them
            One loss shared by every output, or one per output.
        metrics : sequence of str or callables
            Reported on the first output (``"accuracy"``).
        loss_weights : list or dict (by output name) of floats, optional
            Weights of the outputs' losses in the total (default 1 each); GoogLeNet uses
            ``[1.0, 0.3, 0.3]`` for the main and the two auxiliary classifiers.
        """
        from .. import losses as _losses
        from .. import optim as _optim

        optimizer = _optim.get(optimizer)
        names = self._output_names()
        n = len(names)
        loss_list = self._per_output("loss", loss, names, None)
        self._loss_fns = [_losses.get(fn) for fn in loss_list]
        for fn in self._loss_fns:
            if getattr(fn, "reduction", None) == "none":
                raise ValueError(f"compile: the loss {type(fn).__name__}(reduction='none') gives one value per "
                                 "element, but fit/evaluate minimise one number; expected reduction='mean' or "
                                 "'sum' (use 'none' in a custom training loop)")
        weights = self._per_output("loss_weights", loss_weights, names, 1.0)
        self._loss_weights = [float(w) for w in weights]
        self._metric_fns = [_metrics.get(m) for m in (metrics or ())]
        self.optimizer = optimizer
        self._compile_spec = {
            "loss": [self._describe_loss(v) for v in loss_list] if n > 1 else self._describe_loss(loss_list[0]),
            "metrics": [name for name, _ in self._metric_fns],
            "loss_weights": self._loss_weights if loss_weights is not None else None,
        }
        self._step_cache = None

    def _output_names(self) -> list[str]:
        names = getattr(self, "output_names", None)  # Model: the output layers' names
        return list(names) if names else ["output"]

    @staticmethod
    def _per_output(what, value, names, default):
        n = len(names)
        if value is None:
            if default is None:
                raise ValueError(f"compile: {what} is required")
            return [default] * n
        if isinstance(value, dict):
            unknown = sorted(set(value) - set(names))
            if unknown:
                raise ValueError(f"compile: {what} names unknown outputs {unknown}; the outputs are {names}")
            if default is None and len(value) != n:
                raise ValueError(f"compile: {what} must give every output {names}, received {sorted(value)}")
            return [value.get(name, default) for name in names]
        if isinstance(value, (list, tuple)):
            if len(value) != n:
                raise ValueError(f"compile: {what} has {len(value)} entries but the model has {n} outputs {names}")
            return list(value)
        return [value] * n

    @staticmethod
    def _describe_loss(loss):
        if isinstance(loss, str):
            return loss
        return io.describe(loss)

    def _require_compiled(self, what: str) -> None:
        if self.optimizer is None:
            raise RuntimeError(f"{what}: the model is not compiled; call model.compile(optimizer, loss) first")

    # ----------------------------------------------------------------------------- one step
    def _compute_loss(self, outputs: list, targets: list):
        """Weighted total loss and the per-output upstream gradients."""
        total = 0.0
        grads = []
        for out, target, fn, w in zip(outputs, targets, self._loss_fns, self._loss_weights):
            value, gy = fn(out, target)
            value = F.item(value)  # a model on the GPU: the one device-to-host copy of a step
            if w != 1.0:
                F.scale(gy, w)  # the loss's own fresh array
                value = value * w
            total += value
            grads.append(gy)
        return total, grads

    def _targets(self, y, n: int) -> list:
        if n == 1:
            return [y[0] if isinstance(y, (list, tuple)) and len(y) == 1 else y]
        if isinstance(y, (list, tuple)):
            if len(y) != n:
                raise ValueError(f"targets: the model has {n} outputs but {len(y)} target arrays were given")
            return list(y)
        return [y] * n  # one label array shared by every head (auxiliary classifiers)

    def _step_args(self):
        """``(trainable params, lr multipliers)``, rebuilt only when a layer's ``trainable``, its
        ``lr_mult`` or its parameter arrays (``astype``) changed: no per-step dict building."""
        key = tuple((layer.trainable, layer.lr_mult, *map(id, layer.params.values())) for layer in self.layers)
        cache = self._step_cache
        if cache is None or cache[0] != key:
            mult = {k: m for k, m in self.lr_multipliers().items() if m != 1.0}
            cache = self._step_cache = (key, self.trainable_parameters(), mult or None)
        return cache[1], cache[2]

    def _train_step(self, xs, y, nan_policy="raise"):
        outputs = _as_list(self.forward(xs if len(xs) > 1 else xs[0], training=True))
        targets = self._targets(y, len(outputs))
        loss, grads = self._compute_loss(outputs, targets)
        if not math.isfinite(loss):
            if nan_policy == "raise":
                raise FloatingPointError(
                    f"train_on_batch: the loss is {loss}; the step was not applied. Lower the learning rate, "
                    "check the inputs for NaN/inf, or pass callbacks=[TerminateOnNaN()] to fit to stop cleanly"
                )
            return loss, outputs, targets
        self.zero_grad()
        # The input gradient is never used by a step: skip the first layer's grad-input pass.
        self.backward(grads if len(grads) > 1 else grads[0], need_input_grads=False)
        params, mult = self._step_args()
        self.optimizer.step(params, self.gradients(), lr_mult=mult)  # gradients(): trainable ones only
        return loss, outputs, targets

    def train_on_batch(self, x, y) -> float:
        """One optimizer step on the batch ``(x, y)``; returns the (weighted total) loss before the step.

        Raises ``FloatingPointError`` (and leaves the weights untouched) when the loss is NaN or inf.
        """
        self._require_compiled("train_on_batch")
        return self._train_step(_as_list(x), y)[0]  # forward casts inputs to the Input dtype

    # ------------------------------------------------------------------------ evaluate / predict
    def predict(self, x, batch_size: int = 32):
        """Outputs for ``x`` in eval mode, ``batch_size`` samples at a time (a list for several outputs).

        ``x`` must hold float arrays (float32/float64, cast to the input's dtype); integer images
        (uint8) are refused with a TypeError saying how to convert them (``x.astype(np.float32) / 255``
        scales to [0, 1] as ``corenet.data.DataLoader`` does), as are complex, bool, object and string arrays.

        Under MPI (``corenet.distributed.size() > 1``) this is collective: call it on every rank; each
        rank computes a contiguous block and EVERY rank returns the full result.
        """
        batch_size = check_batch_size("predict", batch_size)
        xs = _as_list(x)
        n = check_data(self, xs, None, "predict")
        if n == 0:
            raise ValueError("predict: received an empty input (0 samples)")

        def predict_block(xs):
            chunks = None
            for start in range(0, len(xs[0]), batch_size):
                xb = [a[start:start + batch_size] for a in xs]
                outs = _host(self.forward(xb if len(xb) > 1 else xb[0], training=False))
                if chunks is None:
                    chunks = [[] for _ in outs]
                for store, out in zip(chunks, outs):
                    store.append(np.array(out, copy=True))
            return [np.concatenate(c) for c in chunks]

        # under MPI (size > 1) each rank predicts a block and every rank gets the whole result
        result = dist_fit.predict_gather(predict_block, xs)
        return result if len(result) > 1 else result[0]

    def evaluate(self, x, y, batch_size: int = 32, verbose=0) -> dict:
        """Loss and metrics over ``(x, y)`` in eval mode: ``{"loss": ..., "accuracy": ...}``.

        ``x`` as for :meth:`predict` (float arrays; uint8 images are refused with how to convert them);
        ``y`` real-valued or integer arrays (complex, object and string targets are refused).

        Under MPI (``corenet.distributed.size() > 1``) this is collective: call it on every rank; rank
        ``r`` evaluates the samples ``r::size`` and every rank returns the global loss and metrics.
        """
        self._require_compiled("evaluate")
        batch_size = check_batch_size("evaluate", batch_size)
        xs = _as_list(x)
        n = check_data(self, xs, y, "evaluate", targets_required=True)
        xs, y = dist_fit.eval_share(xs, y)  # under MPI (size > 1): this rank's samples rank::size
        n_local = len(xs[0])
        loss_sum = 0.0
        sums = [[0.0, 0] for _ in self._metric_fns]
        for start in range(0, n_local, batch_size):
            stop = min(start + batch_size, n_local)
            xb = [a[start:stop] for a in xs]
            yb = _take(y, slice(start, stop))
            outputs = _host(self.forward(xb if len(xb) > 1 else xb[0], training=False))
            targets = self._targets(yb, len(outputs))
            loss, _ = self._compute_loss(outputs, targets)
            loss_sum += loss * (stop - start)
            self._accumulate(sums, outputs, targets)
        loss_sum, n, sums = dist_fit.eval_reduce(loss_sum, n_local, sums)  # sums over the ranks
        logs = {"loss": loss_sum / n}
        logs.update(self._metric_values(sums))
        if verbose:
            from .progress import format_logs

            print(f"evaluate: {n} samples{format_logs(logs)}")
        return logs

    def _accumulate(self, sums, outputs, targets):
        if sums:  # metrics read the outputs on the host (device logits: one copy)
            outputs = _host(outputs[:1])
        for acc, (_, fn) in zip(sums, self._metric_fns):
            total, count = fn(outputs[0], targets[0])
            acc[0] += total
            acc[1] += count

    def _metric_values(self, sums) -> dict:
        return {name: (acc[0] / acc[1] if acc[1] else float("nan")) for (name, _), acc in zip(self._metric_fns, sums)}

    # ---------------------------------------------------------------------------------- save
    def save(self, path, include_optimizer: bool = True) -> None:
        """Weights, buffers, architecture, optimizer and training state in one ``.npz`` (atomic write)."""
        io.save(self, path, include_optimizer=include_optimizer)

    def save_weights(self, path) -> None:
        """Weights and buffers only, by state_dict name (atomic write)."""
        io.save_weights(self, path)

    def load_weights(self, path, strict: bool = True):
        """Load weights and buffers saved by ``save``/``save_weights``; see ``corenet.io.load_weights``."""
        return io.load_weights(self, path, strict=strict)

    # ----------------------------------------------------------------------------------- fit
    def fit(self, x, y=None, batch_size=32, epochs=1, validation_data=None, validation_split=0.0, shuffle=True,
            seed=None, callbacks=None, verbose="auto", transform=None, augment=None, initial_epoch=0, resume=None,
            drop_last=False):
        """Train for ``epochs`` epochs; returns the ``History`` callback (``history.history[key]`` lists).

        Parameters
        ----------
        x : ndarray (N, ...), list of ndarrays (several inputs), or a ``corenet.data.DataLoader``
            (then ``y``, ``batch_size``, ``shuffle``, ``seed`` and ``transform`` come from the loader).
        y : ndarray (N, ...) or list of them (one per output; one array is shared by every output).
        validation_data : ``(x_val, y_val)``, optional; wins over ``validation_split``.
        validation_split : float in [0, 1)
            Fraction of the samples held out for validation (``n - ceil(n * (1 - split))`` of them), drawn
            at random from the fit seed (``SeedSequence([seed, 0, 2])``; the same after a resume) and
            stratified when ``y`` is one (N,) integer label array (every class gives its share, within one
            sample). Not the last samples: data read from class folders comes sorted by class.
        shuffle, seed : the order of epoch ``e`` is the permutation drawn from ``SeedSequence([seed, e])``
            (as ``DataLoader``); ``seed=None`` draws one from the OS (stored in checkpoints).
        callbacks : list of ``corenet.callbacks.Callback``
        verbose : ``"auto"`` (progress bar on a TTY, one line per epoch otherwise), 0, 1 or 2.
        transform / augment : callable ``t(x_batch, rng) -> x_batch`` applied to the first input of
            every training batch; ``rng`` is the epoch's generator ``SeedSequence([seed, e, 1])``.
        initial_epoch : int, epoch to start at (0-based).
        resume : path, optional
            Checkpoint written (atomically) after every epoch; when it exists at the start, training
            continues from it exactly: weights, buffers, optimizer, learning rate, RNGs, callbacks, history.

        Logged keys: ``loss``, the metrics (``accuracy``), ``val_loss``, ``val_accuracy`` and ``lr``
        (the rate used during the epoch).

        Under MPI (``mpiexec -n N python train.py``; see ``corenet.distributed``) ``batch_size`` is the
        GLOBAL batch: every rank runs ``fit`` with the same arguments, takes its strided share of each
        global batch of the same permutation, and the gradients are averaged (weighted by the shares'
        sizes) before every step, so the run follows the one-process run (without batch norm, dropout or
        augmentation, exactly up to float rounding). Logs are global; only rank 0 prints and writes files.

        Arrays must be float (float32/float64, cast to the input's dtype). Integer images (uint8) are
        refused with a TypeError that says how to convert them: ``x.astype(np.float32) / 255`` gives
        the [0, 1] scale a ``DataLoader`` produces from uint8 (or pass a ``DataLoader``, which converts
        them per batch). Complex, bool, object and string arrays are refused too.
        """
        if not (hasattr(x, "set_epoch") and hasattr(x, "order")):  # arrays (a DataLoader checks its own)
            self._require_compiled("fit")
            check_batch_size("fit", batch_size)
            check_data(self, _as_list(x), y, "fit", targets_required=True)
            if validation_data is not None and isinstance(validation_data, (tuple, list)) and len(validation_data) == 2:
                check_data(self, _as_list(validation_data[0]), validation_data[1], "fit: validation_data",
                            targets_required=True)
        for name, v in (("epochs", epochs), ("initial_epoch", initial_epoch)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise TypeError(f"fit: {name} must be an int, received {v!r}")
            if v < 0:
                raise ValueError(f"fit: {name} must be >= 0, received {v!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
            raise TypeError(f"fit: seed must be an int or None, received {seed!r}")
        if isinstance(validation_split, bool) or not isinstance(validation_split, (int, float, np.integer,
                                                                                   np.floating)):
            raise TypeError(f"fit: validation_split must be a number in [0, 1), received {validation_split!r}")

        return run_fit(self, x, y, batch_size=batch_size, epochs=epochs, validation_data=validation_data,
                       validation_split=validation_split, shuffle=shuffle, seed=seed, callbacks=callbacks,
                       verbose=verbose, transform=transform if transform is not None else augment,
                       initial_epoch=initial_epoch, resume=resume, drop_last=drop_last)

    def _training_state(self):
        """The state ``fit(resume=...)`` needs (see :func:`corenet.training.state.training_state`)."""
        return training_state(self)
