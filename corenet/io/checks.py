"""What a corenet checkpoint may contain, checked before any of it is used (see ``corenet.io``).

A checkpoint is data from outside the program. Its JSON parts are checked here for shape and type,
and the classes it may name are listed here explicitly (``model_classes``, ``optimizer_classes``,
``loss_classes``): nothing is looked up by attribute on a module namespace. Every failure is a
``ValueError`` starting with ``where`` (the operation and the file: ``"load: 'run.npz'"``).
The optimizer's arrays are checked by ``Optimizer.load_state_dict`` and each callback's state by
``Callback.set_state``, against what they declare.
"""

from __future__ import annotations

import json
import math

import numpy as np

__all__ = ["TRAIN_STATE_FIELDS", "check_train_state", "PREPROCESS_FIELDS", "check_preprocess", "check_compile",
           "json_part", "optional_part", "model_classes", "register_model_class", "optimizer_classes", "loss_classes"]

_MODEL_CLASSES: dict = {}  # filled by corenet.model (Model, Sequential): io sits below the model and imports none


def register_model_class(cls):
    """Let checkpoints (``__config__["class"]``) and the ONNX importer name ``cls`` (a class decorator,
    used by ``corenet.model`` for ``Model`` and ``Sequential``; subclasses are not registered by inheritance)."""
    _MODEL_CLASSES[cls.__name__] = cls
    return cls


def model_classes() -> dict:
    """The architectures a checkpoint may name in ``__config__["class"]`` (``Model``, ``Sequential``)."""
    return dict(_MODEL_CLASSES)


def optimizer_classes() -> dict:
    """The optimizers a checkpoint may name, by class name."""
    from .. import optim

    return {c.__name__: c for c in (optim.SGD, optim.AdaGrad, optim.RMSProp, optim.Adam, optim.AdamW)}


def loss_classes() -> dict:
    """The loss objects a checkpoint may name, by class name (loss *names* go through ``losses.get``)."""
    from .. import losses

    return {c.__name__: c for c in (losses.CrossEntropy, losses.MSE, losses.BCEWithLogits)}


def json_part(array: np.ndarray, name: str, where: str) -> dict:
    """The JSON object stored as the 0-d string array ``name`` (``__meta__``, ``__config__``)."""
    if array.ndim != 0 or array.dtype.kind != "U":
        raise ValueError(f"{where}: {name} must be a JSON string. Received: dtype {array.dtype}, shape {array.shape}")
    try:
        value = json.loads(str(array))
    except (json.JSONDecodeError, RecursionError) as e:
        raise ValueError(f"{where}: has a corrupt header: {name} is not valid JSON ({e})") from e
    if not isinstance(value, dict):
        raise ValueError(f"{where}: {name} must be a JSON object. Received: {type(value).__name__}")
    return value


def optional_part(meta: dict, key: str, kind: type, where: str):
    """``meta[key]`` when it is absent (None) or of type ``kind``; else a ValueError."""
    value = meta.get(key)
    if value is not None and not isinstance(value, kind):
        raise ValueError(f"{where}: {key} must be a {kind.__name__}. Received: {type(value).__name__}")
    return value


def check_compile(meta: dict, opt_state, where: str) -> None:
    """The compile settings of a checkpoint name a known optimizer and carry its state and a loss."""
    spec = optional_part(meta, "compile", dict, where)
    desc = optional_part(meta, "optimizer", dict, where)
    if desc is None or not isinstance(desc.get("class"), str):
        raise ValueError(f"{where}: has compile settings but no optimizer {{'class': name}}. Received: "
                         f"optimizer={desc!r}")
    if desc["class"] not in optimizer_classes():
        raise ValueError(f"{where}: was saved with optimizer {desc['class']!r}, which this corenet does not define; "
                         f"known: {sorted(optimizer_classes())}")
    if opt_state is None:
        raise ValueError(f"{where}: has compile settings but no optimizer_state")
    if spec.get("loss") is None:
        raise ValueError(f"{where}: has compile settings without a loss. Received: keys {sorted(spec)}")
    metrics, weights = spec.get("metrics", []), spec.get("loss_weights")
    if not isinstance(metrics, list) or not all(isinstance(m, str) for m in metrics):
        raise ValueError(f"{where}: compile metrics must be a list of names. Received: {metrics!r}")
    if weights is not None and not (isinstance(weights, list) and all(
            isinstance(w, (int, float)) and not isinstance(w, bool) for w in weights)):
        raise ValueError(f"{where}: compile loss_weights must be a list of numbers. Received: {weights!r}")


def _int_field(v, low):
    return not isinstance(v, bool) and isinstance(v, int) and v >= low


#: The training state ``fit(resume=...)`` restores: field -> (what it must be, check). Nothing else is read.
TRAIN_STATE_FIELDS = {
    "epoch": ("an integer >= 0", lambda v: _int_field(v, 0)),
    "seed": ("an integer >= 0", lambda v: _int_field(v, 0)),
    "lr": ("a finite number >= 0", lambda v: not isinstance(v, bool) and isinstance(v, (int, float))
           and math.isfinite(v) and v >= 0),
    "rngs": ("a dict of generator name -> bit-generator state dict",
             lambda v: isinstance(v, dict) and all(isinstance(s, dict) for s in v.values())),
    "callbacks": ("a list of {'class': name, 'state': dict}",
                  lambda v: isinstance(v, list) and all(isinstance(e, dict) and set(e) == {"class", "state"}
                                                        and isinstance(e["class"], str)
                                                        and isinstance(e["state"], dict) for e in v)),
}


def _check_fields(value, fields: dict, name: str, where: str) -> None:
    """``value`` is a dict with exactly the keys of ``fields`` (key -> (what it must be, check)), each
    passing its check; else a ValueError naming ``name``, the field and what was received."""
    if not isinstance(value, dict):
        raise ValueError(f"{where}: {name} must be a dict. Received: {type(value).__name__}")
    unknown = sorted(map(str, set(value) - set(fields)))
    missing = sorted(set(fields) - set(value))
    if unknown or missing:
        raise ValueError(f"{where}: {name} must have the fields {sorted(fields)}. Received: "
                         f"unknown {unknown}, missing {missing}")
    for key, (what, ok) in fields.items():
        if not ok(value[key]):
            shown = value[key]
            shown = type(shown).__name__ if isinstance(shown, (dict, np.ndarray)) else repr(shown)
            if len(shown) > 80:
                shown = shown[:77] + "..."
            raise ValueError(f"{where}: {name} field {key!r} must be {what}. Received: {shown}")


def check_train_state(state, where: str) -> dict:
    """``state`` if it has exactly the fields of ``TRAIN_STATE_FIELDS``, each of its type; else ValueError."""
    _check_fields(state, TRAIN_STATE_FIELDS, "train_state", where)
    return state


#: The input pipeline a checkpoint may carry as ``meta["preprocess"]`` (``model.preprocess``): field ->
#: (what it must be, check). ``corenet predict`` decodes images with it. Nothing else is read.
PREPROCESS_FIELDS = {
    "class_names": ("a non-empty list of str", lambda v: isinstance(v, list) and len(v) > 0
                    and all(isinstance(c, str) for c in v)),
    "image_size": ("[height, width], two ints >= 1", lambda v: isinstance(v, (list, tuple)) and len(v) == 2
                   and all(_int_field(d, 1) for d in v)),
    "color": ("'rgb' or 'gray'", lambda v: v in ("rgb", "gray") and isinstance(v, str)),
    "resize": ("'crop' or 'stretch'", lambda v: v in ("crop", "stretch") and isinstance(v, str)),
    "normalize": ("true or false", lambda v: isinstance(v, bool)),
}


def check_preprocess(value, where: str):
    """``None``, or a new dict with exactly the fields of ``PREPROCESS_FIELDS``, each of its type
    (``image_size`` as a list); else a ValueError naming the field."""
    if value is None:
        return None
    _check_fields(value, PREPROCESS_FIELDS, "preprocess", where)
    return {"class_names": list(value["class_names"]), "image_size": [int(d) for d in value["image_size"]],
            "color": value["color"], "resize": value["resize"], "normalize": value["normalize"]}
