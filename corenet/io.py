"""Checkpoints: weights, architecture, optimizer and training state in one ``.npz``, written atomically.

Layout of a file written by ``model.save(path)`` (a plain ``np.savez`` archive, no pickles)::

    __meta__        JSON string: format, version, kind ("model" | "weights"), compile settings,
                    optimizer class/config, training state (epoch, seed, history, RNG states,
                    callback states)
    __config__      JSON string: {"class": "Model" | "Sequential", "config": model.get_config()}
    w/<name>        every weight and buffer, by state_dict name ("conv1.weight", "bn1.running_mean")
    opt/<key>       the optimizer's ``state_dict()`` arrays
    ts/<key>        arrays of the training state (e.g. EarlyStopping's best weights)

Writes go to a temporary file in the destination folder, are flushed and fsync'ed, then renamed
over the destination (``os.replace`` is atomic on POSIX and Windows): a crash or an exception
mid-write leaves the previous file as it was. The temporary is named
``.<name>.<host>.<pid>.<random>.tmp`` after its writer; a save first removes the temporaries of the
same destination left by writers on this host whose process is gone (a killed save), and never
those of a live process or of another host (another rank of a distributed run on a shared folder).
Files are read with ``allow_pickle=False``; a
truncated, corrupt or foreign file raises ``ValueError`` naming it. Weights saved from PyTorch are
imported by ``corenet.io_torch``.

>>> model.save("run.npz"); model = corenet.load("run.npz")       # doctest: +SKIP
>>> model.save_weights("w.npz"); other.load_weights("w.npz")     # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import re
import socket
import tempfile
import zipfile
import zlib

import numpy as np

__all__ = [
    "save",
    "load",
    "save_weights",
    "load_weights",
    "read_checkpoint",
    "atomic_savez",
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
def _host_tag() -> str:
    """This machine's name as it appears in temporary file names (no dots: they separate the fields)."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname()) or "host"


def _writer_gone(pid: int) -> bool:
    """True only when no process ``pid`` exists on this machine (a process of another user exists)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OSError, OverflowError):
        return False
    return False


def remove_stale_temporaries(path) -> list[str]:
    """Remove the temporaries of a save to ``path`` whose writer (this host, by pid) is gone.

    Temporaries are ``.<name>.<host>.<pid>.<random>.tmp`` (see :func:`atomic_savez`). Those of another
    host, of a live process, or without a writer in their name are left alone. Returns the removed paths.
    """
    if os.name == "nt":  # os.kill(pid, 0) would terminate the process on Windows
        return []
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    prefix, host = "." + os.path.basename(path) + ".", _host_tag()
    removed = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        if not (name.startswith(prefix) and name.endswith(".tmp")):
            continue
        fields = name[len(prefix):-len(".tmp")].split(".")
        if len(fields) != 3 or fields[0] != host or not fields[1].isdigit() or not fields[2]:
            continue
        pid = int(fields[1])
        if pid <= 0 or pid == os.getpid() or not _writer_gone(pid):
            continue
        try:
            os.unlink(os.path.join(folder, name))
            removed.append(os.path.join(folder, name))
        except OSError:  # removed by someone else meanwhile, or not ours to remove
            pass
    return removed


def atomic_savez(path, arrays: dict) -> None:
    """``np.savez(path, **arrays)`` through a temp file + fsync + rename; ``path`` is used as given.

    The temporary, ``.<name>.<host>.<pid>.<random>.tmp`` in the destination folder, names its writer;
    temporaries of earlier writers of ``path`` on this host that are no longer running are removed first.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    remove_stale_temporaries(path)
    prefix = f".{os.path.basename(path)}.{_host_tag()}.{os.getpid()}."
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


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


def _unflatten_arrays(state, arrays: dict):
    if isinstance(state, dict):
        if set(state) == {"__array__"}:
            return arrays[state["__array__"]]
        return {k: _unflatten_arrays(v, arrays) for k, v in state.items()}
    if isinstance(state, list):
        return [_unflatten_arrays(v, arrays) for v in state]
    return state


def save(model, path, include_optimizer: bool = True) -> None:
    """Write weights, buffers, architecture, optimizer and training state of ``model`` to ``path``."""
    arrays = {f"w/{k}": np.asarray(v) for k, v in model.state_dict().items()}
    meta = {"format": FORMAT, "version": VERSION, "kind": "model"}
    compiled = getattr(model, "_compile_spec", None)
    if include_optimizer and compiled is not None:
        meta["compile"] = compiled
        opt = model.optimizer
        meta["optimizer"] = _describe(opt)
        meta["optimizer_state"] = _flatten_arrays(dict(opt.state_dict()), "opt", arrays)
    get_state = getattr(model, "_training_state", None)
    train_state = get_state() if get_state is not None else None
    if train_state is not None:
        meta["train_state"] = _flatten_arrays(train_state, "ts", arrays)
    arrays["__config__"] = _json_array({"class": type(model).__name__, "config": model.get_config()})
    arrays["__meta__"] = _json_array(meta)
    atomic_savez(path, arrays)


def save_weights(model, path) -> None:
    """Write the weights and buffers of ``model`` (state_dict names) to ``path``, atomically."""
    arrays = {f"w/{k}": np.asarray(v) for k, v in model.state_dict().items()}
    arrays["__meta__"] = _json_array({"format": FORMAT, "version": VERSION, "kind": "weights"})
    atomic_savez(path, arrays)


# ----------------------------------------------------------------------------------------- reading
def read_checkpoint(path) -> dict:
    """Every part of a checkpoint: ``{"meta", "config", "weights", "optimizer_state", "train_state"}``.

    A plain ``.npz`` of ``name -> array`` (no ``__meta__``) is read as weights. Raises ``ValueError``
    naming the file when it is not a readable archive (truncated, corrupt, pickled, not a zip).
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"corenet.io: no such checkpoint file: {path!r}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, KeyError) as e:
        raise ValueError(f"corenet.io: {path!r} is not a readable corenet checkpoint (.npz): "
                         f"{type(e).__name__}: {e}") from e
    if not isinstance(arrays, dict):  # np.load returned a single array: a .npy file
        raise ValueError(f"corenet.io: {path!r} is a .npy array, not a corenet checkpoint (.npz)")
    if "__meta__" not in arrays:
        return {"meta": {"kind": "weights"}, "config": None, "weights": arrays,
                "optimizer_state": None, "train_state": None}
    try:
        meta = json.loads(str(arrays.pop("__meta__")))
        config = json.loads(str(arrays.pop("__config__"))) if "__config__" in arrays else None
    except (json.JSONDecodeError, TypeError) as e:
        raise ValueError(f"corenet.io: {path!r} has a corrupt header: {e}") from e
    if meta.get("format") != FORMAT:
        raise ValueError(f"corenet.io: {path!r} is not a corenet checkpoint (format={meta.get('format')!r})")
    if meta.get("version", 0) > VERSION:
        raise ValueError(f"corenet.io: {path!r} has checkpoint version {meta['version']}; this corenet reads "
                         f"versions <= {VERSION}")
    weights = {k[2:]: v for k, v in arrays.items() if k.startswith("w/")}
    opt_state = meta.get("optimizer_state")
    train_state = meta.get("train_state")
    return {
        "meta": meta,
        "config": config,
        "weights": weights,
        "optimizer_state": None if opt_state is None else _unflatten_arrays(opt_state, arrays),
        "train_state": None if train_state is None else _unflatten_arrays(train_state, arrays),
    }


def check_state_dict(model, weights: dict, strict: bool = True, source: str = "state dict") -> IncompatibleKeys:
    """Compare ``weights`` with ``model.state_dict()``: names and shapes, with one error listing everything.

    Shape mismatches are always errors; missing and unexpected names are errors when ``strict``.
    """
    expected = model.state_dict()
    missing = [k for k in expected if k not in weights]
    unexpected = [k for k in weights if k not in expected]
    mismatched = [f"{k}: file {tuple(np.shape(weights[k]))} vs model {tuple(expected[k].shape)}"
                  for k in expected if k in weights and tuple(np.shape(weights[k])) != tuple(expected[k].shape)]
    problems = []
    if mismatched:
        problems.append("shape mismatches: " + "; ".join(mismatched))
    if strict and missing:
        problems.append(f"missing from the file: {missing}")
    if strict and unexpected:
        problems.append(f"unexpected in the file (not in the model): {unexpected}")
    if problems:
        hint = " (strict=False ignores missing and unexpected names)" if strict and not mismatched else ""
        raise ValueError(f"load_weights: {source} does not fit the model ({len(expected)} tensors): "
                         + " | ".join(problems) + hint)
    return IncompatibleKeys(missing, unexpected)


def load_weights(model, path, strict: bool = True) -> IncompatibleKeys:
    """Load weights and buffers from a checkpoint or weights file into ``model`` in place.

    Returns ``(missing, unexpected)`` names; with ``strict=True`` (default) any of them, and with
    either setting any shape mismatch, raises ``ValueError`` naming the file and every offending tensor.
    """
    ckpt = read_checkpoint(path)
    return _assign(model, ckpt["weights"], strict, f"{os.fspath(path)!r}")


def _assign(model, weights: dict, strict: bool, source: str) -> IncompatibleKeys:
    report = check_state_dict(model, weights, strict, source)
    present = {k: v for k, v in weights.items() if k not in report.unexpected}
    model.load_state_dict(present, strict=not report.missing)
    return report


def load(path, compile: bool = True):
    """Rebuild the model saved at ``path`` (architecture, weights, buffers) and, when the file has
    them, its compile settings, optimizer state and training state (for ``fit(resume=...)``)."""
    ckpt = read_checkpoint(path)
    path = os.fspath(path)
    if ckpt["config"] is None:
        raise ValueError(f"corenet.load: {path!r} holds weights only (no architecture); build the model and "
                         "call model.load_weights(path)")
    from . import model as _model

    spec = ckpt["config"]
    cls = getattr(_model, spec.get("class", "Model"), None) or _model.Model
    try:
        model = cls.from_config(spec["config"])
    except Exception as e:
        raise ValueError(f"corenet.load: could not rebuild the architecture stored in {path!r}: "
                         f"{type(e).__name__}: {e}") from e
    _assign(model, ckpt["weights"], True, repr(path))
    meta = ckpt["meta"]
    if compile and "compile" in meta:
        opt = _build_optimizer(meta["optimizer"], ckpt["optimizer_state"], path)
        model.compile(optimizer=opt, **_compile_kwargs(meta["compile"]))
    if ckpt["train_state"] is not None:
        model._train_state = ckpt["train_state"]
        set_generator_states(model, ckpt["train_state"].get("rngs", {}), path)
    return model


def generators(model):
    """``(name, generator)`` of every ``np.random.Generator`` a layer holds (dropout's ``rng``)."""
    for layer in model.layers:
        for attr, value in vars(layer).items():
            if isinstance(value, np.random.Generator):
                yield f"{layer.name}.{attr}", value


def set_generator_states(model, states: dict, path) -> None:
    """Put the saved bit-generator states back, so dropout masks continue the saved sequence."""
    gens = dict(generators(model))
    for name, state in states.items():
        if name not in gens:
            raise ValueError(f"corenet.io: {os.fspath(path)!r} has a random generator state for {name!r}, which the "
                             f"model lacks (model generators: {sorted(gens)})")
        gens[name].bit_generator.state = state


# ----------------------------------------------------------------------- optimizers and losses by name
def _describe(obj) -> dict:
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


def _build_optimizer(desc: dict, state: dict | None, path: str):
    """The saved optimizer: its class with defaults, then ``load_state_dict`` restores the
    hyper-parameters, iterations and slots (the state dict holds all of them)."""
    from . import optim

    cls = getattr(optim, desc["class"], None)
    if cls is None:
        raise ValueError(f"corenet.load: {path!r} was saved with optimizer {desc['class']!r}, "
                         "which this corenet does not define")
    opt = cls()
    if state is not None:
        opt.load_state_dict(state)
    return opt


def _compile_kwargs(spec: dict) -> dict:
    from . import losses

    def rebuild(loss):
        if isinstance(loss, dict) and "class" in loss:
            return getattr(losses, loss["class"])(**loss["config"])
        return loss

    loss = spec["loss"]
    loss = [rebuild(v) for v in loss] if isinstance(loss, list) else rebuild(loss)
    return {"loss": loss, "metrics": spec.get("metrics", ()), "loss_weights": spec.get("loss_weights")}
