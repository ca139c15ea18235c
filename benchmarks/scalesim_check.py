"""Systolic cycles and utilization: ours (``cost.accel.systolic``) against SCALE-Sim 3.0 on the same layers and arrays.

SCALE-Sim runs in its own venv (its numpy pin clashes with ours)::

    python3.11 -m venv benchmarks/.venvs/scalesim
    benchmarks/.venvs/scalesim/bin/pip install scalesim==3.0.0 'numpy<2.4'

Then ``PYTHONPATH=src .venv/bin/python benchmarks/scalesim_check.py`` prints the table, writes
``benchmarks/results/scalesim_check.json`` and, with ``--fixture``, ``tests/data/scalesim_cycles.json`` (the golden
cycles the unit tests assert, so they come from SCALE-Sim, never from our code).

SCALE-Sim is given CALC interface bandwidth (it sizes DRAM bandwidth so nothing stalls), so its "Total Cycles" are
compute cycles. Topology rows are pre-padded conv layers (SCALE-Sim has no padding); a GEMM (m x k) @ (k x n) is the
conv whose input is m x 1 pixels of k channels with n 1x1 filters.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import tempfile
import time
from pathlib import Path

from nntailor.cost.accel.systolic import conv_gemm, systolic

ROOT = Path(__file__).resolve().parents[1]
PYTHON = ROOT / "benchmarks/.venvs/scalesim/bin/python"
VERSION = "scalesim 3.0.0"

# name, ifmap h, ifmap w (pre-padded), filter h, filter w, channels, filters, stride. SCALE-Sim writes a cycle-by-
# cycle trace, minutes per ResNet-18 layer on a shared 2-core box: the default set is small layers of the same kinds
# (spatial, strided, 1x1, odd shapes); --resnet18 adds ResNet-18's own conv layers at 224x224.
CONV = [
    ("c3x3", 10, 10, 3, 3, 4, 12, 1),
    ("c3x3_s2", 9, 7, 3, 3, 3, 5, 2),
    ("c1x1", 8, 8, 1, 1, 16, 24, 1),
    ("c7x7_s2", 20, 20, 7, 7, 3, 16, 2),
    ("odd", 11, 9, 3, 2, 5, 7, 2),
]
RESNET18 = [
    ("r18_conv1", 230, 230, 7, 7, 3, 64, 2),
    ("r18_l1", 58, 58, 3, 3, 64, 64, 1),
    ("r18_l2_down", 58, 58, 3, 3, 64, 128, 2),
    ("r18_l2", 30, 30, 3, 3, 128, 128, 1),
    ("r18_l2_1x1", 56, 56, 1, 1, 64, 128, 2),
    ("r18_l3", 16, 16, 3, 3, 256, 256, 1),
    ("r18_l4", 9, 9, 3, 3, 512, 512, 1),
]
# name, m, k, n
GEMM = [("gemm_1_64_40", 1, 64, 40), ("gemm_17_33_5", 17, 33, 5), ("gemm_24_20_36", 24, 20, 36)]
ARRAYS = [(8, 8), (16, 16), (32, 32), (16, 8), (8, 32)]
DATAFLOWS = ("ws", "os", "is")

CONFIG = """[general]
run_name = check

[architecture_presets]
ArrayHeight: {rows}
ArrayWidth: {cols}
IfmapSramSzkB: 6144
FilterSramSzkB: 6144
OfmapSramSzkB: 2048
IfmapOffset: 0
FilterOffset: 10000000
OfmapOffset: 20000000
Bandwidth: 10
Dataflow: {dataflow}
MemoryBanks: 1
ReadRequestBuffer: 32
WriteRequestBuffer: 32

[layout]
IfmapCustomLayout: False
IfmapSRAMBankBandwidth: 10
IfmapSRAMBankNum: 10
IfmapSRAMBankPort: 2
FilterCustomLayout: False
FilterSRAMBankBandwidth: 10
FilterSRAMBankNum: 10
FilterSRAMBankPort: 2

[sparsity]
SparsitySupport: false
SparseRep: ellpack_block
OptimizedMapping: false
BlockSize: 8
RandomNumberGeneratorSeed: 40

[run_presets]
InterfaceBandwidth: CALC
UseRamulatorTrace: False
"""


def layers(resnet18: bool) -> list[tuple]:
    return list(CONV) + (RESNET18 if resnet18 else []) + [(name, m, 1, 1, 1, k, n, 1) for name, m, k, n in GEMM]


def run_scalesim(topo: list[tuple], rows: int, cols: int, dataflow: str) -> list[dict[str, float]]:
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        (d / "scale.cfg").write_text(CONFIG.format(rows=rows, cols=cols, dataflow=dataflow))
        header = "Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides,\n"
        body = "".join(", ".join(str(v) for v in row) + ",\n" for row in topo)
        for name in ("topo.csv", "layout.csv"):
            (d / name).write_text(header + body)
        subprocess.run([str(PYTHON), "-m", "scalesim.scale", "-c", "scale.cfg", "-t", "topo.csv", "-l", "layout.csv",
                        "-p", "out"], cwd=d, check=True, capture_output=True)
        with next((d / "out").rglob("COMPUTE_REPORT.csv")).open() as f:
            rows_out = list(csv.reader(f))[1:]
        with next((d / "out").rglob("DETAILED_ACCESS_REPORT.csv")).open() as f:
            access = list(csv.reader(f))[1:]
    return [{"cycles": int(r[2]), "stall_cycles": int(r[3]), "overall_util": float(r[4]) / 100,
             "mapping_efficiency": float(r[5]) / 100, "compute_util": float(r[6]) / 100,
             "ifmap_sram_reads": int(a[3]), "filter_sram_reads": int(a[6]), "ofmap_sram_writes": int(a[9])}
            for r, a in zip(rows_out, access, strict=True)]


def ours(row: tuple, rows: int, cols: int, dataflow: str):
    _, ih, iw, fh, fw, ch, nf, stride = row
    oh, ow = -(-(ih - fh + stride) // stride), -(-(iw - fw + stride) // stride)  # SCALE-Sim's ofmap size
    return systolic(conv_gemm(oh, ow, fh, fw, ch, nf), rows, cols, dataflow)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fixture", action="store_true", help="also write tests/data/scalesim_cycles.json")
    parser.add_argument("--resnet18", action="store_true", help="add ResNet-18's conv layers and a 128x128 array")
    parser.add_argument("--only", nargs="*", default=None, help="run just these layers (names as in the tables)")
    parser.add_argument("--arrays", nargs="*", default=None, help="arrays as ROWSxCOLS, e.g. 8x8 128x128")
    parser.add_argument("--out", default="benchmarks/results/scalesim_check.json")
    args = parser.parse_args()
    topo = [row for row in layers(args.resnet18) if args.only is None or row[0] in args.only]
    arrays = ARRAYS + ([(128, 128)] if args.resnet18 else [])
    if args.arrays:
        arrays = [tuple(int(v) for v in a.split("x")) for a in args.arrays]
    cases, t_peer, t_ours = [], 0.0, 0.0
    for rows, cols in arrays:
        for df in DATAFLOWS:
            start = time.perf_counter()
            peer = run_scalesim(topo, rows, cols, df)
            t_peer += time.perf_counter() - start
            for row, p in zip(topo, peer, strict=True):
                start = time.perf_counter()
                o = ours(row, rows, cols, df)
                t_ours += time.perf_counter() - start
                cases.append({"layer": list(row), "array": [rows, cols], "dataflow": df, "scalesim": p,
                              "ours": {"cycles": o.cycles, "overall_util": o.utilization,
                                       "mapping_efficiency": o.mapping_efficiency,
                                       "compute_util": o.compute_utilization,
                                       "ifmap_sram_reads": o.ifmap_sram_reads, "filter_sram_reads": o.filter_sram_reads,
                                       "ofmap_sram_writes": o.ofmap_sram_writes}})
    equal = sum(c["ours"]["cycles"] == c["scalesim"]["cycles"] for c in cases)
    worst = max(abs(c["ours"]["cycles"] - c["scalesim"]["cycles"]) for c in cases)
    sram = ("ifmap_sram_reads", "filter_sram_reads", "ofmap_sram_writes")
    sram_equal = sum(all(c["ours"][k] == c["scalesim"][k] for k in sram) for c in cases)
    util_err = max(abs(c["ours"][k] - c["scalesim"][k]) for c in cases
                   for k in ("overall_util", "mapping_efficiency", "compute_util"))
    print(f"{'layer':<16}{'array':>9}{'df':>4}{'scalesim':>12}{'ours':>12}{'util':>8}")
    for c in cases:
        print(f"{c['layer'][0]:<16}{'x'.join(map(str, c['array'])):>9}{c['dataflow']:>4}"
              f"{c['scalesim']['cycles']:>12}{c['ours']['cycles']:>12}{c['ours']['overall_util']:>8.3f}")
    summary = {"version": VERSION, "cases": len(cases), "cycles_equal": equal, "largest_cycle_difference": worst,
               "sram_accesses_equal": sram_equal,
               "largest_util_difference": util_err, "scalesim_s": t_peer, "ours_s": t_ours,
               "speedup": t_peer / t_ours if t_ours else None}
    print(json.dumps(summary, indent=1))
    out = ROOT / args.out
    out.write_text(json.dumps({"summary": summary, "cases": cases}, indent=1) + "\n")
    if args.fixture:
        fixture = [{"layer": c["layer"], "array": c["array"], "dataflow": c["dataflow"], **c["scalesim"]}
                   for c in cases if c["array"] in ([8, 8], [16, 8], [8, 32])]
        meta = {"tool": VERSION, "config": "CALC interface bandwidth, 6144/6144/2048 kB SRAM, no sparsity",
                "layer_columns": "name, ifmap h, ifmap w (pre-padded), filter h, filter w, channels, filters, stride",
                "made_by": "benchmarks/scalesim_check.py --fixture"}
        path = ROOT / "tests/data/scalesim_cycles.json"
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps({"meta": meta, "cases": fixture}, indent=1) + "\n")


if __name__ == "__main__":
    main()
