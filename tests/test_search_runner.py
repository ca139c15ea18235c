"""``nntailor search``: a real study on digits, killed mid-run (SIGKILL) and resumed, two worker processes, the
outputs (a brute-force-checked Pareto set, analyze's costs, Optuna's hypervolume) and the exported design loaded
by ``nntailor compress``; bad input refused in one line before any training."""

import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
import yaml
from optuna.trial import TrialState
from safetensors.torch import load_file

from nntailor.cli import main
from nntailor.cost.report import analyze
from nntailor.models import load_model
from nntailor.search import build, load_space
from nntailor.targets import load

optuna.logging.set_verbosity(optuna.logging.WARNING)

SRC = str(Path(__file__).resolve().parents[1] / "src")
SPACE = {"space": {"kind": "mlp", "input_shape": [1, 64], "fc_layers": {"low": 1, "high": 2},
                   "fc_nodes": {"choices": [8, 16, 32, 64]}, "lr": {"choices": [0.05, 0.2]}}}
TRIALS = 8


def _space(tmp: Path, data: dict = SPACE, name: str = "tiny") -> Path:
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _cli(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": SRC}
    return subprocess.Popen([sys.executable, "-m", "nntailor.cli", "search", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _trials(out: Path, name: str = "tiny") -> list:
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{out / 'study.db'}")
    return study.get_trials(deepcopy=False)


@pytest.fixture(scope="module")
def resumed(tmp_path_factory):
    """Run, SIGKILL once some trials are complete and one is running, rerun to the end."""
    tmp = tmp_path_factory.mktemp("search")
    space, out = _space(tmp), tmp / "out"
    args = (str(space), "--data", "digits", "--trials", str(TRIALS), "--max-steps", "40", "--out", str(out),
            "--no-progress")
    first = _cli(*args)
    deadline = time.monotonic() + 240
    before: list = []
    while time.monotonic() < deadline and first.poll() is None:
        if (out / "study.db").exists():
            try:
                before = _trials(out)
            except Exception:  # the schema is being created
                before = []
            states = [t.state for t in before]
            if states.count(TrialState.COMPLETE) >= 2 and TrialState.RUNNING in states:
                break
        time.sleep(0.02)
    assert first.poll() is None, "the first run ended before it could be killed"
    first.send_signal(signal.SIGKILL)
    first.wait()
    killed = _trials(out)
    second = _cli(*args)
    stdout, stderr = second.communicate(timeout=600)
    assert second.returncode == 0, stderr
    return {"space": space, "out": out, "killed": killed, "after": _trials(out), "stdout": stdout}


def test_a_killed_run_resumes_with_no_trial_lost_or_repeated(resumed):
    killed, after = resumed["killed"], resumed["after"]
    done_before = {t.number: t for t in killed if t.state == TrialState.COMPLETE}
    running = [t for t in killed if t.state == TrialState.RUNNING]
    assert len(done_before) >= 2 and running  # the kill landed mid-trial
    complete = [t for t in after if t.state == TrialState.COMPLETE]
    assert len(complete) == TRIALS
    numbers = [t.number for t in after]
    assert len(numbers) == len(set(numbers))
    by_number = {t.number: t for t in after}
    for n, t in done_before.items():  # the first run's complete trials are kept as they were
        assert by_number[n].state == TrialState.COMPLETE and by_number[n].values == t.values
        assert by_number[n].params == t.params
    assert not [t for t in after if t.state == TrialState.RUNNING]
    for t in running:  # marked FAIL and asked again with the same parameters
        assert by_number[t.number].state == TrialState.FAIL
        again = [u for u in after if u.user_attrs.get("requeued_from") == t.number]
        assert len(again) == 1 and again[0].state == TrialState.COMPLETE
        assert all(again[0].params[k] == v for k, v in t.params.items())


def _dominates(a, b):
    return all(x <= y for x, y in zip(a, b, strict=True)) and any(x < y for x, y in zip(a, b, strict=True))


def test_pareto_json_is_the_brute_force_front_with_analyze_costs(resumed):
    out = resumed["out"]
    result = json.loads((out / "pareto.json").read_text())
    assert result["complete_trials"] == TRIALS and result["objectives"] == ["error", "energy_pj"]
    complete = [t for t in resumed["after"] if t.state == TrialState.COMPLETE]
    feasible = [t for t in complete if all(v <= 0 for v in t.constraints.values())]
    front = {t.number for t in feasible if not any(_dominates(u.values, t.values) for u in feasible)}
    assert {p["number"] for p in result["pareto"]} == front
    space = load_space(resumed["space"])
    for p in result["pareto"]:
        design = space.design(p["params"])
        report = analyze(build(design), design.input_shape, "stm32l476", **design.pricing())
        assert p["costs"]["energy_pj"] == report.totals["energy_pj"] == p["objectives"]["energy_pj"]
        for key in ("macs", "flash_bytes", "peak_sram_bytes", "latency_s", "params"):
            assert p["costs"][key] == report.totals[key], key
    # the hypervolume is Optuna's too (pymoo computed it): same normalized points, same reference point
    ref = result["hypervolume_reference"]["energy_pj"]
    points = np.array([[p["objectives"]["error"], p["objectives"]["energy_pj"] / ref] for p in result["pareto"]])
    assert result["hypervolume"] == pytest.approx(optuna._hypervolume.compute_hypervolume(points, np.ones(2)),
                                                  rel=1e-12)


def test_figures_are_self_contained_plotly(resumed):
    for name in ("front.html", "hypervolume.html"):
        html = (resumed["out"] / name).read_text()
        assert "Plotly.newPlot" in html and 'src="https://cdn' not in html
    front = (resumed["out"] / "front.html").read_text()
    assert "Pareto front (feasible)" in front and "evaluated" in front


def test_the_chosen_design_loads_in_compress(resumed, tmp_path):
    out = resumed["out"]
    result = json.loads((out / "pareto.json").read_text())
    lowest = min(result["pareto"], key=lambda p: p["objectives"]["error"])
    assert f"trial {lowest['number']} ->" in resumed["stdout"]
    code = main(["compress", f"{out / 'best' / 'model.py'}:model", "--recipe", str(out / "best" / "recipe.yaml"),
                 "--data", "digits", "--out", str(tmp_path / "c"), "--no-progress"])
    assert code == 0
    report = json.loads((tmp_path / "c" / "compress.json").read_text())
    assert report["steps"][0]["step"] == "quantize" and report["after"]["a_bits"] == [8]
    # the model compress started from is the trial's trained network, not a fresh one
    loaded = load_model(f"{out / 'best' / 'model.py'}:model")
    trained = load_file(out / "trials" / f"{lowest['number']}.safetensors")
    state = loaded.model.state_dict()
    assert state.keys() == trained.keys() and all(torch.equal(state[k], trained[k]) for k in trained)
    assert loaded.input_shape == (1, 64)
    assert report["before"]["accuracy"] > 0.3  # trained: chance is 0.1


def test_two_workers_share_one_study(tmp_path):
    space, out = _space(tmp_path, name="pair"), tmp_path / "out"
    proc = _cli(str(space), "--data", "digits", "--trials", "6", "--max-steps", "150", "--workers", "2",
                "--sampler", "random", "--out", str(out))
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr
    trials = _trials(out, "pair")
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 6
    assert {t.user_attrs["worker"] for t in complete} == {0, 1}
    assert len({t.number for t in trials}) == len(trials)
    result = json.loads((out / "pareto.json").read_text())
    assert result["complete_trials"] == 6
    # the progress bar's last state: trials done, the front's size and its hypervolume
    assert f"6/6 trials front {len(result['pareto'])} HV {result['hypervolume']:.4f}" in stdout


def _refused(capsys, monkeypatch, *args):
    monkeypatch.setattr("nntailor.train.fit", lambda *a, **k: pytest.fail("trained before refusing"))
    assert main(["search", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


def test_bad_input_is_refused_in_one_line_before_training(tmp_path, capsys, monkeypatch):
    good = _space(tmp_path)
    base = ("--data", "digits", "--trials", "4", "--out", str(tmp_path / "o"))
    empty = _space(tmp_path, {"space": {**SPACE["space"], "fc_nodes": {"choices": []}}}, "empty")
    assert "fc_nodes" in _refused(capsys, monkeypatch, str(empty), *base)
    backwards = _space(tmp_path, {"space": {**SPACE["space"], "fc_nodes": {"low": 50, "high": 10}}}, "back")
    assert "low 50 > high 10" in _refused(capsys, monkeypatch, str(backwards), *base)
    unknown = _space(tmp_path, {"space": {"kind": "blocks", "input_shape": [1, 1, 8, 8], "block":
                                          {"choices": ["warp_drive"]}}}, "unknown")
    assert "warp_drive" in _refused(capsys, monkeypatch, str(unknown), *base)
    # a chip whose SRAM nothing in the space fits: the cheapest design is named with its cost
    chip = load("stm32l476").model_dump()
    for mem in chip["memories"]:
        if "activations" in mem["holds"]:
            mem["size_bytes"] = 64
    (tmp_path / "tiny_chip.yaml").write_text(yaml.safe_dump(chip))
    err = _refused(capsys, monkeypatch, str(good), *base, "--target", str(tmp_path / "tiny_chip.yaml"))
    assert "no design in the space fits" in err and "'fc_nodes_0': 8" in err and "peak SRAM" in err
    err = _refused(capsys, monkeypatch, str(good), *base, "--storage", "postgresql://nobody@127.0.0.1:1/none")
    assert "--storage postgresql://nobody@127.0.0.1:1/none: cannot open it" in err
    # a study of the same name with other objectives
    storage = f"sqlite:///{tmp_path / 'other.db'}"
    optuna.create_study(study_name="tiny", storage=storage, directions=["maximize"])
    err = _refused(capsys, monkeypatch, str(good), *base, "--storage", storage)
    assert "study 'tiny' exists in the storage with objectives" in err
    # the same study name and objectives over another space (the file edited between runs)
    with warnings.catch_warnings():  # set_metric_names: experimental since Optuna 3.2
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.create_study(study_name="tiny", storage=f"sqlite:///{tmp_path / 'edited.db'}",
                            directions=["minimize", "minimize"]).set_metric_names(["error", "energy_pj"])
    edited = optuna.load_study(study_name="tiny", storage=f"sqlite:///{tmp_path / 'edited.db'}")
    edited.set_user_attr("space", "{}")
    err = _refused(capsys, monkeypatch, str(good), *base, "--storage", f"sqlite:///{tmp_path / 'edited.db'}")
    assert "over another space" in err
    assert "--sampler" in _refused(capsys, monkeypatch, str(good), *base, "--sampler", "annealing")
    assert "--objective" in _refused(capsys, monkeypatch, str(good), *base, "--objective", "karma")
    mismatch = _space(tmp_path, {"space": {**SPACE["space"], "input_shape": [1, 784]}}, "mnistlike")
    assert "does not match the data's" in _refused(capsys, monkeypatch, str(mismatch), *base)
    assert "--trials" in _refused(capsys, monkeypatch, str(good), "--data", "digits", "--trials", "0")


def _spawned_children(pid: int) -> list[int]:
    """The runner's worker processes (multiprocessing spawn children), from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid and b"spawn_main" in cmdline:
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_killing_a_two_worker_runner_stops_its_workers_and_the_rerun_finishes(tmp_path):
    space, out = _space(tmp_path, name="duo"), tmp_path / "out"
    args = (str(space), "--data", "digits", "--trials", "6", "--max-steps", "60", "--workers", "2",
            "--sampler", "random", "--out", str(out), "--no-progress")
    first = _cli(*args)
    deadline = time.monotonic() + 240
    workers: set[int] = set()
    while time.monotonic() < deadline and first.poll() is None:
        workers |= set(_spawned_children(first.pid))
        if len(workers) == 2 and (out / "study.db").exists():
            try:
                if any(t.state == TrialState.COMPLETE for t in _trials(out, "duo")):
                    break
            except Exception:  # the schema is being created
                pass
        time.sleep(0.05)
    assert first.poll() is None and len(workers) == 2
    first.send_signal(signal.SIGKILL)
    first.wait()
    deadline = time.monotonic() + 10
    while any(_alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(w) for w in workers)  # PR_SET_PDEATHSIG: no orphan keeps a trial RUNNING
    second = _cli(*args)
    _, stderr = second.communicate(timeout=600)
    assert second.returncode == 0, stderr
    trials = _trials(out, "duo")
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 6
    assert not [t for t in trials if t.state == TrialState.RUNNING]
