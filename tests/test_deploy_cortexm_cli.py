"""`nntailor deploy --target T` for a Cortex-M target (issue 11, items 5, 7, 8): the generated C is also built for
T's core and run under QEMU on the check inputs. Its output bytes equal the reference; flash and static RAM are
arm-none-eabi-size's (checked here by running the tool on the ELF); instructions per inference sit between the
MAC count halved (SMLAD does two MACs) and a loose per-MAC ceiling; model.c's constants are analyze's flash_bytes
and the arena its peak_sram_bytes. A machine without the toolchain still gets the host outputs and one line naming
the Debian package. The toolchain missing here fails these tests naming the package: never a skip."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from nntailor.cli import main
from nntailor.deploy import cortexm

NET = """
import torch
import torch.nn as nn

def small():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(4 * 4 * 4, 10))
"""
SMALL_MACS = 8 * 8 * 4 * 9 + 64 * 10


def _deploy(capsys, out: Path, *args: str) -> tuple[dict, str]:
    code = main(["deploy", *args, "--out", str(out), "--format", "c"])
    stdout, err = capsys.readouterr()
    assert code == 0, err
    return json.loads((out / "report.json").read_text()), stdout


def _berkeley(elf: Path) -> tuple[int, int, int]:
    out = subprocess.run([cortexm.tool("arm-none-eabi-size"), "-B", str(elf)], capture_output=True, text=True,
                         check=True).stdout
    text, data, bss = (int(v) for v in out.splitlines()[1].split()[:3])
    return text, data, bss


@pytest.mark.parametrize(("target", "core"), [("stm32l476", "cortex-m4"), ("mps3_an547", "cortex-m55")])
def test_deploy_builds_and_runs_on_the_targets_core(tmp_path: Path, capsys, target: str, core: str) -> None:
    (tmp_path / "net.py").write_text(NET)
    out = tmp_path / "out"
    report, stdout = _deploy(capsys, out, f"{tmp_path}/net.py:small", "--target", target, "--calib", "digits",
                             "--input-shape", "1,1,8,8")
    m = report["checks"]["c"]["cortexm"]
    assert m["built"], m.get("missing")
    assert m["core"] == core and m["bit_exact"] and m["exit_code"] == 0 and m["samples"] == 16
    elf = out / m["elf"]
    text, data, bss = _berkeley(elf)
    size = m["size"]
    assert (size["text"], size["data"]) == (text, data)
    assert size["bss"] + size["heap"] + size["stack"] == bss  # the NOLOAD reservations are reported apart
    assert size["flash"] == text + data and size["static_ram"] == data + size["bss"]
    assert m["arena_bytes"] == report["analyze"]["peak_sram_bytes"] <= size["bss"]
    assert m["const_bytes"] == report["analyze"]["flash_bytes"] < size["flash"]
    # at least one SMLAD per two MACs; at most 64 per MAC (measured ~22 here: in a net this small the pooling,
    # the per-output requantization and the 1-channel conv's unpacked loop outweigh the MACs)
    assert SMALL_MACS / 2 < m["instructions_per_inference"] < 64 * SMALL_MACS
    assert f"{core} (" in stdout and "instructions per inference" in stdout and "not cycles" in stdout


def test_a_missing_toolchain_still_writes_the_host_outputs(tmp_path: Path, capsys, monkeypatch) -> None:
    # a PATH with every program of the real one but the arm-none-eabi toolchain
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for folder in os.environ["PATH"].split(os.pathsep):
        for entry in Path(folder).glob("*") if Path(folder).is_dir() else []:
            link = bin_dir / entry.name
            if not entry.name.startswith("arm-none-eabi-") and not link.exists():
                link.symlink_to(entry)
    monkeypatch.setenv("PATH", str(bin_dir))
    (tmp_path / "net.py").write_text(NET)
    out = tmp_path / "out"
    report, stdout = _deploy(capsys, out, f"{tmp_path}/net.py:small", "--target", "stm32l476", "--calib", "digits",
                             "--input-shape", "1,1,8,8")
    c = report["checks"]["c"]
    assert c["bit_exact"] and (out / "c" / "model_host").is_file()
    assert c["cortexm"] == {"core": "cortex-m4", "built": False,
                            "missing": "arm-none-eabi-gcc not found: install the Debian package gcc-arm-none-eabi"}
    assert "cortex-m4: not built: arm-none-eabi-gcc not found: install the Debian package gcc-arm-none-eabi" in \
        stdout.replace("\n", " ")
