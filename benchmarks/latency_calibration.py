"""Fit the Cortex-M4 latency constants to MLPerf Tiny v0.5 on-device latencies, and say how well they predict.

Published (STM32L4R5 at 120 MHz, TFLM reference, REFERENCES.md): KWS DS-CNN 181.9 ms, VWW 600.6 ms,
IC ResNet-8 704.2 ms, AD autoencoder 10.05 ms.

Model: cycles = conv-like MACs x c + linear MACs x l + outputs of MAC layers x k (requantization per output)
+ the catalog's per-layer overhead and per-op cycles. A first try with one rate per op class (conv,
depthwise, pointwise, linear) was ill-conditioned (depthwise came out negative): DS-CNN and VWW have the
same class mix but differ in channel depth, which the per-output term captures.

1. Least-squares fit of (c, l, k) on all four models -> the constants in the Cortex-M4 catalog targets.
2. Leave-one-out: fit on AD + two CNNs, predict the third CNN: the honest figure for extrapolation.

Run: python benchmarks/latency_calibration.py  ->  benchmarks/results/latency_calibration.json
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from nntailor import analyze, zoo
from nntailor.atomic import write_json_atomic
from nntailor.cost import metrics
from nntailor.graph import capture
from nntailor.targets import load

CLOCK_HZ = 120e6
PUBLISHED = {"ds_cnn": 181.9e-3, "vww_mobilenet": 600.6e-3, "resnet8": 704.2e-3, "ad_autoencoder": 10.05e-3}
UNKNOWNS = ("conv_cycles_per_mac", "linear_cycles_per_mac", "cycles_per_output")


def features(name: str) -> tuple[list[float], float]:
    """(conv-like MACs, linear MACs, outputs of MAC layers), and the cycles the fit does not touch."""
    graph = capture(zoo.get(name), zoo.input_shape(name))
    report = analyze(graph, target="stm32l4r5")
    target = load("stm32l4r5")
    conv = linear = outputs = 0
    fixed = 0.0
    by_name = {layer.name: layer for layer in graph.layers}
    for lc in report.layers:
        if lc.fused_into is not None or lc.cycles == 0:
            continue
        layer = by_name[lc.name]
        if lc.macs:
            outputs += layer.output_numel
            if metrics.op_class(layer) == "linear":
                linear += lc.macs
            else:
                conv += lc.macs
        fixed += target.compute.layer_overhead_cycles + lc.other_ops * target.cycles_per_op("int8")
    return [conv, linear, outputs], fixed


def main() -> None:
    rows = {name: features(name) for name in PUBLISHED}
    names = list(PUBLISHED)

    def system(subset: list[str]) -> tuple[np.ndarray, np.ndarray]:
        a = np.array([rows[n][0] for n in subset], dtype=float)
        b = np.array([PUBLISHED[n] * CLOCK_HZ - rows[n][1] for n in subset])
        return a, b

    a, b = system(names)
    coef, *_ = np.linalg.lstsq(a, b, rcond=None)
    fit = dict(zip(UNKNOWNS, map(float, coef), strict=True))
    fit_error = {n: float(100 * ((a[i] @ coef + rows[n][1]) / CLOCK_HZ - PUBLISHED[n]) / PUBLISHED[n])
                 for i, n in enumerate(names)}

    loo: dict[str, dict[str, float]] = {}
    for held in ("ds_cnn", "vww_mobilenet", "resnet8"):
        xa, xb = system([n for n in names if n != held])
        c = np.linalg.solve(xa, xb)
        predicted = (np.dot(rows[held][0], c) + rows[held][1]) / CLOCK_HZ
        loo[held] = {"predicted_s": float(predicted), "published_s": PUBLISHED[held],
                     "error_pct": float(100 * (predicted - PUBLISHED[held]) / PUBLISHED[held]),
                     **dict(zip(UNKNOWNS, map(float, c), strict=True))}

    # What the shipped catalog target predicts now.
    shipped = {}
    for name in names:
        lat = analyze(zoo.get(name), zoo.input_shape(name), "stm32l4r5").totals["latency_s"]
        shipped[name] = {"predicted_s": lat, "published_s": PUBLISHED[name],
                         "error_pct": 100 * (lat - PUBLISHED[name]) / PUBLISHED[name]}

    console = Console(width=140)
    fit_table = Table(title="Cortex-M4 int8 constants, least-squares fit to MLPerf Tiny v0.5 (STM32L4R5, TFLM)")
    for u in UNKNOWNS:
        fit_table.add_column(u, justify="right")
    fit_table.add_row(*(f"{fit[u]:.2f}" for u in UNKNOWNS))
    console.print(fit_table)
    table = Table(title="latency: shipped stm32l4r5 target and leave-one-out prediction vs published")
    for col in ("model", "published ms", "shipped target ms", "err %", "leave-one-out ms", "err %"):
        table.add_column(col, justify="right")
    for name in names:
        held = loo.get(name)
        table.add_row(
            name, f"{PUBLISHED[name] * 1e3:.1f}", f"{shipped[name]['predicted_s'] * 1e3:.1f}",
            f"{shipped[name]['error_pct']:+.1f}",
            f"{held['predicted_s'] * 1e3:.1f}" if held else "-", f"{held['error_pct']:+.1f}" if held else "-",
        )
    console.print(table)

    result = {"fit": fit, "fit_error_pct": fit_error, "leave_one_out": loo, "shipped_target": shipped,
              "clock_hz": CLOCK_HZ, "published_s": PUBLISHED}
    out = Path(__file__).parent / "results" / "latency_calibration.json"
    out.parent.mkdir(exist_ok=True)
    write_json_atomic(out, result)


if __name__ == "__main__":
    main()
