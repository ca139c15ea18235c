"""HAWQ-V2's Omega and the integer program over widths, checked against exhaustive search."""

import itertools

import pytest
import torch

from nntailor import UserError
from nntailor.compress.quant.mixed import bops_cost, ilp_bits, omega, quantization_error, size_cost


def brute_force(sens, cost, budget):
    layers = list(sens)
    best, best_value = None, float("inf")
    for combo in itertools.product(*(sens[name] for name in layers)):
        if sum(cost[n][b] for n, b in zip(layers, combo, strict=True)) <= budget:
            value = sum(sens[n][b] for n, b in zip(layers, combo, strict=True))
            if value < best_value:
                best, best_value = dict(zip(layers, combo, strict=True)), value
    return best


def test_quantization_error_falls_with_bits():
    torch.manual_seed(0)
    w = torch.randn(16, 32)
    errors = [quantization_error(w, b) for b in (2, 4, 8)]
    assert errors[0] > errors[1] > errors[2] > 0
    # 8-bit symmetric per-channel: uniform rounding error, about step^2 / 12 per weight
    step = w.abs().max(1).values / 127
    assert errors[2] == pytest.approx(float((step**2 / 12).sum() * 32), rel=0.25)


@pytest.mark.parametrize("seed", range(5))
def test_ilp_equals_exhaustive_search(seed):
    torch.manual_seed(seed)
    weights = {f"l{i}": torch.randn(int(torch.randint(8, 64, ())), 16) for i in range(5)}
    traces = {name: float(torch.rand(()) * 10 + 0.1) for name in weights}
    bits = (2, 4, 8)
    sens = omega(traces, weights, bits)
    cost = size_cost(weights, bits)
    budget = sum(c[4] for c in cost.values())  # the size of uniform 4-bit
    chosen = ilp_bits(sens, cost, budget)
    expected = brute_force(sens, cost, budget)
    assert sum(sens[n][b] for n, b in chosen.items()) == pytest.approx(sum(sens[n][b] for n, b in expected.items()))
    assert sum(cost[n][b] for n, b in chosen.items()) <= budget


def test_impossible_budget_names_the_minimum():
    cost = bops_cost({"a": 1000, "b": 500}, (4, 8))
    sens = {"a": {4: 1.0, 8: 0.1}, "b": {4: 1.0, 8: 0.1}}
    with pytest.raises(UserError, match="below the smallest possible model \\(48,000"):
        ilp_bits(sens, cost, 10_000, what="BOPs")


def test_mixed_precision_step_meets_the_budget_at_least_as_well_as_uniform():
    import copy

    import torch.nn as nn

    from nntailor.compress import Context, apply
    from nntailor.compress.quant import MixedPrecisionConfig, quant_bits
    from nntailor.data import load_dataset
    from nntailor.train import TrainConfig, fit

    data = load_dataset("digits")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    fit(model, data.train, TrainConfig(epochs=3, lr=3e-3, progress=False))
    params = {n: m.weight.numel() for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    budget = sum(params.values()) * 4 / 8  # the weight bytes of uniform 4-bit
    mixed = apply(copy.deepcopy(model), MixedPrecisionConfig(budget=budget), Context(train=data.train))
    bits = {n: w for n, (w, _) in quant_bits(mixed).items()}
    assert set(bits) == set(params)
    assert sum(params[n] * bits[n] / 8 for n in params) <= budget
    with pytest.raises(UserError, match="smallest possible model"):
        apply(copy.deepcopy(model), MixedPrecisionConfig(budget=10.0), Context(train=data.train))
    # a BOPs budget priced by the cost model
    shape = (1, 1, 8, 8)
    bops = apply(copy.deepcopy(model), MixedPrecisionConfig(budget_metric="bops", budget=sum(params.values()) * 4 * 8),
                 Context(train=data.train, input_shape=shape, target="stm32l476"))
    assert sum(params[n] * w * 8 for n, (w, _) in quant_bits(bops).items()) <= sum(params.values()) * 4 * 8


def test_arm_baseline_gives_big_layers_low_widths_within_tolerance():
    import copy

    import torch.nn as nn

    from nntailor.compress import Context
    from nntailor.compress.quant.hawq import arm_sensitivity_bits, quantize_layers
    from nntailor.data import load_dataset
    from nntailor.train import TrainConfig, evaluate, fit

    data = load_dataset("digits")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    fit(model, data.train, TrainConfig(epochs=3, lr=3e-3, progress=False))
    context = Context(train=data.train, test=data.test)
    widths = arm_sensitivity_bits(model, context, [2, 4, 8], tolerance=0.01)
    assert set(widths) == {"1", "3"} and all(b in (2, 4, 8) for b in widths.values())
    quantized = quantize_layers(copy.deepcopy(model), widths, 8, context)
    assert evaluate(quantized, data.test) >= evaluate(model, data.test) - 0.01 - 1e-9


def test_eigenvalue_sensitivity_and_group_wise_widths():
    import copy

    import torch.nn as nn

    from nntailor.compress import Context, apply
    from nntailor.compress.quant import MixedPrecisionConfig, quant_bits
    from nntailor.data import load_dataset
    from nntailor.train import TrainConfig, fit

    data = load_dataset("digits")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    fit(model, data.train, TrainConfig(epochs=2, lr=3e-3, progress=False))
    budget = (64 * 32 + 32 * 10) * 4 / 8
    q = apply(copy.deepcopy(model), MixedPrecisionConfig(budget=budget, sensitivity="eigenvalue", group_size=2),
              Context(train=data.train))
    assert sum(m.weight.numel() * quant_bits(q)[n][0] / 8 for n, m in q.named_modules() if n in ("1", "3")) <= budget
    assert q[1].weight_spec.group_size == 2


def test_pareto_frontier_points_are_optimal_and_undominated():
    from nntailor.compress.quant.mixed import pareto_frontier

    torch.manual_seed(3)
    weights = {f"l{i}": torch.randn(int(torch.randint(8, 64, ())), 16) for i in range(4)}
    traces = {name: float(torch.rand(()) * 10 + 0.1) for name in weights}
    bits = (2, 4, 8)
    sens, cost = omega(traces, weights, bits), size_cost(weights, bits)
    frontier = pareto_frontier(sens, cost, points=12)
    assert len(frontier) >= 3
    assert [p["cost"] for p in frontier] == sorted(p["cost"] for p in frontier)
    assert all(a["omega"] > b["omega"] for a, b in itertools.pairwise(frontier))
    everything = [(sum(cost[n][b] for n, b in zip(sens, combo, strict=True)),
                   sum(sens[n][b] for n, b in zip(sens, combo, strict=True)))
                  for combo in itertools.product(bits, repeat=len(sens))]
    for p in frontier:  # no configuration is both cheaper (or equal) and less sensitive
        assert not any(c <= p["cost"] and o < p["omega"] - 1e-12 for c, o in everything)
    assert frontier[0]["cost"] == min(c for c, _ in everything)  # it spans the smallest model ...
    assert frontier[-1]["omega"] == pytest.approx(min(o for _, o in everything))  # ... to the least sensitive
