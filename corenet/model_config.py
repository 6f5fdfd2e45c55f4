"""Reading a model's architecture config (``Model.get_config()``, a checkpoint's JSON) back into a graph.

A checkpoint may be damaged or crafted, so every entry is checked as it is read: a malformed one is a
``ValueError`` starting with ``from_config:`` that says where it is, and a layer is built only from
the settings its constructor declares. This module builds the layers and calls them on ``Input``
tensors; ``Model.from_config`` and ``Sequential.from_config`` wrap the result in a model.
"""

from __future__ import annotations

import inspect

from .graph import Input
from .layers.base import Layer, get_layer_class

__all__ = ["read_graph_config", "read_sequential_config"]


def read_graph_config(config) -> dict:
    """``{"inputs", "outputs", "name", "seed"}`` of a ``Model`` config, its layers built and called."""
    cfg = _entry(config, "config", dict, "the model config", config) if isinstance(config, dict) else config
    layers = _entry(cfg, "layers", list, "config")
    specs = {}
    for i, e in enumerate(layers):
        lcfg = _entry(e, "config", dict, f"layers[{i}]")
        specs[_entry(lcfg, "name", str, f"layers[{i}].config")] = (_entry(e, "class_name", str, f"layers[{i}]"),
                                                                    lcfg)
    built: dict[str, Layer] = {}
    outputs: dict[str, list] = {}
    for j, node in enumerate(_entry(cfg, "nodes", list, "config")):
        lname = _entry(node, "layer", str, f"nodes[{j}]")
        if lname not in specs:
            raise ValueError(f"from_config: nodes[{j}] calls layer {lname!r}, which config.layers lacks")
        class_name, lcfg = specs[lname]
        if class_name == "InputLayer":
            out = _input_from_config(lcfg, lname, f"layer {lname!r}")
        else:
            if lname not in built:
                built[lname] = _layer_from_config(class_name, lcfg, lname)
            ins = [_tensor(outputs, r, f"nodes[{j}].inputs") for r in _entry(node, "inputs", list, f"nodes[{j}]")]
            multi = _entry(node, "multi", bool, f"nodes[{j}]")
            if not ins or (not multi and len(ins) != 1):
                raise ValueError(f"from_config: nodes[{j}] (layer {lname!r}, multi={multi}) has {len(ins)} inputs")
            out = built[lname](ins if multi else ins[0])
        outputs.setdefault(lname, []).append(out)
    ins = [_tensor(outputs, r, "config.inputs") for r in _entry(cfg, "inputs", list, "config")]
    outs = [_tensor(outputs, r, "config.outputs") for r in _entry(cfg, "outputs", list, "config")]
    single_in = _entry(cfg, "single_input", bool, "config", len(ins) == 1)
    single_out = _entry(cfg, "single_output", bool, "config", len(outs) == 1)
    if not ins or not outs or (single_in and len(ins) != 1) or (single_out and len(outs) != 1):
        raise ValueError(f"from_config: config has {len(ins)} inputs and {len(outs)} outputs "
                         f"(single_input={single_in}, single_output={single_out})")
    return {"inputs": ins[0] if single_in else ins, "outputs": outs[0] if single_out else outs,
            "name": _entry(cfg, "name", (str, type(None)), "config", None),
            "seed": _entry(cfg, "seed", (int, type(None)), "config", None)}


def read_sequential_config(config) -> dict:
    """``{"input", "layers", "name", "seed"}`` of a ``Sequential`` config (layers built, not yet called)."""
    cfg = _entry(config, "config", dict, "the model config", config) if isinstance(config, dict) else config
    spec = {"shape": _entry(cfg, "input_shape", list, "config"), "dtype": _entry(cfg, "dtype", str, "config",
                                                                                "float32")}
    x = _input_from_config(spec, _entry(cfg, "input_name", (str, type(None)), "config", None), "config")
    layers = []
    for i, e in enumerate(_entry(cfg, "layers", list, "config")):
        lcfg = _entry(e, "config", dict, f"layers[{i}]")
        layers.append(_layer_from_config(_entry(e, "class_name", str, f"layers[{i}]"), lcfg,
                                         lcfg.get("name", f"layers[{i}]")))
    return {"input": x, "layers": layers, "name": _entry(cfg, "name", (str, type(None)), "config", None),
            "seed": _entry(cfg, "seed", (int, type(None)), "config", None)}


# ---------------------------------------------------------------------- reading configs
_REQUIRED = object()


def _entry(d, key: str, types, where: str, default=_REQUIRED):
    """``d[key]`` checked to be one of ``types`` (bools are not ints), or ``default`` when absent."""
    if not isinstance(d, dict):
        raise ValueError(f"from_config: {where} must be a dict, received {type(d).__name__}")
    if key not in d:
        if default is _REQUIRED:
            raise ValueError(f"from_config: {where} lacks the entry {key!r}")
        return default
    v = d[key]
    types = types if isinstance(types, tuple) else (types,)
    if not isinstance(v, types) or (isinstance(v, bool) and bool not in types):
        want = " or ".join(t.__name__ for t in types)
        raise ValueError(f"from_config: {where}.{key} must be {want}, received {v!r}")
    return v


def _tensor(outputs: dict, ref, where: str):
    """The output tensor named by ``[layer name, call index]``."""
    ok = (isinstance(ref, (list, tuple)) and len(ref) == 2 and isinstance(ref[0], str)
          and isinstance(ref[1], int) and not isinstance(ref[1], bool))
    if not ok or ref[0] not in outputs or not 0 <= ref[1] < len(outputs[ref[0]]):
        raise ValueError(f"from_config: {where} refers to {ref!r}, which is not the output of an earlier node "
                         f"(expected [layer name, call index])")
    return outputs[ref[0]][ref[1]]


def _input_from_config(lcfg: dict, name, where: str):
    shape = _entry(lcfg, "shape", list, where)
    dtype = _entry(lcfg, "dtype", str, where, "float32")
    if dtype not in ("float32", "float64"):
        raise ValueError(f"from_config: {where}: input dtype must be 'float32' or 'float64', received {dtype!r}")
    return Input(tuple(shape), dtype, name=name)


def _layer_from_config(class_name: str, lcfg: dict, name) -> Layer:
    """``get_layer_class(class_name).from_config(lcfg)`` with the settings checked against the constructor."""
    try:
        layer_cls = get_layer_class(class_name)
    except ValueError as e:
        raise ValueError(f"from_config: layer {name!r}: {e}") from None
    if layer_cls.__name__ == "InputLayer":
        raise ValueError(f"from_config: layer {name!r} is an InputLayer; inputs are made by Input(...)")
    allowed, required, first = set(), set(), True
    for klass in layer_cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None or klass is object:
            continue
        for p in list(inspect.signature(init).parameters.values())[1:]:
            if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
                allowed.add(p.name)
                if first and p.default is p.empty:
                    required.add(p.name)
        first = False
    unknown, missing = sorted(set(lcfg) - allowed), sorted(required - set(lcfg))
    if unknown or missing:
        raise ValueError(f"from_config: layer {name!r} ({class_name}) has unknown settings {unknown} and lacks "
                         f"{missing}; {class_name} takes {sorted(allowed)}")
    return layer_cls.from_config(dict(lcfg))
