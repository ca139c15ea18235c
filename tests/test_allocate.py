"""Sparsity allocation: seed 003's alpha x log|var_i| closed form, clipping, sensitivity, budgets."""

import copy
import math

import pytest
import torch
import torch.nn as nn

from nntailor import UserError, analyze, zoo
from nntailor.compress import BudgetConfig, Context, PruneConfig, apply, sparsity
from nntailor.compress.allocate import channel_budget, from_sensitivity, log_size, sensitivity_scan
from nntailor.data import load_dataset
from nntailor.train import TrainConfig, evaluate, fit


def test_log_size_is_seed_003s_closed_form():
    sizes = {"a": 1_000, "b": 20_000, "c": 300_000}
    pr = 0.5
    # seed 003: alpha = pr sum|var_i| / sum(|var_i| log|var_i|), s_i = alpha log|var_i|
    alpha = pr * sum(sizes.values()) / sum(n * math.log(n) for n in sizes.values())
    got = log_size(sizes, pr)
    assert got == pytest.approx({k: alpha * math.log(n) for k, n in sizes.items()})
    assert sum(got[k] * n for k, n in sizes.items()) == pytest.approx(pr * sum(sizes.values()))
    assert got["a"] < got["b"] < got["c"]  # bigger layers give more


def test_log_size_clips_and_still_meets_the_target():
    sizes = {"small": 500, "huge": 2_000_000}
    got = log_size(sizes, 0.97, max_sparsity=0.98)
    assert max(got.values()) <= 0.98
    assert sum(got[k] * n for k, n in sizes.items()) == pytest.approx(0.97 * sum(sizes.values()), rel=1e-6)


def test_log_size_allocation_through_prune():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 512), nn.Linear(512, 512))
    apply(model, PruneConfig(sparsity=0.8, allocation="log_size"))
    s = sparsity(model)
    assert s["total"] == pytest.approx(0.8, abs=0.01)
    assert s["0"] < s["1"] < s["2"]


@pytest.fixture(scope="module")
def trained():
    data = load_dataset("digits")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    fit(model, data.train, TrainConfig(epochs=4, lr=3e-3, progress=False))
    return model, data


def test_sensitivity_picks_the_largest_safe_level(trained):
    model, data = trained
    baseline = evaluate(model, data.test)
    curves = sensitivity_scan(model, data.test, levels=(0.2, 0.5, 0.8, 0.95))
    chosen = from_sensitivity(curves, baseline, tolerance=0.02)
    for name, curve in curves.items():
        ok = [s for s, acc in curve if acc >= baseline - 0.02]
        assert chosen[name] == (max(ok) if ok else 0.0)
    default = from_sensitivity(sensitivity_scan(model, data.test), baseline, tolerance=0.02)
    pruned = apply(copy.deepcopy(model), PruneConfig(allocation="sensitivity", tolerance=0.02),
                   Context(test=data.test))
    assert sparsity(pruned)["1"] == pytest.approx(default["1"], abs=1e-3)
    assert sparsity(pruned)["3"] == pytest.approx(default["3"], abs=1e-3)


def test_channel_budget_meets_peak_sram_or_says_by_how_much():
    model = zoo.get("ds_cnn")
    shape = (1, 1, 49, 10)
    dense_peak = analyze(model, shape, "stm32l476").totals["peak_sram_bytes"]
    ratio = channel_budget(model, shape, "stm32l476", "peak_sram_bytes", dense_peak * 0.6)
    assert 0 < ratio < 0.9
    pruned = apply(zoo.get("ds_cnn"), BudgetConfig(metric="peak_sram_bytes", budget=dense_peak * 0.6),
                   Context(input_shape=shape, target="stm32l476"))
    assert analyze(pruned, shape, "stm32l476").totals["peak_sram_bytes"] <= dense_peak * 0.6
    with pytest.raises(UserError, match=r"budget peak_sram_bytes <= 100 B cannot be met: .* over\)"):
        channel_budget(model, shape, "stm32l476", "peak_sram_bytes", 100)
