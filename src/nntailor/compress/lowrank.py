"""Low-rank factorization: SVD of linear layers, Tucker-2 and CP of convolutions (tensorly).

- SVD: W (out x in) ~ U_r S_r V_r^T becomes Linear(in -> r) then Linear(r -> out).
- Tucker-2 (Kim et al., ICLR 2016): W ~ core x_0 U_out x_1 U_in becomes 1x1 (in -> r_in), the k x k core
  (r_in -> r_out, the original stride and padding), 1x1 (r_out -> out).
- CP (Lebedev et al., ICLR 2015): W[o,i,h,w] ~ sum_r A[o,r] B[i,r] C[h,r] D[w,r] becomes 1x1 (in -> R),
  depthwise k_h x 1, depthwise 1 x k_w, 1x1 (R -> out).
Ranks come from the kept energy of the singular values (of the weight, or of its unfoldings), or from a MACs
target. Fine-tuning afterwards is a ``finetune`` step.
"""

from __future__ import annotations

import fnmatch
import math
from typing import Literal

import torch
import torch.nn as nn
from pydantic import Field, model_validator

from nntailor.compress.base import CompressConfig, register, walk
from nntailor.errors import UserError
from nntailor.seeding import MAX_SEED


class LowRankConfig(CompressConfig):
    step: Literal["low_rank"] = "low_rank"
    conv_method: Literal["tucker2", "cp"] = "tucker2"
    energy: float | None = Field(default=0.9, gt=0, le=1)  # share of sum(s^2) the kept ranks must hold
    macs_ratio: float | None = Field(default=None, gt=0, lt=1)  # or: factorized MACs <= ratio x original
    layers: list[str] | None = None  # fnmatch patterns; default every linear and ungrouped 2-D conv
    exclude: list[str] = Field(default_factory=list)
    seed: int = Field(default=0, ge=0, le=MAX_SEED)  # numpy / scikit-learn seeds

    @model_validator(mode="after")
    def _one_rule(self) -> LowRankConfig:
        if self.macs_ratio is not None:
            object.__setattr__(self, "energy", None)
        if self.energy is None and self.macs_ratio is None:
            raise ValueError("give energy or macs_ratio")
        return self


def energy_rank(singular_values: torch.Tensor, energy: float) -> int:
    """The smallest r whose first r singular values hold ``energy`` of sum(s^2)."""
    power = singular_values.double() ** 2
    cumulative = torch.cumsum(power, 0) / power.sum()
    return int(torch.searchsorted(cumulative, torch.tensor(energy, dtype=torch.float64) - 1e-12)) + 1


def svd_linear(layer: nn.Linear, config: LowRankConfig) -> nn.Sequential:
    u, s, vh = torch.linalg.svd(layer.weight.detach(), full_matrices=False)
    n_out, n_in = layer.weight.shape
    if config.macs_ratio is not None:
        rank = max(1, math.floor(config.macs_ratio * n_in * n_out / (n_in + n_out)))
    else:
        rank = energy_rank(s, config.energy or 1.0)
    rank = min(rank, len(s))
    first = nn.Linear(n_in, rank, bias=False)
    second = nn.Linear(rank, n_out, bias=layer.bias is not None)
    with torch.no_grad():
        first.weight.copy_(vh[:rank] * s[:rank, None].sqrt())
        second.weight.copy_(u[:, :rank] * s[:rank].sqrt())
        if layer.bias is not None:
            second.bias.copy_(layer.bias)
    return nn.Sequential(first, second)


def _mode_rank(weight: torch.Tensor, mode: int, config: LowRankConfig, ratio_rank: int) -> int:
    if config.macs_ratio is not None:
        return ratio_rank
    unfolded = weight.movedim(mode, 0).reshape(weight.shape[mode], -1)
    return energy_rank(torch.linalg.svdvals(unfolded), config.energy or 1.0)


def tucker2_conv(conv: nn.Conv2d, config: LowRankConfig) -> nn.Sequential:
    import tensorly as tl
    from tensorly.decomposition import partial_tucker

    tl.set_backend("pytorch")
    w = conv.weight.detach()
    n_out, n_in, kh, kw = w.shape
    # equal ranks r for a MACs target: per output pixel r*in + r*r*kh*kw + r*out <= ratio * out*in*kh*kw
    ratio_rank = 1
    if config.macs_ratio is not None:
        a, b, c = kh * kw, n_in + n_out, -config.macs_ratio * n_out * n_in * kh * kw
        ratio_rank = max(1, math.floor((-b + math.sqrt(b * b - 4 * a * c)) / (2 * a)))
    r_out = min(n_out, _mode_rank(w, 0, config, ratio_rank))
    r_in = min(n_in, _mode_rank(w, 1, config, ratio_rank))
    result = partial_tucker(w, rank=[r_out, r_in], modes=[0, 1], init="svd", n_iter_max=100,
                            random_state=config.seed)
    core, (u_out, u_in) = result[0] if isinstance(result[0], tuple) else result
    first = nn.Conv2d(n_in, r_in, 1, bias=False)
    middle = nn.Conv2d(r_in, r_out, (kh, kw), conv.stride, conv.padding, conv.dilation, bias=False)
    last = nn.Conv2d(r_out, n_out, 1, bias=conv.bias is not None)
    with torch.no_grad():
        first.weight.copy_(u_in.t().reshape(r_in, n_in, 1, 1))
        middle.weight.copy_(core)
        last.weight.copy_(u_out.reshape(n_out, r_out, 1, 1))
        if conv.bias is not None:
            last.bias.copy_(conv.bias)
    return nn.Sequential(first, middle, last)


def cp_conv(conv: nn.Conv2d, config: LowRankConfig) -> nn.Sequential:
    import tensorly as tl
    from tensorly.decomposition import parafac

    tl.set_backend("pytorch")
    w = conv.weight.detach()
    n_out, n_in, kh, kw = w.shape
    if config.macs_ratio is not None:  # per output pixel: R*in + R*kh + R*kw + R*out
        rank = max(1, math.floor(config.macs_ratio * n_out * n_in * kh * kw / (n_in + kh + kw + n_out)))
    else:
        rank = max(_mode_rank(w, 0, config, 1), _mode_rank(w, 1, config, 1))
    cp = parafac(w, rank=rank, init="random", n_iter_max=300, random_state=config.seed)
    a, b, c, d = cp.factors
    a = a * cp.weights
    first = nn.Conv2d(n_in, rank, 1, bias=False)
    vertical = nn.Conv2d(rank, rank, (kh, 1), (conv.stride[0], 1), (conv.padding[0], 0), (conv.dilation[0], 1),
                         groups=rank, bias=False)
    horizontal = nn.Conv2d(rank, rank, (1, kw), (1, conv.stride[1]), (0, conv.padding[1]), (1, conv.dilation[1]),
                           groups=rank, bias=False)
    last = nn.Conv2d(rank, n_out, 1, bias=conv.bias is not None)
    with torch.no_grad():
        first.weight.copy_(b.t().reshape(rank, n_in, 1, 1))
        vertical.weight.copy_(c.t().reshape(rank, 1, kh, 1))
        horizontal.weight.copy_(d.t().reshape(rank, 1, 1, kw))
        last.weight.copy_(a.reshape(n_out, rank, 1, 1))
        if conv.bias is not None:
            last.bias.copy_(conv.bias)
    return nn.Sequential(first, vertical, horizontal, last)


def _supported(module: nn.Module) -> bool:
    if type(module) is nn.Linear:
        return True
    return (type(module) is nn.Conv2d and module.groups == 1 and isinstance(module.padding, tuple)
            and module.padding_mode == "zeros")


@register(LowRankConfig)
def low_rank(model: nn.Module, config: LowRankConfig = LowRankConfig()) -> nn.Module:
    if config.layers is not None:  # a layer named explicitly must be one the technique handles
        for name, module in model.named_modules():
            named = any(fnmatch.fnmatch(name, p) for p in config.layers)
            if named and isinstance(module, nn.Conv2d | nn.Linear) and not _supported(module):
                raise UserError(f"low_rank cannot factorize {name} ({type(module).__name__}, groups="
                                    f"{getattr(module, 'groups', 1)}): only linear and ungrouped 2-D convs")

    def chosen(module: nn.Module, fqn: str) -> bool:
        if not _supported(module) or any(fnmatch.fnmatch(fqn, p) for p in config.exclude):
            return False
        return config.layers is None or any(fnmatch.fnmatch(fqn, p) for p in config.layers)

    def factorize(module: nn.Module, _: str) -> nn.Module:
        if isinstance(module, nn.Linear):
            return svd_linear(module, config)
        return cp_conv(module, config) if config.conv_method == "cp" else tucker2_conv(module, config)

    return walk(model, factorize, chosen)
