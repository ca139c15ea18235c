"""Binary and ternary weights against their papers' formulas; straight-through gradients; training works."""

import copy

import pytest
import torch
import torch.nn as nn

from nntailor import analyze
from nntailor.compress import apply
from nntailor.compress.quant import BinarizeConfig, binary_bits
from nntailor.compress.quant.binary import binarize_input, quantize_weight, straight_through
from nntailor.data import load_dataset
from nntailor.train import TrainConfig, evaluate, fit


def test_bwn_scales_by_mean_absolute_weight_per_filter():
    w = torch.tensor([[0.5, -1.5, 1.0], [0.2, 0.2, -0.2]])
    q = quantize_weight(w, "bwn")
    assert torch.allclose(q, torch.tensor([[1.0, -1.0, 1.0], [0.2, 0.2, -0.2]]))  # alpha 1.0 and 0.2


def test_twn_threshold_and_scale():
    w = torch.tensor([1.0, -0.9, 0.1, -0.05, 0.0, 2.0])
    # Delta = 0.7 mean|W| = 0.7 * 4.05 / 6 = 0.4725; kept {1, -0.9, 2}: alpha = 3.9 / 3 = 1.3
    q = quantize_weight(w, "twn")
    assert torch.allclose(q, torch.tensor([1.3, -1.3, 0.0, 0.0, 0.0, 1.3]))


def test_binaryconnect_signs_and_clipped_straight_through_gradient():
    w = torch.tensor([0.3, -0.2, 1.5, -2.0], requires_grad=True)
    q = quantize_weight(w, "binaryconnect")
    assert torch.equal(q.detach(), torch.tensor([1.0, -1.0, 1.0, -1.0]))
    q.sum().backward()
    assert torch.equal(w.grad, torch.tensor([1.0, 1.0, 0.0, 0.0]))  # no gradient where |w| > 1


def test_xnor_inputs_are_scaled_signs():
    x = torch.tensor([[0.5, -1.5], [2.0, 2.0]])
    assert torch.allclose(binarize_input(x, "xnor"), torch.tensor([[1.0, -1.0], [2.0, 2.0]]))
    assert torch.equal(straight_through(x, x.sign(), clip=False).detach(), x.sign())


def test_ttq_learns_its_scales():
    layer = nn.Linear(8, 4)
    model = apply(nn.Sequential(nn.Linear(4, 8), layer, nn.Linear(4, 2)), BinarizeConfig(method="ttq"))
    model(torch.randn(3, 4)).sum().backward()
    assert model[1].ttq_scales.grad is not None and model[1].ttq_scales.grad.abs().sum() > 0


@pytest.mark.parametrize("method", ["bwn", "twn", "xnor"])
def test_binarized_networks_train_and_are_priced_as_bit_operations(method):
    data = load_dataset("digits")
    torch.manual_seed(0)
    # XNOR-Net's block: BN, then the binarized layer sees centred inputs (after a ReLU, sign() would be all +1)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.BatchNorm1d(128), nn.Linear(128, 64),
                          nn.BatchNorm1d(64), nn.ReLU(), nn.Linear(64, 10))
    fit(model, data.train, TrainConfig(epochs=3, lr=3e-3, progress=False))
    binary = apply(copy.deepcopy(model), BinarizeConfig(method=method))
    assert type(binary[1]) is nn.Linear and type(binary[6]) is nn.Linear  # first and last stay float
    fit(binary, data.train, TrainConfig(epochs=3, lr=1e-3, progress=False))
    assert evaluate(binary, data.test) > 0.7
    bits = binary_bits(binary)
    w_bits, a_bits = bits["3"]
    assert w_bits == (2 if method == "twn" else 1) and a_bits == (1 if method == "xnor" else 8)
    report = analyze(binary, (1, 1, 8, 8), "stm32l476", layer_bits=bits)
    assert report.layer("3").bops == 128 * 64 * w_bits * a_bits
