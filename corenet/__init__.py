"""corenet: a small, fast CNN training engine. numpy in, numpy out, NCHW.

>>> import corenet
>>> corenet.backends()  # doctest: +SKIP
['auto', 'numba', 'cython']
"""

__version__ = "0.1.0"

# importing _malloc keeps freed activations in the heap (no page faults per step)
from . import (  # noqa: F401
    _malloc,
    callbacks,
    data,
    functional,
    init,
    io,
    io_torch,  # the old path that docstrings show: corenet.io_torch.load_torch_state_dict
    layers,
    losses,
    models,
    optim,
    schedules,
)
from . import functional as F
from .config import (
    backend_status,
    backends,
    get_backend,
    get_num_threads,
    set_backend,
    set_num_threads,
)
from .graph import Input
from .io import export_onnx, import_onnx, load, load_torch_state_dict, save
from .model import Model, Sequential
from .warmup import warmup

__all__ = [
    "Input",
    "Model",
    "Sequential",
    "layers",
    "init",
    "optim",
    "schedules",
    "losses",
    "callbacks",
    "data",
    "models",
    "io",
    "F",
    "functional",
    "load",
    "save",
    "load_torch_state_dict",
    "export_onnx",
    "import_onnx",
    "backends",
    "backend_status",
    "get_backend",
    "set_backend",
    "get_num_threads",
    "set_num_threads",
    "warmup",
    "__version__",
]
