"""Output shapes of common layers from their attributes, without running them.

Running BatchNorm, in-place activations or adds on meta tensors goes through PyTorch's Python
fallback (milliseconds each); the formulas below are microseconds. Anything without a rule here is
run on meta tensors by the caller. Formulas are the ones in the torch.nn documentation.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch.nn as nn

Shape = tuple[int, ...]

# Kinds whose output has the shape of their first input.
SAME_SHAPE_KINDS = frozenset(
    {
        "batchnorm", "layernorm", "groupnorm", "lrn", "relu", "relu6", "leaky_relu", "gelu", "silu", "sigmoid",
        "hardswish", "hardsigmoid", "tanh", "softmax", "identity", "shift", "shuffle",
    }
)


def _tuple(value: int | Sequence[int], rank: int) -> tuple[int, ...]:
    return tuple(value) if isinstance(value, Sequence) else (value,) * rank


def _conv(m: nn.Module, x: Shape) -> Shape | None:
    rank = len(m.kernel_size)
    if m.padding == "same":
        return (*x[: -rank - 1], m.out_channels, *x[-rank:])
    padding = (0,) * rank if m.padding == "valid" else m.padding
    spatial = []
    for size, k, s, p, d in zip(x[-rank:], m.kernel_size, m.stride, padding, m.dilation, strict=True):
        spatial.append((size + 2 * p - d * (k - 1) - 1) // s + 1)
    return (*x[: -rank - 1], m.out_channels, *spatial)


def _conv_transpose(m: nn.Module, x: Shape) -> Shape | None:
    rank = len(m.kernel_size)
    spatial = []
    for size, k, s, p, d, op in zip(
        x[-rank:], m.kernel_size, m.stride, m.padding, m.dilation, m.output_padding, strict=True
    ):
        spatial.append((size - 1) * s - 2 * p + d * (k - 1) + op + 1)
    return (*x[: -rank - 1], m.out_channels, *spatial)


def _linear(m: nn.Module, x: Shape) -> Shape | None:
    return (*x[:-1], m.out_features)


def _pool(m: nn.Module, x: Shape, rank: int) -> Shape | None:
    k = _tuple(m.kernel_size, rank)
    s = _tuple(m.stride if m.stride is not None else m.kernel_size, rank)
    p = _tuple(m.padding, rank)
    d = _tuple(getattr(m, "dilation", 1), rank)
    spatial = []
    for size, kk, ss, pp, dd in zip(x[-rank:], k, s, p, d, strict=True):
        span = size + 2 * pp - dd * (kk - 1) - 1
        out = (math.ceil(span / ss) if m.ceil_mode else span // ss) + 1
        if m.ceil_mode and (out - 1) * ss >= size + pp:
            out -= 1  # the last window must start inside the input or left padding (torch.nn docs)
        spatial.append(out)
    return (*x[:-rank], *spatial)


def _adaptive(m: nn.Module, x: Shape, rank: int) -> Shape | None:
    out = _tuple(m.output_size, rank)
    return (*x[:-rank], *(x[-rank + i] if o is None else o for i, o in enumerate(out)))


def _flatten(m: nn.Module, x: Shape) -> Shape | None:
    start, end = m.start_dim % len(x), m.end_dim % len(x)
    return (*x[:start], math.prod(x[start : end + 1]), *x[end + 1 :])


def _embedding(m: nn.Module, x: Shape) -> Shape | None:
    return (*x, m.embedding_dim)


_RULES: dict[type[nn.Module], Callable[[nn.Module, Shape], Shape | None]] = {
    nn.Conv1d: _conv, nn.Conv2d: _conv, nn.Conv3d: _conv,
    nn.ConvTranspose1d: _conv_transpose, nn.ConvTranspose2d: _conv_transpose,
    nn.Linear: _linear,
    nn.MaxPool1d: lambda m, x: _pool(m, x, 1), nn.MaxPool2d: lambda m, x: _pool(m, x, 2),
    nn.AvgPool1d: lambda m, x: _pool(m, x, 1), nn.AvgPool2d: lambda m, x: _pool(m, x, 2),
    nn.AdaptiveAvgPool1d: lambda m, x: _adaptive(m, x, 1), nn.AdaptiveAvgPool2d: lambda m, x: _adaptive(m, x, 2),
    nn.AdaptiveMaxPool1d: lambda m, x: _adaptive(m, x, 1), nn.AdaptiveMaxPool2d: lambda m, x: _adaptive(m, x, 2),
    nn.Flatten: _flatten,
    nn.Embedding: _embedding,
}


def _accepts(module: nn.Module, x: Shape) -> bool:
    """Does ``x`` fit the layer's declared input size? If not, no formula: execution raises the real error."""
    if isinstance(module, nn.modules.conv._ConvNd):
        rank = len(module.kernel_size)
        return len(x) in (rank + 1, rank + 2) and x[-rank - 1] == module.in_channels
    if isinstance(module, nn.Linear):
        return len(x) >= 1 and x[-1] == module.in_features
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return len(x) >= 2 and x[1] == module.num_features
    if isinstance(module, nn.LayerNorm):
        n = len(module.normalized_shape)
        return tuple(x[-n:]) == tuple(module.normalized_shape)
    if isinstance(module, nn.GroupNorm):
        return len(x) >= 2 and x[1] == module.num_channels
    if isinstance(module, nn.modules.pooling._MaxPoolNd | nn.modules.pooling._AvgPoolNd):
        return len(x) >= 2 and all(d > 0 for d in x)
    return True


def module_output_shape(module: nn.Module, kind: str | None, x: Shape) -> Shape | None:
    """The output shape of ``module`` on an input of shape ``x``, or None when there is no rule."""
    if not _accepts(module, x) or getattr(module, "return_indices", False):
        return None  # a (values, indices) tuple: let meta execution build it
    rule = _RULES.get(type(module))
    if rule is not None:
        shape = rule(module, x)
        return shape if shape is not None and all(d > 0 for d in shape) else None
    if kind in SAME_SHAPE_KINDS:
        return x
    return None
