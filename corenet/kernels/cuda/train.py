"""CUDA training-step kernels: softmax cross-entropy (loss and gradient) and optimizer updates.

The ``train`` family of every backend (the CPU one, ``corenet/kernels/numba_cpu/train.py``, is the
numpy rules ``corenet.losses`` and ``corenet.optim`` reach through ``corenet.functional.train``).
Here they let a device-resident training step never copy logits, gradients, parameters or
optimizer state to the host; each follows the numpy formula and order of operations, so results
agree to rounding.

``softmax_cross_entropy(logits, labels, label_smoothing=0.0, reduction="mean") -> (loss, grad)``
    ``logits (N, K)`` float, ``labels (N,)`` integer class indices. As ``losses.CrossEntropy``:
    ``q = (1 - ls) * onehot + ls / K``, ``loss_i = -sum_k q_k log_softmax(z_i)_k``,
    ``grad_i = softmax(z_i) * sum_k q_k - q_i``; ``"mean"`` divides both by ``N``.
    One block per row (float64 log-sum-exp, block reductions over the classes), then one block
    adds the per-row losses with a shared-memory tree in a fixed order (deterministic, no atomics).
    Returns ``(float, ndarray)`` for numpy logits, ``(device (1,) float64, device grad)`` for device
    logits (no host sync).
``sgd_update(p, g, v, lr, momentum=0.0, nesterov=False, weight_decay=0.0)``
    In place on ``p`` (and the velocity ``v``, ignored when ``momentum == 0``), as ``optim.SGD``:
    ``g += wd * p``; ``v = momentum * v - lr * g``; ``p += v`` (Nesterov: ``p += momentum * v - lr * g``).
``adam_update(p, g, m, v, t, lr, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, decoupled=False)``
    In place on ``p, m, v``, as ``optim.Adam`` (``decoupled``: ``optim.AdamW``) at step ``t``
    (1-based): ``m = b1 m + (1-b1) g``, ``v = b2 v + (1-b2) g^2``,
    ``p -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)``.
``adagrad_update(p, g, r, lr, eps=1e-7, weight_decay=0.0)``
    In place on ``p, r``, as ``optim.AdaGrad``: ``g += wd * p``; ``r += g^2``; ``p -= lr * g / (sqrt(r) + eps)``.
``rmsprop_update(p, g, r, lr, rho=0.9, eps=1e-7, weight_decay=0.0)``
    In place on ``p, r``, as ``optim.RMSProp``: ``g += wd * p``; ``r = rho r + (1 - rho) g^2``;
    ``p -= lr * g / (sqrt(r) + eps)``.

Update arrays may be numpy (copied over and back, in place) or device arrays (updated in place).
Scalars are cast to the parameter dtype, so float32 updates run in float32 as numpy's do.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from ._reduce import block_max, block_sum
from ._runtime import MAX_BLOCKS, SIM, THREADS, cuda, dev, dmax, empty, grid, is_device

__all__ = ["softmax_cross_entropy", "sgd_update", "adam_update", "adagrad_update", "rmsprop_update"]

_SUM_THREADS = 16 if SIM else 256


@cuda.jit
def _xent_rows(z, labels, ls, scale, losses, grad):
    """One block per row (block-stride over the rows); its threads take strided shares of the K
    classes (consecutive threads, consecutive logits) for the row's max, sum of exponentials
    (float64) and loss, each combined by the block's tree (deterministic, no atomics)."""
    N, K = z.shape
    tid = cuda.threadIdx.x
    buf = cuda.shared.array(THREADS, numba.float64)
    for i in range(cuda.blockIdx.x, N, cuda.gridDim.x):
        m = -math.inf
        for k in range(tid, K, THREADS):
            m = dmax(m, numba.float64(z[i, k]))
        m = block_max(buf, tid, m)
        s = 0.0
        for k in range(tid, K, THREADS):
            s += math.exp(numba.float64(z[i, k]) - m)
        lse = m + math.log(block_sum(buf, tid, s))
        lab = labels[i]
        loss = 0.0
        for k in range(tid, K, THREADS):
            q = ls / K + (1.0 - ls if k == lab else 0.0)
            logp = numba.float64(z[i, k]) - lse
            loss -= q * logp
            grad[i, k] = (math.exp(logp) - q) * scale  # sum_k q = 1 for a label
        loss = block_sum(buf, tid, loss)
        if tid == 0:
            losses[i] = loss * scale


@cuda.jit
def _tree_sum(values, out):
    """One block: thread t adds values[t::T] in order, then a shared-memory tree."""
    t = cuda.threadIdx.x
    buf = cuda.shared.array(_SUM_THREADS, numba.float64)
    acc = 0.0
    for i in range(t, values.shape[0], _SUM_THREADS):
        acc += values[i]
    buf[t] = acc
    cuda.syncthreads()
    stride = _SUM_THREADS // 2
    while stride > 0:
        if t < stride:
            buf[t] += buf[t + stride]
        cuda.syncthreads()
        stride //= 2
    if t == 0:
        out[0] = buf[0]


def softmax_cross_entropy(logits, labels, label_smoothing=0.0, reduction="mean"):
    """Loss and gradient of softmax cross-entropy (see the module docstring)."""
    if reduction not in ("mean", "sum"):
        raise ValueError(f"softmax_cross_entropy: reduction must be 'mean' or 'sum', received {reduction!r}")
    N, K = logits.shape
    dz = dev(logits)
    dl = dev(labels if is_device(labels) else np.ascontiguousarray(labels, np.int64))
    losses = empty(N, np.float64)
    grad = empty((N, K), logits.dtype)
    scale = 1.0 / N if reduction == "mean" else 1.0
    _xent_rows[max(1, min(N, MAX_BLOCKS)), THREADS](dz, dl, float(label_smoothing), scale, losses, grad)
    total = empty(1, np.float64)
    _tree_sum[1, _SUM_THREADS](losses, total)
    if is_device(logits):
        return total, grad
    return float(total.copy_to_host()[0]), grad.copy_to_host()


@cuda.jit
def _sgd(p, g, v, lr, momentum, nesterov, wd):
    for i in range(cuda.grid(1), p.shape[0], cuda.gridsize(1)):
        gi = g[i] + wd * p[i] if wd != 0 else g[i]
        step = gi * lr
        if momentum == 0:
            p[i] -= step
        else:
            vi = v[i] * momentum - step
            v[i] = vi
            if nesterov:
                p[i] = p[i] + momentum * vi - step
            else:
                p[i] += vi


@cuda.jit
def _adam(p, g, m, v, lr, b1, omb1, b2, omb2, c1, c2, eps, wd, decay):
    for i in range(cuda.grid(1), p.shape[0], cuda.gridsize(1)):
        pi = p[i] * decay  # AdamW's decoupled decay; decay == 1 otherwise
        gi = g[i] + wd * pi if wd != 0 else g[i]
        mi = m[i] * b1 + omb1 * gi
        vi = v[i] * b2 + omb2 * (gi * gi)
        m[i] = mi
        v[i] = vi
        p[i] = pi - lr * (mi / c1) / (math.sqrt(vi / c2) + eps)


def _inplace(mutated, read):
    """Flat device views of ``mutated`` and ``read`` arrays, and a function that copies the
    mutated ones back into their numpy originals (device originals were updated in place)."""
    dm = [dev(a).reshape(-1) for a in mutated]
    dr = [dev(a).reshape(-1) for a in read]

    def finish():
        for a, d in zip(mutated, dm):
            if not is_device(a):
                a.reshape(-1)[...] = d.copy_to_host()

    return dm, dr, finish


def sgd_update(p, g, v, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
    """One SGD step in place on ``p`` (and ``v``); see the module docstring."""
    dt = p.dtype.type
    if momentum:
        (dp, dv), (dg,), finish = _inplace([p, v], [g])
    else:
        (dp,), (dg,), finish = _inplace([p], [g])
        dv = dp  # never touched when momentum == 0
    _sgd[grid(p.size)](dp, dg, dv, dt(lr), dt(momentum), bool(nesterov), dt(weight_decay))
    finish()


def adam_update(p, g, m, v, t, lr, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, decoupled=False):
    """One Adam/AdamW step in place on ``p, m, v`` at step ``t`` (1-based); see the module docstring."""
    dt = p.dtype.type
    (dp, dm, dv), (dg,), finish = _inplace([p, m, v], [g])
    decay = 1.0 - lr * weight_decay if decoupled else 1.0
    wd = 0.0 if decoupled else weight_decay
    _adam[grid(p.size)](dp, dg, dm, dv, dt(lr), dt(beta1), dt(1.0 - beta1), dt(beta2), dt(1.0 - beta2),
                        dt(1.0 - beta1 ** int(t)), dt(1.0 - beta2 ** int(t)), dt(eps), dt(wd), dt(decay))
    finish()


@cuda.jit
def _rms(p, g, r, lr, rho, omrho, eps, wd):
    """AdaGrad with ``rho = omrho = 1``, RMSProp otherwise."""
    for i in range(cuda.grid(1), p.shape[0], cuda.gridsize(1)):
        gi = g[i] + wd * p[i] if wd != 0 else g[i]
        ri = r[i] * rho + omrho * (gi * gi)
        r[i] = ri
        p[i] -= lr * gi / (math.sqrt(ri) + eps)


def adagrad_update(p, g, r, lr, eps=1e-7, weight_decay=0.0):
    """One AdaGrad step in place on ``p, r``; see the module docstring."""
    dt = p.dtype.type
    (dp, dr), (dg,), finish = _inplace([p, r], [g])
    _rms[grid(p.size)](dp, dg, dr, dt(lr), dt(1.0), dt(1.0), dt(eps), dt(weight_decay))
    finish()


def rmsprop_update(p, g, r, lr, rho=0.9, eps=1e-7, weight_decay=0.0):
    """One RMSProp step in place on ``p, r``; see the module docstring."""
    dt = p.dtype.type
    (dp, dr), (dg,), finish = _inplace([p, r], [g])
    _rms[grid(p.size)](dp, dg, dr, dt(lr), dt(rho), dt(1.0 - rho), dt(eps), dt(weight_decay))
    finish()
