"""The Cython backend's ``train`` family: the numpy kernels of ``corenet/kernels/numba_cpu/train.py``.

They are single numpy passes (no compiled loop would be faster), so the two CPU backends share them
and both stay complete under the contract names.
"""

from ..numba_cpu import train as _impl

__all__ = list(_impl.__all__)
globals().update({name: getattr(_impl, name) for name in __all__})
