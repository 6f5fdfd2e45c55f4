"""The checkpoint format (one ``.npz``: weights, architecture, optimizer, training state), its
writing through :func:`corenet.io.atomic.atomic_savez` and its checked reading; see :mod:`corenet.io`."""

from __future__ import annotations

import json
import os
import struct
import tokenize
import zipfile
import zlib

import numpy as np

from .atomic import atomic_savez
from .checks import (
    check_compile,
    check_preprocess,
    check_train_state,
    json_part,
    loss_classes,
    model_classes,
    optimizer_classes,
    optional_part,
)

__all__ = [
    "write_checkpoint",
    "save",
    "load",
    "save_weights",
    "load_weights",
    "read_checkpoint",
    "apply_weights",
    "describe",
    "generators",
    "set_generator_states",
    "IncompatibleKeys",
]

FORMAT = "corenet-checkpoint"
VERSION = 1


class IncompatibleKeys(tuple):
    """``(missing, unexpected)`` names of a non-strict load, as PyTorch reports them."""

    def __new__(cls, missing, unexpected):
        return super().__new__(cls, (list(missing), list(unexpected)))

    missing = property(lambda self: self[0])
    unexpected = property(lambda self: self[1])

    def __repr__(self):
        return f"IncompatibleKeys(missing={self.missing}, unexpected={self.unexpected})"


# ----------------------------------------------------------------------------------------- writing

def _json_array(obj) -> np.ndarray:
    return np.array(json.dumps(obj, allow_nan=True))


def _flatten_arrays(state, prefix: str, out: dict):
    """Move ndarray leaves of a nested dict into ``out`` (keys ``prefix + "a/b"``); return the rest."""
    if isinstance(state, np.ndarray):
        out[prefix] = state
        return {"__array__": prefix}
    if isinstance(state, dict):
        return {k: _flatten_arrays(v, f"{prefix}/{k}", out) for k, v in state.items()}
    if isinstance(state, (list, tuple)):
        return [_flatten_arrays(v, f"{prefix}/{i}", out) for i, v in enumerate(state)]
    if isinstance(state, np.generic):
        return state.item()
    return state


def _unflatten_arrays(state, arrays: dict, prefix: str, where: str):
    """Put the arrays referenced by ``{"__array__": key}`` back; ``key`` must be one of this part's
    (``prefix``) arrays in the file."""
    if isinstance(state, dict):
        if set(state) == {"__array__"}:
            key = state["__array__"]
            if not isinstance(key, str) or not key.startswith(prefix + "/") or key not in arrays:
                raise ValueError(f"{where}: a reference to a {prefix}/ array that the file does not hold. "
                                 f"Received: {key!r}")
            return arrays[key]
        return {k: _unflatten_arrays(v, arrays, prefix, where) for k, v in state.items()}
    if isinstance(state, list):
        return [_unflatten_arrays(v, arrays, prefix, where) for v in state]
    return state


def write_checkpoint(path, weights: dict, *, config: dict | None = None, compile: dict | None = None,
                     optimizer: dict | None = None, optimizer_state: dict | None = None,
                     train_state: dict | None = None, preprocess: dict | None = None) -> None:
    """The format itself, over plain parts, written atomically: ``weights`` (state_dict name -> array),
    ``config`` (``{"class": name, "config": JSON}``; a file without one holds weights only), the
    ``compile`` settings with the ``optimizer`` (``{"class", "config"}``) and its ``optimizer_state``,
    the ``train_state`` (``checks.TRAIN_STATE_FIELDS``) and ``preprocess`` (``checks.PREPROCESS_FIELDS``).
    JSON values go into ``__meta__``/``__config__``, the arrays inside them into ``opt/``, ``ts/`` members."""
    arrays = {f"w/{k}": np.asarray(v) for k, v in weights.items()}
    meta = {"format": FORMAT, "version": VERSION, "kind": "weights" if config is None else "model"}
    if compile is not None:
        meta["compile"] = compile
        meta["optimizer"] = optimizer
        meta["optimizer_state"] = _flatten_arrays(dict(optimizer_state), "opt", arrays)
    if train_state is not None:
        meta["train_state"] = _flatten_arrays(train_state, "ts", arrays)
    preprocess = check_preprocess(preprocess, f"save: {os.fspath(path)!r}")
    if preprocess is not None:
        meta["preprocess"] = preprocess
    if config is not None:
        arrays["__config__"] = _json_array(config)
    arrays["__meta__"] = _json_array(meta)
    atomic_savez(path, arrays)


def save(model, path, include_optimizer: bool = True) -> None:
    """Write weights, buffers, architecture, optimizer and training state of ``model`` to ``path``."""
    compiled = getattr(model, "_compile_spec", None) if include_optimizer else None
    opt = model.optimizer if compiled is not None else None
    get_state = getattr(model, "_training_state", None)
    write_checkpoint(path, model.state_dict(), config={"class": type(model).__name__, "config": model.get_config()},
                     compile=compiled, optimizer=describe(opt) if opt is not None else None,
                     optimizer_state=opt.state_dict() if opt is not None else None,
                     train_state=get_state() if get_state is not None else None,
                     preprocess=getattr(model, "preprocess", None))


def save_weights(model, path) -> None:
    """Write the weights and buffers of ``model`` (state_dict names) to ``path``, atomically."""
    write_checkpoint(path, model.state_dict())


# ----------------------------------------------------------------------------------------- reading
_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")  # a local file header; the end record of an empty archive
# what a damaged archive can raise from zipfile, zlib, numpy's .npy header parser or the allocator
# (numpy parses a .npy header with Python's tokenizer: a damaged one can raise tokenize.TokenError)
_ARCHIVE_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, KeyError, NotImplementedError,
                   RuntimeError, struct.error, UnicodeDecodeError, SyntaxError, TypeError, MemoryError,
                   OverflowError, tokenize.TokenError)


def read_checkpoint(path, op: str = "read_checkpoint") -> dict:
    """Every part of a checkpoint: ``{"meta", "config", "weights", "optimizer_state", "train_state",
    "preprocess"}``.

    A plain ``.npz`` of ``name -> array`` (no ``__meta__``) is read as weights. Raises ``ValueError``
    naming the file when it is not a readable archive (truncated, corrupt, pickled, a ``.npy``, not a
    zip) or when a part of it is malformed (header, compile settings, optimizer or training state);
    the message starts with ``op`` (the operation that reads it: ``load``, ``fit``, ...).
    """
    path = os.fspath(path)
    where = f"{op}: {path!r}"
    if not os.path.exists(path):
        raise FileNotFoundError(f"{op}: no such checkpoint file: {path!r}")
    try:
        with open(path, "rb") as f:
            head = f.read(len(_NPY_MAGIC))
    except OSError as e:
        raise ValueError(f"{where}: is not a readable corenet checkpoint (.npz): {type(e).__name__}: {e}") from e
    if head.startswith(_NPY_MAGIC):
        raise ValueError(f"{where}: is a .npy array, not a corenet checkpoint (.npz). Received: a .npy file")
    if head[:4] not in _ZIP_MAGICS:
        raise ValueError(f"{where}: is not a readable corenet checkpoint (.npz): not a zip archive. "
                         f"Received: first bytes {head[:4]!r}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except _ARCHIVE_ERRORS as e:
        raise ValueError(f"{where}: is not a readable corenet checkpoint (.npz): {type(e).__name__}: {e}") from e
    foreign = sorted(k for k, v in arrays.items() if not isinstance(v, np.ndarray))  # numpy returns their bytes
    if foreign:
        raise ValueError(f"{where}: is not a readable corenet checkpoint (.npz): members {foreign} are not .npy "
                         "arrays")
    if "__meta__" not in arrays:
        return {"meta": {"kind": "weights"}, "config": None, "weights": arrays,
                "optimizer_state": None, "train_state": None, "preprocess": None}
    meta = json_part(arrays.pop("__meta__"), "__meta__", where)
    config = json_part(arrays.pop("__config__"), "__config__", where) if "__config__" in arrays else None
    if meta.get("format") != FORMAT:
        raise ValueError(f"{where}: is not a corenet checkpoint (format={meta.get('format')!r}, expected {FORMAT!r})")
    version = meta.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(f"{where}: the header's version must be an integer >= 1. Received: version={version!r}")
    if version > VERSION:
        raise ValueError(f"{where}: has checkpoint version {version}; this corenet reads versions <= {VERSION}")
    if config is not None and not (isinstance(config.get("class"), str) and isinstance(config.get("config"), dict)):
        raise ValueError(f"{where}: __config__ must be {{'class': str, 'config': dict}}. "
                         f"Received: keys {sorted(config)}")
    weights = {k[2:]: v for k, v in arrays.items() if k.startswith("w/")}
    opt_state = optional_part(meta, "optimizer_state", dict, where)
    train_state = optional_part(meta, "train_state", dict, where)
    if meta.get("compile") is not None:  # null: saved before compile(), like an absent entry
        check_compile(meta, opt_state, where)
    if opt_state is not None:
        opt_state = _unflatten_arrays(opt_state, arrays, "opt", where)
    if train_state is not None:
        train_state = check_train_state(_unflatten_arrays(train_state, arrays, "ts", where), where)
    preprocess = check_preprocess(meta.get("preprocess"), where)
    return {"meta": meta, "config": config, "weights": weights,
            "optimizer_state": opt_state, "train_state": train_state, "preprocess": preprocess}


def load_weights(model, path, strict: bool = True) -> IncompatibleKeys:
    """Load weights and buffers from a checkpoint or weights file into ``model`` in place.

    Returns ``(missing, unexpected)`` names; with ``strict=True`` (default) any of them, and with
    either setting any shape mismatch, raises ``ValueError`` naming the file and every offending tensor.
    """
    ckpt = read_checkpoint(path, "load_weights")
    return apply_weights(model, ckpt["weights"], strict, f"load_weights: {os.fspath(path)!r}")


def apply_weights(model, weights: dict, strict: bool, where: str) -> IncompatibleKeys:
    """``model.load_state_dict(weights, strict)`` (the one check of names, shapes and kinds), its error a
    ValueError starting with ``where`` (the operation and the file): a file that does not fit is bad data."""
    try:
        missing, unexpected = model.load_state_dict(weights, strict=strict)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{where}: does not fit the model: {e}") from None
    return IncompatibleKeys(missing, unexpected)


def load(path, compile: bool = True):
    """Rebuild the model saved at ``path`` (architecture, weights, buffers) and, when the file has
    them, its compile settings, optimizer state and training state (for ``fit(resume=...)``).
    ``model.preprocess`` is the file's input pipeline (a checked dict) or ``None``."""
    ckpt = read_checkpoint(path, "load")
    path = os.fspath(path)
    where = f"load: {path!r}"
    if ckpt["config"] is None:
        raise ValueError(f"{where}: holds weights only (no architecture); build the model and "
                         "call model.load_weights(path)")
    spec = ckpt["config"]
    cls = model_classes().get(spec["class"])
    if cls is None:
        raise ValueError(f"{where}: __config__ names the model class {spec['class']!r}; known: "
                         f"{sorted(model_classes())}")
    try:
        model = cls.from_config(spec["config"])
    except Exception as e:  # from_config checks what it reads; anything else still names the file
        detail = str(e) if isinstance(e, ValueError) else f"{type(e).__name__}: {e}"
        raise ValueError(f"{where}: could not rebuild the architecture stored in the file: {detail}") from e
    apply_weights(model, ckpt["weights"], True, where)
    meta = ckpt["meta"]
    if compile and meta.get("compile") is not None:
        opt = _build_optimizer(meta["optimizer"], ckpt["optimizer_state"], where)
        kwargs = _compile_kwargs(meta["compile"], where)
        try:
            model.compile(optimizer=opt, **kwargs)
        except (ValueError, TypeError) as e:
            raise ValueError(f"{where}: the saved compile settings do not fit the model: {e}") from e
    if ckpt["train_state"] is not None:
        model._train_state = ckpt["train_state"]
        set_generator_states(model, ckpt["train_state"]["rngs"], path)
    model.preprocess = ckpt["preprocess"]
    return model


def generators(model):
    """``(name, generator)`` of every ``np.random.Generator`` a layer holds (dropout's ``rng``)."""
    for layer in model.layers:
        for attr, value in vars(layer).items():
            if isinstance(value, np.random.Generator):
                yield f"{layer.name}.{attr}", value


def set_generator_states(model, states: dict, path, op: str = "load") -> None:
    """Put the saved bit-generator states back, so dropout masks continue the saved sequence.

    Every state is checked (by numpy) before any is applied; a bad one is a ValueError naming the file."""
    where = f"{op}: {os.fspath(path)!r}"
    gens = dict(generators(model))
    checked = {}
    for name, state in states.items():
        if name not in gens:
            raise ValueError(f"{where}: has a random generator state for {name!r}, which the "
                             f"model lacks (model generators: {sorted(gens)})")
        probe = type(gens[name].bit_generator)()
        try:
            probe.state = state
        except (TypeError, ValueError, KeyError, OverflowError) as e:
            raise ValueError(f"{where}: the random generator state of {name!r} is not a "
                             f"{type(probe).__name__} state: {type(e).__name__}: {e}") from e
        checked[name] = probe.state
    for name, state in checked.items():
        gens[name].bit_generator.state = state


# ----------------------------------------------------------------------- optimizers and losses by name
def describe(obj) -> dict:
    """``{"class": name, "config": {...}}`` of an optimizer or loss, for rebuilding it on load."""
    if hasattr(obj, "get_config"):
        config = obj.get_config()
    else:
        import inspect

        config = {}
        for name in inspect.signature(type(obj).__init__).parameters:
            value = getattr(obj, name, None)
            if isinstance(value, (bool, int, float, str, type(None), list, tuple)):
                config[name] = value
    return {"class": type(obj).__name__, "config": config}


def _build_optimizer(desc: dict, state: dict, where: str):
    """The saved optimizer: its class with defaults, then ``load_state_dict`` restores (and checks)
    the declared hyper-parameters, iterations and slots (the state dict holds all of them)."""
    opt = optimizer_classes()[desc["class"]]()  # known: checked by read_checkpoint
    try:
        opt.load_state_dict(state)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{where}: {e}") from e
    return opt


def _compile_kwargs(spec: dict, where: str) -> dict:
    from .. import losses

    def rebuild(loss):
        if isinstance(loss, str):
            try:
                return losses.get(loss)
            except ValueError as e:
                raise ValueError(f"{where}: the saved loss is unknown: {e}") from None
        if isinstance(loss, dict) and isinstance(loss.get("class"), str) and isinstance(loss.get("config", {}), dict):
            cls = loss_classes().get(loss["class"])
            if cls is None:
                raise ValueError(f"{where}: the saved loss class {loss['class']!r} is not one this corenet can "
                                 f"rebuild; known: {sorted(loss_classes())}")
            try:
                return cls(**loss.get("config", {}))
            except (TypeError, ValueError) as e:
                raise ValueError(f"{where}: the saved {loss['class']} settings are invalid: {e}") from e
        raise ValueError(f"{where}: a saved loss must be a name or {{'class': name, 'config': dict}}. "
                         f"Received: {loss!r}")

    loss = spec["loss"]
    loss = [rebuild(v) for v in loss] if isinstance(loss, list) else rebuild(loss)
    return {"loss": loss, "metrics": spec.get("metrics", ()), "loss_weights": spec.get("loss_weights")}
