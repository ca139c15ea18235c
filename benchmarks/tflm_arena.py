"""The MLPerf Tiny models' TFLM arena, head and persistent tail, against the tflite-micro interpreter's figures.

TFLM's figures are issue 9's: the reference models built from their Keras sources, converted by TFLiteConverter
to int8 and run in the tflite-micro interpreter (heads; tails with per-channel dense layers), and the official
mlcommons .tflite files (tails with per-tensor dense layers). The classifiers end in a softmax there, which the
zoo ports leave out: it is added back. Their Keras Flatten (unknown batch) converts to SHAPE, STRIDED_SLICE and
PACK before the RESHAPE, about 480 B more tail than the one RESHAPE priced here.

Run: python benchmarks/tflm_arena.py  ->  benchmarks/results/tflm_arena.json
"""

from __future__ import annotations

from pathlib import Path

import torch.nn as nn
from rich.console import Console
from rich.table import Table

from nntailor import analyze, zoo
from nntailor.atomic import write_json_atomic

TFLM = {  # head int8 I/O, head float I/O, tail per-channel dense, tail per-tensor dense
    "ds_cnn": {"head": 16_000, "head_float_io": None, "tail_per_channel": 8_800, "tail_per_tensor": 8_272},
    "resnet8": {"head": 49_152, "head_float_io": None, "tail_per_channel": 7_360, "tail_per_tensor": 6_832},
    "vww_mobilenet": {"head": 73_728, "head_float_io": 138_240, "tail_per_channel": 30_400,
                      "tail_per_tensor": 29_952},
    "ad_autoencoder": {"head": 768, "head_float_io": 3_200, "tail_per_channel": 16_560, "tail_per_tensor": 3_216},
}


def measure(name: str) -> dict[str, int]:
    model, shape = zoo.get(name), zoo.input_shape(name)
    model = model if name == "ad_autoencoder" else nn.Sequential(model, nn.Softmax(-1))
    int8 = analyze(model, shape, "stm32l476").totals
    return {
        "head": int8["peak_sram_bytes"],
        "head_float_io": analyze(model, shape, "stm32l476", io="float").totals["peak_sram_bytes"],
        "tail_per_channel": int8["arena_tail_bytes"],
        "tail_per_tensor": analyze(model, shape, "stm32l476", per_channel_dense=False).totals["arena_tail_bytes"],
    }


def main() -> None:
    ours = {name: measure(name) for name in TFLM}
    table = Table(title="TFLM arena: nntailor / TFLM interpreter (bytes, error %)")
    table.add_column("model")
    for key in TFLM["ds_cnn"]:
        table.add_column(key.replace("_", " "), justify="right")
    errors: dict[str, dict[str, float]] = {}
    for name, figures in TFLM.items():
        cells = []
        for key, ref in figures.items():
            if ref is None:
                cells.append(f"{ours[name][key]:,} / -")
                continue
            err = 100 * (ours[name][key] - ref) / ref
            errors.setdefault(name, {})[key] = err
            cells.append(f"{ours[name][key]:,} / {ref:,} ({err:+.1f})")
        table.add_row(name, *cells)
    Console(width=160).print(table)
    out = Path(__file__).parent / "results" / "tflm_arena.json"
    out.parent.mkdir(exist_ok=True)
    write_json_atomic(out, {"nntailor": ours, "tflm": TFLM, "error_pct": errors})


if __name__ == "__main__":
    main()
