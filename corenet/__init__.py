"""corenet: a small, fast CNN training engine. numpy in, numpy out, NCHW.

>>> import corenet
>>> corenet.backends()  # doctest: +SKIP
['numba', 'cython']
"""

__version__ = "0.1.0"

from . import functional
from . import functional as F
from .config import (
    backend_status,
    backends,
    get_backend,
    get_num_threads,
    set_backend,
    set_num_threads,
)
from .warmup import warmup
from . import init, layers
from .graph import Input
from .model import Model, Sequential

__all__ = [
    "Input",
    "Model",
    "Sequential",
    "layers",
    "init",
    "F",
    "functional",
    "backends",
    "backend_status",
    "get_backend",
    "set_backend",
    "get_num_threads",
    "set_num_threads",
    "warmup",
    "__version__",
]

# checkpoints and training callbacks (corenet/io.py, corenet/callbacks.py)
from . import callbacks, io  # noqa: E402
from .io import load, load_torch_state_dict, save  # noqa: E402

__all__ += ["callbacks", "io", "load", "save", "load_torch_state_dict"]
