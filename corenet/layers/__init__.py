"""Layers: one family per file. Each builds from the inferred input shape, keeps PyTorch's
parameter layout and names, and pairs a forward with a backward (see ``base.Layer``)."""

from .activation import ELU, GELU, SELU, LeakyReLU, LogSoftmax, ReLU, Sigmoid, Softmax, Tanh
from .base import Layer, get_layer_class
from .conv import Conv2d
from .conv_transpose import ConvTranspose2d
from .dropout import Dropout
from .linear import Linear
from .lrn import LocalResponseNorm
from .merge import Add, Concat, Multiply
from .norm import BatchNorm1d, BatchNorm2d
from .pool import (
    AdaptiveAvgPool2d,
    AvgPool2d,
    GlobalAvgPool2d,
    GlobalMaxPool2d,
    MaxPool2d,
    MinPool2d,
    SumPool2d,
)
from .reshape import Flatten, Reshape, ZeroPad2d
from .upsample import Upsample

__all__ = [
    "Layer", "get_layer_class",
    "Conv2d", "ConvTranspose2d", "Linear",
    "MaxPool2d", "AvgPool2d", "MinPool2d", "SumPool2d", "GlobalAvgPool2d", "GlobalMaxPool2d", "AdaptiveAvgPool2d",
    "LocalResponseNorm", "BatchNorm2d", "BatchNorm1d", "Dropout",
    "ReLU", "LeakyReLU", "ELU", "SELU", "GELU", "Sigmoid", "Tanh", "Softmax", "LogSoftmax",
    "Flatten", "Reshape", "ZeroPad2d", "Upsample",
    "Add", "Concat", "Multiply",
]
