"""The ``search`` job: an Optuna study of (error, cost) over a space, resumable, on one or more local processes.

``prepare_search`` checks everything a user can get wrong before any training (the space, the objective, the
sampler, the data against the space, a budget nothing in the space meets, the storage, a study of the same name
with other objectives); ``run_search`` runs the trials and writes the outputs.

- Objectives: the test error of the trained (and compressed) design (``search.evaluate``) and one cost from the
  cost model (``--objective``: ``energy_pj`` by default, ``latency_s``, ``flash_bytes`` or ``peak_sram_bytes``),
  both minimised. Chip budgets are Optuna constraints; a design over them is pruned before training.
- Storage: any Optuna RDB URL, by default ``sqlite:///OUT/study.db``; the study is named after the space file.
- Executors: ``--workers K`` local processes, or ``--dask ADDRESS`` (``local``: a ``distributed.LocalCluster`` of
  K single-threaded worker processes, started and closed here) where each of K Dask tasks runs the same trial loop
  as a local worker, against the storage by URL (SQLite across processes of one machine, PostgreSQL across
  machines). On a cluster by address, K is ``--workers`` when above 1, else the cluster's worker threads.
- Resume: trials left RUNNING by a killed run are marked FAIL and their parameters enqueued again, so they are
  re-asked; only COMPLETE trials count toward ``--trials``, so a rerun finishes exactly the missing ones and
  Optuna never reuses a trial number. One runner per study at a time (its ``--workers`` share it).
- Outputs in OUT: ``pareto.json`` (each feasible Pareto design: params, objectives, its totals from ``analyze``
  on the rebuilt model), ``hypervolume.html`` and ``front.html`` (plotly, self-contained), ``trials/N.safetensors``
  (each trained float model), and ``best/`` (the picked design: ``model.py:model``, ``weights.safetensors``,
  ``space.yaml``, ``recipe.yaml``) for ``nntailor compress best/model.py:model --recipe best/recipe.yaml``.

Hypervolume is pymoo's ``HV`` on (error, cost / reference cost) against the point (1, 1), the reference cost
1.1x the highest cost of any complete trial.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import shutil
import signal
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nntailor.atomic import write_atomic, write_json_atomic
from nntailor.errors import UserError

SAMPLERS = ("opal", "tpe", "nsga2", "gp", "random")
OBJECTIVES = ("energy_pj", "latency_s", "flash_bytes", "peak_sram_bytes")
PICKS = ("error", "cost")  # the exported design: the feasible Pareto design of lowest error, or of lowest cost
DASK_CONNECT_S = 5  # an unreachable Dask scheduler fails in seconds (distributed retries until this timeout)
POLL_S = 0.25  # how often workers waiting for the last trials, and the parent's progress bar, look at the storage


@dataclass(frozen=True)
class SearchJob:
    """Everything a worker process needs to rebuild the study (picklable: sent to spawned workers)."""

    space_path: str
    data: str
    target: str
    trials: int
    sampler: str
    storage: str
    study_name: str
    workers: int
    out: str
    objective: str
    pick: str
    seed: int
    epochs: int
    max_steps: int | None
    batch_size: int
    dask: str | None = None  # a scheduler address, "local" for a LocalCluster started by the runner, or None


def _open_storage(url: str) -> Any:
    import optuna

    kwargs: dict[str, Any] = {}
    if url.startswith("postgresql"):
        kwargs = {"connect_args": {"connect_timeout": 5}}  # an unreachable server fails in seconds, not minutes
    try:
        return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
    except Exception as exc:  # SQLAlchemy's and the drivers' errors: the URL is unusable, whatever the cause
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"--storage {url}: cannot open it: {first}") from None


def _space_key(space: Any) -> str:
    """The space as data (every field, defaults included), stored on the study to recognise it."""
    import json

    return json.dumps(space.spec.model_dump(mode="json"), sort_keys=True)


def _check_study(storage: Any, name: str, metric: str, space: Any) -> None:
    """A study of this name with other objectives or directions, or over another space, is refused (its trials
    mean something else)."""
    import optuna

    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        return
    directions = [d.name.lower() for d in study.directions]
    names = study.metric_names or [f"objective {i}" for i in range(len(directions))]
    if names != ["error", metric] or directions != ["minimize", "minimize"]:
        raise UserError(f"study {name!r} exists in the storage with objectives "
                        f"{', '.join(f'{n} ({d})' for n, d in zip(names, directions, strict=False))}; this run's are "
                        f"error, {metric} (both minimised): use another --storage or --objective")
    if study.user_attrs.get("space", _space_key(space)) != _space_key(space):
        raise UserError(f"study {name!r} exists in the storage over another space than this {name}.yaml: use "
                        f"another --storage, or rename the space file")


def prepare_search(space_path: str | Path, data: str, target: str, trials: int, *, sampler: str = "opal",
                   storage: str | None = None, workers: int = 1, out: str | Path, objective: str = "energy_pj",
                   pick: str = "error", seed: int = 0, epochs: int = 1, max_steps: int | None = None,
                   batch_size: int = 64, dask: str | None = None) -> SearchJob:
    """Validate a search before any training; raises ``UserError`` (one line) on bad input."""
    import math

    from nntailor.data import load_dataset
    from nntailor.search.constraints import ChipBudget, check_reachable
    from nntailor.search.costs import CostModel
    from nntailor.search.space import load_space
    from nntailor.targets import load as load_target

    if trials < 1:
        raise UserError(f"--trials must be at least 1, got {trials}")
    if workers < 1:
        raise UserError(f"--workers must be at least 1, got {workers}")
    if sampler not in SAMPLERS:
        raise UserError(f"--sampler {sampler!r}: valid samplers are {', '.join(SAMPLERS)}")
    if objective not in OBJECTIVES:
        raise UserError(f"--objective {objective!r}: valid objectives are {', '.join(OBJECTIVES)}")
    if pick not in PICKS:
        raise UserError(f"--pick {pick!r}: valid rules are {', '.join(PICKS)}")
    if max_steps is not None and max_steps < 1:
        raise UserError(f"--max-steps must be at least 1, got {max_steps}")
    if epochs < 1:
        raise UserError(f"--epochs must be at least 1, got {epochs}")
    if dask is not None:
        _check_dask(dask)
    space = load_space(space_path)
    tgt = load_target(target)
    datasets = load_dataset(data, seed=seed)
    spec = space.spec
    if math.prod(spec.input_shape) != math.prod(datasets.input_shape):
        raise UserError(f"space {space_path}: input_shape {list(spec.input_shape)} does not match the data's "
                        f"{list(datasets.input_shape)} ({datasets.name})")
    if spec.num_classes != datasets.num_classes:
        raise UserError(f"space {space_path}: num_classes {spec.num_classes} but {datasets.name} has "
                        f"{datasets.num_classes} classes")
    check_reachable(space, CostModel(tgt), ChipBudget(tgt, space.budgets))
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"--out {out}: cannot create it: {exc.strerror}") from None
    url = storage or f"sqlite:///{(out / 'study.db').resolve()}"
    name = Path(space_path).stem
    _check_study(_open_storage(url), name, objective, space)
    return SearchJob(space_path=str(Path(space_path).resolve()), data=data, target=target, trials=trials,
                     sampler=sampler, storage=url, study_name=name, workers=workers, out=str(out.resolve()),
                     objective=objective, pick=pick, seed=seed, epochs=epochs, max_steps=max_steps,
                     batch_size=batch_size, dask=dask)


def _connect_dask(address: str) -> Any:
    from distributed import Client

    try:
        return Client(address, timeout=DASK_CONNECT_S)
    except (OSError, TimeoutError, ValueError) as exc:  # refused, timed out, or a malformed address
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"cannot reach the Dask scheduler at {address}: {first}") from None


def _check_dask(address: str) -> None:
    if not address:
        raise UserError("--dask: give a scheduler address (tcp://HOST:PORT) or 'local'")
    if address != "local":
        _connect_dask(address).close()


def _study(job: SearchJob, sampler: Any = None) -> Any:
    import optuna

    study = optuna.create_study(study_name=job.study_name, storage=_open_storage(job.storage), sampler=sampler,
                                directions=["minimize", "minimize"], load_if_exists=True)
    if "space" not in study.user_attrs:
        from nntailor.search.space import load_space

        study.set_user_attr("space", _space_key(load_space(job.space_path)))
    if not study.metric_names:
        with warnings.catch_warnings():  # experimental since Optuna 3.2, unchanged since
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(["error", job.objective])
    return study


def _feasible(trial: Any) -> list[float]:
    return list(trial.constraints.values())


def _make_sampler(job: SearchJob, index: int, space: Any, costs: Any, budget: Any) -> Any:
    import optuna

    from nntailor.search.objectives import chip_constraints, design_cost
    from nntailor.search.sampler import OpalSampler

    seed = job.seed + 1000 * index  # workers draw different candidates
    if job.sampler == "opal":
        return OpalSampler(cheap_objectives={1: design_cost(space, costs, job.objective)},
                           cheap_constraints=chip_constraints(space, costs, budget), constraints_func=_feasible,
                           seed=seed)
    if job.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=seed, constraints_func=_feasible)
    if job.sampler == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, constraints_func=_feasible)
    if job.sampler == "gp":
        return optuna.samplers.GPSampler(seed=seed, constraints_func=_feasible)
    return optuna.samplers.RandomSampler(seed=seed)


def _die_with_parent() -> None:
    """A worker must not outlive a killed runner (its trial would be RUNNING forever): Linux's PR_SET_PDEATHSIG."""
    # elsewhere the worker stops before its next trial, when it sees it has been orphaned
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG = 1


def _work(job: SearchJob, index: int, on_trial: Callable[[Any], None] | None = None,
          parent: int | None = None) -> None:
    """Run trials until the study holds ``job.trials`` COMPLETE ones; a spawned worker stops when ``parent`` (the
    runner's pid) is gone."""
    import optuna
    import torch
    from safetensors.torch import save_file

    from nntailor.data import load_dataset
    from nntailor.search.constraints import ChipBudget
    from nntailor.search.costs import CostModel
    from nntailor.search.evaluate import search_objective
    from nntailor.search.space import load_space
    from nntailor.targets import load as load_target

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if job.workers > 1:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // job.workers))
    space = load_space(job.space_path)
    tgt = load_target(job.target)
    costs, budget = CostModel(tgt), ChipBudget(tgt, space.budgets)
    datasets = load_dataset(job.data, seed=job.seed)
    study = _study(job, _make_sampler(job, index, space, costs, budget))
    weights = Path(job.out) / "trials"

    def keep(trial: Any, model: Any) -> None:
        state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
        write_atomic(weights / f"{trial.number}.safetensors", lambda tmp: save_file(state, tmp))

    objective = search_objective(space, datasets, costs, budget, job.objective, on_trained=keep,
                                 epochs=job.epochs, max_steps=job.max_steps, batch_size=job.batch_size)
    state = optuna.trial.TrialState
    while True:
        if parent is not None and os.getppid() != parent:
            return  # orphaned: the runner is gone
        trials = study.get_trials(deepcopy=False, states=(state.COMPLETE, state.RUNNING))
        complete = sum(t.state == state.COMPLETE for t in trials)
        if complete >= job.trials:
            return
        if len(trials) >= job.trials:  # the last trials are running in other workers: one may still fail
            time.sleep(POLL_S)
            continue
        trial = study.ask()
        before = study.get_trials(deepcopy=False, states=(state.COMPLETE, state.RUNNING))
        if sum(t.number < trial.number for t in before) >= job.trials:  # another worker asked first
            trial.set_user_attr("surplus", True)
            study.tell(trial, state=state.FAIL)
            continue
        trial.set_user_attr("worker", index)
        trial.set_user_attr("pid", os.getpid())  # which process trained it (a Dask worker's, not the runner's)
        try:
            values = objective(trial)
        except optuna.TrialPruned:
            study.tell(trial, state=state.PRUNED)
        except BaseException:
            study.tell(trial, state=state.FAIL)
            raise
        else:
            study.tell(trial, values)
        if on_trial is not None:
            on_trial(study)


def _spawned(job: SearchJob, index: int, parent: int) -> None:
    _die_with_parent()
    if os.getppid() == parent:  # else the runner died before the signal was armed
        _work(job, index, parent=parent)


def _requeue(study: Any) -> int:
    """Trials left RUNNING by a killed run: FAIL, and their parameters asked again. Returns how many."""
    import optuna

    stale = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    for t in stale:
        study._storage.set_trial_state_values(t._trial_id, optuna.trial.TrialState.FAIL)
        study.enqueue_trial(t.params, user_attrs={"requeued_from": t.number})
    return len(stale)


def front_points(study: Any) -> tuple[list[Any], list[Any]]:
    """(every COMPLETE trial, the feasible Pareto ones: Optuna's ``best_trials``)."""
    import optuna

    done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    return done, list(study.best_trials) if done else []


def hypervolume(front: list[Any], reference_cost: float) -> float:
    """pymoo's HV of (error, cost / reference_cost) against (1, 1)."""
    import numpy as np
    from pymoo.indicators.hv import HV

    if not front or reference_cost <= 0:
        return 0.0
    points = np.array([[t.values[0], t.values[1] / reference_cost] for t in front], dtype=float)
    return float(HV(ref_point=np.array([1.0, 1.0]))(points))


def _reference_cost(done: list[Any]) -> float:
    return 1.1 * max((t.values[1] for t in done), default=0.0)


def run_search(job: SearchJob, *, progress: bool = True) -> dict[str, Any]:
    """Run the study to ``job.trials`` complete trials (resuming), then write the outputs; returns the summary."""
    import optuna
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = _study(job)
    requeued = _requeue(study)
    columns = (TextColumn("search"), BarColumn(), MofNCompleteColumn(), TextColumn("trials"),
               TextColumn("front {task.fields[front]}"), TextColumn("HV {task.fields[hv]:.4f}"), TimeElapsedColumn())
    with Progress(*columns, disable=not progress, transient=False) as bar:
        task = bar.add_task("search", total=job.trials, front=0, hv=0.0)

        def show(s: Any) -> None:
            done, front = front_points(s)
            bar.update(task, completed=min(len(done), job.trials), front=len(front),
                       hv=hypervolume(front, _reference_cost(done)))

        show(study)
        if job.dask is not None:
            _run_on_dask(job, lambda: show(study))
        elif job.workers == 1:
            _work(job, 0, on_trial=show)
        else:
            ctx = multiprocessing.get_context("spawn")
            procs = [ctx.Process(target=_spawned, args=(job, i, os.getpid())) for i in range(job.workers)]
            for p in procs:
                p.start()
            try:
                while any(p.is_alive() for p in procs):
                    show(study)
                    time.sleep(POLL_S)
            finally:
                for p in procs:
                    if p.is_alive():
                        p.kill()
                    p.join()
            failed = [p.exitcode for p in procs if p.exitcode]
            if failed:
                raise RuntimeError(f"{len(failed)} search worker(s) failed (exit codes {failed}); rerun to resume")
        show(study)
    summary = write_outputs(job, study)
    summary["requeued"] = requeued
    return summary


def _run_on_dask(job: SearchJob, show: Callable[[], None]) -> None:
    """K Dask tasks, each ``_work`` (the local worker's loop) against the storage; ``show`` while they run."""
    cluster = None
    if job.dask == "local":
        from distributed import Client, LocalCluster

        # processes: torch training holds the GIL; one thread each, as a local worker process
        cluster = LocalCluster(n_workers=job.workers, threads_per_worker=1, processes=True, dashboard_address=None)
        client = Client(cluster)
    else:
        client = _connect_dask(job.dask)
    try:
        threads = sum(w["nthreads"] for w in client.scheduler_info()["workers"].values())
        tasks = job.workers if job.dask == "local" or job.workers > 1 else max(1, threads)
        futures = [client.submit(_work, job, i, pure=False) for i in range(tasks)]
        try:
            while not all(f.done() for f in futures):
                show()
                time.sleep(POLL_S)
        finally:
            for f in futures:
                if not f.done():
                    f.cancel()
        failed = [f.exception() for f in futures if f.status == "error"]
        if failed:
            raise RuntimeError(f"{len(failed)} Dask search task(s) failed ({failed[0]!r}); rerun to resume")
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def write_outputs(job: SearchJob, study: Any) -> dict[str, Any]:
    """pareto.json, hypervolume.html, front.html and best/ from the study's COMPLETE trials."""
    from nntailor.search.costs import analyze_design
    from nntailor.search.space import load_space

    out = Path(job.out)
    space = load_space(job.space_path)
    done, front = front_points(study)
    ref = _reference_cost(done)
    hv = hypervolume(front, ref)
    pareto = []
    for t in sorted(front, key=lambda t: t.values[0]):
        report = analyze_design(space.design(t.params), job.target)
        pareto.append({"number": t.number, "params": t.params,
                       "objectives": {"error": t.values[0], job.objective: t.values[1]}, "costs": report.totals,
                       "fits": report.fits})
    summary: dict[str, Any] = {
        "study": job.study_name, "storage": job.storage, "sampler": job.sampler, "target": job.target,
        "objectives": ["error", job.objective], "complete_trials": len(done),
        "hypervolume": hv, "hypervolume_reference": {"error": 1.0, job.objective: ref}, "pareto": pareto,
    }
    write_json_atomic(out / "pareto.json", summary)
    _figures(out, job, done, front, ref)
    if pareto:
        chosen = min(front, key=lambda t: (t.values[0], t.values[1]) if job.pick == "error" else
                     (t.values[1], t.values[0]))
        summary["best"] = export_best(job, space, chosen, out / "best")
    return summary


def _figures(out: Path, job: SearchJob, done: list[Any], front: list[Any], ref: float) -> None:
    import plotly.graph_objects as go

    ordered = sorted(done, key=lambda t: t.number)
    curve = []
    for i in range(1, len(ordered) + 1):
        seen = ordered[:i]
        feasible = [t for t in seen if all(v <= 0 for v in t.constraints.values())]
        curve.append(hypervolume(feasible, ref))  # dominated points add nothing to a hypervolume
    hv_fig = go.Figure(go.Scatter(x=[t.number for t in ordered], y=curve, mode="lines+markers"))
    hv_fig.update_layout(title=f"{job.study_name}: hypervolume (pymoo HV, reference error 1, {job.objective} "
                               f"{ref:.4g})", xaxis_title="trial", yaxis_title="hypervolume")
    write_atomic(out / "hypervolume.html", lambda tmp: hv_fig.write_html(tmp, include_plotlyjs=True))
    on_front = {t.number for t in front}
    rest = [t for t in done if t.number not in on_front]
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[t.values[1] for t in rest], y=[t.values[0] for t in rest], mode="markers",
                             name="evaluated", text=[f"trial {t.number}: {t.params}" for t in rest]))
    best = sorted(front, key=lambda t: t.values[1])
    fig.add_trace(go.Scatter(x=[t.values[1] for t in best], y=[t.values[0] for t in best], mode="lines+markers",
                             name="Pareto front (feasible)", text=[f"trial {t.number}: {t.params}" for t in best]))
    fig.update_layout(title=f"{job.study_name}: error against {job.objective} on {job.target}",
                      xaxis_title=job.objective, yaxis_title="test error")
    write_atomic(out / "front.html", lambda tmp: fig.write_html(tmp, include_plotlyjs=True))


_MODEL_PY = '''"""Search study {study!r}, trial {number}: the design's architecture from its space, trained weights.

    nntailor compress {here}/model.py:model --recipe {here}/recipe.yaml --data DATA --out DIR
"""

from pathlib import Path

from safetensors.torch import load_file

from nntailor.search import load_space

HERE = Path(__file__).resolve().parent
PARAMS = {params!r}


def model():
    net = load_space(HERE / "space.yaml").design(PARAMS).build()
    net.load_state_dict(load_file(HERE / "weights.safetensors"))
    return net.eval()


model.input_shape = {shape!r}
'''


def export_best(job: SearchJob, space: Any, trial: Any, where: Path) -> dict[str, Any]:
    """best/: model.py (factory ``model``), weights.safetensors, space.yaml and the design's recipe.yaml."""
    import yaml

    from nntailor.compress.quant.ptq import QuantizeConfig

    design = space.design(trial.params)
    weights = Path(job.out) / "trials" / f"{trial.number}.safetensors"
    if not weights.is_file():
        raise UserError(f"trial {trial.number}'s trained weights are missing ({weights}); rerun the search")
    where.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(weights, where / "weights.safetensors")
    shutil.copyfile(job.space_path, where / "space.yaml")
    # the design's own steps; a design without width or sparsity dimensions was priced at the space's default
    # width, which an integer quantization makes
    steps = design.recipe() or [QuantizeConfig(weight_bits=design.default_bits, act_bits=design.default_bits)]
    recipe = {"steps": [s.model_dump(mode="json") for s in steps]}
    write_atomic(where / "recipe.yaml", lambda tmp: Path(tmp).write_text(yaml.safe_dump(recipe, sort_keys=False)))
    source = _MODEL_PY.format(study=job.study_name, number=trial.number, here=where, params=dict(trial.params),
                              shape=tuple(design.input_shape))
    write_atomic(where / "model.py", lambda tmp: Path(tmp).write_text(source))
    return {"number": trial.number, "params": trial.params, "model": f"{where / 'model.py'}:model",
            "recipe": str(where / "recipe.yaml")}
