"""CSR execution of pruned linear layers: same outputs, same cost-model view, swapped only when faster."""

import torch
import torch.nn as nn

from nntailor import analyze
from nntailor.compress import PruneConfig, SparseLinear, SparseLinearConfig, apply


def pruned_mlp():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(256, 512), nn.ReLU(), nn.Linear(512, 10))
    return apply(model, PruneConfig(sparsity=0.9)).eval()


def test_sparse_linear_matches_dense_and_prices_the_same():
    model = pruned_mlp()
    x = torch.randn(3, 256)
    expected = model(x)
    before = analyze(model, (1, 256), "stm32l476").totals
    apply(model, SparseLinearConfig(autotune=False))
    assert isinstance(model[0], SparseLinear) and isinstance(model[2], SparseLinear)
    assert torch.allclose(model.eval()(x), expected, atol=1e-5)
    after = analyze(model, (1, 256), "stm32l476").totals
    assert after["macs"] == before["macs"] and after["nz_params"] == before["nz_params"]


def test_training_mode_uses_the_dense_weight():
    model = pruned_mlp()
    apply(model, SparseLinearConfig(autotune=False))
    model.train()
    loss = model(torch.randn(4, 256)).sum()
    loss.backward()
    assert model[0].weight.grad is not None


def test_dense_layers_are_left_alone():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 64))
    apply(model, SparseLinearConfig(autotune=False, min_sparsity=0.5))
    assert type(model[0]) is nn.Linear
