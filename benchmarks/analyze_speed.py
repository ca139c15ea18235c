"""Speed and MAC counts of ``nntailor.analyze`` against fvcore, ptflops (aten backend) and thop.

What it measures, on ResNet-50 (v1.5), MobileNetV2 and VGG-16 at input (1, 3, 224, 224), in one run:

* the count each tool gives, next to the published MACs (conv/linear/matmul only, no bias or BN) and,
  where known, the figure each tool is known to give, so a reader can see every tool reproduce its number;
* the time of each tool, measured the same way for all of them:

  - one torch thread (``torch.set_num_threads(1)``), so no tool gains or loses from intra-op threads;
  - every tool warmed up first (``WARMUP`` untimed calls per tool and model: imports, dispatch tables and
    any caches a tool keeps are in the state a second call sees);
  - interleaved: each repetition runs every tool once, round-robin, the order rotated from one repetition
    to the next, so machine noise hits all tools alike;
  - the median of ``--reps`` (at least 7) repetitions, wall time (``time.perf_counter``) and, beside it,
    CPU time of the process (``time.process_time``), which time spent waiting for a core on a shared
    machine does not inflate.

  Speed-ups are ratios against fvcore (``fvcore_time / tool_time``; above 1 means faster than fvcore).

nntailor is timed three ways: ``nntailor.analyze(model, shape, "stm32l476")`` on the model it has seen before
(capture + cost + arena plan; the fx trace and the non-zero counts are reused while the model is unchanged,
the row its count and the goal come from), the same call on a fresh deep copy that no cache knows ("cold"),
and ``nntailor.capture(model, shape)`` alone (timing only).
Each tool is called the way its documentation shows, without an extra ``torch.no_grad()``. thop, ptflops and the
cold row get a fresh deep copy of the model per call, made outside the timed region: thop leaves buffers behind,
ptflops' aten backend four forward hooks per call (they would slow every later forward and trace of the model).

The goal in our issue: nntailor counts exactly the published MACs and is at least 5x faster than fvcore on
each of the three models, at one thread.

Run from the repository root::

    python benchmarks/analyze_speed.py            # 9 repetitions
    python benchmarks/analyze_speed.py --reps 15

Results go to ``benchmarks/results/analyze_speed.json`` (written atomically), the method with them.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime as dt
import gc
import io
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from fvcore.nn import FlopCountAnalysis
from ptflops import get_model_complexity_info
from rich.console import Console
from rich.table import Table
from thop import profile
from torch import nn

import nntailor

MODELS: tuple[str, ...] = ("resnet50", "mobilenet_v2", "vgg16")
INPUT_SHAPE: tuple[int, int, int, int] = (1, 3, 224, 224)
TARGET = "stm32l476"
GOAL_SPEEDUP = 5.0
THREADS = 1
WARMUP = 2
MIN_REPS = 7
RESULTS = Path(__file__).resolve().parent / "results" / "analyze_speed.json"

# Published MACs: conv / linear / matmul multiply-accumulates only (no bias, no BN).
PUBLISHED_MACS: dict[str, int] = {
    "resnet50": 4_089_184_256,
    "mobilenet_v2": 300_774_272,
    "vgg16": 15_470_264_320,
}
# Figures the tools themselves are known to give (None: no published figure, show what they give).
PUBLISHED_BY_TOOL: dict[str, dict[str, int | None]] = {
    "resnet50": {"fvcore": 4_111_512_576, "ptflops": 4_089_185_256, "thop": 4_133_742_592},
    "mobilenet_v2": {"fvcore": 314_193_216, "ptflops": 300_775_272, "thop": 327_486_720},
    "vgg16": {"fvcore": None, "ptflops": None, "thop": None},
}


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence the tools: stdout, stderr, Python warnings and logging."""
    sink = io.StringIO()
    previous = logging.root.manager.disable
    with (
        contextlib.redirect_stdout(sink),
        contextlib.redirect_stderr(sink),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore")
        logging.disable(logging.CRITICAL)
        try:
            yield
        finally:
            logging.disable(previous)


# --- the tools -------------------------------------------------------------------------------------------
# Each tool is a (prepare, run) pair: ``prepare`` is untimed (e.g. thop's deep copy) and returns what
# ``run`` gets; ``run`` is the timed call and returns the tool's count (None for timing-only rows).


def _same(model: nn.Module) -> nn.Module:
    return model


def _deepcopy(model: nn.Module) -> nn.Module:
    return copy.deepcopy(model)


def run_nntailor(model: nn.Module, x: torch.Tensor) -> int | None:
    report = nntailor.analyze(model, tuple(x.shape), TARGET)
    return int(report.totals["macs"])


def run_capture(model: nn.Module, x: torch.Tensor) -> int | None:
    nntailor.capture(model, tuple(x.shape))
    return None


def run_fvcore(model: nn.Module, x: torch.Tensor) -> int | None:
    return int(FlopCountAnalysis(model, x).total())  # fresh object: it caches its results


def run_ptflops(model: nn.Module, x: torch.Tensor) -> int | None:
    macs, _params = get_model_complexity_info(
        model,
        tuple(x.shape[1:]),
        as_strings=False,
        print_per_layer_stat=False,
        verbose=False,
        backend="aten",
        ost=io.StringIO(),  # its default stream is bound at import time, redirect_stdout misses it
    )
    if macs is None:
        raise RuntimeError("ptflops failed (it returned None)")
    return int(macs)


def run_thop(model: nn.Module, x: torch.Tensor) -> int | None:
    macs, _params = profile(model, inputs=(x,), verbose=False)
    return int(macs)


@dataclass(frozen=True)
class Tool:
    name: str
    prepare: Callable[[nn.Module], nn.Module]
    run: Callable[[nn.Module, torch.Tensor], int | None]
    counts: bool = True  # False: a timing-only row


TOOLS: tuple[Tool, ...] = (
    Tool("nntailor", _same, run_nntailor),
    Tool("nntailor (cold)", _deepcopy, run_nntailor),
    Tool("nntailor.capture", _same, run_capture, counts=False),
    Tool("fvcore", _same, run_fvcore),
    Tool("ptflops", _deepcopy, run_ptflops),
    Tool("thop", _deepcopy, run_thop),
)


@dataclass
class Measure:
    count: int | None = None
    times: list[float] = field(default_factory=list)  # wall seconds
    cpu_times: list[float] = field(default_factory=list)  # CPU seconds of this process

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def cpu_median(self) -> float:
        return statistics.median(self.cpu_times)


def call(tool: Tool, model: nn.Module, x: torch.Tensor) -> tuple[int | None, float, float]:
    """One call of ``tool``: untimed preparation and collection, timed run (wall and CPU seconds)."""
    subject = tool.prepare(model)
    gc.collect()
    with quiet():
        start, cpu_start = time.perf_counter(), time.process_time()
        count = tool.run(subject, x)
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    del subject
    return count, elapsed, cpu


def measure(models: dict[str, nn.Module], reps: int) -> dict[str, dict[str, Measure]]:
    torch.manual_seed(0)
    inputs = {name: torch.randn(INPUT_SHAPE) for name in models}
    results: dict[str, dict[str, Measure]] = {name: {t.name: Measure() for t in TOOLS} for name in models}
    for name, model in models.items():  # warm-up, every tool; the counts come from here
        for _ in range(WARMUP):
            for tool in TOOLS:
                count, _, _ = call(tool, model, inputs[name])
                results[name][tool.name].count = count
    for rep in range(reps):
        order = TOOLS[rep % len(TOOLS) :] + TOOLS[: rep % len(TOOLS)]  # rotate: no tool always goes first
        for name, model in models.items():
            for tool in order:
                count, elapsed, cpu = call(tool, model, inputs[name])
                if tool.counts and count != results[name][tool.name].count:
                    raise RuntimeError(f"{tool.name} gave {results[name][tool.name].count} then {count} on {name}")
                results[name][tool.name].times.append(elapsed)
                results[name][tool.name].cpu_times.append(cpu)
        print(f"repetition {rep + 1}/{reps} done", file=sys.stderr)
    return results


# --- report ----------------------------------------------------------------------------------------------


def fmt_int(value: int | None) -> str:
    return "—" if value is None else f"{value:,}"


def fmt_diff(count: int | None, reference: int | None) -> str:
    if count is None or reference is None:
        return "—"
    diff = count - reference
    return "exact" if diff == 0 else f"{diff:+,} ({diff / reference:+.2%})"


METHOD = {
    "torch_threads": THREADS,
    "warmup_calls_per_tool": WARMUP,
    "order": "interleaved: every tool once per repetition, round-robin, order rotated each repetition",
    "statistic": "median over repetitions",
    "clock": "time.perf_counter (wall); time.process_time (CPU of this process) beside it",
    "speedup": "fvcore median / tool median",
    "untimed": "gc.collect() before each call; deep copies for thop, ptflops and the cold nntailor row",
}


def to_json(results: dict[str, dict[str, Measure]], reps: int) -> dict[str, Any]:
    models: dict[str, Any] = {}
    speedups: dict[str, float] = {}
    cpu_speedups: dict[str, float] = {}
    cold_speedups: dict[str, float] = {}
    exact: dict[str, bool] = {}
    for name, by_tool in results.items():
        fv, fv_cpu = by_tool["fvcore"].median, by_tool["fvcore"].cpu_median
        models[name] = {}
        for tool, m in by_tool.items():
            own = PUBLISHED_BY_TOOL.get(name, {}).get(tool)
            models[name][tool] = {
                "count": m.count,
                "median_s": m.median,
                "times_s": m.times,
                "cpu_median_s": m.cpu_median,
                "cpu_times_s": m.cpu_times,
                "ratio_vs_fvcore": fv / m.median,
                "cpu_ratio_vs_fvcore": fv_cpu / m.cpu_median,
                "diff_vs_published_macs": None if m.count is None else m.count - PUBLISHED_MACS[name],
                "tool_published": own,
                "reproduces_tool_published": None if own is None or m.count is None else m.count == own,
            }
        speedups[name] = fv / by_tool["nntailor"].median
        cpu_speedups[name] = fv_cpu / by_tool["nntailor"].cpu_median
        cold_speedups[name] = fv / by_tool["nntailor (cold)"].median
        exact[name] = by_tool["nntailor"].count == PUBLISHED_MACS[name]
    min_speedup = min(speedups.values())
    return {
        "benchmark": "analyze_speed",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "reps": reps,
        "warmup": WARMUP,
        "method": METHOD,
        "input_shape": list(INPUT_SHAPE),
        "target": TARGET,
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(),
        },
        "published": {"macs": PUBLISHED_MACS, "by_tool": PUBLISHED_BY_TOOL},
        "models": models,
        "goal": {
            "min_speedup_required": GOAL_SPEEDUP,
            "speedup_vs_fvcore": speedups,
            "min_speedup": min_speedup,
            "cpu_speedup_vs_fvcore": cpu_speedups,
            "cold_speedup_vs_fvcore": cold_speedups,
            "exact_macs": exact,
            "met": min_speedup >= GOAL_SPEEDUP and all(exact.values()),
        },
    }


def print_table(data: dict[str, Any], console: Console) -> None:
    m = data["method"]
    table = Table(
        title=f"nntailor.analyze vs fvcore / ptflops / thop, input {INPUT_SHAPE}: {m['torch_threads']} torch thread, "
        f"every tool warmed up ({m['warmup_calls_per_tool']} calls), interleaved round-robin, "
        f"median of {data['reps']}"
    )
    for column, justify in (
        ("model", "left"),
        ("tool", "left"),
        ("count", "right"),
        ("published MACs", "right"),
        ("diff", "right"),
        ("tool's published", "right"),
        ("median wall", "right"),
        ("speed-up vs fvcore", "right"),
        ("median CPU", "right"),
        ("CPU speed-up", "right"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for name, by_tool in data["models"].items():
        for i, (tool, row) in enumerate(by_tool.items()):
            own = row["tool_published"]
            own_text = "—" if own is None else f"{own:,}" + (" ✓" if row["reproduces_tool_published"] else " ✗")
            table.add_row(
                name if i == 0 else "",
                tool,
                fmt_int(row["count"]),
                fmt_int(PUBLISHED_MACS[name]) if row["count"] is not None else "",
                fmt_diff(row["count"], PUBLISHED_MACS[name]),
                own_text,
                f"{row['median_s'] * 1e3:,.1f} ms",
                f"{row['ratio_vs_fvcore']:.2f}x",
                f"{row['cpu_median_s'] * 1e3:,.1f} ms",
                f"{row['cpu_ratio_vs_fvcore']:.2f}x",
                end_section=i == len(by_tool) - 1,
            )
    console.print(table)


def write_atomic(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", delete=False) as tmp:
        try:
            json.dump(data, tmp, indent=2)
            tmp.write("\n")
        except BaseException:
            tmp.close()
            os.unlink(tmp.name)
            raise
    os.chmod(tmp.name, 0o644)  # NamedTemporaryFile creates it 0600
    os.replace(tmp.name, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=9, help=f"timed repetitions per tool and model (default 9, "
                        f"at least {MIN_REPS})")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"JSON output (default {RESULTS})")
    args = parser.parse_args(argv)
    if args.reps < MIN_REPS:
        parser.error(f"--reps must be at least {MIN_REPS}: the median of fewer is too noisy to judge a 5x goal")
    torch.set_num_threads(THREADS)

    console = Console()
    if console.width < 172:  # a pipe or a narrow terminal: keep the table's rows on one line each
        console = Console(width=172)
    models = {name: nntailor.zoo.get(name).eval() for name in MODELS}
    results = measure(models, args.reps)
    data = to_json(results, args.reps)
    print_table(data, console)
    write_atomic(args.out, data)
    console.print(f"wrote {args.out}")

    goal = data["goal"]
    slowest = min(goal["speedup_vs_fvcore"], key=goal["speedup_vs_fvcore"].get)
    ratios = ", ".join(f"{name} {ratio:.2f}x" for name, ratio in goal["speedup_vs_fvcore"].items())
    cold = ", ".join(f"{name} {ratio:.2f}x" for name, ratio in goal["cold_speedup_vs_fvcore"].items())
    console.print(f"method: {THREADS} torch thread, every tool warmed up, interleaved round-robin, "
                  f"median of {args.reps}")
    console.print(f"speed-up of nntailor.analyze vs fvcore (wall): {ratios}; on a model seen for the first time: "
                  f"{cold}")
    console.print(
        f"min speed-up of nntailor.analyze vs fvcore: {goal['min_speedup']:.2f}x ({slowest}); "
        f"exact MACs on {sum(goal['exact_macs'].values())}/{len(goal['exact_macs'])} models; "
        f"goal (exact and >= {GOAL_SPEEDUP:g}x): {'MET' if goal['met'] else 'NOT MET'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
