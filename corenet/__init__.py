"""corenet: a small, fast CNN training engine. numpy in, numpy out, NCHW.

The house, lowest floor first (a module imports only from its floor or lower; no cycles;
``tests/test_architecture.py`` enforces it and the README's Architecture section draws it):

- utilities: ``config``, ``geometry`` (output sizes, padding, window taps), ``_blas``, ``_malloc``,
  ``_ext`` (the compiled kernels), ``distributed`` (the MPI world, duck-typed), ``viz``; then ``data``
- ``kernels``: one package per backend (numba_cpu, cython_cpu, auto, cuda), one contract
- ``functional``: validated forward/backward pairs and the one CPU/GPU seam (``functional.device``)
- ``init``, ``layers`` (with the symbolic graph), then ``graph`` (execution), ``summary``, ``fusion``
- ``losses``, ``optim``, ``metrics``, ``schedules``, ``callbacks``; then ``io`` (formats over plain
  state dicts); then ``training`` (what ``Model`` inherits); then ``model``; ``models`` (the zoo);
  ``cli``; this facade on top.

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
