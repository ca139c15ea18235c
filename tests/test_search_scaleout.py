"""Scale-out of ``nntailor search``: a real PostgreSQL server (Debian's ``initdb``/``pg_ctl`` in a temporary folder)
shared by two worker processes, and a real Dask ``LocalCluster``; unreachable storage and schedulers fail fast."""

import os
import subprocess
import sys
import time
from pathlib import Path

import optuna
import psycopg2
import pytest
import yaml
from optuna.trial import TrialState

from nntailor.cli import main
from nntailor.search.pg_local import PACKAGE, local_postgres

optuna.logging.set_verbosity(optuna.logging.WARNING)

SRC = str(Path(__file__).resolve().parents[1] / "src")
SPACE = {"space": {"kind": "mlp", "input_shape": [1, 64], "fc_layers": {"low": 1, "high": 2},
                   "fc_nodes": {"choices": [8, 16, 32, 64]}, "lr": {"choices": [0.05, 0.2]}}}


@pytest.fixture(scope="module")
def postgres():
    try:
        server = local_postgres()
        url = server.__enter__()
    except FileNotFoundError as exc:  # never a skip: the Makefile's sysdeps installs it
        pytest.fail(f"{exc} (Debian package {PACKAGE})")
    yield url
    server.__exit__(None, None, None)


def _space(tmp: Path, name: str) -> Path:
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(SPACE))
    return path


def _cli(*args: str) -> tuple[subprocess.CompletedProcess, int]:
    """The CLI's result and its process id."""
    env = {**os.environ, "PYTHONPATH": SRC}
    with subprocess.Popen([sys.executable, "-m", "nntailor.cli", "search", *args], env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        stdout, stderr = proc.communicate(timeout=600)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr), proc.pid


def _rows(url: str, sql: str) -> list[tuple]:
    """Straight from PostgreSQL (psycopg2, not Optuna): Optuna's RDB schema, tables ``trials`` and ``trial_params``."""
    with psycopg2.connect(url.replace("postgresql+psycopg2", "postgresql")) as conn, conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetchall()


def test_two_workers_share_one_postgresql_study(tmp_path, postgres):
    trials = 6
    done, _ = _cli(str(_space(tmp_path, "pg")), "--data", "digits", "--trials", str(trials), "--max-steps", "40",
                "--workers", "2", "--sampler", "random", "--storage", postgres, "--out", str(tmp_path / "out"),
                "--no-progress")
    assert done.returncode == 0, done.stderr
    every = optuna.load_study(study_name="pg", storage=postgres).get_trials(deepcopy=False)
    complete = [t for t in every if t.state == TrialState.COMPLETE]
    assert len(complete) == trials
    assert len({t.number for t in every}) == len(every)  # no number handed out twice
    assert {t.user_attrs["worker"] for t in complete} == {0, 1}
    # the server's own rows: exactly N COMPLETE trials, each with its parameters stored
    rows = _rows(postgres, "SELECT t.number, count(p.param_id) FROM trials t LEFT JOIN trial_params p "
                           "ON p.trial_id = t.trial_id WHERE t.state = 'COMPLETE' GROUP BY t.number")
    assert sorted(n for n, _ in rows) == sorted(t.number for t in complete)
    for number, count in rows:
        trial = next(t for t in complete if t.number == number)
        assert count == len(trial.params) == (4 if trial.params["fc_layers"] == 2 else 3)  # fc_nodes_1 only with 2


def _refused_within(capsys, monkeypatch, seconds: float, *args: str) -> str:
    monkeypatch.setattr("nntailor.train.fit", lambda *a, **k: pytest.fail("trained before refusing"))
    start = time.monotonic()
    assert main(["search", *args]) == 2
    assert time.monotonic() - start < seconds
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


def test_unreachable_postgresql_and_dask_fail_fast_in_one_line(tmp_path, capsys, monkeypatch):
    base = (str(_space(tmp_path, "down")), "--data", "digits", "--trials", "4", "--out", str(tmp_path / "o"))
    # a closed port on loopback (tests reach no address off this machine): refused at once, one line
    url = "postgresql+psycopg2://nntailor@127.0.0.1:9/none"
    assert f"--storage {url}: cannot open it" in _refused_within(capsys, monkeypatch, 15, *base, "--storage", url)
    err = _refused_within(capsys, monkeypatch, 15, *base, "--dask", "tcp://127.0.0.1:9")
    assert err.startswith("error: cannot reach the Dask scheduler at tcp://127.0.0.1:9")


def test_dask_local_cluster_with_two_workers_completes_the_trials(tmp_path):
    trials = 4
    out = tmp_path / "out"
    done, runner = _cli(str(_space(tmp_path, "dsk")), "--data", "digits", "--trials", str(trials), "--max-steps", "40",
                "--workers", "2", "--sampler", "random", "--out", str(out), "--no-progress", "--dask")
    assert done.returncode == 0, done.stderr
    every = optuna.load_study(study_name="dsk", storage=f"sqlite:///{out / 'study.db'}").get_trials(deepcopy=False)
    complete = [t for t in every if t.state == TrialState.COMPLETE]
    assert len(complete) == trials and len({t.number for t in every}) == len(every)
    assert {t.user_attrs["worker"] for t in complete} <= {0, 1}
    pids = {t.user_attrs["pid"] for t in complete}
    assert runner not in pids and 1 <= len(pids) <= 2  # trained in the cluster's two worker processes
    assert not [t for t in every if t.state == TrialState.RUNNING]
    assert f"{trials} complete trials" in done.stdout
