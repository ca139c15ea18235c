"""The cost model against published figures: zoo counts, Keutzer's AI table, Horowitz energies, OPAL's proxy."""

import math

import pytest
import torch
import torch.nn as nn

from nntailor import UserError, analyze, zoo
from nntailor.targets import from_dict, load

# REFERENCES.md, "Zoo: exact counts" (batch 1, published convention).
PUBLISHED = {
    "lenet300": (266_610, 266_200),
    "lenet5": (431_080, 2_293_000),
    "ds_cnn": (23_756, 2_656_768),
    "resnet8": (78_186, 12_501_632),
    "vww_mobilenet": (216_322, 7_489_664),
    "ad_autoencoder": (267_928, 264_192),
    "resnet18": (11_689_512, 1_814_073_344),
    "mobilenet_v2": (3_504_872, 300_774_272),
    "squeezenet1_1": (1_235_496, 349_151_936),
    "shufflenet_v2": (2_278_604, 144_907_992),
}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_analyze_reports_published_counts(name):
    report = analyze(zoo.get(name), zoo.input_shape(name), "stm32h743")
    params, macs = PUBLISHED[name]
    assert report.totals["params"] == params
    assert report.totals["macs"] == macs


def test_folded_parameter_counts_match_mlperf_tiny():
    # REFERENCES.md: DS-CNN 22,604 params once BN is folded, IC ResNet-8 77,706, VWW 210,850, AD 265,864.
    folded_counts = {"ds_cnn": 22_604, "resnet8": 77_706, "vww_mobilenet": 210_850, "ad_autoencoder": 265_864}
    for name, folded in folded_counts.items():
        report = analyze(zoo.get(name), zoo.input_shape(name), "stm32l4r5")
        assert sum(lc.params for lc in report.layers if lc.fused_into is None) == folded, name


def _keutzer_layer(kind: str) -> nn.Module:
    m = n = 512
    if kind == "spatial":
        return nn.Conv2d(m, n, 3, padding=1, bias=False)
    if kind == "pointwise":
        return nn.Conv2d(m, n, 1, bias=False)
    if kind == "group":
        return nn.Conv2d(m, n, 3, padding=1, groups=4, bias=False)
    return nn.Conv2d(m, m, 3, padding=1, groups=512, bias=False)


def test_keutzer_arithmetic_intensity_table():
    # Seed 004: M = N = 512, D_F = 14, G = 4: MMACs, memory ops (M), AI, normalized AI.
    table = {
        "spatial": (462, 2.560, 180, 1.0),
        "pointwise": (51, 0.463, 110, 0.6),
        "group": (116, 0.790, 146, 0.8),
        "depthwise": (0.9, 0.205, 4.3, 0.02),
    }
    ai = {}
    for kind, (mmacs, mem, intensity, _) in table.items():
        layer = analyze(_keutzer_layer(kind), (1, 512, 14, 14), "eyeriss", bits=16).layers[0]
        assert layer.macs / 1e6 == pytest.approx(mmacs, abs=0.5 if mmacs > 1 else 0.05)
        assert layer.macs / layer.arith_intensity / 1e6 == pytest.approx(mem, abs=0.001)  # table truncates
        assert layer.arith_intensity == pytest.approx(intensity, rel=0.03)
        ai[kind] = layer.arith_intensity
    for kind, (*_, normalized) in table.items():
        assert round(ai[kind] / ai["spatial"], 1 if normalized >= 0.1 else 2) == normalized


class _FourLayers(nn.Module):
    """The four layers of the table side by side, so the report normalizes them itself."""

    def __init__(self) -> None:
        super().__init__()
        self.spatial, self.pointwise = _keutzer_layer("spatial"), _keutzer_layer("pointwise")
        self.group, self.depthwise = _keutzer_layer("group"), _keutzer_layer("depthwise")

    def forward(self, x):
        return self.spatial(x) + self.pointwise(x) + self.group(x) + self.depthwise(x)


def test_report_normalizes_ai_like_keutzer():
    report = analyze(_FourLayers(), (1, 512, 14, 14), "eyeriss", bits=16)
    got = {k: report.layer(k).normalized_arith_intensity for k in ("spatial", "pointwise", "group", "depthwise")}
    assert got["spatial"] == 1.0
    assert round(got["pointwise"], 1) == 0.6 and round(got["group"], 1) == 0.8 and round(got["depthwise"], 2) == 0.02


def test_horowitz_compute_energy_fp32_and_int8():
    fc = nn.Linear(100, 10, bias=False)
    target = load("stm32l476")
    fp32 = analyze(fc, (1, 100), target, bits=32).layers[0]
    int8 = analyze(fc, (1, 100), target, bits=8).layers[0]
    # Horowitz ISSCC 2014: fp32 mult 3.7 + add 0.9 pJ; int8 mult 0.2 + int32 accumulate 0.1 pJ.
    assert fp32.energy_breakdown_pj["compute"] == pytest.approx(1000 * (3.7 + 0.9))
    assert int8.energy_breakdown_pj["compute"] == pytest.approx(1000 * (0.2 + 0.1))


def test_opal_energy_proxy_is_macs_plus_100x_memory():
    fc = nn.Linear(64, 32, bias=False)
    layer = analyze(fc, (1, 64), "stm32l476", energy_model="opal").layers[0]
    accesses = 64 * 32 + 64 + 32  # weights + input + output
    assert layer.energy_pj == pytest.approx((64 * 32 + 100 * accesses) * 0.3)


def test_eyeriss_access_energies_are_1_2_6_200():
    t = load("eyeriss")
    per_access = {m.name: m.read_pj_per_byte * 2 for m in t.memories}  # 16-bit accesses
    mac = t.energy.mac("int16")
    assert [per_access[k] / mac for k in ("rf", "noc", "glb", "dram")] == [1, 2, 6, 200]
    assert t.compute.pes == 12 * 14


def test_fits_verdict_names_what_and_by_how_much():
    ok = analyze(zoo.get("ds_cnn"), (1, 1, 49, 10), "stm32l476")
    assert ok.fits and ok.violations == []
    big = analyze(zoo.get("mobilenet_v2"), (1, 3, 224, 224), "stm32l476")
    assert not big.fits
    sram, flash = big.violations
    assert sram.startswith("peak SRAM") and "exceeds sram 128.0 KiB by" in sram
    assert flash.startswith("weights") and "exceeds flash 1.0 MiB by" in flash
    over = big.totals["flash_bytes"] + 32768 - (1 << 20)
    assert f"by {over / 1024 / 1024:.1f} MiB" in flash


def test_shared_memory_accelerator_fits_weights_and_activations_together():
    report = analyze(zoo.get("resnet18"), (1, 3, 224, 224), "eyeriss")
    assert report.fits  # 1 GB of DRAM
    tiny_dram = load("eyeriss").model_dump()
    tiny_dram["memories"][-1]["size_bytes"] = 1 << 20
    report = analyze(zoo.get("resnet18"), (1, 3, 224, 224), from_dict(tiny_dram))
    assert not report.fits and "exceeds dram" in report.violations[0]


def test_zero_weights_lower_nz_counts():
    fc = nn.Linear(10, 10, bias=False)
    with torch.no_grad():
        fc.weight[:, :5] = 0
    totals = analyze(fc, (1, 10), "stm32l476").totals
    assert totals["params"] == 100 and totals["nz_params"] == 50
    assert totals["macs"] == 100 and totals["nz_macs"] == 50


def test_bops_and_bytes_follow_bit_widths():
    fc = nn.Linear(256, 128)
    for w, a in ((8, 8), (4, 8), (2, 2), (32, 32)):
        totals = analyze(fc, (1, 256), "stm32l476", bits=w, act_bits=a).totals
        assert totals["bops"] == 256 * 128 * w * a
        assert totals["weight_bytes"] == math.ceil((256 * 128 + 128) * w / 8)
    # int8 deployment: int8 weights, int32 biases, an int32 multiplier and an int32 shift per output channel
    assert analyze(fc, (1, 256), "stm32l476", bits=8).totals["flash_bytes"] == 256 * 128 + 128 * 4 + 128 * 8


def test_latency_is_a_roofline():
    spec = load("stm32l476").model_dump()
    fc = nn.Linear(512, 512, bias=False)
    compute_bound = analyze(fc, (1, 512), from_dict(spec)).layers[0]
    assert compute_bound.bound == "compute"
    c = spec["compute"]
    per_mac = c["cycles_per_mac"]["linear"]["int8"]
    expected = 512 * 512 * per_mac + 512 * c["cycles_per_output"] + c["layer_overhead_cycles"]
    assert compute_bound.cycles == pytest.approx(expected)
    spec["memories"][1]["bandwidth_bytes_per_cycle"] = 0.01  # starve the flash
    memory_bound = analyze(fc, (1, 512), from_dict(spec)).layers[0]
    assert memory_bound.bound == "memory:flash"
    assert memory_bound.latency_s > compute_bound.latency_s


@pytest.mark.parametrize(
    "name, published_s",
    [("ds_cnn", 181.9e-3), ("vww_mobilenet", 600.6e-3), ("resnet8", 704.2e-3), ("ad_autoencoder", 10.05e-3)],
)
def test_mcu_latency_near_mlperf_tiny_on_device(name, published_s):
    # MLPerf Tiny v0.5, STM32L4R5 at 120 MHz with TFLM. The target's constants are a 3-parameter fit to these
    # four figures (benchmarks/latency_calibration.py), so this pins the fit, it does not validate it.
    latency = analyze(zoo.get(name), zoo.input_shape(name), "stm32l4r5").totals["latency_s"]
    assert latency == pytest.approx(published_s, rel=0.12)


def test_bits_outside_the_supported_set_are_rejected():
    with pytest.raises(UserError, match="bits must be 1 to 16 or 32, got 24"):
        analyze(nn.Linear(4, 4), (1, 4), "stm32l476", bits=24)


JSON_TOTALS = {"macs", "params", "nz_params", "nz_macs", "bops", "weight_bytes", "peak_sram_bytes", "flash_bytes",
               "energy_pj", "latency_s"}
JSON_LAYER = {"name", "op", "input_shape", "output_shape", "macs", "params", "weight_bytes", "act_bytes", "energy_pj",
              "latency_s", "arith_intensity"}


def test_json_contract_keys():
    model = zoo.get("lenet5")
    d = analyze(model, (1, 1, 28, 28), "stm32l476").to_dict()
    assert {"model", "target", "totals", "fits", "violations", "layers", "unpriced"} <= set(d)
    assert set(d["totals"]) >= JSON_TOTALS
    assert all(set(layer) >= JSON_LAYER for layer in d["layers"])
    assert d["model"] == type(model).__name__ and d["target"] == "stm32l476"
    assert isinstance(d["fits"], bool) and isinstance(d["violations"], list)


def test_zero_skipping_targets_price_sparsity():
    torch.manual_seed(0)
    dense = nn.Sequential(nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))
    sparse = nn.Sequential(nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))
    sparse.load_state_dict(dense.state_dict())
    with torch.no_grad():
        sparse[0].weight[torch.rand(256, 256) < 0.9] = 0
    eyeriss_dense = analyze(dense, (1, 256), "eyeriss", bits=16).totals
    eyeriss_sparse = analyze(sparse, (1, 256), "eyeriss", bits=16).totals
    mcu_dense = analyze(dense, (1, 256), "stm32l476").totals
    mcu_sparse = analyze(sparse, (1, 256), "stm32l476").totals
    assert eyeriss_sparse["energy_pj"] < 0.4 * eyeriss_dense["energy_pj"]  # MACs and weight traffic skip zeros
    assert mcu_sparse["energy_pj"] == pytest.approx(mcu_dense["energy_pj"])  # TFLM runs dense
    # a dense layer on a zero-skipping chip pays no index overhead: weights move at 16 bits each
    fc = analyze(nn.Linear(256, 10, bias=False), (1, 256), "eyeriss", bits=16).layers[0]
    assert fc.energy_breakdown_pj["dram"] == pytest.approx(100.0 * (2 * 2560 + 2 * 256 + 2 * 10))
