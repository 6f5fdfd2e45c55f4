"""Cython CPU fused epilogues: the contract of ``corenet/kernels/numba_cpu/fused.py``, composed from
this backend's own norm and act kernels (the intermediate goes through memory, so these save no
pass; they keep the Cython backend complete and give exactly its unfused results)."""

from __future__ import annotations

import numpy as np

from . import act, norm

__all__ = ["bn_relu_forward", "bn_relu_backward_reduce", "bn_relu_backward_gx", "bn_relu_scale_gx",
           "add_relu_forward"]


def _flat(a):
    return a.reshape(-1)


def _relu_grad(gy, y):
    return act.relu_backward(_flat(gy), _flat(y), np.empty(gy.size, gy.dtype)).reshape(gy.shape)


def bn_relu_forward(x, mean, scale, shift, y):
    norm.bn_affine(x, mean, scale, shift, y)
    act.relu_forward(_flat(y), _flat(y))
    return y


def bn_relu_backward_reduce(gy, y, x, mean):
    return norm.bn_backward_reduce(_relu_grad(gy, y), x, mean)


def bn_relu_backward_gx(gy, y, x, mean, a, b, d, gx):
    return norm.bn_backward_gx(_relu_grad(gy, y), x, mean, a, b, d, gx)


def bn_relu_scale_gx(gy, y, a, gx):
    return norm.bn_scale_gx(_relu_grad(gy, y), a, gx)


def add_relu_forward(a, b, y):
    np.add(a, b, out=y)
    act.relu_forward(y, y)
    return y
