"""Batch normalization layers (PyTorch conventions; see ``corenet.functional.batch_norm``)."""

from __future__ import annotations

import numpy as np

from .. import functional as F
from ..functional.norm import stats_reduce
from ..functional.validation import flag, positive_float, positive_int
from .base import Layer

__all__ = ["BatchNorm2d", "BatchNorm1d"]


class _BatchNorm(Layer):
    """Normalize each channel by batch statistics in training, by running statistics in evaluation.

    Parameters (PyTorch names): ``weight`` (gamma, ones) and ``bias`` (beta, zeros) when ``affine``;
    buffers ``running_mean`` (zeros), ``running_var`` (ones), ``num_batches_tracked`` (int64).
    ``momentum=0.1`` is the weight of the new batch; the stored variance is the unbiased one.
    A frozen layer (``trainable=False``) always uses and keeps its running statistics, also
    inside ``fit`` (the fine-tuning convention of Keras).

    ``sync=True`` (PyTorch's ``SyncBatchNorm``): under MPI (``corenet.distributed``, world size > 1)
    the training-mode statistics are those of the global batch, every rank's shard together (one
    allgather of per-channel count, mean and variance in forward, merged exactly; one allreduce of the
    two per-channel gradient sums in backward). In a world of size 1 it is plain batch norm, bit for
    bit. Every rank must run the layer at each training step (``fit`` checks that each rank has
    samples); host (numpy) arrays only. ``corenet.distributed.convert_sync_batchnorm(model)`` sets it
    on every batch-norm layer of a model.
    """

    expected_ndim = 3

    def __init__(self, num_features=None, eps=1e-5, momentum=0.1, affine=True, sync=False, **kwargs):
        super().__init__(**kwargs)
        op = type(self).__name__
        self.num_features = None if num_features is None else positive_int(op, "num_features", num_features)
        self.eps = positive_float(op, "eps", eps)
        self.momentum = positive_float(op, "momentum", momentum, allow_zero=True)
        if self.momentum > 1:
            raise ValueError(f"{op}: momentum must be in [0, 1], received {momentum!r}")
        self.affine = flag(op, "affine", affine)
        self.sync = flag(op, "sync", sync)

    def _build(self, input_shape):
        if len(input_shape) != self.expected_ndim:
            want = "(channels, height, width)" if self.expected_ndim == 3 else "(features,)"
            raise self._error(f"expects per-sample input {want}", input_shape)
        C = input_shape[0]
        if self.num_features is not None and C != self.num_features:
            raise self._error(f"was given num_features={self.num_features} but the input has {C}", input_shape)
        self.num_features = C
        if self.affine:
            self.add_param("weight", (C,), "ones")
            self.add_param("bias", (C,), "zeros")
        self.add_param("running_mean", (C,), "zeros", buffer=True)
        self.add_param("running_var", (C,), "ones", buffer=True)
        self.add_param("num_batches_tracked", (), "zeros", buffer=True, dtype=np.int64)
        return input_shape

    def forward(self, x, training=False, retain=True):
        return self._forward(F.batch_norm, x, training, retain)

    def backward(self, gy, need_gx=True):
        return self._backward(F.batch_norm_backward, gy, need_gx)

    def forward_relu(self, x, training=False, retain=True):
        """``relu(self.forward(x))`` in one pass over memory (``F.batch_norm_relu``): the graph runs a
        batch norm this way when its only reader is a ReLU; ``backward_relu`` is the matching backward."""
        return self._forward(F.batch_norm_relu, x, training, retain)

    def backward_relu(self, gy, need_gx=True):
        return self._backward(F.batch_norm_relu_backward, gy, need_gx)

    def _forward(self, op, x, training, retain):
        p, b = self.params, self.buffers
        training = bool(training) and self.trainable
        reducer = None
        if self.sync and training:
            from .. import distributed

            reducer = distributed.batch_norm_reducer()
        with stats_reduce(reducer):
            out = op(x, p.get("weight"), p.get("bias"), b["running_mean"], b["running_var"], training,
                     self.momentum, self.eps, return_state=retain)
        if training:
            b["num_batches_tracked"] += 1
        if retain:
            y, self._state = out
            return y
        return out

    def _backward(self, op, gy, need_gx):
        train = self.trainable and self.affine
        gx, gg, gb = op(gy, self._state, need_gx=need_gx, need_gparams=train)
        self._state = None
        if train:
            self._store_grads({"weight": gg, "bias": gb})
        return gx

    def _config(self):
        cfg = {"num_features": self.num_features, "eps": self.eps, "momentum": self.momentum, "affine": self.affine}
        if self.sync:  # only when set: configs (and checkpoints) of plain batch norm are unchanged
            cfg["sync"] = True
        return cfg


class BatchNorm2d(_BatchNorm):
    """Batch normalization of ``(N, C, H, W)`` over ``N, H, W`` per channel."""

    prefix = "batch_norm2d"
    expected_ndim = 3


class BatchNorm1d(_BatchNorm):
    """Batch normalization of ``(N, C)`` features over ``N``."""

    prefix = "batch_norm1d"
    expected_ndim = 1
