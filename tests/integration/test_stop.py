"""Ctrl-C and SIGTERM stop a ``cloakflow run`` within 5 s in each long phase (permutation
importance, training, the attacks): exit status 130 / 143, no release folder, the MLflow run
KILLED and the Prefect flow run Cancelled (``engine.StopOnSignals``, ``runners.interrupt``).

Each test starts the real command line on a generated table, waits until its output shows the
phase has started, sends the signal and times the exit. The default-suite test records its run
in the session's Prefect test server (no temporary server to start: ~40 s); the slow ones
cover training, and the attacks with the temporary server a bare ``cloakflow run`` starts.
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import mlflow
import numpy as np
import polars as pl
import pytest
import yaml

from tests.helpers import tiny_profile_dict
from tests.integration.conftest import BIN, clean_env, group_pids

pytestmark = pytest.mark.integration

STOP_WITHIN_S = 5.0


def stop_table(root: Path, rows: int = 8000, noise: int = 30, attacks: int = 30
               ) -> tuple[Path, Path]:
    """(csv, profile) of the tiny table's columns plus ``noise`` numeric columns (group
    ``noise``), so that permutation importance has many source columns to go through."""
    rng = np.random.default_rng(0)
    city = rng.choice(["north", "south", "east", "west"], size=rows)
    income = rng.gamma(3.0, 10.0, size=rows).round(2)
    score = income / 30 + (city == "north") * 1.0 + rng.normal(0, 0.5, size=rows)
    frame = pl.DataFrame({
        "age": rng.integers(18, 80, size=rows), "city": city, "income": income,
        "owns": rng.choice(["yes", "no"], size=rows, p=[0.3, 0.7]),
        **{f"x{i}": rng.random(rows).round(4) for i in range(noise)},
        "note": ["free text"] * rows,
        "label": np.where(score > np.quantile(score, 0.75), "yes", "no")})
    profile = tiny_profile_dict()
    profile["groups"]["noise"] = [f"x{i}" for i in range(noise)]
    profile["columns"].update({f"x{i}": "numeric" for i in range(noise)})
    profile["privacy"]["anonymeter_attacks"] = attacks
    csv, prof = root / "stop.csv", root / "stop.yaml"
    frame.write_csv(csv)
    prof.write_text(yaml.safe_dump(profile))
    return csv, prof


class CliRun:
    """A ``cloakflow run --verbose`` (every log line, to wait for a step) in its own process
    group, its output (stdout and stderr) collected line by line as it comes."""

    def __init__(self, process_groups, root: Path, env: dict[str, str], *options: str):
        csv, prof = stop_table(root, attacks=int(env.pop("_ATTACKS", "30")))
        self.root, self.env = root, env
        self.lines: list[str] = []
        self._seen = threading.Condition()
        self.proc = process_groups.start(
            [str(BIN / "cloakflow"), "run", "tiny", "--profile", str(prof), "--input",
             str(csv), "--no-cache", "--folds", "2", "--accept-risk", "test of a stop",
             "--verbose", *options], cwd=root, env={**env, "PYTHONUNBUFFERED": "1"},
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            with self._seen:
                self.lines.append(line.rstrip("\n"))
                self._seen.notify_all()

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, text: str, timeout: float = 400) -> None:
        """Wait until a line containing ``text`` was printed (fail if the run ended first)."""
        deadline = time.monotonic() + timeout
        with self._seen:
            while not any(text in line for line in self.lines):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"{text!r} never printed (exit {self.proc.poll()}):\n"
                                         + self.output[-4000:])
                self._seen.wait(0.5)

    def stop(self, sig: int, group: bool = False) -> tuple[int, float]:
        """Send ``sig`` (to the whole process group with ``group``, as a terminal's Ctrl-C
        does) and wait for the exit: (exit status, seconds from the signal to the exit)."""
        t = time.monotonic()
        if group:
            os.killpg(self.proc.pid, sig)
        else:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(30)
        except subprocess.TimeoutExpired:
            raise AssertionError("still running 30 s after the signal:\n"
                                 + self.output[-4000:]) from None
        seconds = time.monotonic() - t
        time.sleep(0.2)  # the reader thread takes the last lines
        print(f"stopped by {signal.Signals(sig).name} in {seconds:.2f} s (exit {rc})")
        return rc, seconds

    def killed_run(self):
        """The run's MLflow parent run (one in the store), read with mlflow's client."""
        client = mlflow.MlflowClient(self.env["MLFLOW_TRACKING_URI"])
        exp = client.get_experiment_by_name("cloakflow/tiny")
        runs = client.search_runs([exp.experiment_id])
        parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
        assert len(parents) == 1, [r.info.run_name for r in runs]
        children = [r for r in runs if r.data.tags.get("mlflow.parentRunId")]
        assert all(c.info.status in ("KILLED", "FINISHED") for c in children), \
            [(c.info.run_name, c.info.status) for c in children]
        return parents[0]

    def assert_stopped(self, rc: int, seconds: float, sig: int, not_done: str) -> None:
        """Exit 128 + sig within ``STOP_WITHIN_S``, the phase unfinished (no line matches the
        regex ``not_done``), nothing published, the MLflow run KILLED (the Prefect flow run's
        state is the caller's to check)."""
        assert seconds < STOP_WITHIN_S, f"{seconds:.1f} s:\n{self.output[-3000:]}"
        assert rc == 128 + sig, f"exit {rc}:\n{self.output[-3000:]}"
        assert not re.search(not_done, self.output), "the phase had ended before the signal"
        assert f"STOPPED by {signal.Signals(sig).name}, nothing was published" in self.output
        assert not (self.root / "releases").exists()
        run = self.killed_run()
        assert run.info.status == "KILLED"
        assert run.data.tags["cloakflow.status"] == "killed"
        assert run.data.tags["mlflow.runName"] == "anonymize-tiny"


def _flow_run_state(flow_run_id: str) -> str:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(flow_run_id).state.type.value


def test_ctrl_c_during_permutation_importance(tmp_path: Path, process_groups, prefect_harness):
    from prefect.settings import PREFECT_API_URL

    env = clean_env(tmp_path, PREFECT_API_URL=PREFECT_API_URL.value())
    run = CliRun(process_groups, tmp_path, env, "--skip-attacks", "--importance-rows", "0")
    run.wait_for("importance ORIGINAL: forest fitted")  # the permutations have started
    time.sleep(1.0)
    rc, seconds = run.stop(signal.SIGINT, group=True)
    run.assert_stopped(rc, seconds, signal.SIGINT, "importance ORIGINAL: top features")
    flow_run_id = run.killed_run().data.tags["prefect.flow_run_id"]
    assert _flow_run_state(flow_run_id) == "CANCELLED"


@pytest.mark.slow  # ~90 s: TensorFlow's import and the first epochs on two busy cores
def test_sigterm_during_training(tmp_path: Path, process_groups, prefect_harness):
    from prefect.settings import PREFECT_API_URL

    env = clean_env(tmp_path, PREFECT_API_URL=PREFECT_API_URL.value())
    run = CliRun(process_groups, tmp_path, env, "--skip-attacks", "--batch-size", "32")
    run.wait_for("[whole] epoch 1/")
    rc, seconds = run.stop(signal.SIGTERM)
    run.assert_stopped(rc, seconds, signal.SIGTERM, r"\[whole\] stopped after \d+ epochs")
    flow_run_id = run.killed_run().data.tags["prefect.flow_run_id"]
    assert _flow_run_state(flow_run_id) == "CANCELLED"


@pytest.mark.slow  # ~150 s: a temporary Prefect server, training and the evaluations first
def test_sigterm_during_the_attacks_with_a_temporary_server(tmp_path: Path, process_groups):
    env = clean_env(tmp_path, _ATTACKS="3000")  # no Prefect server: the run starts one
    run = CliRun(process_groups, tmp_path, env, "--epochs", "3", "--importance-rows", "500")
    run.wait_for("utility (")  # printed just before the attack tasks start
    time.sleep(2.0)  # the worker processes are in the attack maths
    rc, seconds = run.stop(signal.SIGTERM)
    run.assert_stopped(rc, seconds, signal.SIGTERM, "attacks done")
    time.sleep(1.0)
    # the attack workers and the temporary server (both in the run's process group) are gone
    assert group_pids({run.proc.pid}) == set()
    flow_run_id = run.killed_run().data.tags["prefect.flow_run_id"]
    with sqlite3.connect(tmp_path / "prefect-home" / "prefect.db") as db:
        state = db.execute("select state_type from flow_run where id = ?",
                           (flow_run_id,)).fetchone()
    assert state is not None and state[0] == "CANCELLED"
