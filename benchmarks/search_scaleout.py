"""Scale-out of ``nntailor search``: trials per minute on 1 vs 2 Dask workers, and the storage's cost per trial.

* Throughput: the same study (a small MLP space on digits, Optuna's RandomSampler, real trainings of
  ``--epochs`` epochs, at most ``--max-steps`` optimizer steps each) run by ``run_search`` on a
  ``distributed.LocalCluster`` of 1 and then 2 single-threaded worker processes, SQLite storage. Trials per
  minute over the trials' own span (first start to last completion, from the storage), so the cluster's start-up
  and the outputs are not counted; the ratio is 2-worker over 1-worker throughput (2.0 is linear scaling; the
  machine's free cores bound it).
* Storage overhead: ``ask`` + the space's suggestions + ``tell`` with a no-op objective (no training, Optuna's
  RandomSampler so the sampler costs nothing), median seconds per trial, on a SQLite file and on a local
  PostgreSQL server (``search.pg_local``: Debian's ``postgresql``, fsync off).

    python benchmarks/search_scaleout.py --trials 8 --epochs 40 --max-steps 800 --noop-trials 60

Results go to ``benchmarks/results/search_scaleout.json`` (written atomically).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import optuna
import yaml

from nntailor.atomic import write_json_atomic
from nntailor.run_search import prepare_search, run_search
from nntailor.search import space_from_dict
from nntailor.search.pg_local import local_postgres

RESULTS = Path(__file__).resolve().parent / "results" / "search_scaleout.json"
SPACE = {"space": {"kind": "mlp", "input_shape": [1, 64], "fc_layers": {"low": 1, "high": 2},
                   "fc_nodes": {"choices": [16, 32, 64, 128]}, "lr": {"choices": [0.05, 0.1, 0.2]}}}


def throughput(workers: int, trials: int, epochs: int, max_steps: int, tmp: Path) -> dict[str, float]:
    space = tmp / f"scale{workers}.yaml"
    space.write_text(yaml.safe_dump(SPACE))
    job = prepare_search(space, "digits", "stm32l476", trials, sampler="random", workers=workers,
                         out=tmp / f"out{workers}", epochs=epochs, max_steps=max_steps, dask="local")
    start = time.perf_counter()
    summary = run_search(job, progress=False)
    wall = time.perf_counter() - start
    study = optuna.load_study(study_name=job.study_name, storage=job.storage)
    done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    assert len(done) == trials == summary["complete_trials"]
    span = (max(t.datetime_complete for t in done) - min(t.datetime_start for t in done)).total_seconds()
    per_worker = [sum(t.user_attrs["worker"] == i for t in done) for i in range(workers)]
    return {"workers": workers, "trials": trials, "trials_per_worker": per_worker, "span_s": span, "wall_s": wall,
            "trials_per_min": 60.0 * trials / span, "median_trial_s": statistics.median(
                (t.datetime_complete - t.datetime_start).total_seconds() for t in done)}


def overhead(url: str, n: int) -> float:
    space = space_from_dict(SPACE)
    study = optuna.create_study(storage=url, sampler=optuna.samplers.RandomSampler(seed=0),
                                directions=["minimize", "minimize"])
    times = []
    for _ in range(n + 5):
        start = time.perf_counter()
        trial = study.ask()
        space.suggest(trial)
        study.tell(trial, [0.0, 0.0])
        times.append(time.perf_counter() - start)
    return statistics.median(times[5:])  # the first ones create the schema's caches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=40, help="digits: 23 steps of 64 images per epoch")
    parser.add_argument("--max-steps", type=int, default=800)
    parser.add_argument("--noop-trials", type=int, default=60)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        runs = [throughput(k, args.trials, args.epochs, args.max_steps, Path(tmp)) for k in (1, 2)]
        sqlite = overhead(f"sqlite:///{Path(tmp) / 'noop.db'}", args.noop_trials)
    with local_postgres() as url:
        postgres = overhead(url, args.noop_trials)
    ratio = runs[1]["trials_per_min"] / runs[0]["trials_per_min"]
    print(f"{'Dask workers':>12} {'trials':>6} {'per worker':>10} {'span s':>7} {'trials/min':>10} "
          f"{'median trial s':>14}")
    for r in runs:
        split = "/".join(map(str, r["trials_per_worker"]))
        print(f"{r['workers']:>12} {r['trials']:>6} {split:>10} {r['span_s']:>7.1f} {r['trials_per_min']:>10.1f} "
              f"{r['median_trial_s']:>14.2f}")
    print(f"throughput ratio 2/1 workers: {ratio:.2f}")
    print(f"ask+tell (no-op objective), median per trial: SQLite {sqlite * 1e3:.1f} ms, "
          f"PostgreSQL {postgres * 1e3:.1f} ms")
    machine = {"platform": platform.platform(), "cpus": os.cpu_count(), "usable_cpus": len(os.sched_getaffinity(0)),
               "load_average_1min": os.getloadavg()[0]}  # other jobs on the cores bound the 2-worker ratio
    result = {"machine": machine, "space": SPACE["space"],
              "epochs": args.epochs, "max_steps": args.max_steps, "throughput": runs, "ratio_2_over_1": ratio,
              "noop_trials": args.noop_trials, "ask_tell_median_s": {"sqlite": sqlite, "postgresql": postgres}}
    write_json_atomic(RESULTS, result)


if __name__ == "__main__":  # LocalCluster spawns its workers: they re-import this module (REFERENCES.md)
    main()
