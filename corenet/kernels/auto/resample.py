"""The auto backend's ``resample`` family: the kernels of the backend chosen in ``corenet/kernels/auto/__init__.py``."""

from . import module_for

_impl = module_for("resample")
__all__ = list(_impl.__all__)
globals().update({name: getattr(_impl, name) for name in __all__})
