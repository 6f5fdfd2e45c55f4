"""Batch normalisation: forward/backward pair on the active backend.

Ioffe & Szegedy, "Batch Normalization: Accelerating Deep Network Training by Reducing Internal
Covariate Shift" (2015), with PyTorch's conventions for the running statistics.
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import NamedTuple

import numpy as np

from .. import kernels
from .device import backend_for, empty_like, is_device
from .validation import as_float_array, check_state, flag, positive_float, same_dtype

__all__ = ["batch_norm", "batch_norm_backward", "BatchNormState"]


class BatchNormState(NamedTuple):
    """What :func:`batch_norm_backward` needs: x as ``(N, C, L)``, its shape, the float64 statistics used,
    gamma, whether there is a beta and whether batch (True) or running (False) statistics were used;
    for synchronised batch norm (:func:`stats_reduce`) the reducer and the global count per channel."""

    x: np.ndarray
    shape: tuple
    mean: np.ndarray
    invstd: np.ndarray
    gamma: np.ndarray | None
    has_beta: bool
    batch_stats: bool
    reduce: object = None
    count: int = 0


# Synchronised batch norm (corenet.distributed): a reducer active around one forward call. It has
# ``stats(n, mean, var) -> (N, mean, var)``, merging this process's per-channel count, mean and biased
# variance (float64 (C,)) into the global batch's, and ``sums(n, sums) -> sums``, reducing the backward's
# per-channel ``(sum gy, sum gy*(x - mean))`` over the processes. The forward records it in the state,
# so the backward (plain or fused with ReLU) reduces too. Host arrays only.
_REDUCE = contextvars.ContextVar("corenet_batch_norm_reduce", default=None)


@contextlib.contextmanager
def stats_reduce(reducer):
    """Within the block, training-mode batch statistics are merged by ``reducer`` (None: not at all)."""
    token = _REDUCE.set(reducer)
    try:
        yield
    finally:
        _REDUCE.reset(token)


def _check_vector(op: str, name: str, v, C: int, dtype, inplace: bool = False):
    if v is None:
        return None
    if not isinstance(v, np.ndarray):
        raise TypeError(f"{op}: {name} must be a numpy array or None, received {type(v).__name__}")
    if v.shape != (C,):
        raise ValueError(f"{op}: {name} must have shape ({C},) for {C} channels, received {name}.shape={v.shape}")
    if inplace:  # running statistics are updated in place: any float dtype, any strides
        if v.dtype.kind != "f":
            raise TypeError(f"{op}: {name} must be a float array, received dtype {v.dtype}")
        return v
    if v.dtype != dtype:
        raise TypeError(f"{op}: {name} must have the input's dtype {dtype}, received {name}.dtype={v.dtype}")
    return np.ascontiguousarray(v)


def batch_norm(x, gamma, beta, running_mean, running_var, training, momentum=0.1, eps=1e-5,
               return_state=False):
    """Batch normalisation over every axis but the channel axis 1.

    ``y = (x - mu_c) / sqrt(var_c + eps) * gamma_c + beta_c``

    In training mode (or when no running statistics are kept) ``mu_c`` and ``var_c`` are the
    mean and the *biased* variance of channel ``c`` over the batch (and the spatial axes), and
    the running statistics, when given, are updated **in place** with PyTorch's rule::

        running_mean = (1 - momentum) * running_mean + momentum * mu_c
        running_var  = (1 - momentum) * running_var  + momentum * var_c * M / (M - 1)

    where ``M = N*H*W`` (the stored variance is the *unbiased* one). In eval mode the running
    statistics are used and not changed.

    Parameters
    ----------
    x : ndarray, (N, C, H, W) or (N, C), float32 or float64
    gamma, beta : ndarray (C,) of x's dtype, or None (no affine: gamma = 1, beta = 0)
    running_mean, running_var : ndarray (C,) of any float dtype, or None (track_running_stats=False:
        batch statistics are always used)
    training : bool
    momentum : float in [0, 1], weight of the new batch
    eps : float > 0, added to the variance
    return_state : bool, also return what :func:`batch_norm_backward` needs

    Returns
    -------
    y : ndarray, shape and dtype of x
    state : dict, only when ``return_state``
    """
    op = "batch_norm"
    training = flag(op, "training", training)
    if is_device(x):
        if _REDUCE.get() is not None and training:
            raise NotImplementedError(f"{op}: synchronised batch norm (sync=True under MPI) supports host (numpy) "
                                      "arrays only")
        return _batch_norm_device(x, gamma, beta, running_mean, running_var, training, momentum, eps, return_state)
    state, mean_dt, scale, shift = _forward_coefficients(op, x, gamma, beta, running_mean, running_var, training,
                                                         momentum, eps)
    x3 = state.x
    y3 = kernels.active().norm.bn_affine(x3, mean_dt, scale, shift, np.empty_like(x3))
    y = y3.reshape(x.shape)
    if not return_state:
        return y
    return y, state


def _forward_coefficients(op, x, gamma, beta, running_mean, running_var, training, momentum, eps):
    """Validate, take the statistics (updating the running ones in training) and return
    ``(state, mean, scale, shift)``: ``y = (x - mean) * scale + shift`` per channel, in x's dtype."""
    x = as_float_array(op, "x", x)
    if x.ndim not in (2, 4):
        raise ValueError(f"{op}: x must be (N, C, H, W) or (N, C), received x.shape={x.shape}")
    if x.size == 0:
        raise ValueError(f"{op}: x must not be empty (a batch of at least one sample, every axis >= 1), "
                         f"received x.shape={x.shape}")
    C = x.shape[1]
    gamma = _check_vector(op, "gamma", gamma, C, x.dtype)
    beta = _check_vector(op, "beta", beta, C, x.dtype)
    same_dtype(op, x=x, gamma=gamma, beta=beta)
    if (running_mean is None) != (running_var is None):
        raise ValueError(f"{op}: pass both running_mean and running_var, or neither")
    running_mean = _check_vector(op, "running_mean", running_mean, C, None, inplace=True)
    running_var = _check_vector(op, "running_var", running_var, C, None, inplace=True)
    if training and running_mean is not None and not (running_mean.flags.writeable and running_var.flags.writeable):
        raise ValueError(f"{op}: running_mean and running_var are updated in place in training mode, but "
                         f"{'running_mean' if not running_mean.flags.writeable else 'running_var'} is read-only; "
                         "pass writeable arrays (a copy), or training=False to use them as they are")
    eps = positive_float(op, "eps", eps)
    momentum = positive_float(op, "momentum", momentum, allow_zero=True)
    if momentum > 1:
        raise ValueError(f"{op}: momentum must be in [0, 1], received {momentum}")

    k = kernels.active().norm
    x3 = x.reshape(x.shape[0], C, -1)  # (N, C, L)
    M = x3.shape[0] * x3.shape[2]
    use_batch = bool(training) or running_mean is None
    reducer = _REDUCE.get() if use_batch else None
    if use_batch:
        mean, var = k.bn_stats(x3)  # float64 (C,), biased variance
        if reducer is not None:  # synchronised: the global batch's statistics
            M, mean, var = reducer.stats(M, mean, var)
        if M < 2 and training:
            raise ValueError(f"{op}: expected more than 1 value per channel when training, received x.shape={x.shape}"
                             + (f" ({M} over the processes)" if reducer is not None else ""))
        if training and running_mean is not None:
            running_mean *= 1.0 - momentum
            running_mean += momentum * mean
            running_var *= 1.0 - momentum
            running_var += momentum * var * (M / max(M - 1, 1))
    else:
        mean = running_mean.astype(np.float64)
        var = running_var.astype(np.float64)
    invstd = 1.0 / np.sqrt(var + eps)  # float64 (C,)
    g64 = gamma.astype(np.float64) if gamma is not None else np.ones(C)
    scale = g64 * invstd
    shift = beta if beta is not None else np.zeros(C, x.dtype)
    state = BatchNormState(x3, x.shape, mean, invstd, gamma, beta is not None, use_batch, reducer, M)
    return state, mean.astype(x.dtype), scale.astype(x.dtype), np.ascontiguousarray(shift, x.dtype)


def batch_norm_backward(gy, state, need_gx=True, need_gparams=True):
    """Gradients of :func:`batch_norm`.

    With ``xhat = (x - mu) * invstd`` and ``M`` values per channel:

    - ``gbeta = sum(gy)``, ``ggamma = sum(gy * xhat)`` (over every axis but 1);
    - batch statistics: ``gx = gamma * invstd * (gy - sum(gy)/M - xhat * sum(gy * xhat)/M)``;
    - running statistics (eval mode): ``gx = gamma * invstd * gy``.

    Returns
    -------
    (gx, ggamma, gbeta) : gx has x's shape and dtype; ggamma and gbeta are ``(C,)`` of x's dtype.
        Each is None when not asked for; ggamma/gbeta are None without affine parameters.
    """
    op = "batch_norm_backward"
    check_state(op, state, BatchNormState, "batch_norm")
    if is_device(state.x):
        return _batch_norm_backward_device(gy, state, need_gx, need_gparams)
    gy3 = _check_gy(op, gy, state)
    k = kernels.active().norm
    sums = None
    if _want_params(state, need_gparams) or (need_gx and state.batch_stats):
        sums = k.bn_backward_reduce(gy3, state.x, state.mean)  # sum gy, sum gy*(x - mean)
    a, b, d, params = _backward_coefficients(state, sums, need_gparams)
    gx = None
    if need_gx:
        x3, dt = state.x, state.x.dtype
        if state.batch_stats:
            gx = k.bn_backward_gx(gy3, x3, state.mean.astype(dt), a, b, d, np.empty_like(gy3))
        else:
            gx = k.bn_scale_gx(gy3, a, np.empty_like(gy3))
        gx = gx.reshape(state.shape)
    return (gx, *params)


def _check_gy(op, gy, state):
    """``gy`` as the ``(N, C, L)`` view of the forward input, checked against the state."""
    gy = as_float_array(op, "gy", gy)
    if gy.shape != state.shape:
        raise ValueError(f"{op}: gy must have the forward output's shape {state.shape}, received gy.shape={gy.shape}")
    same_dtype(op, gy=gy, x=state.x)
    return gy.reshape(state.x.shape)


def _want_params(state, need_gparams):
    return need_gparams and (state.gamma is not None or state.has_beta)


def _backward_coefficients(state, sums, need_gparams):
    """From ``sums = (sum gy, sum gy*(x - mean))`` (float64, or None when not needed): ``(a, b, d)``
    of ``gx = a*gy + b*(x - mean) + d`` in x's dtype (b, d None for running statistics) and the
    parameter gradients ``(ggamma, gbeta)``.

    Synchronised (``state.reduce``): ``b`` and ``d`` come from the sums reduced over the processes and
    the global count; ``ggamma``/``gbeta`` stay this process's own (the gradient allreduce sums them)."""
    dt = state.x.dtype
    C = state.x.shape[1]
    M = state.x.shape[0] * state.x.shape[2]
    invstd, gamma = state.invstd, state.gamma
    g64 = gamma.astype(np.float64) if gamma is not None else np.ones(C)
    a = g64 * invstd  # float64 (C,)
    b = d = None
    ggamma = gbeta = None
    if sums is not None:
        sg, sgx = sums
        sgx = sgx * invstd  # = sum(gy * xhat)
        if state.batch_stats:
            bsg, bsgx = sg, sgx
            if state.reduce is not None:
                bsg, bsgx = state.reduce.sums(state.x.shape[0], (sg, sgx))
                M = state.count
            b = (-a * invstd * bsgx / M).astype(dt)
            d = (-a * bsg / M).astype(dt)
        if _want_params(state, need_gparams):
            ggamma = sgx.astype(dt) if gamma is not None else None
            gbeta = sg.astype(dt) if state.has_beta else None
    return a.astype(dt), b, d, (ggamma, gbeta)


# ----------------------------------------------------------------------------- device arrays
# The same computation with every (C,) step on the GPU (corenet/kernels/cuda/norm.py's bn_prepare
# and bn_backward_coeffs): gamma, beta and the running statistics are device arrays too.


def _check_device_vector(op, name, v, C):
    if v is not None and (not is_device(v) or tuple(v.shape) != (C,)):
        got = f"{name}.shape={tuple(v.shape)}" if is_device(v) else type(v).__name__
        raise TypeError(f"{op}: with a device x, {name} must be a ({C},) device array or None, received {got}")


def _batch_norm_device(x, gamma, beta, running_mean, running_var, training, momentum, eps, return_state):
    op = "batch_norm"
    x = as_float_array(op, "x", x)
    if len(x.shape) not in (2, 4) or x.size == 0:
        raise ValueError(f"{op}: x must be a non-empty (N, C, H, W) or (N, C), received x.shape={tuple(x.shape)}")
    C = x.shape[1]
    for name, v in (("gamma", gamma), ("beta", beta), ("running_mean", running_mean), ("running_var", running_var)):
        _check_device_vector(op, name, v, C)
    same_dtype(op, x=x, gamma=gamma, beta=beta)
    if (running_mean is None) != (running_var is None):
        raise ValueError(f"{op}: pass both running_mean and running_var, or neither")
    eps = positive_float(op, "eps", eps)
    momentum = positive_float(op, "momentum", momentum, allow_zero=True)
    if momentum > 1:
        raise ValueError(f"{op}: momentum must be in [0, 1], received {momentum}")
    k = backend_for(x).norm
    x3 = x.reshape(x.shape[0], C, x.size // (x.shape[0] * C))
    M = x3.shape[0] * x3.shape[2]
    use_batch = bool(training) or running_mean is None
    mean = var = None
    if use_batch:
        if M < 2 and training:
            raise ValueError(f"{op}: expected more than 1 value per channel when training, received x.shape={x.shape}")
        mean, var = k.bn_stats(x3)
    mean64, invstd, mean_dt, scale, shift = k.bn_prepare(
        mean, var, gamma, beta, running_mean, running_var, not use_batch,
        bool(training) and running_mean is not None, momentum, M, eps, x.dtype)
    y = k.bn_affine(x3, mean_dt, scale, shift, empty_like(x3)).reshape(x.shape)
    if not return_state:
        return y
    return y, BatchNormState(x3, x.shape, mean64, invstd, gamma, beta is not None, use_batch)


def _batch_norm_backward_device(gy, state, need_gx, need_gparams):
    op = "batch_norm_backward"
    x3 = state.x
    gy = as_float_array(op, "gy", gy)
    if tuple(gy.shape) != tuple(state.shape):
        raise ValueError(f"{op}: gy must have the forward output's shape {state.shape}, received gy.shape={gy.shape}")
    same_dtype(op, gy=gy, x=x3)
    gy3 = gy.reshape(x3.shape)
    M = x3.shape[0] * x3.shape[2]
    gamma, batch_stats = state.gamma, state.batch_stats
    want_params = need_gparams and (gamma is not None or state.has_beta)
    k = backend_for(x3).norm
    sg = sgx = None
    if want_params or (need_gx and batch_stats):
        sg, sgx = k.bn_backward_reduce(gy3, x3, state.mean)
    a, b, d, mean_dt, ggamma, gbeta = k.bn_backward_coeffs(sg, sgx, gamma, state.invstd, state.mean, M,
                                                           batch_stats, x3.dtype)
    gx = None
    if need_gx:
        if batch_stats:
            gx = k.bn_backward_gx(gy3, x3, mean_dt, a, b, d, empty_like(gy3))
        else:
            gx = k.bn_scale_gx(gy3, a, empty_like(gy3))
        gx = gx.reshape(state.shape)
    if not want_params:
        return gx, None, None
    return gx, (ggamma if gamma is not None else None), (gbeta if state.has_beta else None)


def _warmup(dtype):
    dtype = np.dtype(dtype)
    for shape in ((2, 3, 2, 2), (4, 3)):
        x = np.linspace(-1, 1, int(np.prod(shape))).astype(dtype).reshape(shape)
        C = shape[1]
        g, b = np.ones(C, dtype), np.zeros(C, dtype)
        rm, rv = np.zeros(C, np.float32), np.ones(C, np.float32)
        for training in (True, False):
            y, st = batch_norm(x, g, b, rm, rv, training, return_state=True)
            batch_norm_backward(y, st)
