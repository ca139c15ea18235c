"""Fold BatchNorm into the conv or linear before it (seed 000: CMSIS-NN has no BN, so it must be fused).

With W_BN = gamma / sqrt(var + eps) per channel and b_BN = beta - W_BN * mean:
weights become W_BN * W_conv and the bias W_BN * b_conv + b_BN. The BN module becomes an Identity.
Computed in float64 and cast back, so outputs match the unfolded model to float32 rounding.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.fx as fx
import torch.nn as nn

from nntailor.compress.base import CompressConfig, register
from nntailor.graph.capture import trace

_FOLDABLE = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


class FoldBNConfig(CompressConfig):
    step: Literal["fold_bn"] = "fold_bn"


def fold_pairs(model: nn.Module) -> list[tuple[str, str]]:
    """(producer path, BN path) for every BN fed only by a conv/linear that feeds only it, called once."""
    root, graph = trace(model, type(model).__name__)
    calls: dict[str, int] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            calls[str(node.target)] = calls.get(str(node.target), 0) + 1
    pairs = []
    for node in graph.nodes:
        if node.op != "call_module":
            continue
        if not isinstance(root.get_submodule(str(node.target)), nn.modules.batchnorm._BatchNorm):
            continue
        producer = node.args[0] if node.args else None
        if not isinstance(producer, fx.Node) or producer.op != "call_module" or len(producer.users) != 1:
            continue
        if not isinstance(root.get_submodule(str(producer.target)), _FOLDABLE):
            continue
        if calls[str(producer.target)] == 1 and calls[str(node.target)] == 1:
            pairs.append((str(producer.target), str(node.target)))
    return pairs


@torch.no_grad()
def fold_into(layer: nn.Module, bn: nn.modules.batchnorm._BatchNorm) -> None:
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("BatchNorm without running statistics cannot be folded")
    scale = (bn.weight.double() if bn.affine else 1.0) / torch.sqrt(bn.running_var.double() + bn.eps)
    shift = (bn.bias.double() if bn.affine else 0.0) - scale * bn.running_mean.double()
    weight = layer.weight.double()
    out_dim = 1 if isinstance(layer, nn.modules.conv._ConvTransposeNd) else 0
    view = [1] * weight.dim()
    view[out_dim] = -1
    layer.weight.copy_((weight * scale.view(view)).to(layer.weight.dtype))
    bias = layer.bias.double() if layer.bias is not None else torch.zeros_like(scale)
    new_bias = (scale * bias + shift).to(layer.weight.dtype)
    if layer.bias is None:
        layer.bias = nn.Parameter(new_bias)
    else:
        layer.bias.copy_(new_bias)


@register(FoldBNConfig)
def fold_bn(model: nn.Module, config: FoldBNConfig = FoldBNConfig()) -> nn.Module:
    """Fold every foldable BN in place; returns the same model object."""
    for producer, bn_path in fold_pairs(model):
        fold_into(model.get_submodule(producer), model.get_submodule(bn_path))
        parent_path, _, name = bn_path.rpartition(".")
        setattr(model.get_submodule(parent_path) if parent_path else model, name, nn.Identity())
    return model
