"""Which op kind each module class, function and tensor method is.

The kind is all the cost model needs to choose a pricing rule. A call that is in none of these
tables becomes kind "other": it is listed in the report by module path and op, never dropped.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

# Kinds whose MACs enter the published count (conv, linear, matmul only).
MAC_KINDS = frozenset({"conv", "conv_transpose", "linear", "matmul", "einsum", "attention", "sdpa"})
# Kinds whose output is a view of an input: no new buffer, no work.
ALIAS_KINDS = frozenset({"reshape", "getitem", "split", "identity"})
ACTIVATION_KINDS = frozenset(
    {"relu", "relu6", "leaky_relu", "gelu", "silu", "sigmoid", "hardswish", "hardsigmoid", "tanh", "softmax"}
)
NORM_KINDS = frozenset({"batchnorm", "layernorm", "groupnorm", "lrn"})
POOL_KINDS = frozenset({"maxpool", "avgpool", "adaptive_avgpool", "adaptive_maxpool"})
ELEMENTWISE_KINDS = frozenset({"add", "mul", "div"})
# Data movement with a new buffer but no arithmetic (ShiftNet's shift is the point of the paper).
MOVE_KINDS = frozenset({"permute", "cat", "pad", "shuffle", "shift", "upsample", "embedding", "slice"})
REDUCE_KINDS = frozenset({"reduce"})

OP_KINDS = (
    MAC_KINDS | ALIAS_KINDS | ACTIVATION_KINDS | NORM_KINDS | POOL_KINDS | ELEMENTWISE_KINDS | MOVE_KINDS
    | REDUCE_KINDS | {"other"}
)

MODULE_KINDS: dict[type[nn.Module], str] = {
    nn.Conv1d: "conv", nn.Conv2d: "conv", nn.Conv3d: "conv",
    nn.ConvTranspose1d: "conv_transpose", nn.ConvTranspose2d: "conv_transpose", nn.ConvTranspose3d: "conv_transpose",
    nn.Linear: "linear", nn.LazyLinear: "linear",
    nn.BatchNorm1d: "batchnorm", nn.BatchNorm2d: "batchnorm", nn.BatchNorm3d: "batchnorm",
    nn.LayerNorm: "layernorm", nn.GroupNorm: "groupnorm", nn.LocalResponseNorm: "lrn",
    nn.ReLU: "relu", nn.ReLU6: "relu6", nn.LeakyReLU: "leaky_relu", nn.GELU: "gelu", nn.SiLU: "silu",
    nn.Sigmoid: "sigmoid", nn.Hardswish: "hardswish", nn.Hardsigmoid: "hardsigmoid", nn.Tanh: "tanh",
    nn.Softmax: "softmax",
    nn.MaxPool1d: "maxpool", nn.MaxPool2d: "maxpool", nn.MaxPool3d: "maxpool",
    nn.AvgPool1d: "avgpool", nn.AvgPool2d: "avgpool", nn.AvgPool3d: "avgpool",
    nn.AdaptiveAvgPool1d: "adaptive_avgpool", nn.AdaptiveAvgPool2d: "adaptive_avgpool",
    nn.AdaptiveAvgPool3d: "adaptive_avgpool",
    nn.AdaptiveMaxPool1d: "adaptive_maxpool", nn.AdaptiveMaxPool2d: "adaptive_maxpool",
    nn.Flatten: "reshape", nn.Unflatten: "reshape",
    nn.Dropout: "identity", nn.Dropout1d: "identity", nn.Dropout2d: "identity", nn.Identity: "identity",
    nn.Embedding: "embedding", nn.MultiheadAttention: "attention", nn.ChannelShuffle: "shuffle",
    nn.ZeroPad1d: "pad", nn.ZeroPad2d: "pad", nn.ConstantPad1d: "pad", nn.ConstantPad2d: "pad",
    nn.ReflectionPad2d: "pad", nn.ReplicationPad2d: "pad",
    nn.Upsample: "upsample", nn.UpsamplingNearest2d: "upsample", nn.UpsamplingBilinear2d: "upsample",
}

FUNCTION_KINDS: dict[Callable, str] = {
    F.conv1d: "conv", F.conv2d: "conv", F.conv3d: "conv",
    F.conv_transpose1d: "conv_transpose", F.conv_transpose2d: "conv_transpose",
    F.linear: "linear",
    operator.add: "add", torch.add: "add", operator.sub: "add", torch.sub: "add", operator.iadd: "add",
    operator.mul: "mul", torch.mul: "mul", operator.imul: "mul",
    operator.truediv: "div", torch.div: "div",
    operator.matmul: "matmul", torch.matmul: "matmul", torch.bmm: "matmul", torch.mm: "matmul",
    torch.einsum: "einsum", F.scaled_dot_product_attention: "sdpa",
    torch.cat: "cat", torch.concat: "cat", torch.stack: "cat",
    torch.flatten: "reshape", torch.reshape: "reshape", torch.squeeze: "reshape", torch.unsqueeze: "reshape",
    operator.getitem: "getitem", torch.chunk: "split", torch.split: "split",
    torch.permute: "permute", torch.transpose: "permute",
    F.relu: "relu", torch.relu: "relu", F.relu6: "relu6", F.leaky_relu: "leaky_relu", F.gelu: "gelu",
    F.silu: "silu", torch.sigmoid: "sigmoid", F.sigmoid: "sigmoid", F.hardswish: "hardswish",
    F.hardsigmoid: "hardsigmoid", torch.tanh: "tanh", F.tanh: "tanh", F.softmax: "softmax", torch.softmax: "softmax",
    F.max_pool1d: "maxpool", F.max_pool2d: "maxpool", F.avg_pool1d: "avgpool", F.avg_pool2d: "avgpool",
    F.adaptive_avg_pool1d: "adaptive_avgpool", F.adaptive_avg_pool2d: "adaptive_avgpool",
    F.adaptive_max_pool2d: "adaptive_maxpool",
    F.batch_norm: "batchnorm", F.layer_norm: "layernorm", F.group_norm: "groupnorm",
    F.dropout: "identity", F.embedding: "embedding", F.pad: "pad", F.interpolate: "upsample",
    torch.roll: "shift", torch.channel_shuffle: "shuffle", F.channel_shuffle: "shuffle",
    torch.mean: "reduce", torch.sum: "reduce", torch.amax: "reduce",
}

METHOD_KINDS: dict[str, str] = {
    "add": "add", "add_": "add", "sub": "add", "mul": "mul", "mul_": "mul", "div": "div",
    "matmul": "matmul", "bmm": "matmul", "mm": "matmul",
    "view": "reshape", "reshape": "reshape", "flatten": "reshape", "squeeze": "reshape", "unsqueeze": "reshape",
    "view_as": "reshape", "expand": "reshape", "expand_as": "reshape", "unflatten": "reshape",
    "permute": "permute", "transpose": "permute", "t": "permute", "contiguous": "permute", "movedim": "permute",
    "chunk": "split", "split": "split",
    "relu": "relu", "relu_": "relu", "sigmoid": "sigmoid", "tanh": "tanh", "softmax": "softmax",
    "mean": "reduce", "sum": "reduce", "amax": "reduce",
    "clone": "identity", "detach": "identity", "to": "identity", "float": "identity", "type_as": "identity",
}

# Methods that return shape information, not tensors: no layer, no cost.
SHAPE_METHODS = frozenset({"size", "dim", "numel", "shape"})

_custom_module_kinds: dict[type[nn.Module], str] = {}


def register_module_op(cls: type[nn.Module], kind: str) -> None:
    """Price a custom module as a known kind (it becomes a leaf of the capture)."""
    if kind not in OP_KINDS:
        raise ValueError(f"unknown op kind {kind!r}; valid: {sorted(OP_KINDS)}")
    _custom_module_kinds[cls] = kind
    _class_kind.cache_clear()


def module_kind(module: nn.Module) -> str | None:
    """The kind of a module that is a leaf of the capture, or None if capture should trace into it.

    A module class may declare ``op_kind = "shift"`` (for example) to be priced as that kind.
    """
    return _class_kind(type(module))


@functools.cache
def _class_kind(cls: type) -> str | None:
    kind = getattr(cls, "op_kind", None)
    if isinstance(kind, str) and kind in OP_KINDS:
        return kind
    for base in cls.__mro__:
        if base in _custom_module_kinds:
            return _custom_module_kinds[base]
        if base in MODULE_KINDS:
            return MODULE_KINDS[base]
    return None


def function_kind(fn: Callable) -> str:
    return FUNCTION_KINDS.get(fn, "other")


def method_kind(name: str) -> str:
    return METHOD_KINDS.get(name, "other")


def callable_name(fn: Callable) -> str:
    module = getattr(fn, "__module__", None) or ""
    name = getattr(fn, "__name__", repr(fn))
    if module in ("_operator", "operator"):
        return name
    if module.startswith("torch"):
        return f"torch.{name}" if "functional" not in module else f"F.{name}"
    return f"{module}.{name}" if module else name
