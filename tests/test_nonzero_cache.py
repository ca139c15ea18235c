"""Cached non-zero counts stay exact when weights change: every expected value is ``torch.count_nonzero``."""

import gc
import weakref

import torch
import torch.nn as nn

from nntailor import analyze
from nntailor.compress import PruneConfig, prune
from nntailor.cost import metrics


def net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 10))


def truth(model: nn.Module) -> int:
    return sum(int(torch.count_nonzero(p)) for p in model.parameters())


def nz_params(model: nn.Module) -> int:
    return analyze(model, (1, 3, 8, 8), "stm32l476").totals["nz_params"]


def test_counts_follow_in_place_pruning():
    model = net()
    assert nz_params(model) == truth(model)  # counted, and cached
    prune(model, PruneConfig(sparsity=0.5))  # weight.mul_(mask): an in-place write
    assert truth(model) < sum(p.numel() for p in model.parameters())
    assert nz_params(model) == truth(model)
    prune(model, PruneConfig(sparsity=0.8))
    assert nz_params(model) == truth(model)


def test_counts_follow_no_grad_edits():
    model = net()
    nz_params(model)
    with torch.no_grad():
        model[0].weight[:4] = 0  # index assignment
        model[3].weight.masked_fill_(model[3].weight.abs() < 0.05, 0.0)
        model[3].bias.zero_()
    assert nz_params(model) == truth(model)
    with torch.no_grad():
        model[3].bias.detach().fill_(1.0)  # detach() shares the version counter
    assert nz_params(model) == truth(model)


def test_counts_follow_data_replacement():
    model = net()
    nz_params(model)
    model[0].weight.data = torch.zeros_like(model[0].weight)  # a new storage
    assert nz_params(model) == truth(model)
    w = model[3].weight
    w.data = torch.where(torch.rand_like(w) < 0.3, torch.zeros_like(w), w.detach())
    assert nz_params(model) == truth(model)
    model[3].bias = nn.Parameter(torch.zeros(10))  # a new parameter object
    assert nz_params(model) == truth(model)


def test_same_storage_new_view_is_recounted():
    t = torch.tensor([0.0, 1.0, 2.0, 0.0, 3.0, 4.0])
    assert metrics.count_nonzero(t) == 4
    t.set_(t.untyped_storage(), 0, (3,))  # same data pointer, other shape
    assert metrics.count_nonzero(t) == int(torch.count_nonzero(t)) == 2


def test_clear_count_cache_sees_writes_through_data():
    model = net()
    nz_params(model)
    model[0].weight.data[:2] = 0  # .data has its own version counter: the cache cannot see this write
    metrics.clear_count_cache()
    assert nz_params(model) == truth(model)


def test_inference_tensors_are_counted_uncached():
    with torch.inference_mode():
        t = torch.tensor([0.0, 1.0, 0.0, 5.0])
    assert metrics.count_nonzero(t) == 2


def test_cache_does_not_keep_models_alive():
    model = net()
    nz_params(model)
    ref = weakref.ref(model)
    weight_ref = weakref.ref(model[0].weight)
    del model
    gc.collect()
    assert ref() is None and weight_ref() is None


def test_the_fast_count_agrees_with_torch_on_every_kind_of_tensor(monkeypatch):
    from nntailor.cost import metrics

    monkeypatch.setattr(metrics, "_CHUNK", 7)  # chunk boundaries inside these small tensors
    torch.manual_seed(0)
    special = torch.tensor([0.0, -0.0, float("nan"), float("inf"), -float("inf"), 1e-45, -1e-45, 3.0])
    w = torch.randn(13, 9)
    w[w.abs() < 0.6] = 0
    cases = [special, w, w.t(), w.double(), w[:, ::2], w.half(), (w * 100).to(torch.int8), w != 0,
             torch.zeros(0), torch.zeros(5, 0)]
    for t in cases:
        assert metrics._count(t) == int(torch.count_nonzero(t)), t.dtype
