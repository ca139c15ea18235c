"""Deploy, first milestone (issue 11 items 1-3): the int8 IntModel and its numpy reference against TFLM.

What it measures, in one run:

* the four MLPerf Tiny models (DS-CNN, ResNet-8, VWW MobileNetV1-0.25, AD autoencoder), random weights with BN
  statistics moved away from (0, 1), PTQ-calibrated through the compress quantize step on 64 random inputs:
  the share of ``--inputs`` random inputs (default 1,000) whose output is bit-exact between our reference and
  the tflite-micro wheel's TFLM interpreter on the .tflite we export, the layers bit-exact on the first input,
  the .tflite size, TFLM's arena (``print_allocations``: head = planned tensors, tail = persistent data) next
  to ``analyze``'s ``peak_sram_bytes`` and ``flash_bytes`` for the same model, and the wall time of both
  interpreters over the inputs (the reference batched, TFLM one invoke per input);
* a property test of ``--layers`` (default 1,040) random single layers, every op of the IntModel in turn
  (tests/deploy_cases.py): bit-exact against TFLM, goal 100%.

Run from the repository root::

    python benchmarks/deploy_mlperf_tiny.py
    python benchmarks/deploy_mlperf_tiny.py --inputs 100 --layers 130   # quick

Results go to ``benchmarks/results/deploy_mlperf_tiny.json`` (written atomically).
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from deploy_cases import KINDS, random_case, random_inputs  # noqa: E402

from nntailor import zoo  # noqa: E402
from nntailor.atomic import write_json_atomic  # noqa: E402
from nntailor.cost.report import analyze  # noqa: E402
from nntailor.deploy.build import build_int_model  # noqa: E402
from nntailor.deploy.tflite import run_tflm, tflm_arena, tflm_tensors, to_tflite  # noqa: E402

MODELS = ("ds_cnn", "resnet8", "vww_mobilenet", "ad_autoencoder")


def _randomize_bn(model: nn.Module, seed: int) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.1)
    return model.eval()


def _nhwc(x: np.ndarray) -> np.ndarray:
    return x.transpose(0, 2, 3, 1) if x.ndim == 4 else x


def model_row(name: str, inputs: int, seed: int) -> dict:
    torch.manual_seed(seed)
    model = _randomize_bn(zoo.get(name), seed)
    shape = zoo.input_shape(name)
    calibration = torch.randn((64,) + tuple(shape[1:]))
    t = time.perf_counter()
    int_model = build_int_model(model, calibration, shape, batch_size=64)
    build_s = time.perf_counter() - t
    buf = to_tflite(int_model)
    x = np.random.default_rng(seed).standard_normal((inputs,) + tuple(shape[1:])).astype(np.float32)
    q = int_model.quantize_input(_nhwc(x))
    out = int_model.outputs[0]
    t = time.perf_counter()
    ours = np.concatenate([int_model.run(q[i:i + 100])[out] for i in range(0, inputs, 100)])
    ours_s = time.perf_counter() - t
    t = time.perf_counter()
    theirs = run_tflm(buf, [q])[0]
    tflm_s = time.perf_counter() - t
    exact = (ours.reshape(inputs, -1) == theirs.reshape(inputs, -1)).all(axis=1)
    first = int_model.run(q[:1])
    layers = tflm_tensors(buf, int_model, [q[:1]])
    layer_exact = {n: bool((first[n] == v).all()) for n, v in layers.items()}
    arena = tflm_arena(buf)
    totals = analyze(model, shape).to_dict()["totals"]
    return {
        "model": name, "ops": len(int_model.ops), "op_kinds": sorted({op.kind for op in int_model.ops}),
        "inputs": inputs, "bit_exact_outputs": int(exact.sum()), "bit_exact_share": float(exact.mean()),
        "max_lsb_difference": int(np.abs(ours.astype(int) - theirs.astype(int)).max()),
        "layers": len(layer_exact), "layers_bit_exact": int(sum(layer_exact.values())),
        "tflite_bytes": len(buf), "tflm_arena": arena,
        "analyze_peak_sram_bytes": totals["peak_sram_bytes"], "analyze_flash_bytes": totals["flash_bytes"],
        "build_s": round(build_s, 2), "reference_s": round(ours_s, 3), "tflm_s": round(tflm_s, 3),
    }


def layer_rows(count: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    per_kind = {k: [0, 0] for k in KINDS}
    failures = []
    for i in range(count):
        kind = KINDS[i % len(KINDS)]
        model = random_case(rng, kind)
        x = random_inputs(rng, model, 2)
        ok = bool((model.run(*x)["y"] == run_tflm(to_tflite(model), x, arena_size=1 << 18)[0]).all())
        per_kind[kind][0] += ok
        per_kind[kind][1] += 1
        if not ok:
            failures.append({"case": i, "kind": kind})
    exact = sum(v[0] for v in per_kind.values())
    return {"layers": count, "bit_exact": exact, "share": exact / count,
            "per_kind": {k: {"bit_exact": v[0], "cases": v[1]} for k, v in per_kind.items()},
            "failures": failures[:20]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=1000)
    parser.add_argument("--layers", type=int, default=1040)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rows = []
    for name in MODELS:
        row = model_row(name, args.inputs, args.seed)
        rows.append(row)
        a = row["tflm_arena"]
        print(f"{name:15s} bit-exact {row['bit_exact_outputs']}/{row['inputs']}, layers "
              f"{row['layers_bit_exact']}/{row['layers']}; tflite {row['tflite_bytes']} B; TFLM arena head "
              f"{a['head']} tail {a['tail']} total {a['total']}; analyze peak_sram {row['analyze_peak_sram_bytes']} "
              f"flash {row['analyze_flash_bytes']}; reference {row['reference_s']} s, TFLM {row['tflm_s']} s",
              flush=True)
    layers = layer_rows(args.layers, args.seed)
    print(f"random single layers: {layers['bit_exact']}/{layers['layers']} bit-exact against TFLM")
    write_json_atomic(Path(__file__).parent / "results" / "deploy_mlperf_tiny.json", {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "models": rows, "random_layers": layers,
        "note": "weights random (BN statistics randomized), calibrated on 64 random inputs; inputs standard normal",
    })


if __name__ == "__main__":
    main()
