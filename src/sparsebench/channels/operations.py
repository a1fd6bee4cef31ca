"""The operations a channel trace follows, by how they treat a tensor's channels."""

from __future__ import annotations

import operator

import torch
import torch.nn.functional as F
from torch import nn

# Operations that keep each channel where it is (elementwise, or over space only).
PASS_MODULES = (
    nn.ReLU,
    nn.ReLU6,
    nn.SiLU,
    nn.GELU,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Sigmoid,
    nn.Tanh,
    nn.LeakyReLU,
    nn.Identity,
    nn.MaxPool2d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool2d,
)
PASS_FUNCTIONS = {
    F.relu,
    F.relu6,
    F.silu,
    F.gelu,
    F.hardswish,
    F.hardsigmoid,
    F.leaky_relu,
    F.max_pool2d,
    F.avg_pool2d,
    F.adaptive_avg_pool2d,
    F.adaptive_max_pool2d,
    torch.relu,
    torch.sigmoid,
    torch.tanh,
}
PASS_METHODS = {"relu", "sigmoid", "tanh", "contiguous", "clone", "relu_", "sigmoid_"}
# Of those, the ones that map 0 elsewhere (a gate's 0.5).
NOT_ZERO_MODULES = (nn.Sigmoid, nn.Hardsigmoid)
NOT_ZERO_FUNCTIONS = {torch.sigmoid, F.hardsigmoid, "sigmoid", "sigmoid_"}
# Two tensors combined channel by channel (a residual sum, a gate).
JOIN = {operator.add, operator.mul, operator.sub, torch.add, torch.mul, torch.sub}
JOIN_METHODS = {"add", "mul", "sub", "add_", "mul_"}
FLATTEN_METHODS = {"flatten", "view", "reshape"}
SHAPE_METHODS = {"size", "dim"}
