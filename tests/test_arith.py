"""How a layer multiplies, priced: LogNet's shifts, binary/ternary adds, XNOR-popcounts (Horowitz, 45 nm:
int8 add 0.03 pJ, int8 mult 0.2 pJ, int32 add 0.1 pJ, fp32 add 0.9 pJ, fp32 mult 3.7 pJ)."""

import copy

import pytest
import torch
import torch.nn as nn

from nntailor import UserError, analyze
from nntailor.compress import Context, QuantizeConfig, apply
from nntailor.compress.quant import BinarizeConfig, layer_formats

SHAPE = (1, 64)


def compute_pj(arith: str, bits: int = 8) -> float:
    model = nn.Sequential(nn.Linear(64, 32, bias=False))
    report = analyze(model, SHAPE, "stm32l476", bits=bits, layer_arith={"0": arith})
    assert report.layers[0].arith == arith
    return report.layers[0].energy_breakdown_pj["compute"]


def test_mac_energies_follow_horowitz():
    macs = 64 * 32
    assert compute_pj("mul") == pytest.approx(macs * (0.2 + 0.1))  # int8 mult + int32 accumulate
    assert compute_pj("shift") == pytest.approx(macs * (0.03 + 0.1))  # int8-wide shift + int32 accumulate
    assert compute_pj("add") == pytest.approx(macs * 0.1)  # sign-selected accumulate
    assert compute_pj("xnor") == pytest.approx(macs * (0.03 + 0.1) / 8)  # 8 binary MACs per 8-bit step
    # BinaryConnect keeps float activations: an fp32 add instead of an fp32 multiply-add
    assert compute_pj("add", bits=32) == pytest.approx(macs * 0.9)
    assert compute_pj("mul", bits=32) == pytest.approx(macs * (3.7 + 0.9))


def test_attention_scores_stay_multiplies():
    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.mha = nn.MultiheadAttention(16, 2, batch_first=True)

        def forward(self, x):
            return self.mha(x, x, x, need_weights=False)[0]

    mul = analyze(Block(), (1, 8, 16), "stm32l476", layer_arith={"mha": "mul"}).layer("mha")
    shift = analyze(Block(), (1, 8, 16), "stm32l476", layer_arith={"mha": "shift"}).layer("mha")
    projections, scores = 4 * 8 * 16 * 16, 2 * 8 * 8 * 16
    assert mul.macs == projections + scores
    expected = projections * 0.13 + scores * 0.3
    assert shift.energy_breakdown_pj["compute"] - mul.energy_breakdown_pj["compute"] == pytest.approx(
        expected - (projections + scores) * 0.3)


def test_unknown_arithmetic_is_a_user_error():
    with pytest.raises(UserError, match="unknown arithmetic 'divide'"):
        analyze(nn.Sequential(nn.Linear(4, 2)), (1, 4), "stm32l476", layer_arith={"0": "divide"})


def test_layer_formats_read_the_compressed_model():
    from nntailor.data import load_dataset

    data = load_dataset("digits")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.BatchNorm1d(32), nn.Linear(32, 32),
                          nn.BatchNorm1d(32), nn.Linear(32, 10))
    log = apply(copy.deepcopy(model), QuantizeConfig(scheme="log2", weight_bits=4), Context(train=data.train))
    assert layer_formats(log) == {"layer_bits": {"1": (4, 8), "3": (4, 8), "5": (4, 8)},
                                  "layer_arith": dict.fromkeys(("1", "3", "5"), "shift")}
    bnn = apply(copy.deepcopy(model), BinarizeConfig(method="bnn"))
    assert layer_formats(bnn) == {"layer_bits": {"3": (1, 1)}, "layer_arith": {"3": "xnor"}}  # first, last float
    bwn = apply(copy.deepcopy(model), BinarizeConfig(method="twn", keep_first_last=False))
    assert layer_formats(bwn) == {"layer_bits": dict.fromkeys(("1", "3", "5"), (2, 8)),
                                  "layer_arith": dict.fromkeys(("1", "3", "5"), "add")}
    widths = layer_formats(log)["layer_bits"]
    shifted = analyze(log, (1, 1, 8, 8), "stm32l476", **layer_formats(log)).totals
    multiplied = analyze(log, (1, 1, 8, 8), "stm32l476", layer_bits=widths).totals
    assert shifted["energy_breakdown_pj"]["compute"] < 0.5 * multiplied["energy_breakdown_pj"]["compute"]
    assert shifted["bops"] == multiplied["bops"] == (64 * 32 + 32 * 32 + 32 * 10) * 4 * 8


def test_uniform_w4a4_is_priced_at_the_input_widths():
    # BOPs multiply each layer's weight width by the width of the input it reads; the graph output is stored at
    # the default width, every other buffer at the width its reader quantizes it to
    from nntailor.data import load_dataset

    data = load_dataset("digits")
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    w4a4 = apply(model, QuantizeConfig(weight_bits=4, act_bits=4), Context(train=data.train))
    formats = layer_formats(w4a4, 8, (1, 1, 8, 8))
    assert formats["buffer_bits"] == {"input": 4, "1": 4}
    report = analyze(w4a4, (1, 1, 8, 8), "stm32l476", **formats)
    assert report.totals["bops"] == (64 * 32 + 32 * 10) * 4 * 4
    assert report.totals["peak_sram_bytes"] == 48  # 64 + 32 elements at 4 bits, 16-byte aligned: 32 + 16
    assert report.layer("3").act_bytes == (32 * 4 + 10 * 8) // 8


def test_a_pool_reads_and_writes_at_the_width_of_its_buffers():
    from nntailor.data import load_dataset

    data = load_dataset("digits")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 8, 3, padding=1),
                          nn.ReLU(), nn.Flatten(), nn.Linear(8 * 4 * 4, 10))
    w4a4 = apply(model, QuantizeConfig(weight_bits=4, act_bits=4), Context(train=data.train))
    report = analyze(w4a4, (1, 1, 8, 8), "stm32l476", **layer_formats(w4a4, 8, (1, 1, 8, 8)))
    pool = report.layer("2")
    assert pool.a_bits == 4  # its input buffer is stored at the 4 bits conv "3" reads it at
    assert pool.act_bytes == (8 * 8 * 8 + 8 * 4 * 4) * 4 // 8
