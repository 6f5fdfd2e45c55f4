"""ONNX export and import: a corenet model as an ONNX graph (eval mode) and an ONNX graph as a corenet Model.

>>> corenet.export_onnx(model, "resnet20.onnx", opset=17)     # doctest: +SKIP
>>> model = corenet.import_onnx("resnet20.onnx")              # doctest: +SKIP

The ``onnx`` package is needed only here, imported when one of these functions is called
(``pip install 'corenet[onnx]'``); corenet itself never requires it. The layer-by-layer mapping,
with what is refused and why, is in :mod:`corenet.io.onnx.export` and :mod:`corenet.io.onnx.importer`
(PyTorch's decomposed LRN and constant folding: :mod:`corenet.io.onnx.patterns`; reading an untrusted
file: :mod:`corenet.io.onnx.load`).

=====================  ===================================  ===================================
corenet layer          ONNX (export, opsets 13-18)          import
=====================  ===================================  ===================================
Conv2d                 Conv (pads [t, l, b, r], group)      Conv (explicit pads, auto_pad)
ConvTranspose2d        ConvTranspose (output_padding; one   ConvTranspose (pads, output_padding)
                       as large as the stride: Pad + Add)
Upsample               Resize (nearest asymmetric floor;    Resize (those rules, constant scales
                       linear half_pixel/align_corners)     or sizes; pytorch_half_pixel)
Linear                 Gemm transB=1                        Gemm (any transB, alpha, beta), MatMul
Flatten / Reshape      Flatten axis 1 / Reshape [0, ...]    Flatten axis 1 / Reshape
MaxPool2d, AvgPool2d   MaxPool / AveragePool (ceil_mode,    MaxPool / AveragePool
                       count_include_pad always written)
GlobalAvg/MaxPool2d    GlobalAveragePool / GlobalMaxPool    same
AdaptiveAvgPool2d      a plain window or GlobalAveragePool  (comes back as AvgPool2d)
AdaptiveMaxPool2d      a plain window or GlobalMaxPool      (comes back as MaxPool2d)
BatchNorm2d/1d         BatchNormalization (running stats)   BatchNormalization (inference)
LocalResponseNorm      LRN (odd sizes, across channels)     LRN (odd sizes); PyTorch's ~50-node
                                                            decomposition (any size), matched
activations            Relu LeakyRelu Elu Selu Sigmoid      same, plus Gelu (opset 20)
                       Tanh Softmax LogSoftmax; GELU as
                       Erf/Tanh arithmetic
Add, Multiply, Concat  Add/Sum, Mul, Concat                 Add/Sum, Mul, Concat (tensor inputs)
ZeroPad2d              Pad (constant 0)                     Pad (constant 0, H and W only)
ChannelPad             Pad (constant 0, channels)           Pad (constant 0, channels only)
ChannelSlice           Slice (axis 1)                       Slice (axis 1, step 1)
Dropout                removed                              Dropout, Identity: removed
ReLU6, Hardsigmoid     Clip(0, 6), HardSigmoid(1/6, 1/2),   same, Clip(0) as ReLU; x*Sigmoid(x)
Hardswish, SiLU        HardSwish (opset 13: x*HardSig-      and x*HardSigmoid(x) matched as
                       moid(x)), x*Sigmoid(x)               SiLU and Hardswish
ChannelShuffle         Reshape, Transpose, Reshape          the same three (constant shapes)
SeparableConv2d        Conv (group C_in), Conv 1x1          (comes back as two Conv2d)
DropPath               removed                              -
(constant subgraphs)   -                                    folded (ConstantOfShape, Slice, Cast,
                                                            Transpose...: PyTorch's F.pad pads)
=====================  ===================================  ===================================
"""

from __future__ import annotations

from .common import OPSETS, require_onnx  # noqa: F401  (require_onnx: for the exporter and importer)

__all__ = ["export_onnx", "import_onnx", "OPSETS"]


def export_onnx(model, path, opset: int = 17) -> None:
    """Write ``model`` to ``path`` as an ONNX graph in evaluation mode.

    Parameters
    ----------
    model : corenet.Model
        Any model made of the layers listed in this module's table. Batch norm uses its running
        statistics, dropout is removed; the batch axis is dynamic (``"N"``), the other axes are the
        model's per-sample shapes.
    path : str or os.PathLike
    opset : int, 13 to 18

    Raises
    ------
    ValueError
        A layer without an ONNX equivalent (its name and class and the reason), or an opset out of range.
    ImportError
        When the ``onnx`` package is not installed.
    """
    from .export import export

    export(model, path, opset)


def import_onnx(path):
    """Read the ONNX model at ``path`` into a corenet :class:`~corenet.Model` (predict, fit, summary, save).

    Weights become trainable parameters, batch norm statistics buffers. Layer names come from the
    ONNX node names with every character outside ``[A-Za-z0-9_]`` replaced by ``_`` (corenet names
    cannot contain ``.``), or ``<op type>_<index>`` for unnamed nodes; a repeated name gets ``_1``,
    ``_2``... The file is treated as untrusted: it must pass ``onnx.checker``, and external data may
    only live in the model file's folder.

    Raises
    ------
    ValueError
        The file is not a readable, valid ONNX model (naming the file), or nodes have no corenet
        equivalent (every such node with its op type, at once).
    ImportError
        When the ``onnx`` package is not installed.
    """
    from .importer import import_model

    return import_model(path)
