"""Pruning benchmarks of issue 4, each a ratio measured in one run on this machine.

1. Physical channel removal: ResNet-18 (224) with half of each prunable group's channels removed
   (torch-pruning's dependency graph) against the dense network: MACs (cost model) and batch-1 wall-clock.
2. Sparse execution: AlexNet's fc6 (9216 -> 4096) and fc7 (4096 -> 4096) pruned to 9 % kept (Deep
   Compression's ratio), batch-1 wall-clock of torch's CSR kernel against the dense GEMV, with 1 thread and
   with torch's default threads. Han et al. report ~3x on a CPU.
3. OBD against magnitude at equal sparsity: LeNet-300-100 trained on MNIST (bundled 5k sample), accuracy
   right after one-shot pruning (no fine-tuning), per sparsity; OBD with the Gauss-Newton (Fisher) diagonal
   LeCun used, and with the true Hessian diagonal by Hutchinson.

Run: python benchmarks/pruning.py  ->  benchmarks/results/pruning.json
"""

from __future__ import annotations

import copy
import os
import statistics
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from rich.console import Console
from rich.table import Table

from nntailor import analyze, zoo
from nntailor.atomic import write_json_atomic
from nntailor.compress import ChannelPruneConfig, Context, PruneConfig, SparseLinear, apply
from nntailor.data import load_dataset
from nntailor.train import TrainConfig, evaluate, fit


def interleaved(fns: dict[str, Any], reps: int) -> dict[str, float]:
    """Median seconds of each callable, calls interleaved so machine noise hits all of them alike."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for f in fns.values():
        f()
    for _ in range(reps):
        for name, f in fns.items():
            start = time.perf_counter()
            f()
            times[name].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in times.items()}


def channel_removal(reps: int) -> dict[str, Any]:
    shape = (1, 3, 224, 224)
    dense = zoo.get("resnet18")
    pruned = apply(copy.deepcopy(dense), ChannelPruneConfig(sparsity=0.5, input_shape=shape)).eval()
    x = torch.randn(shape)
    with torch.no_grad():
        t = interleaved({"dense": lambda: dense(x), "pruned": lambda: pruned(x)}, reps)
    macs = {k: analyze(m, shape, "stm32h743").totals["macs"] for k, m in (("dense", dense), ("pruned", pruned))}
    params = {k: sum(p.numel() for p in m.parameters()) for k, m in (("dense", dense), ("pruned", pruned))}
    return {"macs": macs, "params": params, "seconds": t, "mac_ratio": macs["dense"] / macs["pruned"],
            "speedup": t["dense"] / t["pruned"]}


def sparse_execution(reps: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    torch.manual_seed(0)
    for name, (n_in, n_out) in {"fc6": (9216, 4096), "fc7": (4096, 4096)}.items():
        layer = apply(nn.Sequential(nn.Linear(n_in, n_out)), PruneConfig(sparsity=0.91))[0].eval()
        sparse = SparseLinear(layer).eval()
        x = torch.randn(1, n_in)
        row: dict[str, Any] = {}
        default_threads = torch.get_num_threads()
        for threads in sorted({1, default_threads}):
            torch.set_num_threads(threads)
            with torch.no_grad():
                t = interleaved({"dense": lambda f=layer, x=x: f(x), "csr": lambda f=sparse, x=x: f(x)}, reps)
            row[f"threads_{threads}"] = {"seconds": t, "speedup": t["dense"] / t["csr"]}
        torch.set_num_threads(default_threads)
        out[name] = row
    return out


def obd_vs_magnitude(levels: list[float]) -> dict[str, Any]:
    data = load_dataset("mnist")
    torch.manual_seed(0)
    base = zoo.get("lenet300")
    fit(base, data.train, TrainConfig(epochs=5, lr=1e-3, progress=False))
    rows = []
    context = Context(train=data.train, test=data.test, seed=0)
    for level in levels:
        mag = apply(copy.deepcopy(base), PruneConfig(sparsity=level))
        obd = apply(copy.deepcopy(base), PruneConfig(sparsity=level, criterion="obd", hessian_batches=8), context)
        hutch = apply(copy.deepcopy(base), PruneConfig(sparsity=level, criterion="obd", hessian="hutchinson",
                                                        hessian_batches=8, hessian_samples=16), context)
        rows.append({"sparsity": level, "magnitude": evaluate(mag, data.test), "obd": evaluate(obd, data.test),
                     "obd_hutchinson": evaluate(hutch, data.test)})
    return {"baseline": evaluate(base, data.test), "data": data.name, "rows": rows}


def main() -> None:
    console = Console(width=140)
    start = time.perf_counter()
    result: dict[str, Any] = {"torch_threads": torch.get_num_threads(), "cpus": os.cpu_count()}

    result["channel_removal"] = cr = channel_removal(reps=15)
    t = Table(title="1. ResNet-18, 50 % of channels physically removed (torch-pruning), batch 1")
    for col in ("", "MACs", "params", "median ms"):
        t.add_column(col, justify="right")
    for k in ("dense", "pruned"):
        t.add_row(k, f"{cr['macs'][k]:,}", f"{cr['params'][k]:,}", f"{1e3 * cr['seconds'][k]:.1f}")
    t.add_row("dense / pruned", f"{cr['mac_ratio']:.2f}x", "", f"{cr['speedup']:.2f}x")
    console.print(t)

    result["sparse_execution"] = se = sparse_execution(reps=40)
    t = Table(title="2. AlexNet fc6/fc7 at 9 % kept: torch CSR vs dense, batch 1 (Han et al.: ~3x)")
    for col in ("layer", "threads", "dense ms", "CSR ms", "speed-up"):
        t.add_column(col, justify="right")
    for name, row in se.items():
        for threads, r in row.items():
            t.add_row(name, threads.removeprefix("threads_"), f"{1e3 * r['seconds']['dense']:.2f}",
                      f"{1e3 * r['seconds']['csr']:.2f}", f"{r['speedup']:.2f}x")
    console.print(t)

    result["obd_vs_magnitude"] = ob = obd_vs_magnitude([0.5, 0.7, 0.8, 0.9, 0.95])
    t = Table(title=f"3. LeNet-300-100 on {ob['data']}: accuracy right after pruning (baseline "
                    f"{100 * ob['baseline']:.2f} %), no fine-tuning")
    for col in ("sparsity", "magnitude %", "OBD (Gauss-Newton) %", "OBD - magnitude", "OBD (Hutchinson) %"):
        t.add_column(col, justify="right")
    for r in ob["rows"]:
        t.add_row(f"{r['sparsity']:.2f}", f"{100 * r['magnitude']:.2f}", f"{100 * r['obd']:.2f}",
                  f"{100 * (r['obd'] - r['magnitude']):+.2f}", f"{100 * r['obd_hutchinson']:.2f}")
    console.print(t)
    result["seconds"] = time.perf_counter() - start
    console.print(f"{result['seconds']:.0f} s")

    out = Path(__file__).parent / "results" / "pruning.json"
    out.parent.mkdir(exist_ok=True)
    write_json_atomic(out, result)


if __name__ == "__main__":
    main()
