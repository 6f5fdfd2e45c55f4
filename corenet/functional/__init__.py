"""Differentiable array ops: forward/backward pairs with argument checking, on the active backend.

Every op follows one pattern::

    y = F.op(x, ..., )                              # forward only
    y, state = F.op(x, ..., return_state=True)      # forward keeping what backward needs
    gx = F.op_backward(gy, state)                   # (conv returns gx, gw, gb, each if asked)

Inputs are NCHW numpy arrays, float32 or float64; outputs keep the input dtype. numba device
arrays are accepted too: the array kind picks the kernels (numpy -> the active CPU backend,
device -> the cuda backend) and outputs are allocated in kind, so device arrays stay on the GPU
(``Model.to("cuda")`` builds on this).

Every state is a frozen NamedTuple (``Conv2dState``, ``BatchNormState``, ...), checked by its backward.
Two public helper modules serve the floors above: ``functional.validation`` (the argument checks every
op, layer and trainer shares; the window arithmetic itself is ``corenet.geometry``, one floor below
kernels) and ``functional.device`` (``is_device``, ``backend_for``, host/device moves): the only
place that tells a numpy array from a device array. Nothing above this package imports ``kernels``.
"""

from .act import *  # noqa: F401,F403
from .act_mobile import *  # noqa: F401,F403
from .conv import *  # noqa: F401,F403
from .conv_transpose import *  # noqa: F401,F403
from .drop_path import *  # noqa: F401,F403
from .fused import *  # noqa: F401,F403
from .linear import *  # noqa: F401,F403
from .lrn import *  # noqa: F401,F403
from .norm import *  # noqa: F401,F403
from .pool import *  # noqa: F401,F403
from .resample import *  # noqa: F401,F403
from .shuffle import *  # noqa: F401,F403
from .tensor import *  # noqa: F401,F403
from .train import *  # noqa: F401,F403
