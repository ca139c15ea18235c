"""A captured layer as the GEMMs an array runs: im2col for convs (per group), rows x features for linear and matmul."""

from __future__ import annotations

import math

from nntailor.cost import metrics
from nntailor.cost.accel.spatial import ConvShape
from nntailor.cost.accel.systolic import Gemm
from nntailor.errors import UserError
from nntailor.graph.types import Layer


def layer_gemms(layer: Layer) -> list[Gemm] | None:
    """The GEMMs whose MACs are ``metrics.macs(layer)``; a grouped conv is one GEMM per group, run one after
    another (SCALE-Sim's depthwise layers are likewise one single-channel conv per channel). ``[]`` for a layer
    without MACs, ``None`` for a MAC layer with no GEMM form here (transposed conv, attention, einsum)."""
    total = metrics.macs(layer)
    if not total:
        return []
    out = layer.output_shape
    if layer.op == "conv" and len(out) >= 3:
        groups = layer.attrs.get("groups", 1)
        filters = out[1] // groups
        pixels = math.prod(out) // out[1]  # batch x output spatial
        k = total // (pixels * out[1])  # window x input channels per group
        return [Gemm(m=pixels, k=k, n=filters)] * groups
    if layer.op in ("linear", "matmul") and out:
        n = out[-1]
        m = math.prod(out) // n
        return [Gemm(m=m, k=total // (m * n), n=n)]
    return None


def require_gemms(layer: Layer) -> list[Gemm]:
    """``layer_gemms``, or a UserError naming the layer the array cannot map."""
    gemms = layer_gemms(layer)
    if gemms is not None:
        return gemms
    raise UserError(f"layer {layer.name!r} ({layer.op}): the array's dataflow cannot map it (conv, linear and "
                    f"matmul layers only)")


def layer_conv(layer: Layer) -> tuple[ConvShape, int] | None:
    """A conv or linear layer as one group's 7-loop conv and its group count (the dataflow nests' form); a linear
    layer is a 1x1 conv over a 1 x rows image, so its rows share the weights the way a conv's pixels do. ``None``
    for what the nests cannot express (no MACs, other ops, dilation, unequal strides)."""
    if not metrics.macs(layer):
        return None
    out = layer.output_shape
    if layer.op == "linear" and out:
        rows = math.prod(out) // out[-1]
        return ConvShape(n=1, k=out[-1], c=layer.input_shape[-1], p=1, q=rows, r=1, s=1), 1
    if layer.op != "conv" or len(out) not in (3, 4):
        return None
    a = layer.attrs
    kernel, stride, dilation = tuple(a["kernel_size"]), tuple(a["stride"]), tuple(a.get("dilation", (1,)))
    if len(set(stride)) != 1 or set(dilation) != {1}:
        return None
    groups = a.get("groups", 1)
    r, s = (kernel[0], kernel[1]) if len(kernel) == 2 else (1, kernel[0])
    p, q = (out[2], out[3]) if len(out) == 4 else (1, out[2])
    shape = ConvShape(n=out[0], k=out[1] // groups, c=a["in_channels"] // groups, p=p, q=q, r=r, s=s,
                      stride=stride[0])
    return shape, groups
