"""A captured layer as the GEMMs an array runs: im2col for convs (per group), rows x features for linear and matmul."""

from __future__ import annotations

import math

from nntailor.cost import metrics
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
