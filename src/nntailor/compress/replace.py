"""MobileBERT's operator replacements for small chips (Sun et al. 2020; seeds 003 and 004).

- LayerNorm -> NoNorm: h -> gamma * h + beta, an element-wise affine map with no mean or variance: no
  reductions, no square root, cheap in integer arithmetic. gamma and beta start from the LayerNorm's.
- GELU -> ReLU: one compare instead of a transcendental.
- nn.MultiheadAttention -> ``SplitAttention`` (exact): q, k, v and output projections as separate linears, so
  quantization (per head with Q-BERT's groups) and pruning reach them.
Both change what the network computes: follow them with a ``finetune`` step. The cost model prices the
difference: a NoNorm is priced as one element-wise op per element where a LayerNorm is 5, and ReLU as 1
(and fused into the layer before it) where GELU is 4.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn as nn

from nntailor.compress.attention import split_attention
from nntailor.compress.base import CompressConfig, register, walk


class NoNorm(nn.Module):
    """gamma * h + beta over the last dimensions (the LayerNorm's normalized_shape)."""

    op_kind = "mul"  # priced as an element-wise multiply (and add) per output element

    def __init__(self, normalized_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(normalized_shape))
        self.bias = nn.Parameter(torch.zeros(normalized_shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight + self.bias


class ReplaceConfig(CompressConfig):
    step: Literal["replace"] = "replace"
    layernorm: bool = True  # LayerNorm -> NoNorm
    gelu: bool = True  # GELU -> ReLU
    attention: bool = True  # nn.MultiheadAttention -> SplitAttention (the same function)


@register(ReplaceConfig)
def replace_ops(model: nn.Module, config: ReplaceConfig = ReplaceConfig()) -> nn.Module:
    def chosen(module: nn.Module, _: str) -> bool:
        return (config.layernorm and type(module) is nn.LayerNorm) or (config.gelu and type(module) is nn.GELU)

    def swap(module: nn.Module, _: str) -> nn.Module:
        if isinstance(module, nn.GELU):
            return nn.ReLU()
        no_norm = NoNorm(tuple(module.normalized_shape))
        if module.elementwise_affine:
            with torch.no_grad():
                no_norm.weight.copy_(module.weight)
                if module.bias is not None:
                    no_norm.bias.copy_(module.bias)
        return no_norm

    model = walk(model, swap, chosen)
    return split_attention(model) if config.attention else model
