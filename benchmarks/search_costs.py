"""Cost speed: designs of seed 000's MNIST CNN space priced per second by ``search.CostModel`` against ``analyze``.

Three paths, timed on the same random designs (Optuna's RandomSampler, seeded), interleaved design by design (so
load on the machine hits them alike), one torch thread, each warmed on designs outside the timed set; the
figure per path is the median seconds per design:

* ``analyze``: build the design's model and ``analyze`` it (``search.analyze_design``), the path every
  other number is checked against;
* ``cold``: ``CostModel.totals`` with an empty segment cache, so every segment is new (compiled to a graph by
  ``search.compile`` and priced by ``analyze``, never captured): the cost of a first visit;
* ``new_segs``: a cost model that has priced the designs before this one, with its segment cache emptied: every
  segment is new, but layers other segments share (same kind, shapes, widths) come from its per-layer cache, as
  in a search that has run a while;
* ``warm``: a cost model that has priced the design before (every segment cached).

Every cold and warm total is compared with ``analyze``'s before anything is reported. The issue's goal: cold
>= 100x.

    python benchmarks/search_costs.py --designs 200

Results go to ``benchmarks/results/search_costs.json`` (written atomically).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import time
from pathlib import Path

import optuna
import torch

from nntailor.atomic import write_atomic
from nntailor.search import CostModel, analyze_design, space_from_dict
from nntailor.search.costs import TOTALS

RESULTS = Path(__file__).resolve().parent / "results" / "search_costs.json"
SPACE = {"kind": "cnn", "input_shape": [1, 1, 28, 28]}  # seed 000's ranges are the defaults


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--designs", type=int, default=200)
    parser.add_argument("--analyze-designs", type=int, default=60, help="designs timed (and checked) through analyze")
    parser.add_argument("--target", default="stm32l476")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    space = space_from_dict({"space": SPACE})
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    designs = []
    for _ in range(args.designs + 5):
        trial = study.ask()
        designs.append(space.suggest(trial))
        study.tell(trial, 0.0)

    for d in designs[-5:]:  # warm-up, outside the timed set: imports, target loading, allocator
        analyze_design(d, args.target)
        CostModel(args.target).totals(d)
    designs = designs[:-5]
    warm_costs = CostModel(args.target)
    seg_cold_costs = CostModel(args.target)
    times: dict[str, list[float]] = {"analyze": [], "cold": [], "new_segs": [], "warm": []}
    for i, d in enumerate(designs):
        timed = i < args.analyze_designs
        if timed:
            start = time.perf_counter()
            ref = analyze_design(d, args.target).totals
            times["analyze"].append(time.perf_counter() - start)
        cold_costs = CostModel(args.target)
        start = time.perf_counter()
        cold = cold_costs.totals(d)
        times["cold"].append(time.perf_counter() - start)
        seg_cold_costs._segments.clear()
        start = time.perf_counter()
        new_segs = seg_cold_costs.totals(d)
        times["new_segs"].append(time.perf_counter() - start)
        warm_costs.totals(d)
        start = time.perf_counter()
        warm = warm_costs.totals(d)
        times["warm"].append(time.perf_counter() - start)
        if timed:
            for fast in (cold, new_segs, warm):
                for key in TOTALS:
                    if isinstance(ref[key], dict):
                        assert all(math.isclose(fast[key][k], ref[key][k], rel_tol=1e-9) for k in ref[key]), key
                    else:
                        assert math.isclose(fast[key], ref[key], rel_tol=1e-9), key
    costs = warm_costs
    slow = statistics.median(times["analyze"])
    refs = times["analyze"]
    rows = {name: statistics.median(t) for name, t in times.items()}
    print(f"{'path':<8} {'ms/design':>10} {'designs/s':>10} {'vs analyze':>11}")
    for name, sec in rows.items():
        print(f"{name:<8} {sec * 1e3:>10.3f} {1 / sec:>10.0f} {slow / sec:>10.1f}x")
    print(f"segments priced: {len(costs._segments)} for {len(designs)} designs")
    out = {
        "space": SPACE, "target": args.target, "designs": args.designs, "analyze_designs": len(refs),
        "threads": args.threads, "machine": platform.machine(), "python": platform.python_version(),
        "seconds_per_design": rows, "speedup_vs_analyze": {k: slow / v for k, v in rows.items()},
        "segments_priced": len(costs._segments),
    }
    write_atomic(RESULTS, lambda tmp: Path(tmp).write_text(json.dumps(out, indent=2) + "\n"))


if __name__ == "__main__":
    main()
