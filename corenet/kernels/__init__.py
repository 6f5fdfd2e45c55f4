"""Kernel backends: a registry that picks a backend by name and imports it lazily.

Design
------
Every backend is a package with one module per op family, and every module defines the same
function names with the same signatures::

    corenet/kernels/numba_cpu/{conv,pool,lrn,norm,act,fused}.py   Numba, @njit(parallel=True, cache=True)
    corenet/kernels/cython_cpu/{conv,pool,lrn,norm,act,fused}.py  wrappers over corenet/_ext/*.pyx and the
                                                                  direct SIMD convolution (simd_conv*.h)
    corenet/kernels/cuda/{conv,pool,lrn,norm,act}.py               numba.cuda (optional; device arrays take
                                                                  the unfused ops, so it has no fused family)
    corenet/kernels/auto/{conv,pool,lrn,norm,act,fused}.py        the default: per family, the fastest CPU one
    <every backend>/{ops,train}.py                                the tensor glue of the graph and layers (add,
                                                                  accumulate, copy, fill, concat, pad) and the
                                                                  loss/optimizer updates (numpy on the CPU)
    <every backend>/resample.py                                   nearest/bilinear upsampling from per-axis tables

A backend may add primitives of its own beside the contract names (the Cython backend's
``simd_*`` convolution kernels, which ``_cpu_conv`` looks up with ``getattr``);
``tests/test_backend_auto.py`` checks that every shared name has one signature everywhere.
``corenet.functional`` validates arguments once and then calls ``kernels.active().conv.<name>``;
it never branches on the backend. Kernels trust their inputs: C-contiguous float32/float64 NCHW
arrays, already-normalised integer tuples, output shapes already computed.

Families are imported on first attribute access, so ``import corenet`` compiles nothing and a
backend that is never used is never imported.

This module is the backend registry: ``set_backend``, ``backends`` and ``backend_status`` live here
(``corenet.config`` keeps only the chosen name and forwards its functions of those names here: the
registry plugs itself into config at import, so config never imports kernels).
"""

from __future__ import annotations

import importlib
import sys

from .. import config

FAMILIES = ("conv", "pool", "lrn", "norm", "act", "fused", "ops", "train", "resample")
_PACKAGES = {"auto": "auto", "numba": "numba_cpu", "cython": "cython_cpu", "cuda": "cuda"}


class Backend:
    """Namespace of one backend's op-family modules, imported lazily (``backend.conv`` ...)."""

    def __init__(self, name: str):
        self.name = name
        self._package = f"{__name__}.{_PACKAGES[name]}"

    def __getattr__(self, family: str):
        if family not in FAMILIES:
            raise AttributeError(f"backend {self.name!r} has no op family {family!r}; families: {FAMILIES}")
        module = importlib.import_module(f"{self._package}.{family}")
        setattr(self, family, module)  # later look-ups skip __getattr__
        return module

    def __repr__(self) -> str:
        return f"<corenet backend {self.name!r}>"


_loaded: dict[str, Backend] = {}
_status: dict[str, str | None] = {}


def _probe(name: str) -> str | None:
    """``None`` when backend ``name`` can run here, else the reason it cannot."""
    try:
        pkg = importlib.import_module(f"{__name__}.{_PACKAGES[name]}")
    except ImportError as exc:  # a missing optional dependency or extension
        return f"cannot import {_PACKAGES[name]}: {exc}"
    probe = getattr(pkg, "unavailable_reason", None)
    return probe() if probe is not None else None


def set_backend(name: str) -> None:
    """Switch every op on numpy arrays to the kernels of backend ``name`` (``corenet.set_backend``).

    Raises ValueError for an unknown name, TypeError for a non-string, RuntimeError (saying why)
    for a known backend that cannot run here.
    """
    if not isinstance(name, str):
        raise TypeError(f"set_backend: expected a backend name (str), received {type(name).__name__}")
    name = name.strip().lower()
    require(name)  # raises with the reason when unavailable
    config.choose_backend(name)


def backends() -> list[str]:
    """Names of the backends that can be used in this process, in preference order."""
    return [name for name, reason in status().items() if reason is None]


def backend_status() -> dict[str, str]:
    """Every known backend with ``"available"`` or the reason it is not."""
    return {name: ("available" if why is None else why) for name, why in status().items()}


def status() -> dict[str, str | None]:
    """``{name: None or reason}`` for every known backend (probed once per process)."""
    for name in _PACKAGES:
        if name not in _status:
            _status[name] = _probe(name)
    return dict(_status)


def require(name: str) -> Backend:
    """The backend ``name``, or a clear error saying why it cannot be used."""
    if name not in _PACKAGES:
        raise ValueError(f"unknown backend {name!r}; expected one of {sorted(_PACKAGES)}")
    if name not in _loaded:
        if name not in _status:
            _status[name] = _probe(name)
        if _status[name] is not None:
            raise RuntimeError(f"backend {name!r} is not available: {_status[name]}")
        _loaded[name] = Backend(name)
    return _loaded[name]


def active() -> Backend:
    """The backend chosen with ``corenet.set_backend`` (or ``CORENET_BACKEND``)."""
    name = config._state["backend"]
    backend = _loaded.get(name)
    if backend is None:
        config.get_num_threads()  # apply the thread settings before the first kernel runs
        backend = require(name)
    return backend


config.plug_registry(sys.modules[__name__])
