"""Float or int8 model I/O: with float I/O a QUANTIZE first and a DEQUANTIZE last hold float copies in the arena.

TFLM's figures (issue 9): the MLPerf Tiny files converted with float input and output plan VWW at 138,240 B and
the AD autoencoder at 3,200 B (the float input and its int8 copy live at once).
"""

import json

import pytest
from torch import nn

from nntailor import analyze, zoo
from nntailor.cli import main
from nntailor.errors import UserError


@pytest.mark.parametrize(("name", "int8_head", "float_head"), [
    ("vww_mobilenet", 73_728, 138_240), ("ad_autoencoder", 768, 3_200),
])
def test_float_io_arena_heads_match_tflm(name: str, int8_head: int, float_head: int):
    model, shape = zoo.get(name), zoo.input_shape(name)
    default = analyze(model, shape, "stm32l476")
    floated = analyze(model, shape, "stm32l476", io="float")
    assert default.totals["peak_sram_bytes"] == int8_head and default.to_dict()["io"] == "int8"
    assert floated.totals["peak_sram_bytes"] == float_head and floated.to_dict()["io"] == "float"
    floated.arena.check_no_overlap()


def test_float_io_buffers_and_lifetimes():
    report = analyze(zoo.get("ad_autoencoder"), (1, 640), "stm32l476", io="float")
    plan = {b.name: b for b in report.arena.buffers}
    # QUANTIZE is op 0: the float input (640 x 4 B) dies there, its int8 copy lives until the first dense reads it
    assert (plan["input (float)"].size, plan["input (float)"].first_use, plan["input (float)"].last_use) == (2560, 0, 0)
    assert (plan["input"].size, plan["input"].first_use, plan["input"].last_use) == (640, 0, 1)
    # DEQUANTIZE is the last op: it reads the int8 output and writes the float one
    last = max(b.last_use for b in plan.values())
    assert (plan["decoder.4 (float)"].size, plan["decoder.4 (float)"].first_use) == (2560, last)
    assert plan["decoder.4"].last_use == last


def test_a_float_model_has_float_io_already():
    model = zoo.get("ad_autoencoder")
    assert (analyze(model, (1, 640), "stm32l476", bits=32, io="float").totals["peak_sram_bytes"]
            == analyze(model, (1, 640), "stm32l476", bits=32).totals["peak_sram_bytes"] == 2560 + 512)  # in, out


def test_token_ids_are_not_quantized():
    model = nn.Sequential(nn.Embedding(100, 16), nn.Flatten(), nn.Linear(16 * 8, 4))
    plan = {b.name for b in analyze(model, (1, 8), "stm32l476", io="float").arena.buffers}
    assert "input (float)" not in plan and "0" in plan and "2 (float)" in plan


def test_bad_io_is_a_user_error(capsys):
    with pytest.raises(UserError, match="'fp16'"):
        analyze(zoo.get("ad_autoencoder"), (1, 640), "stm32l476", io="fp16")
    assert main(["analyze", "zoo:ad_autoencoder", "--io", "fp16"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "fp16" in err and len(err.strip().splitlines()) == 1


def test_cli_states_the_io(tmp_path, capsys):
    out = tmp_path / "ad.json"
    assert main(["analyze", "zoo:ad_autoencoder", "--io", "float", "--no-layers", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "I/O" in printed and "float32" in printed
    result = json.loads(out.read_text())
    assert result["io"] == "float" and result["totals"]["peak_sram_bytes"] == 3_200
    assert main(["analyze", "zoo:ad_autoencoder", "--no-layers"]) == 0
    assert "int8" in capsys.readouterr().out
