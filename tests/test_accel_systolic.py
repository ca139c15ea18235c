"""Systolic arrays: cycles, utilization and SRAM accesses equal to SCALE-Sim 3.0's, recorded from a real run.

``tests/data/scalesim_cycles.json`` was written by ``benchmarks/scalesim_check.py --fixture`` from SCALE-Sim's
COMPUTE_REPORT.csv (its venv cannot be imported here: its numpy pin clashes with ours).
"""

import json
import math
from pathlib import Path

import pytest
import torch.nn as nn

from nntailor.cost import analyze
from nntailor.cost.accel.lowering import layer_gemms, require_gemms
from nntailor.cost.accel.systolic import Gemm, conv_gemm, systolic
from nntailor.cost.metrics import macs
from nntailor.errors import UserError
from nntailor.graph import capture
from nntailor.targets import load

FIXTURE = json.loads((Path(__file__).parent / "data/scalesim_cycles.json").read_text())
CASES = FIXTURE["cases"]


def _ours(case):
    _, ih, iw, fh, fw, ch, nf, stride = case["layer"]
    oh, ow = math.ceil((ih - fh + stride) / stride), math.ceil((iw - fw + stride) / stride)
    return systolic(conv_gemm(oh, ow, fh, fw, ch, nf), *case["array"], case["dataflow"])


def test_fixture_is_scalesim_3_and_covers_every_dataflow_and_a_non_square_array():
    assert FIXTURE["meta"]["tool"] == "scalesim 3.0.0"
    assert {c["dataflow"] for c in CASES} == {"ws", "os", "is"}
    assert [16, 8] in [c["array"] for c in CASES] and len(CASES) >= 24
    assert all(c["stall_cycles"] == 0 for c in CASES)  # CALC bandwidth: the cycles are compute cycles


def _id(case):
    return f"{case['layer'][0]}-{case['array'][0]}x{case['array'][1]}-{case['dataflow']}"


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_cycles_utilization_and_sram_accesses_equal_scalesim(case):
    ours = _ours(case)
    assert ours.cycles == case["cycles"]
    assert ours.utilization == pytest.approx(case["overall_util"], rel=1e-12)
    assert ours.mapping_efficiency == pytest.approx(case["mapping_efficiency"], rel=1e-12)
    assert ours.compute_utilization == pytest.approx(case["compute_util"], rel=1e-12)
    sram = (ours.ifmap_sram_reads, ours.filter_sram_reads, ours.ofmap_sram_writes)
    assert sram == (case["ifmap_sram_reads"], case["filter_sram_reads"], case["ofmap_sram_writes"])


def _case(name, array, dataflow):
    return next(c for c in CASES if c["layer"][0] == name and c["array"] == array and c["dataflow"] == dataflow)


@pytest.mark.parametrize("dataflow", ["ws", "os", "is"])
def test_analyze_on_the_overridden_target_prices_a_conv_as_scalesim(dataflow):
    # SCALE-Sim's c3x3 is a 10x10 pre-padded input: our 8x8 input with padding 1
    case = _case("c3x3", [16, 8], dataflow)
    target = load("systolic32", overrides=["array.rows=16", "array.cols=8", f"dataflow={dataflow}"])
    report = analyze(nn.Conv2d(4, 12, 3, padding=1, bias=False), (1, 4, 8, 8), target)
    layer = report.layers[0]
    assert layer.bound == "compute"
    assert layer.cycles == case["cycles"]
    assert layer.utilization == pytest.approx(case["overall_util"], rel=1e-12)
    assert report.totals["utilization"] == pytest.approx(case["overall_util"], rel=1e-12)
    assert set(layer.energy_pj_by_level) == {"ifmap_sram", "filter_sram", "ofmap_sram", "dram"}
    assert layer.latency_s == pytest.approx(case["cycles"] / 1e9)


def test_a_gemm_layer_is_priced_as_scalesim_prices_it():
    case = _case("gemm_17_33_5", [8, 32], "os")
    target = load("systolic32", overrides=["array.rows=8", "dataflow=os"])
    layer = analyze(nn.Linear(33, 5, bias=False), (17, 33), target).layers[0]
    assert layer.cycles == case["cycles"] and layer.utilization == pytest.approx(case["overall_util"], rel=1e-12)


def test_dram_bandwidth_limit_stalls_the_array():
    conv = nn.Conv2d(4, 12, 3, padding=1, bias=False)
    fast = analyze(conv, (1, 4, 8, 8), load("systolic32")).layers[0]
    slow_target = load("systolic32", overrides=["memories.dram.bandwidth_bytes_per_cycle=0.01"])
    slow = analyze(conv, (1, 4, 8, 8), slow_target).layers[0]
    assert slow.bound == "memory:dram" and slow.cycles > fast.cycles
    # moved bytes: int8 weights 4*12*9, input 4*64, output 12*64, each once through DRAM
    assert slow.cycles == pytest.approx((4 * 12 * 9 + 4 * 64 + 12 * 64) / 0.01)


def test_every_layer_of_an_array_target_has_the_array_keys():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2))
    layers = analyze(model, (1, 1, 8, 8), "systolic32").to_dict()["layers"]
    assert all("utilization" in layer and "energy_pj_by_level" in layer for layer in layers)
    by_op = {layer["op"]: layer for layer in layers}
    assert by_op["conv"]["utilization"] > 0 and by_op["maxpool"]["utilization"] is None  # no MACs, array idle


def test_mcu_reports_keep_their_keys():
    report = analyze(nn.Linear(8, 4), (1, 8), "stm32l476").to_dict()
    assert "utilization" not in report["totals"] and "utilization" not in report["layers"][0]
    assert "energy_pj_by_level" not in report["layers"][0]


def test_grouped_conv_lowers_to_one_gemm_per_group_with_the_layer_macs():
    graph = capture(nn.Conv2d(8, 16, 3, groups=4, padding=1, stride=2), (2, 8, 9, 9))
    layer = graph.layers[0]
    gemms = layer_gemms(layer)
    assert gemms == [Gemm(m=2 * 5 * 5, k=2 * 9, n=4)] * 4
    assert sum(g.macs for g in gemms) == macs(layer)


def test_unmappable_layer_is_named():
    graph = capture(nn.ConvTranspose2d(4, 4, 2), (1, 4, 3, 3))
    with pytest.raises(UserError, match=graph.layers[0].name):
        require_gemms(graph.layers[0])


@pytest.mark.parametrize("rows, cols", [(0, 8), (8, -1)])
def test_array_of_no_size_is_refused(rows, cols):
    with pytest.raises(UserError, match=f"{rows}x{cols}"):
        systolic(Gemm(4, 4, 4), rows, cols, "ws")


def test_unknown_systolic_dataflow_is_refused():
    with pytest.raises(UserError, match="'rs'.*ws, os, is"):
        systolic(Gemm(4, 4, 4), 8, 8, "rs")
