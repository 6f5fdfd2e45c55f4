"""ONNX import of the upsampling ops: ConvTranspose -> ConvTranspose2d, Resize -> Upsample.

A mixin of the importer (``importer._Importer``), which dispatches a node to ``_<op_type>``; the
plumbing (``_x``, ``_const``, ``_call``, ``err``) is the importer's.

Resize maps where its coordinate rule is one of corenet's (PyTorch's): ``nearest`` with
``asymmetric`` coordinates and ``floor`` rounding; ``linear`` with ``half_pixel`` (or PyTorch's own
``pytorch_half_pixel``, the same rule for outputs longer than 1) or ``align_corners``. Everything
else (cubic, other rounding or coordinate modes, ``roi``, ``antialias``, resizing the batch or
channel axes) is refused with the reason.
"""

from __future__ import annotations

import math

import numpy as np

from ... import layers as L


def _text(v, default):
    v = default if v is None else v
    return v.decode() if isinstance(v, bytes) else v


class ResamplingImports:
    def _ConvTranspose(self, node, i, a):
        w, b = self._const(node, 1, "weight"), self._const(node, 2, "bias", required=False)
        x = self._x(node)
        if w.ndim != 4 or len(x.shape) != 3:
            raise self.err(node, f"only 2-D transposed convolution maps; weight shape {w.shape}, input {x.shape}")
        if _text(a.get("auto_pad"), "NOTSET") != "NOTSET" or "output_shape" in a:
            raise self.err(node, "auto_pad and output_shape are not supported; write pads and output_padding")
        k = tuple(a.get("kernel_shape", w.shape[2:]))
        s, d = tuple(a.get("strides", (1, 1))), tuple(a.get("dilations", (1, 1)))
        p = list(a.get("pads", [0, 0, 0, 0]))
        group = a.get("group", 1)
        layer = L.ConvTranspose2d(w.shape[1] * group, k, stride=s, padding=((p[0], p[2]), (p[1], p[3])),
                                  output_padding=tuple(a.get("output_padding", (0, 0))), groups=group, dilation=d,
                                  bias=b is not None)
        self._call(node, i, layer, x, {"weight": w, **({"bias": b} if b is not None else {})})

    def _Resize(self, node, i, a):
        x = self._x(node)
        if len(x.shape) != 3:
            raise self.err(node, f"only (N, C, H, W) inputs map to Upsample, received per-sample shape {x.shape}")
        mode = _text(a.get("mode"), "nearest")
        ctm = _text(a.get("coordinate_transformation_mode"), "half_pixel")
        axes = [ax % 4 for ax in a.get("axes", [0, 1, 2, 3])]
        if a.get("antialias", 0) or _text(a.get("keep_aspect_ratio_policy"), "stretch") != "stretch" or (
                axes not in ([0, 1, 2, 3], [2, 3])):
            raise self.err(node, "antialias, keep_aspect_ratio_policy and axes other than the spatial ones are not "
                                 "supported")
        if mode == "nearest" and (ctm, _text(a.get("nearest_mode"), "round_prefer_floor")) != ("asymmetric", "floor"):
            raise self.err(node, f"nearest with coordinate_transformation_mode={ctm!r}, nearest_mode="
                                 f"{_text(a.get('nearest_mode'), 'round_prefer_floor')!r}: only 'asymmetric' + 'floor' "
                                 f"(PyTorch's rule) maps")
        if mode == "linear" and ctm not in ("half_pixel", "pytorch_half_pixel", "align_corners"):
            raise self.err(node, f"linear with coordinate_transformation_mode={ctm!r}: only 'half_pixel', "
                                 f"'pytorch_half_pixel' and 'align_corners' map")
        if mode not in ("nearest", "linear"):
            raise self.err(node, f"mode={mode!r}: only 'nearest' and 'linear' (bilinear) map")
        scales = self._const(node, 2, "scales", required=False) if len(node.input) > 2 else None
        sizes = self._const(node, 3, "sizes", required=False) if len(node.input) > 3 else None
        scales = None if scales is None or scales.size == 0 else [float(v) for v in scales]
        H, W = x.shape[1:]
        lead = [1.0, 1.0] if len(axes) == 4 else []
        if scales is not None:
            if scales[:len(lead)] != lead or len(scales) != len(axes):
                raise self.err(node, f"scales {scales}: only the height and width may be resized")
            scales = scales[len(lead):]
            out = [int(np.float32(f) * np.float32(n)) for f, n in zip(scales, (H, W))]
            kw = dict(scale_factor=tuple(scales))
            for n, o, f in zip((H, W), out, scales):  # where corenet's (PyTorch's) rule reads otherwise
                if o != math.floor(n * f) or (o == n and f != 1.0) or (mode == "nearest" and o == 2 * n and f != 2.0):
                    raise self.err(node, f"scale {f} on a side of {n} gives {o}: PyTorch's rule then sizes, copies "
                                         f"or halves otherwise; give sizes instead")
        elif sizes is not None:
            sizes = [int(v) for v in sizes]
            if len(sizes) != len(axes) or (lead and sizes[1] != x.shape[0]):
                raise self.err(node, f"sizes {sizes}: only the height and width may be resized")
            out = sizes[-2:]
            kw = dict(size=tuple(out))
        else:
            raise self.err(node, "needs constant scales or sizes")
        if ctm == "pytorch_half_pixel" and min(out) < 2:
            raise self.err(node, "pytorch_half_pixel reads 0 for an output of length 1, unlike half_pixel")
        layer = L.Upsample(**kw, mode="nearest" if mode == "nearest" else "bilinear",
                           align_corners=(ctm == "align_corners") if mode == "linear" else None)
        self._call(node, i, layer, x)
