"""Cost speed: designs of seed 000's MNIST CNN space priced per second by ``search.CostModel`` against ``analyze``.

Three numbers per run, on the same random designs (Optuna's RandomSampler, seeded):

* ``analyze``: build the design's model and ``analyze`` it (``search.analyze_design``), the path every
  other number is checked against;
* ``cold``: ``CostModel.totals`` with an empty segment cache, so a design whose segments are new is priced
  segment by segment by ``analyze`` (the cost of a first visit);
* ``warm``: the same designs again, every segment cached (what a sampler pays for candidates whose segments
  it has met, and for every design after the space's segments are all priced).

Every fast total is compared with ``analyze``'s before anything is timed. The issue's goal: warm >= 100x.

    python benchmarks/search_costs.py --designs 200

Results go to ``benchmarks/results/search_costs.json`` (written atomically).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
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
    parser.add_argument("--analyze-designs", type=int, default=30, help="designs timed through analyze")
    parser.add_argument("--target", default="stm32l476")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    space = space_from_dict({"space": SPACE})
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    designs = []
    for _ in range(args.designs):
        trial = study.ask()
        designs.append(space.suggest(trial))
        study.tell(trial, 0.0)

    costs = CostModel(args.target)
    start = time.perf_counter()
    fast = [costs.totals(d) for d in designs]
    cold = (time.perf_counter() - start) / len(designs)
    start = time.perf_counter()
    for d in designs:
        costs.totals(d)
    warm = (time.perf_counter() - start) / len(designs)
    start = time.perf_counter()
    refs = [analyze_design(d, args.target).totals for d in designs[:args.analyze_designs]]
    slow = (time.perf_counter() - start) / len(refs)
    for f, r in zip(fast, refs, strict=False):
        for key in TOTALS:
            if isinstance(r[key], dict):
                assert all(math.isclose(f[key][k], r[key][k], rel_tol=1e-9) for k in r[key]), key
            else:
                assert math.isclose(f[key], r[key], rel_tol=1e-9), key

    rows = {"analyze": slow, "cold": cold, "warm": warm}
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
