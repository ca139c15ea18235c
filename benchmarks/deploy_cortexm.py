"""The generated C on Cortex-M4 and M55 under QEMU (deploy/c.py, deploy/cortexm.py): flash, static RAM,
instructions per inference and per MAC for the four MLPerf Tiny models, and DS-CNN's instructions per MAC by layer
kind (conv stem, depthwise, pointwise, fully connected).

Random weights, calibrated on 16 random inputs (as benchmarks/deploy_c_host.py). Instructions are executed guest
instructions (the TCG plugin of cortexm.insn_count), not cycles; per inference = the same ELF run with two
inputs minus one input, so startup, stdio and exit cancel. Per layer kind: each MAC op of DS-CNN as a one-op model
(its own prepared constants and tensors), counted the same way; a one-op count therefore also holds that model's
own per-inference harness work (reading its input over semihosting, copying it into the arena and the output
out, writing the output), which the whole model does only once, so "other" (the whole model minus the one-op
counts: the non-MAC ops less that double-counted harness work) comes out negative.
Flash and static RAM are ``arm-none-eabi-size``'s (cortexm.size: flash = text + data, static RAM = data + bss
without the stack and heap reservations). ``pointwise_widening_bytes`` is what nnt_pointwise's int16 weights
(widened at Prepare time) add to flash over int8. Writes benchmarks/results/deploy_cortexm.json.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import tempfile
from pathlib import Path

import numpy as np
import torch

from nntailor import zoo
from nntailor.deploy import cortexm
from nntailor.deploy.build import build_int_model
from nntailor.deploy.c import write_c
from nntailor.deploy.intmodel import IntModel, IntOp

MODELS = ("ds_cnn", "resnet8", "vww_mobilenet", "ad_autoencoder")
CORES = ("cortex-m4", "cortex-m55")
SOURCES = ("model.c", "nnt_kernels.c", "main.c")


def op_macs(op: IntOp, model: IntModel) -> int:
    """MACs of a conv, depthwise or fully connected op (0 for the rest)."""
    out = model.tensors[op.output].shape
    if op.kind == "conv":
        return math.prod(out) * math.prod(op.weight.shape[1:])
    if op.kind == "depthwise":
        return math.prod(out) * op.weight.shape[1] * op.weight.shape[2]
    if op.kind == "fully_connected":
        return math.prod(out) * op.weight.shape[1]
    return 0


def layer_kind(op: IntOp) -> str:
    if op.kind == "conv":
        return "pointwise" if op.weight.shape[1:3] == (1, 1) else "conv"
    return {"depthwise": "depthwise", "fully_connected": "fc"}.get(op.kind, "other")


def per_inference(model: IntModel, core: str, out: Path) -> tuple[int, dict[str, int], int]:
    """Instructions per inference, the ELF's sizes, and the flash the int16 pointwise weights add."""
    project = write_c(model, out / "c", simd_pointwise=True)
    elf = cortexm.build([project.out_dir / name for name in SOURCES], core, out / core)
    rng = np.random.default_rng(0)
    x = b"".join(rng.integers(-128, 128, model.tensors[t].shape[1:]).astype(np.int8).tobytes() for t in model.inputs)
    one = cortexm.insn_count(elf, core, x, timeout=600)
    two = cortexm.insn_count(elf, core, x + x, timeout=600)
    # each int16 element (nnt_pointwise's weights, the only int16 arrays) costs one byte more than its int8
    widened = sum(int(n) for n in re.findall(r"static const int16_t \w+\[(\d+)\]",
                                              (project.out_dir / "model.c").read_text()))
    return two - one, cortexm.size(elf), widened


def main() -> None:
    rows, kinds = [], []
    for name in MODELS:
        torch.manual_seed(0)
        shape = zoo.input_shape(name)
        int_model = build_int_model(zoo.get(name).eval(), torch.randn((16,) + tuple(shape[1:])), shape,
                                    batch_size=16)
        macs = sum(op_macs(op, int_model) for op in int_model.ops)
        for core in CORES:
            with tempfile.TemporaryDirectory() as tmp:
                try:
                    insns, sizes, widened = per_inference(int_model, core, Path(tmp))
                except RuntimeError as err:  # a model larger than the board's memory: recorded, not hidden
                    rows.append({"model": name, "core": core, "macs": macs, "error": str(err).splitlines()[0]})
                    print(f"{name:16} {core:11} failed: {str(err).splitlines()[0]}")
                    continue
            row = {"model": name, "core": core, "macs": macs, "instructions": insns,
                   "instructions_per_mac": insns / macs, "flash_bytes": sizes["flash"],
                   "static_ram_bytes": sizes["static_ram"], "pointwise_widening_bytes": widened}
            rows.append(row)
            print(f"{name:16} {core:11} {insns:>11} insns  {insns / macs:6.3f}/MAC  flash {sizes['flash']:>8}  "
                  f"static RAM {sizes['static_ram']:>7}  int16 pointwise +{widened}")
            if name != "ds_cnn":
                continue
            by_kind: dict[str, list[int]] = {}
            for i, op in enumerate(int_model.ops):
                kind = layer_kind(op)
                if kind == "other":
                    continue
                t = int_model.tensors
                single = IntModel({op.inputs[0]: t[op.inputs[0]], op.output: t[op.output]}, [op], [op.inputs[0]],
                                  [op.output], name=f"op{i}")
                with tempfile.TemporaryDirectory() as tmp:
                    count = per_inference(single, core, Path(tmp))[0]
                total = by_kind.setdefault(kind, [0, 0])
                total[0] += count
                total[1] += op_macs(op, int_model)
            mac_insns = sum(v[0] for v in by_kind.values())
            by_kind["other"] = [insns - mac_insns, 0]
            for kind, (count, kind_macs) in by_kind.items():
                entry = {"model": name, "core": core, "kind": kind, "instructions": count, "macs": kind_macs,
                         "instructions_per_mac": count / kind_macs if kind_macs else None}
                kinds.append(entry)
                per = f"{count / kind_macs:6.3f}/MAC" if kind_macs else "     -    "
                print(f"    {kind:10} {count:>10} insns  {kind_macs:>9} MACs  {per}")
    out = Path(__file__).parent / "results" / "deploy_cortexm.json"
    out.write_text(json.dumps({"date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "rows": rows,
                               "ds_cnn_by_kind": kinds}, indent=2) + "\n")


if __name__ == "__main__":
    main()
