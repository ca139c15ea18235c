"""Sparse execution of pruned linear layers with torch's CSR kernels, where it is measured to pay.

Han et al. (2015) report ~3x for pruned fully connected layers on a CPU at batch 1. Whether torch's CSR
matmul beats the dense GEMV depends on density, shape and threads, so the step measures both on the
machine it runs on and swaps a layer only when CSR is faster (``autotune``).
``SparseLinear`` keeps the dense weight as its parameter (the cost model, state dicts and fine-tuning see an
ordinary linear layer) and runs a CSR copy in eval mode, rebuilt whenever eval mode is entered.
"""

from __future__ import annotations

import time
import warnings
from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F
from pydantic import Field

from nntailor.compress.base import CompressConfig, register, walk


class SparseLinear(nn.Linear):
    op_kind = "linear"  # priced by the cost model as the linear layer it is

    def __init__(self, dense: nn.Linear) -> None:
        super().__init__(dense.in_features, dense.out_features, bias=dense.bias is not None)
        self.load_state_dict(dense.state_dict())
        self._csr: torch.Tensor | None = None
        self.train(dense.training)

    def train(self, mode: bool = True) -> SparseLinear:
        super().train(mode)
        self._csr = None if mode else csr(self.weight)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training or self._csr is None or x.dim() != 2:
            return F.linear(x, self.weight, self.bias)
        # (out x in) CSR times (in x batch): the weight is the sparse operand, as Han et al. store it
        out = torch.sparse.mm(self._csr, x.t().contiguous()).t()
        return out + self.bias if self.bias is not None else out


def csr(weight: torch.Tensor) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "sparse CSR support is in beta"
        return weight.detach().to_sparse_csr()


def _median_time(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def csr_speedup(layer: nn.Linear, batch: int = 1, repeats: int = 15) -> float:
    """Dense time / CSR time for this layer at ``batch``, measured here and now."""
    # its own generator: a timing probe must not move the global RNG that later seeded steps draw from
    x = torch.randn(batch, layer.in_features, generator=torch.Generator().manual_seed(0))
    sparse = SparseLinear(layer).eval()
    with torch.no_grad():
        dense = _median_time(lambda: F.linear(x, layer.weight, layer.bias), repeats)
        csr_time = _median_time(lambda: sparse(x), repeats)
    return dense / csr_time


class SparseLinearConfig(CompressConfig):
    step: Literal["sparse_linear"] = "sparse_linear"
    min_sparsity: float = Field(default=0.5, ge=0, lt=1)  # below this, not worth measuring
    autotune: bool = True  # swap only where CSR measured faster at ``batch``
    batch: int = Field(default=1, ge=1)


@register(SparseLinearConfig)
def sparse_linear(model: nn.Module, config: SparseLinearConfig = SparseLinearConfig()) -> nn.Module:
    def want(module: nn.Module, _: str) -> bool:
        if type(module) is not nn.Linear:
            return False
        zeros = float((module.weight == 0).float().mean())
        return zeros >= config.min_sparsity

    def swap(module: nn.Module, _: str) -> nn.Module | None:
        if config.autotune and csr_speedup(module, config.batch) <= 1.0:
            return None
        return SparseLinear(module)

    return walk(model, swap, want)
