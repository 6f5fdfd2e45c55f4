"""``model.summary()``: a per-layer table with output shapes, parameters, MACs and activation memory.

Conventions (per sample, i.e. batch size 1):

- **Params**: elements of trainable and frozen parameters (``weight``, ``bias``); buffers such as
  batch norm's running statistics are not parameters (PyTorch's count, not Keras').
- **MACs** (multiply-accumulates): convolution ``C_out * H_out * W_out * (C_in/groups) * kH * kW``,
  linear ``in_features * out_features``; bias additions, normalization, activations, pooling and
  merges count 0. FLOPs are about ``2 * MACs``.
- **Memory**: bytes of the row's output activation, ``prod(shape) * itemsize`` (float32: 4 bytes);
  the total sums every row, inputs included. Backward state (max-pool indices, ...) is not counted.

For AlexNet's first layer (``Conv2d(64, 11, stride=4, padding=2)`` on 3x227x227) the row reads
``64x56x56``, 23,296 params, 72.9M MACs (72,855,552) and 784 KiB.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["summary", "layer_rows", "format_bytes", "format_count"]


def format_bytes(n: float) -> str:
    """``802816 -> '784 KiB'``; binary units, at most one decimal."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            text = f"{n:.1f}".rstrip("0").rstrip(".") if unit != "B" else f"{int(n)}"
            return f"{text} {unit}"
        n /= 1024
    return f"{n} GiB"


def format_count(n: int) -> str:
    """``72855552 -> '72.9M'`` (0 stays '0')."""
    for scale, unit in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if n >= scale:
            return f"{n / scale:.1f}{unit}"
    return str(int(n))


def layer_rows(model) -> list[dict]:
    """One dict per graph node (inputs included): name, type, shape, params, trainable, macs, bytes, inputs."""
    rows, seen, calls = [], set(), {}
    for node in model.graph.nodes:
        layer = node.layer
        k = calls.get(id(layer), 0)
        calls[id(layer)] = k + 1
        first = id(layer) not in seen
        seen.add(id(layer))
        params = sum(v.size for v in layer.params.values()) if first else 0
        shape = node.output.shape
        rows.append({
            "name": layer.name if k == 0 else f"{layer.name}[{k}]",
            "type": type(layer).__name__,
            "shape": shape,
            "params": int(params),
            "trainable": bool(layer.trainable),
            "macs": int(layer.macs()),
            "bytes": int(math.prod(shape) * np.dtype(node.output.dtype).itemsize),
            "inputs": [t.node.layer.name for t in node.inputs],
        })
    return rows


def _is_chain(model, rows) -> bool:
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        return False
    return all(len(r["inputs"]) == 1 and r["inputs"][0] == rows[i]["name"] for i, r in enumerate(rows[1:]))


def summary(model, print_fn=print, line_length: int | None = None) -> str:
    """Render (and print with ``print_fn`` unless it is None) the summary table of ``model``."""
    rows = layer_rows(model)
    chain = _is_chain(model, rows)
    header = ["Layer (type)", "Output shape", "Param #", "MACs", "Memory"] + ([] if chain else ["Connected to"])
    table = []
    for r in rows:
        params = f"{r['params']:,}" + (" (frozen)" if r["params"] and not r["trainable"] else "")
        cells = [f"{r['name']} ({r['type']})", "x".join(map(str, r["shape"])), params,
                 format_count(r["macs"]), format_bytes(r["bytes"])]
        if not chain:
            cells.append(", ".join(r["inputs"]))
        table.append(cells)
    widths = [max(len(h), *(len(c[i]) for c in table)) for i, h in enumerate(header)]
    width = line_length or sum(widths) + 2 * (len(widths) - 1)
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    total = sum(r["params"] for r in rows)
    trainable = sum(r["params"] for r in rows if r["trainable"])
    macs = sum(r["macs"] for r in rows)
    mem = sum(r["bytes"] for r in rows)
    itemsize = max((np.dtype(v.dtype).itemsize for v in model.parameters().values()), default=4)
    lines = [f'Model: "{model.name}"', "=" * width, fmt.format(*header).rstrip(), "=" * width]
    lines += [fmt.format(*c).rstrip() for c in table]
    lines += ["=" * width,
              f"Total params: {total:,} ({format_bytes(total * itemsize)})",
              f"Trainable params: {trainable:,}",
              f"Frozen params: {total - trainable:,}",
              f"Total MACs: {macs:,} ({format_count(macs)}) per sample",
              f"Activation memory: {format_bytes(mem)} per sample (outputs of every row)",
              "=" * width]
    text = "\n".join(lines)
    if print_fn is not None:
        print_fn(text)
    return text
