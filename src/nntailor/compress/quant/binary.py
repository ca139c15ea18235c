"""Binary and ternary networks (seed 002), trained with a straight-through estimator.

- BinaryConnect (Courbariaux 2015): W_b = sign(W); activations float.
- BNN (Hubara 2016): weights and activations sign(.); gradients pass where |x| <= 1 (hard tanh).
- BWN (Rastegari 2016): W_b = alpha sign(W), alpha = mean |W| per output filter.
- XNOR-Net (Rastegari 2016): BWN weights and sign(x) inputs scaled by mean |x| (per sample).
- TWN (Li & Liu 2016): Delta = 0.7 mean |W|; W_t = alpha {+1, 0, -1}, alpha = mean |W| over |W| > Delta.
- TTQ (Zhu 2017): threshold t max |W|, learned positive and negative scales W_p, W_n per layer.
The first and last MAC layers stay in float by default, as the papers keep them. ``binary_bits`` gives the
cost model the widths: 1-bit weights (2 for ternary), 1-bit activations for BNN/XNOR, so BOPs price the
MACs as XNOR-popcounts or additions.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F
from pydantic import Field

from nntailor.compress.attention import split_attention
from nntailor.compress.base import CompressConfig, float_layer_filter, register, walk

Method = Literal["binaryconnect", "bnn", "bwn", "xnor", "twn", "ttq"]
_BINARY_ACTIVATIONS = {"bnn", "xnor"}


def straight_through(x: torch.Tensor, q: torch.Tensor, clip: bool) -> torch.Tensor:
    """Forward q, backward the identity (zeroed where |x| > 1 with ``clip``, BNN's hard-tanh rule)."""
    base = x.clamp(-1, 1) if clip else x
    return base + (q - base).detach()


def _per_filter_mean_abs(w: torch.Tensor) -> torch.Tensor:
    return w.abs().reshape(w.shape[0], -1).mean(1).reshape(-1, *([1] * (w.dim() - 1)))


def twn_threshold(w: torch.Tensor) -> torch.Tensor:
    return 0.7 * w.abs().mean()


def quantize_weight(w: torch.Tensor, method: str, scales: nn.Parameter | None = None,
                    ttq_threshold: float = 0.05) -> torch.Tensor:
    if method in ("binaryconnect", "bnn"):
        return straight_through(w, torch.where(w >= 0, 1.0, -1.0), clip=True)
    if method in ("bwn", "xnor"):
        alpha = _per_filter_mean_abs(w.detach())
        return straight_through(w, alpha * torch.where(w >= 0, 1.0, -1.0), clip=False)
    if method == "twn":
        delta = twn_threshold(w.detach())
        keep = w.detach().abs() > delta
        alpha = w.detach().abs()[keep].mean() if keep.any() else torch.zeros(())
        ternary = alpha * torch.sign(w.detach()) * keep
        return straight_through(w, ternary, clip=False)
    # TTQ: the scales are learned through the forward; the latent weights get the straight-through gradient
    assert scales is not None
    delta = ttq_threshold * w.detach().abs().max()
    positive, negative = (w.detach() > delta).float(), (w.detach() < -delta).float()
    latent = straight_through(w, torch.zeros_like(w), clip=False)  # gradient path to w, value 0
    return latent + scales[0] * positive - scales[1] * negative


def binarize_input(x: torch.Tensor, method: str) -> torch.Tensor:
    signs = torch.where(x >= 0, 1.0, -1.0)
    if method == "xnor":  # one scale per sample: K = mean |x|
        k = x.detach().abs().reshape(x.shape[0], -1).mean(1).reshape(-1, *([1] * (x.dim() - 1)))
        return straight_through(x, k * signs, clip=True)
    return straight_through(x, signs, clip=True)


class _Binary:
    method: str
    ttq_scales: nn.Parameter | None

    def _setup(self, method: str) -> None:
        self.method = method
        if method == "ttq":
            with torch.no_grad():
                start = self.weight.abs().mean().repeat(2)
            self.ttq_scales = nn.Parameter(start)
        else:
            self.ttq_scales = None

    def binary_weight(self) -> torch.Tensor:
        return quantize_weight(self.weight, self.method, self.ttq_scales)

    def binary_input(self, x: torch.Tensor) -> torch.Tensor:
        return binarize_input(x, self.method) if self.method in _BINARY_ACTIVATIONS else x


class BinaryLinear(_Binary, nn.Linear):
    op_kind = "linear"

    def __init__(self, dense: nn.Linear, method: str) -> None:
        nn.Linear.__init__(self, dense.in_features, dense.out_features, bias=dense.bias is not None)
        self.load_state_dict(dense.state_dict())
        self._setup(method)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(self.binary_input(x), self.binary_weight(), self.bias)


class BinaryConv2d(_Binary, nn.Conv2d):
    op_kind = "conv"

    def __init__(self, dense: nn.Conv2d, method: str) -> None:
        nn.Conv2d.__init__(self, dense.in_channels, dense.out_channels, dense.kernel_size, dense.stride,
                           dense.padding, dense.dilation, dense.groups, dense.bias is not None, dense.padding_mode)
        self.load_state_dict(dense.state_dict())
        self._setup(method)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(self.binary_input(x), self.binary_weight(), self.bias)


class BinarizeConfig(CompressConfig):
    step: Literal["binarize"] = "binarize"
    method: Method = "bwn"
    keep_first_last: bool = True
    layers: list[str] | None = None
    exclude: list[str] = Field(default_factory=list)


@register(BinarizeConfig)
def binarize(model: nn.Module, config: BinarizeConfig = BinarizeConfig()) -> nn.Module:
    model = split_attention(model)  # q, k and v as linears the swap can reach (the same function)
    chosen = float_layer_filter(model, config.layers, config.exclude, config.keep_first_last)

    def swap(module: nn.Module, _: str) -> nn.Module:
        cls = BinaryLinear if isinstance(module, nn.Linear) else BinaryConv2d
        return cls(module, config.method)

    return walk(model, swap, chosen)


def binary_bits(model: nn.Module, act_bits: int = 8) -> dict[str, tuple[int, int]]:
    """Widths for ``analyze(layer_bits=...)``: weights 1 bit (ternary 2), activations 1 bit for BNN and XNOR."""
    out = {}
    for name, m in model.named_modules():
        if isinstance(m, BinaryLinear | BinaryConv2d):
            w_bits = 2 if m.method in ("twn", "ttq") else 1
            out[name] = (w_bits, 1 if m.method in _BINARY_ACTIVATIONS else act_bits)
    return out
