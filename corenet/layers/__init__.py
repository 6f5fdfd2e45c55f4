"""Layers: one family per file. Each builds from the inferred input shape, keeps PyTorch's
parameter layout and names, and pairs a forward with a backward (see ``base.Layer``)."""

from .activation import (
    ELU,
    GELU,
    SELU,
    Hardsigmoid,
    Hardswish,
    LeakyReLU,
    LogSoftmax,
    ReLU,
    ReLU6,
    Sigmoid,
    SiLU,
    Softmax,
    Tanh,
)
from .base import Layer, get_layer_class
from .channels import ChannelPad, ChannelShuffle, ChannelSlice
from .conv import Conv2d
from .conv_transpose import ConvTranspose2d
from .drop_path import DropPath
from .dropout import Dropout
from .linear import Linear
from .lrn import LocalResponseNorm
from .merge import Add, Concat, Multiply
from .norm import BatchNorm1d, BatchNorm2d
from .pool import (
    AdaptiveAvgPool2d,
    AdaptiveMaxPool2d,
    AvgPool2d,
    GlobalAvgPool2d,
    GlobalMaxPool2d,
    MaxPool2d,
    MinPool2d,
    SumPool2d,
)
from .reshape import Flatten, Reshape, ZeroPad2d
from .separable import SeparableConv2d
from .upsample import Upsample

__all__ = [
    "Layer", "get_layer_class",
    "Conv2d", "ConvTranspose2d", "Linear",
    "MaxPool2d", "AvgPool2d", "MinPool2d", "SumPool2d", "GlobalAvgPool2d", "GlobalMaxPool2d", "AdaptiveAvgPool2d",
    "AdaptiveMaxPool2d",
    "LocalResponseNorm", "BatchNorm2d", "BatchNorm1d", "Dropout", "DropPath",
    "ReLU", "LeakyReLU", "ELU", "SELU", "GELU", "Sigmoid", "Tanh", "Softmax", "LogSoftmax",
    "ReLU6", "SiLU", "Hardswish", "Hardsigmoid",
    "SeparableConv2d", "ChannelShuffle", "ChannelSlice", "ChannelPad",
    "Flatten", "Reshape", "ZeroPad2d", "Upsample",
    "Add", "Concat", "Multiply",
]
