"""compress prices each row at the widths its model has (issue 9, items 5 and 6; issue 10, item 10).

Expected values are worked out here from the Caffe LeNet-5's layer shapes (Han et al. 2015, Table 1: 431K
parameters) and the storage formats' definitions, never read back from ``analyze``.
"""

import json

import pytest
import torch
import torch.nn as nn
from torch.utils.data import TensorDataset

from nntailor.cli import main
from nntailor.compress import ClusterConfig, Context, PruneConfig, apply
from nntailor.compress.deep_compression import sparse_bytes, storage_table
from nntailor.compress.quant import QuantizeConfig, layer_formats, weight_widths
from nntailor.run_compress import price
from nntailor.zoo.lenet import lenet5

SHAPE = (1, 1, 28, 28)
# Caffe LeNet-5: conv 1->20 5x5 (24x24 out), pool, conv 20->50 5x5 (8x8 out), pool, fc 800->500, fc 500->10
WEIGHTS = {"features.0": 20 * 25, "features.2": 50 * 20 * 25, "classifier.0": 800 * 500, "classifier.2": 500 * 10}
OUT_CHANNELS = {"features.0": 20, "features.2": 50, "classifier.0": 500, "classifier.2": 10}
BIASES = sum(OUT_CHANNELS.values())
PARAMS = sum(WEIGHTS.values()) + BIASES  # 431,080
MACS = 20 * 24 * 24 * 25 + 50 * 8 * 8 * (20 * 25) + 800 * 500 + 500 * 10  # 2.29 M
# TFLM arena: the largest live pair is conv1's 20x24x24 output with the first pool's 20x12x12 output
PEAK_ELEMENTS = 20 * 24 * 24 + 20 * 12 * 12


def calibration() -> Context:
    torch.manual_seed(0)
    return Context(train=TensorDataset(torch.rand(64, *SHAPE[1:]), torch.zeros(64, dtype=torch.long)))


def int8_lenet5(sparsity: float = 0.0) -> nn.Module:
    torch.manual_seed(0)
    model = lenet5()
    if sparsity:
        model = apply(model, PruneConfig(sparsity=sparsity))
    return apply(model, QuantizeConfig(weight_bits=8, act_bits=8), calibration())


def test_float_model_is_priced_at_32_bits():
    assert sum(p.numel() for p in lenet5().parameters()) == PARAMS == 431_080
    row = price(lenet5(), SHAPE, "stm32l476")
    assert row["w_bits"] == row["a_bits"] == [32]
    assert row["macs"] == MACS == 2_293_000
    assert row["bops"] == MACS * 32 * 32
    assert row["flash_bytes"] == PARAMS * 4  # float32 weights and biases, no quantization scales
    assert row["peak_sram_bytes"] == PEAK_ELEMENTS * 4
    assert row["compressed_bytes"] == PARAMS * 4  # dense is the smallest layout of an unpruned model


def test_int8_model_is_priced_at_its_widths():
    row = price(int8_lenet5(), SHAPE, "stm32l476")
    assert row["w_bits"] == row["a_bits"] == [8]
    assert row["bops"] == MACS * 8 * 8
    # int8 as deployed: 1-byte weights, int32 biases, an int32 multiplier and an int32 shift per output channel
    assert row["flash_bytes"] == sum(WEIGHTS.values()) + 4 * BIASES + 8 * sum(OUT_CHANNELS.values())
    assert row["peak_sram_bytes"] == PEAK_ELEMENTS  # 11,520 + 2,880 bytes, both 16-byte aligned
    assert row["compressed_bytes"] == row["flash_bytes"]
    # --bits prices only what nothing quantized: here just the logits buffer (no quantized layer reads it), so
    # every figure but the energy of writing it stays
    at4 = price(int8_lenet5(), SHAPE, "stm32l476", bits=4)
    assert {k: v for k, v in at4.items() if k != "energy_pj"} == {k: v for k, v in row.items() if k != "energy_pj"}
    assert at4["energy_pj"] < row["energy_pj"]


def test_unquantized_layers_follow_bits_and_quantized_ones_keep_theirs():
    torch.manual_seed(0)
    model = apply(lenet5(), QuantizeConfig(keep_first_last=True), calibration())  # first and last stay float
    assert weight_widths(model) == {"features.0": 32, "features.2": 8, "classifier.0": 8, "classifier.2": 32}
    assert price(model, SHAPE, "stm32l476")["w_bits"] == [8, 32]
    assert price(model, SHAPE, "stm32l476", bits=16)["w_bits"] == [8, 16]


def test_compressed_bytes_count_values_at_their_quantized_width():
    # issue 9, item 6: LeNet-5 at 80% sparsity after an int8 quantize. At 20% density a bitmask (one bit per
    # weight + the kept values) beats CSR (a 32-bit column index per value) and dense in every layer.
    model = int8_lenet5(sparsity=0.8)
    kept = {n: int(torch.count_nonzero(m.weight)) for n, m in model.named_modules() if n in WEIGHTS}
    assert kept == {n: w - round(0.8 * w) for n, w in WEIGHTS.items()}
    bitmask_32 = sum(WEIGHTS[n] + 32 * kept[n] for n in WEIGHTS) + 32 * BIASES
    values_8 = sum(WEIGHTS[n] + 8 * kept[n] for n in WEIGHTS) + 32 * BIASES
    scales = 64 * sum(OUT_CHANNELS.values())  # int32 multiplier + int32 shift per output channel
    assert sparse_bytes(model) == -(-bitmask_32 // 8) == 400_533  # 391 KiB: the figure at 32 bits
    assert -(-values_8 // 8) == 142_233  # 139 KiB of values and int32 biases, as the issue says
    row = price(model, SHAPE, "stm32l476")
    assert row["compressed_bytes"] == -(-(values_8 + scales) // 8) == 146_873  # + 4,640 B of requantization constants
    assert row["nz_params"] == sum(kept.values()) + BIASES


def test_clustered_layers_are_priced_at_their_index_width():
    # 4-bit weight sharing after pruning: 16 centroids and the zero, 17 levels, a 5-bit index stored densely
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 100), nn.ReLU(), nn.Linear(100, 10))
    apply(model, PruneConfig(sparsity=0.5))
    apply(model, ClusterConfig(bits=4, layers=["1"]))
    assert layer_formats(model, 32, weight_bits=32)["layer_bits"] == {"1": (5, 32)}
    row = price(model, (1, 64), "stm32l476")
    assert row["w_bits"] == [5, 32]
    assert row["bops"] == 64 * 100 * 5 * 32 + 100 * 10 * 32 * 32


def test_storage_table_stores_values_at_the_layer_width():
    torch.manual_seed(0)
    model = apply(nn.Sequential(nn.Linear(64, 100), nn.ReLU(), nn.Linear(100, 10)), PruneConfig(sparsity=0.5))
    apply(model, ClusterConfig(bits=3, layers=["2"]))
    rows = {r["layer"]: r for r in storage_table(model, value_bits={"0": 8, "2": 8})["layers"]}
    assert rows["0"]["weight_bits"] == 8 and rows["0"]["codebook_bits"] == 64 * 100  # int8 values + multiplier, shift
    assert rows["2"]["weight_bits"] == 3
    centroids = 8
    assert rows["2"]["codebook_bits"] == 8 * centroids + 64 * 10  # 8-bit entries + multiplier, shift
    # the paper's float accounting is unchanged by default
    assert storage_table(model)["layers"][1]["codebook_bits"] == 32 * centroids


MODEL = """
import torch.nn as nn

def make():
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
"""


def test_bits_prices_an_unquantized_recipe_at_n_and_says_so(tmp_path, capsys):
    (tmp_path / "net.py").write_text(MODEL)
    (tmp_path / "prune.yaml").write_text("steps:\n  - {step: prune, sparsity: 0.5}\n")
    args = ["compress", f"{tmp_path}/net.py:make", "--recipe", f"{tmp_path}/prune.yaml", "--data", "digits",
            "--no-progress"]
    code = main([*args, "--out", f"{tmp_path}/b8", "--bits", "8"])
    out, err = capsys.readouterr()
    assert code == 0, err
    result = json.loads((tmp_path / "b8" / "compress.json").read_text())
    macs = 64 * 32 + 32 * 10
    assert result["bits"] == 8
    for row in (result["before"], result["after"]):
        assert row["w_bits"] == row["a_bits"] == [8]
        assert row["bops"] == macs * 8 * 8
        assert row["flash_bytes"] == macs + 4 * 42 + 8 * 42  # int8 weights, int32 biases, multiplier + shift
    assert "unquantized layers priced at 8 bits (--bits)" in out
    code = main([*args, "--out", f"{tmp_path}/float"])
    capsys.readouterr()
    floats = json.loads((tmp_path / "float" / "compress.json").read_text())
    assert floats["bits"] is None and floats["before"]["bops"] == floats["after"]["bops"] == macs * 32 * 32


@pytest.mark.parametrize("bits", ["64", "0"])
def test_bad_bits_is_refused_before_training(tmp_path, capsys, bits):
    (tmp_path / "net.py").write_text(MODEL)
    (tmp_path / "long.yaml").write_text("steps:\n  - {step: finetune, epochs: 500}\n")
    code = main(["compress", f"{tmp_path}/net.py:make", "--recipe", f"{tmp_path}/long.yaml", "--data", "digits",
                 "--out", f"{tmp_path}/out", "--bits", bits, "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and err.strip() == f"error: --bits must be 1 to 16 or 32, got {bits}"
