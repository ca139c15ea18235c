"""Mixed precision from the Hessian (issue 5), part 1: how good the Hutchinson trace is.

HAWQ-V2 ranks layers by Tr(H_l)/n_l x ||Q(W_l) - W_l||^2, with the trace from Hutchinson's estimator
(Rademacher z, Tr ~ mean z^T H z, Hz by a second backward). Here a small MLP trained on digits gets its
exact per-layer Hessian blocks from torch.autograd.functional.hessian, and the estimate's relative error is
measured against them for several sample counts, with the top eigenvalue (HAWQ, power iteration) too.
Goal (issue 5): relative error <= 5 %.
Part 2: LeNet-5 on MNIST (bundled 5k), weight widths from {2, 3, 4, 8}, 8-bit activations, PTQ accuracy:
HAWQ-V2 sensitivities with the integer program at the size of uniform 4-bit, at the size the Arm baseline
(largest layer first, lowest width without a significant drop) reaches, and at the BOPs of uniform 4-bit.
Goal (issue 5): HAWQ beats uniform at equal size. The test set has 1000 images: 0.1 point per image.

Run: python benchmarks/mixed_precision.py  ->  benchmarks/results/mixed_precision.json
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

import torch
import torch.nn as nn
from rich.console import Console
from rich.table import Table
from torch.func import functional_call

from nntailor import analyze
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
    part2 = ilp_against_baselines(console)
    write_json_atomic(Path(__file__).parent / "results" / "mixed_precision.json", {
        "part1_hutchinson_trace": {
            "exact_trace": exact, "exact_top_eigenvalue": exact_eig,
            "power_iteration_top_eigenvalue": dict(zip(layers, eig, strict=True)), "rows": rows,
            "worst_rel_error_at_max_samples": worst, "goal": 0.05, "met": worst <= 0.05},
        "part2_ilp": part2,
        "seconds": time.perf_counter() - start,
    })


def ilp_against_baselines(console: Console) -> dict:
    from torch.utils.data import DataLoader

    from nntailor import zoo
    from nntailor.compress import Context
    from nntailor.compress.quant.hawq import arm_sensitivity_bits, quantize_layers
    from nntailor.compress.quant.mixed import bops_cost, ilp_bits, omega, size_cost
    from nntailor.train import evaluate

    data = load_dataset("mnist")
    torch.manual_seed(0)
    model = zoo.get("lenet5")
    fit(model, data.train, TrainConfig(epochs=6, lr=1e-3, progress=False))
    context = Context(train=data.train, test=data.test, seed=0)
    bits = [2, 3, 4, 8]
    names = [n for n, m in model.named_modules() if type(m) in (nn.Linear, nn.Conv2d)]
    weights = {n: model.get_submodule(n).weight for n in names}
    loader = DataLoader(data.train, batch_size=128, shuffle=True, generator=torch.Generator().manual_seed(0))
    batches = [b for _, b in zip(range(2), loader, strict=False)]
    traces = dict(zip(names, hessian_traces(model, list(weights.values()), batches, samples=32,
                                            generator=torch.Generator().manual_seed(0)), strict=True))
    sensitivity = omega(traces, weights, bits)
    sizes, macs = size_cost(weights, bits), {}
    report = analyze(model, (1, 1, 28, 28), "stm32l476")
    for n in names:
        macs[n] = sum(lc.macs for lc in report.layers if lc.module == n)
    bops = bops_cost(macs, bits, 8)

    def accuracy(widths: dict[str, int]) -> float:
        return evaluate(quantize_layers(copy.deepcopy(model), widths, 8, context), data.test)

    def total(table: dict[str, dict[int, float]], widths: dict[str, int]) -> float:
        return sum(table[n][widths[n]] for n in names)

    uniform4 = dict.fromkeys(names, 4)
    uniform3 = dict.fromkeys(names, 3)
    arm = arm_sensitivity_bits(model, context, bits, tolerance=0.005)
    configs = {
        "uniform 4-bit": uniform4,
        "HAWQ at uniform-4 size": ilp_bits(sensitivity, sizes, total(sizes, uniform4)),
        "uniform 3-bit": uniform3,
        "HAWQ at uniform-3 size": ilp_bits(sensitivity, sizes, total(sizes, uniform3)),
        "Arm baseline": arm,
        "HAWQ at Arm size": ilp_bits(sensitivity, sizes, total(sizes, arm)),
        "HAWQ at uniform-4 BOPs": ilp_bits(sensitivity, bops, total(bops, uniform4)),
    }
    float_acc = evaluate(model, data.test)
    table = Table(title=f"LeNet-5 weight widths (acts 8-bit), PTQ; float {100 * float_acc:.2f} %")
    for col in ("config", "widths " + "/".join(names), "weight bytes", "BOPs", "accuracy %"):
        table.add_column(col, justify="right")
    results = {}
    for label, widths in configs.items():
        acc = accuracy(widths)
        results[label] = {"widths": widths, "weight_bytes": total(sizes, widths), "bops": total(bops, widths),
                          "accuracy": acc}
        table.add_row(label, "/".join(str(widths[n]) for n in names), f"{total(sizes, widths):,.0f}",
                      f"{total(bops, widths):.3g}", f"{100 * acc:.2f}")
    console.print(table)
    beats = {b: results[f"HAWQ at uniform-{b} size"]["accuracy"] > results[f"uniform {b}-bit"]["accuracy"]
             for b in (4, 3)}
    console.print(f"HAWQ beats uniform at equal size: 4-bit {beats[4]}, 3-bit {beats[3]}")
    return {"float_accuracy": float_acc, "traces": traces, "results": results, "hawq_beats_uniform": beats}


if __name__ == "__main__":
    main()
