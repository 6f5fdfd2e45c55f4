"""Transition shim: the contents of this module moved to ``functional/validation.py`` (argument
checks), ``functional/device.py`` (array kinds, host/device moves) and ``corenet/geometry.py``
(window arithmetic). Import from those; this file re-exports them for code written before the split."""

from ..geometry import *  # noqa: F401,F403
from ..geometry import is_int as _is_int  # noqa: F401
from .device import *  # noqa: F401,F403
from .validation import *  # noqa: F401,F403
