"""Reading an untrusted ONNX file for the importer (``importer.py``): parsed without following
external-data references, a reference outside the model's folder refused, then the external data
loaded and ``onnx.checker`` run; every failure is a ValueError naming the file."""

from __future__ import annotations

import os

__all__ = ["load_checked"]


def load_checked(onnx, path):
    """Parse, check external-data locations, load them, run the checker; every failure a ValueError naming the file."""
    where = f"import_onnx: {os.fspath(path)!r}"
    if not os.path.isfile(path):
        raise ValueError(f"{where}: no such file")
    try:
        proto = onnx.load(os.fspath(path), load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError and friends: the file is not a model
        raise ValueError(f"{where} is not an ONNX model (it does not parse: {exc})") from None
    if not proto.HasField("graph") or not proto.opset_import:
        raise ValueError(f"{where} is not an ONNX model (no graph or no opset); was it truncated?")
    from onnx.external_data_helper import load_external_data_for_model, uses_external_data

    base = os.path.realpath(os.path.dirname(os.path.abspath(os.fspath(path))))
    external = False
    for t in _all_tensors(proto.graph):
        if uses_external_data(t):
            external = True
            loc = {e.key: e.value for e in t.external_data}.get("location", "")
            full = os.path.realpath(os.path.join(base, loc))
            if not loc or os.path.isabs(loc) or os.path.commonpath([base, full]) != base or not os.path.isfile(full):
                raise ValueError(f"{where}: tensor {t.name!r} refers to external data {loc!r}, which is not a file "
                                 f"in the model's folder {base!r}; refused")
    try:
        if external:
            load_external_data_for_model(proto, base)
        onnx.checker.check_model(proto)
    except Exception as exc:
        raise ValueError(f"{where} is not a valid ONNX model: {str(exc).strip().splitlines()[0]}") from None
    return proto


def _all_tensors(graph):
    yield from graph.initializer
    for node in graph.node:
        for a in node.attribute:
            if a.HasField("t"):
                yield a.t
