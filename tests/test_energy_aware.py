"""Energy-aware pruning (Yang, Chen, Sze 2017): the highest-energy layer is pruned first and energy falls
on a zero-skipping target while accuracy stays within the allowed drop."""

import pytest
import torch
import torch.nn as nn

from nntailor import UserError, analyze
from nntailor.compress import Context, EnergyPruneConfig, apply, sparsity
from nntailor.compress.energy_aware import layer_energy_order
from nntailor.data import load_dataset
from nntailor.train import TrainConfig, evaluate, fit


def cnn():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(),
                         nn.Flatten(), nn.Linear(16 * 64, 32), nn.ReLU(), nn.Linear(32, 10))


def test_layers_are_visited_by_energy():
    model = cnn()
    order = layer_energy_order(model, (1, 1, 8, 8), "eyeriss", 16)
    energy = {lc.module: lc.energy_pj for lc in analyze(model, (1, 1, 8, 8), "eyeriss", bits=16).layers}
    assert order == sorted(order, key=energy.get, reverse=True) and set(order) == {"0", "2", "5", "7"}


def test_energy_falls_within_the_accuracy_budget():
    data = load_dataset("digits")
    model = cnn()
    fit(model, data.train, TrainConfig(epochs=3, lr=3e-3, progress=False))
    dense_acc = evaluate(model, data.test)
    dense_energy = analyze(model, (1, 1, 8, 8), "eyeriss", bits=16).totals["energy_pj"]
    context = Context(train=data.train, test=data.test, input_shape=(1, 1, 8, 8), target="eyeriss")
    apply(model, EnergyPruneConfig(levels=[0.5, 0.9], accuracy_drop=0.02), context)
    assert evaluate(model, data.test) >= dense_acc - 0.02
    assert analyze(model, (1, 1, 8, 8), "eyeriss", bits=16).totals["energy_pj"] < 0.5 * dense_energy
    assert sparsity(model)["total"] > 0.5
    with pytest.raises(UserError, match="needs"):
        apply(cnn(), EnergyPruneConfig(), Context(train=data.train))
