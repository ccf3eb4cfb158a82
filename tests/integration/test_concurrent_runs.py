"""Runs started together on fresh stores all succeed: the MLflow sqlite store and the Prefect
temporary server's database are initialised once, under file locks (tasks/runtime.py)."""

from __future__ import annotations

import time
from pathlib import Path

import mlflow
import pytest
import yaml

from tests.conftest import make_tiny_frame, tiny_profile_dict
from tests.integration.conftest import BIN, clean_env

pytestmark = pytest.mark.integration

NOISE = ("absl::InitializeLog", "oneDNN custom operations", "Could not find cuda drivers",
         "failed call to cuInit")


@pytest.mark.slow  # three CLI processes on two cores, ~90 s: run with make test ARGS="-m slow"
def test_three_cli_runs_at_once_on_fresh_stores(tmp_path: Path, process_groups):
    csv, prof = tmp_path / "tiny.csv", tmp_path / "tiny.yaml"
    make_tiny_frame(n=300).write_csv(csv)
    prof.write_text(yaml.safe_dump(tiny_profile_dict()))
    env = clean_env(tmp_path)  # one fresh PREFECT_HOME, MLflow store and ledger for all three
    procs, logs = [], []
    t0 = time.monotonic()
    for i in range(3):
        work = tmp_path / f"run{i}"
        work.mkdir()
        out, err = open(work / "stdout", "w+"), open(work / "stderr", "w+")
        logs.append((out, err))
        procs.append(process_groups.start(
            [str(BIN / "cloakflow"), "run", "tiny", "--profile", str(prof), "--input", str(csv),
             "--epochs", "1", "--folds", "2", "--importance-rows", "0", "--skip-attacks",
             "--no-cache", "--seed", str(i), "--accept-risk", "test of concurrent runs"],
            cwd=work, env=env, stdout=out, stderr=err))
    for proc in procs:
        proc.wait(timeout=420)
    print(f"three concurrent runs: {time.monotonic() - t0:.1f} s")

    releases = []
    for proc, (out, err) in zip(procs, logs, strict=True):
        out.seek(0), err.seek(0)
        stdout, stderr = out.read(), err.read()
        assert proc.returncode == 0, f"run failed ({proc.returncode}):\n{stdout}\n{stderr}"
        assert "Online migration" not in stderr and "Timed out" not in stderr
        assert not [n for n in NOISE if n in stderr], stderr  # TensorFlow start-up noise dropped
        release = Path(stdout.strip().splitlines()[-1])
        releases.append(release)
    for i, release in enumerate(releases):
        assert (tmp_path / f"run{i}" / release / "manifest.json").is_file()
    assert len({r.name for r in releases}) == 3

    client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])
    for release in releases:  # the release folder is named after the MLflow parent run
        assert client.get_run(release.name).info.status == "FINISHED"
