"""Weight sharing by k-means (Deep Compression, stage 2), keeping pruned weights at zero.

Per layer, the non-zero weights are clustered into 2^bits centroids initialised linearly between their
minimum and maximum (Han et al. found linear init best: it keeps the rare large weights), with
scikit-learn's KMeans. Fine-tuning updates the centroids: ``ClusterHook`` replaces each weight's gradient
by the sum over its cluster, so all members move together (section 3.3), and re-snaps after each step.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
import torch.nn as nn
from pydantic import Field, field_validator

from nntailor.compress.base import CompressConfig, register
from nntailor.compress.prune import prunable_layers
from nntailor.seeding import MAX_SEED
from nntailor.train import TrainHook


class ClusterConfig(CompressConfig):
    """``bits`` per shared weight: one number, or per layer kind (``{"conv": 8, "linear": 5}``) as in Table 1."""

    step: Literal["cluster"] = "cluster"
    bits: int | dict[str, int] = 5
    init: Literal["linear", "random", "density"] = "linear"
    layers: list[str] | None = None  # fnmatch patterns of module paths
    exclude: list[str] = Field(default_factory=list)
    seed: int = Field(default=0, ge=0, le=MAX_SEED)  # numpy / scikit-learn seeds

    @field_validator("bits")
    @classmethod
    def _range(cls, v: int | dict[str, int]) -> int | dict[str, int]:
        for b in v.values() if isinstance(v, dict) else [v]:
            if not 1 <= b <= 16:
                raise ValueError(f"cluster bits must be in 1..16, got {b}")
        return v


def layer_bits(config: ClusterConfig, module: nn.Module) -> int:
    if isinstance(config.bits, int):
        return config.bits
    kind = "linear" if isinstance(module, nn.Linear) else "conv"
    return config.bits.get(kind, 8)


def _initial_centroids(values: np.ndarray, k: int, init: str, rng: np.random.Generator) -> np.ndarray:
    if init == "linear":
        return np.linspace(values.min(), values.max(), k)
    if init == "random":
        return np.sort(rng.choice(values, size=k, replace=len(values) < k))
    # density: quantiles of the distribution (Han's "density-based" init)
    return np.quantile(values, np.linspace(0, 1, k))


def kmeans_share(
    weight: torch.Tensor, bits: int, init: str = "linear", seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """(centroids of shape 2^bits, index per weight with -1 for zeros); zeros are not clustered."""
    from sklearn.cluster import KMeans
    from threadpoolctl import threadpool_limits

    w = weight.detach().double().numpy().ravel()
    nz = w != 0
    index = np.full(w.shape, -1, dtype=np.int64)
    values = w[nz]
    k = min(1 << bits, max(len(np.unique(values)), 1))
    if len(values) == 0:
        return torch.zeros(0), torch.from_numpy(index).view(weight.shape)
    start = _initial_centroids(values, k, init, np.random.default_rng(seed)).reshape(-1, 1)
    # One OpenMP thread: scikit-learn's Lloyd step adds each thread's partial centroid sums under a lock, in
    # whichever order the threads arrive, so with 3+ threads the float sums (and the centroids) vary run to run.
    with threadpool_limits(limits=1, user_api="openmp"):
        km = KMeans(n_clusters=k, init=start, n_init=1, random_state=seed).fit(values.reshape(-1, 1))
    index[nz] = km.labels_
    return torch.from_numpy(km.cluster_centers_.ravel()).to(weight.dtype), torch.from_numpy(index).view(weight.shape)


@torch.no_grad()
def snap(weight: torch.Tensor, centroids: torch.Tensor, index: torch.Tensor) -> None:
    shared = torch.where(index >= 0, centroids[index.clamp(min=0)], torch.zeros((), dtype=weight.dtype))
    weight.copy_(shared)


@register(ClusterConfig)
def cluster(model: nn.Module, config: ClusterConfig = ClusterConfig()) -> nn.Module:
    """Replace every chosen layer's non-zero weights by their cluster's centroid."""
    for _, module in prunable_layers(model, config):  # layers/exclude are fnmatch patterns, as for prune
        centroids, index = kmeans_share(module.weight, layer_bits(config, module), config.init, config.seed)
        snap(module.weight, centroids, index)
    return model


def shared_codebooks(model: nn.Module) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Each layer's (centroids, index) read back from its weights: distinct non-zero values are the codebook."""
    books = {}
    for name, module in prunable_layers(model):
        w = module.weight.detach()
        values, inverse = torch.unique(w, return_inverse=True)
        nonzero = values != 0
        remap = torch.cumsum(nonzero.long(), 0) - 1
        index = torch.where(w != 0, remap[inverse], torch.full_like(inverse, -1))
        books[name] = (values[nonzero], index)
    return books


class ClusterHook(TrainHook):
    """Centroid fine-tuning: gradients summed per cluster, zeros kept zero, weights re-snapped each step."""

    def __init__(self, model: nn.Module) -> None:
        self.books = shared_codebooks(model)

    def before_step(self, model: nn.Module) -> None:
        for name, (centroids, index) in self.books.items():
            grad = model.get_submodule(name).weight.grad
            if grad is None or len(centroids) == 0:
                continue
            valid = index >= 0
            sums = torch.zeros(len(centroids), dtype=grad.dtype).index_add_(0, index[valid], grad[valid])
            grad.copy_(torch.where(valid, sums[index.clamp(min=0)], torch.zeros((), dtype=grad.dtype)))

    def after_step(self, model: nn.Module) -> None:
        for name, (centroids, index) in self.books.items():
            weight = model.get_submodule(name).weight
            if len(centroids) == 0:
                continue
            valid = index >= 0
            counts = torch.bincount(index[valid], minlength=len(centroids)).clamp(min=1)
            new = torch.zeros_like(centroids).index_add_(0, index[valid], weight.detach()[valid]) / counts
            centroids.copy_(new)
            snap(weight, centroids, index)
