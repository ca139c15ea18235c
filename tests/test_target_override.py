"""``--set key.path=value`` on targets: applied, validated again, and refused with the key and the valid ones."""

import json

import pytest

from nntailor.cli import main
from nntailor.errors import UserError
from nntailor.targets import load
from nntailor.targets.override import override


def test_overrides_change_array_dataflow_and_a_named_memory():
    base = load("systolic32")
    t = override(base, ["array.rows=16", "dataflow=os", "memories.dram.bandwidth_bytes_per_cycle=4.5"])
    assert (t.array.rows, t.array.cols, t.dataflow) == (16, 32, "os")
    assert t.memories[3].bandwidth_bytes_per_cycle == 4.5
    assert base.array.rows == 32  # the catalog target is untouched
    assert load("systolic32", overrides=["array.rows=16", "dataflow=os"]).array.rows == 16


def test_a_memory_by_index_and_a_new_dtype_key():
    t = override(load("eyeriss"), ["memories.2.size_bytes=65536", "energy.mac_pj.int8=0.5"])
    assert t.memories[2].size_bytes == 65536 and t.energy.mac("int8") == 0.5


def test_catalog_accelerators_describe_their_arrays():
    eyeriss, systolic = load("eyeriss"), load("systolic32")
    assert (eyeriss.array.rows, eyeriss.array.cols, eyeriss.dataflow, eyeriss.array.word_bits) == (12, 14, "rs", 16)
    assert (systolic.array.rows, systolic.array.cols, systolic.dataflow) == (32, 32, "ws")
    assert eyeriss.array.pes == eyeriss.compute.pes and systolic.array.pes == systolic.compute.pes


@pytest.mark.parametrize(
    "item, message",
    [
        ("array.rowz=16", "unknown key 'array.rowz'; valid: cols, psum_bits, rf_bytes, rows, word_bits"),
        ("flavour=1", "unknown key 'flavour'; valid: area, array,"),
        ("array.rows=0", "array.rows: Input should be greater than 0"),
        ("array.cols=-3", "array.cols: Input should be greater than 0"),
        ("dataflow=zz", "dataflow: Input should be 'ws', 'os', 'is', 'rs', 'nlr', 'ws_los' or 'os_lws'"),
        ("memories.sram.size_bytes=4", "no 'memories.sram'; valid: ifmap_sram, filter_sram, ofmap_sram, dram"),
        ("clock_hz.fast=1", "'clock_hz' is a value, not a section"),
        ("rows16", "expected key.path=value"),
    ],
)
def test_bad_override_is_one_line_naming_the_key(item, message):
    with pytest.raises(UserError, match=None) as err:
        load("systolic32", overrides=[item])
    assert message in str(err.value) and "\n" not in str(err.value)


def test_an_absent_section_takes_its_fields():
    t = load("systolic32", overrides=["area.pe_mm2=0.002", "area.sram_mm2_per_byte=1e-6"])
    assert (t.area.pe_mm2, t.area.sram_mm2_per_byte, t.area.rf_mm2_per_byte) == (0.002, 1e-6, 0.0)
    with pytest.raises(UserError, match="unknown key 'area.pe'; valid: pe_mm2, rf_mm2_per_byte, source, sram_mm2"):
        load("systolic32", overrides=["area.pe=1"])


def test_buffer_smaller_than_a_fold_names_the_tensor_and_the_bytes():
    with pytest.raises(UserError) as err:
        load("systolic32", overrides=["memories.filter_sram.size_bytes=512"])
    assert "filter_sram (512 B) is smaller than the smallest weights tile of the ws dataflow: 32x32 x 8 bits = 1024 B" \
        in str(err.value)
    with pytest.raises(UserError, match="ofmap_sram .* outputs tile of the os dataflow: 256x256 x 32 bits = 262144 B"):
        load("systolic32", overrides=["array.rows=256", "array.cols=256", "dataflow=os"])


def test_array_without_dataflow_is_refused():
    with pytest.raises(UserError, match="'array' and 'dataflow' come together"):
        load("stm32l476", overrides=["array.rows=4", "array.cols=4"])


def test_cli_set_reaches_the_json(capsys, tmp_path):
    out = tmp_path / "r.json"
    code = main(["analyze", "zoo:lenet5", "--target", "systolic32", "--set", "array.rows=16", "--set", "dataflow=os",
                 "--no-layers", "--json", str(out)])
    _, err = capsys.readouterr()
    assert code == 0, err
    data = json.loads(out.read_text())
    assert 0 < data["totals"]["utilization"] <= 1 and data["totals"]["cycles"] > 0
    conv = next(layer for layer in data["layers"] if layer["op"] == "conv")
    assert conv["utilization"] > 0 and set(conv["energy_pj_by_level"]) >= {"dram"}


def test_cli_bad_set_exits_2_with_one_line(capsys):
    code = main(["analyze", "zoo:lenet5", "--target", "systolic32", "--set", "array.rowz=16"])
    _, err = capsys.readouterr()
    assert code == 2 and err.startswith("error: --set 'array.rowz=16': unknown key") and err.count("\n") == 1
