"""Batch normalisation: forward/backward pair on the active backend.

Ioffe & Szegedy, "Batch Normalization: Accelerating Deep Network Training by Reducing Internal
Covariate Shift" (2015), with PyTorch's conventions for the running statistics.
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import NamedTuple

import numpy as np

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


def _check_vector(op: str, name: str, v, x, inplace: bool = False):
    """A ``(C,)`` vector of ``x``'s kind (numpy for numpy x, a device array for a device x), or None."""
    if v is None:
        return None
    C = x.shape[1]
    if is_device(v) != is_device(x) or not (isinstance(v, np.ndarray) or is_device(v)):
        kind = "device" if is_device(x) else "numpy"
        raise TypeError(f"{op}: {name} must be a {kind} array (as x is) or None, received {type(v).__name__}")
    if tuple(v.shape) != (C,):
        raise ValueError(f"{op}: {name} must have shape ({C},) for {C} channels, received {name}.shape={v.shape}")
    if inplace:  # running statistics are updated in place: any float dtype, any strides (numpy)
        if v.dtype.kind != "f":
            raise TypeError(f"{op}: {name} must be a float array, received dtype {v.dtype}")
        return v
    if v.dtype != x.dtype:
        raise TypeError(f"{op}: {name} must have the input's dtype {x.dtype}, received {name}.dtype={v.dtype}")
    return as_float_array(op, name, v)


def _read_only(v) -> bool:
    return not getattr(getattr(v, "flags", None), "writeable", True)


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
    state : BatchNormState, only when ``return_state``
    """
    op = "batch_norm"
    training = flag(op, "training", training)
    state, mean_dt, scale, shift = _forward_coefficients(op, x, gamma, beta, running_mean, running_var, training,
                                                         momentum, eps)
    x3 = state.x
    y = backend_for(x3).norm.bn_affine(x3, mean_dt, scale, shift, empty_like(x3)).reshape(state.shape)
    if not return_state:
        return y
    return y, state


def _forward_coefficients(op, x, gamma, beta, running_mean, running_var, training, momentum, eps):
    """Validate, take the statistics (updating the running ones in training) and return
    ``(state, mean, scale, shift)``: ``y = (x - mean) * scale + shift`` per channel, in x's dtype.
    The ``(C,)`` step is the kernels' ``bn_prepare``, so device arrays never leave the device."""
    x = as_float_array(op, "x", x)
    if len(x.shape) not in (2, 4):
        raise ValueError(f"{op}: x must be (N, C, H, W) or (N, C), received x.shape={tuple(x.shape)}")
    if x.size == 0:
        raise ValueError(f"{op}: x must not be empty (a batch of at least one sample, every axis >= 1), "
                         f"received x.shape={tuple(x.shape)}")
    C = x.shape[1]
    gamma = _check_vector(op, "gamma", gamma, x)
    beta = _check_vector(op, "beta", beta, x)
    same_dtype(op, x=x, gamma=gamma, beta=beta)
    if (running_mean is None) != (running_var is None):
        raise ValueError(f"{op}: pass both running_mean and running_var, or neither")
    running_mean = _check_vector(op, "running_mean", running_mean, x, inplace=True)
    running_var = _check_vector(op, "running_var", running_var, x, inplace=True)
    if training and running_mean is not None and (_read_only(running_mean) or _read_only(running_var)):
        raise ValueError(f"{op}: running_mean and running_var are updated in place in training mode, but "
                         f"{'running_mean' if _read_only(running_mean) else 'running_var'} is read-only; "
                         "pass writeable arrays (a copy), or training=False to use them as they are")
    eps = positive_float(op, "eps", eps)
    momentum = positive_float(op, "momentum", momentum, allow_zero=True)
    if momentum > 1:
        raise ValueError(f"{op}: momentum must be in [0, 1], received {momentum}")

    k = backend_for(x).norm
    x3 = x.reshape(x.shape[0], C, x.size // (x.shape[0] * C))  # (N, C, L)
    M = x3.shape[0] * x3.shape[2]
    use_batch = bool(training) or running_mean is None
    reducer = _REDUCE.get() if use_batch else None
    if reducer is not None and is_device(x):
        raise NotImplementedError(f"{op}: synchronised batch norm (sync=True under MPI) supports host (numpy) "
                                  "arrays only")
    mean = var = None
    if use_batch:
        mean, var = k.bn_stats(x3)  # float64 (C,), biased variance
        if reducer is not None:  # synchronised: the global batch's statistics
            M, mean, var = reducer.stats(M, mean, var)
        if M < 2 and training:
            raise ValueError(f"{op}: expected more than 1 value per channel when training, "
                             f"received x.shape={tuple(x.shape)}"
                             + (f" ({M} over the processes)" if reducer is not None else ""))
    mean64, invstd, mean_dt, scale, shift = k.bn_prepare(
        mean, var, gamma, beta, running_mean, running_var, not use_batch, bool(training) and running_mean is not None,
        momentum, M, eps, x.dtype)
    state = BatchNormState(x3, tuple(x.shape), mean64, invstd, gamma, beta is not None, use_batch, reducer, M)
    return state, mean_dt, scale, shift


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
    gy3 = _check_gy(op, gy, state)
    k = backend_for(gy3).norm
    sums = None
    if _want_params(state, need_gparams) or (need_gx and state.batch_stats):
        sums = k.bn_backward_reduce(gy3, state.x, state.mean)  # sum gy, sum gy*(x - mean)
    a, b, d, mean_dt, params = _backward_coefficients(state, sums, need_gparams, k)
    gx = None
    if need_gx:
        if state.batch_stats:
            gx = k.bn_backward_gx(gy3, state.x, mean_dt, a, b, d, empty_like(gy3))
        else:
            gx = k.bn_scale_gx(gy3, a, empty_like(gy3))
        gx = gx.reshape(state.shape)
    return (gx, *params)


def _check_gy(op, gy, state):
    """``gy`` as the ``(N, C, L)`` view of the forward input, checked against the state."""
    gy = as_float_array(op, "gy", gy)
    if tuple(gy.shape) != state.shape:
        raise ValueError(f"{op}: gy must have the forward output's shape {state.shape}, "
                         f"received gy.shape={tuple(gy.shape)}")
    same_dtype(op, gy=gy, x=state.x)
    return gy.reshape(state.x.shape)


def _want_params(state, need_gparams):
    return need_gparams and (state.gamma is not None or state.has_beta)


def _backward_coefficients(state, sums, need_gparams, k):
    """From ``sums = (sum gy, sum gy*(x - mean))`` (float64, or None when not needed) and the kernels'
    ``bn_backward_coeffs``: ``(a, b, d, mean, (ggamma, gbeta))`` with ``gx = a*gy + b*(x - mean) + d``
    in x's dtype (b, d unused for running statistics).

    Synchronised (``state.reduce``): ``b`` and ``d`` come from the sums reduced over the processes and
    the global count; ``ggamma``/``gbeta`` stay this process's own (the gradient allreduce sums them)."""
    dt = state.x.dtype
    M = state.x.shape[0] * state.x.shape[2]
    sg, sgx = sums if sums is not None else (None, None)
    a, b, d, mean_dt, ggamma, gbeta = k.bn_backward_coeffs(sg, sgx, state.gamma, state.invstd, state.mean, M,
                                                           state.batch_stats, dt)
    if sums is not None and state.batch_stats and state.reduce is not None:
        rsg, rsgx = state.reduce.sums(state.x.shape[0], (sg, sgx))
        a, b, d, mean_dt, _, _ = k.bn_backward_coeffs(rsg, rsgx, state.gamma, state.invstd, state.mean,
                                                      state.count, True, dt)
    params = (None, None)
    if _want_params(state, need_gparams) and sums is not None:
        params = (ggamma if state.gamma is not None else None, gbeta if state.has_beta else None)
    return a, b, d, mean_dt, params


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
