"""Issue 11, item 8: one cost model, checked against the build. The const arrays of the generated model.c, as
``arm-none-eabi-nm -S`` sizes them in the Cortex-M object file, equal ``analyze``'s ``flash_bytes`` for the
zoo's deployable models: int8 weights, int32 biases, and per output channel an int32 multiplier and an int32
shift. A missing toolchain fails the test naming the Debian package (``cortexm.tool``), never a skip."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import torch

from nntailor.cost.report import analyze
from nntailor.deploy import cortexm
from nntailor.deploy.build import build_int_model
from nntailor.deploy.c import write_c
from nntailor.models import load_model

ZOO = ["lenet5", "ds_cnn", "resnet8", "vww_mobilenet", "ad_autoencoder"]


def const_array_bytes(obj: Path) -> int:
    """Bytes of model.o's file-scope const arrays (read-only data symbols). Block-scope statics (a layer's
    geometry and quantization structs, which gcc names ``g.1``, ``q.2``) are code's literals, not the model's."""
    out = subprocess.run([cortexm.tool("arm-none-eabi-nm"), "-S", str(obj)], capture_output=True, text=True,
                         check=True).stdout
    total = 0
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[2] in "rR" and "." not in parts[3]:
            total += int(parts[1], 16)
    return total


@pytest.mark.parametrize("name", ZOO)
def test_model_const_arrays_are_analyze_flash_bytes(name, tmp_path):
    loaded = load_model(f"zoo:{name}")
    model, shape = loaded.model.eval(), loaded.input_shape
    calibration = torch.rand((8, *shape[1:]), generator=torch.Generator().manual_seed(0))
    project = write_c(build_int_model(model, calibration, shape), tmp_path / "c")
    core = cortexm.core_spec("cortex-m4")
    obj = tmp_path / "model.o"
    subprocess.run([cortexm.tool("arm-none-eabi-gcc"), *cortexm.CFLAGS, *core.cflags, "-c",
                    str(project.out_dir / "model.c"), "-o", str(obj)], check=True, capture_output=True)
    flash = analyze(model, shape, "stm32l476", bits=8, name=name).totals["flash_bytes"]
    assert const_array_bytes(obj) == project.flash_arrays_bytes == flash
