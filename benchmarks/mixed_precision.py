"""Mixed precision from the Hessian (issue 5), part 1: how good the Hutchinson trace is.

HAWQ-V2 ranks layers by Tr(H_l)/n_l x ||Q(W_l) - W_l||^2, with the trace from Hutchinson's estimator
(Rademacher z, Tr ~ mean z^T H z, Hz by a second backward). Here a small MLP trained on digits gets its
exact per-layer Hessian blocks from torch.autograd.functional.hessian, and the estimate's relative error is
measured against them for several sample counts, with the top eigenvalue (HAWQ, power iteration) too.
Goal (issue 5): relative error <= 5 %.
(Part 2, HAWQ-V3's integer program against uniform 4-bit and the Arm baseline, is not written yet.)

Run: python benchmarks/mixed_precision.py  ->  benchmarks/results/mixed_precision.json
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
import torch.nn as nn
from rich.console import Console
from rich.table import Table
from torch.func import functional_call

from nntailor.atomic import write_json_atomic
from nntailor.compress.hessian import hessian_traces, top_eigenvalues
from nntailor.data import load_dataset
from nntailor.train import TrainConfig, fit

SAMPLES = (16, 64, 256, 1024)


def exact_blocks(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    names = [n for n, _ in model.named_parameters()]
    params = tuple(p.detach() for p in model.parameters())

    def loss(*ps: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(functional_call(model, dict(zip(names, ps, strict=True)), (x,)), y)

    full = torch.autograd.functional.hessian(loss, params)
    return {n: full[i][i].reshape(p.numel(), p.numel()) for i, (n, p) in enumerate(zip(names, params, strict=True))}


def main() -> None:
    start = time.perf_counter()
    data = load_dataset("digits")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 24), nn.ReLU(), nn.Linear(24, 16), nn.ReLU(), nn.Linear(16, 10))
    fit(model, data.train, TrainConfig(epochs=4, lr=3e-3, progress=False))
    batch = (data.train.tensors[0][:256], data.train.tensors[1][:256])
    layers = ["1.weight", "3.weight", "5.weight"]
    blocks = exact_blocks(model, *batch)
    params = dict(model.named_parameters())
    exact = {n: float(blocks[n].trace()) for n in layers}
    exact_eig = {n: float(torch.linalg.eigvalsh(blocks[n]).max()) for n in layers}

    rows = []
    for samples in SAMPLES:
        est = hessian_traces(model, [params[n] for n in layers], [batch], samples=samples,
                             generator=torch.Generator().manual_seed(samples))
        rows.append({"samples": samples, **{n: {"estimate": e, "rel_error": abs(e - exact[n]) / abs(exact[n])}
                                            for n, e in zip(layers, est, strict=True)}})
    eig = top_eigenvalues(model, [params[n] for n in layers], [batch], iterations=300,
                          generator=torch.Generator().manual_seed(0))

    table = Table(title="Hutchinson per-layer Hessian trace vs exact (autograd), MLP 64-24-16-10 on digits")
    table.add_column("samples", justify="right")
    for n in layers:
        table.add_column(f"{n} rel. error", justify="right")
    for r in rows:
        table.add_row(str(r["samples"]), *(f"{100 * r[n]['rel_error']:.2f} %" for n in layers))
    console = Console(width=140)
    console.print(table)
    console.print("exact traces: " + ", ".join(f"{n} {exact[n]:.4f}" for n in layers))
    console.print("top eigenvalue, power iteration vs exact: " + ", ".join(
        f"{n} {e:.4f} / {exact_eig[n]:.4f}" for n, e in zip(layers, eig, strict=True)))
    worst = max(rows[-1][n]["rel_error"] for n in layers)
    console.print(f"worst relative error at {SAMPLES[-1]} samples: {100 * worst:.2f} % (goal <= 5 %: "
                  f"{'MET' if worst <= 0.05 else 'NOT MET'}); {time.perf_counter() - start:.0f} s")
    write_json_atomic(Path(__file__).parent / "results" / "mixed_precision.json", {
        "part": "hutchinson_trace", "exact_trace": exact, "exact_top_eigenvalue": exact_eig,
        "power_iteration_top_eigenvalue": dict(zip(layers, eig, strict=True)), "rows": rows,
        "worst_rel_error_at_max_samples": worst, "goal": 0.05, "met": worst <= 0.05,
    })


if __name__ == "__main__":
    main()
