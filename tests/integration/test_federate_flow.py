"""Integration: federated training on Flower's deployment engine — a real SuperLink, one
SuperNode and one warm worker per holder as processes on 127.0.0.1 — under the Prefect
harness with sqlite MLflow and GX; every process stops after success, after a killed holder
and after a refused table."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml
from mlflow.tracking import MlflowClient

from tests.helpers import make_tiny_frame, tiny_profile_dict

pytestmark = pytest.mark.integration

BOUNDS = {"age": {"min": 0, "max": 120}, "income": {"min": 0, "max": 1000},
          "city": {"categories": ["north", "south", "east", "west"]},
          "owns": {"categories": ["yes", "no"]}}


def _holders(folder: Path, n: int = 2, rows: int = 200,
             bounds: dict | None = None) -> tuple[list[str], Path]:
    files = []
    for i in range(n):
        path = folder / f"site{i + 1}.csv"
        make_tiny_frame(rows, seed=10 + i).write_csv(path)
        files.append(str(path))
    profile = folder / "tiny-fed.yaml"
    profile.write_text(yaml.safe_dump(tiny_profile_dict(bounds=bounds or BOUNDS)))
    return files, profile


def _processes_of(folder: Path) -> list[int]:
    """Processes whose command line or Flower home points into ``folder`` (the workers,
    SuperLink, SuperNodes and the per-message ClientApp processes they spawn)."""
    mark, found = str(folder.resolve()), []
    for pid in (int(p) for p in os.listdir("/proc") if p.isdigit()):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            env = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if pid != os.getpid() and (mark in cmd or f"FLWR_HOME={mark}" in env):
            found.append(pid)
    return found


def test_federate_flow_trains_across_holders_and_stops_every_process(
        prefect_harness, workdir: Path, capsys):
    from cloakflow.flows.federate import FederateParameters, federate

    files, profile = _holders(workdir)
    outcome = federate(FederateParameters(
        profile_path=str(profile), holders=files, rounds=2, local_epochs=1, batch_size=64,
        learning_rate=0.01, strategy="fedprox", proximal_mu=0.1,
        out=str(workdir / "federated"), timeout=600, folds=2, importance_rows=0))
    folder = Path(outcome.folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["kind"] == "federated-model" and manifest["rounds"] == 2
    # FedProx: Flower's strategy sent mu to the holders, which trained with the proximal term
    assert manifest["strategy"] == "FedProx (Flower), mu 0.1"
    assert manifest["settings"]["proximal-mu"] == 0.1
    assert [h["holder"] for h in manifest["holders"]] == ["site1", "site2"]
    # non-DP: FedAvg by rows; each holder trains on 180, 20 stay out as its release's control rows
    assert [h["rows"] for h in manifest["holders"]] == [180, 180]
    assert manifest["weighting"] == "examples" and manifest["dp_statement"] is None
    rounds = [json.loads(line) for line in (folder / "rounds.jsonl").read_text().splitlines()]
    assert [r["round"] for r in rounds] == [1, 2]
    assert all(len(r["holders"]) == 2 and r["wall_seconds"] > r["slowest_training_seconds"]
               for r in rounds)
    # the global weights: every model of the codes release, all layers
    weights = np.load(folder / "global.npz")
    assert {k.split("/")[0] for k in weights.files} == {"whole", "person", "money"}
    # streamed per round to MLflow
    client = MlflowClient()
    history = client.get_metric_history(outcome.mlflow_run_id, "round.wall_seconds")
    assert sorted(m.step for m in history) == [1, 2]
    assert client.get_run(outcome.mlflow_run_id).info.status == "FINISHED"
    assert _processes_of(folder) == []
    # then each holder published its own codes release with the global models: its own
    # rows, its own control split, the same evaluation, attacks and gate
    assert [r["holder"] for r in outcome.releases] == ["site1", "site2"]
    for r, n in zip(outcome.releases, (200, 200), strict=True):
        assert r["verdict"] == "pass"
        release = json.loads((Path(r["release"]) / "manifest.json").read_text())
        assert release["federation"]["this_holder"] == r["holder"]
        assert release["federation"]["folder"] == str(folder)
        assert release["rows"] + release["control_rows"] == n
        assert release["models"]["whole"]["epochs_run"] == 2
        assert "GROUP_ENCODED" in release["privacy"]["report"]["releases"]
    # a holder whose table encodes differently cannot use the federation's models
    from cloakflow.flows.cli import main

    other = workdir / "other.yaml"
    other.write_text(yaml.safe_dump(tiny_profile_dict(bounds={
        **BOUNDS, "income": {"min": 0, "max": 5000}})))
    assert main(["run", "--profile", str(other), "--input", files[0], "--models-from",
                 str(folder), "--holder", "site1", "--folds", "2"]) == 2
    # nor a table that is not the holder's own (the federation recorded its hash)
    assert main(["run", "--profile", str(profile), "--input", files[1], "--models-from",
                 str(folder), "--holder", "site1", "--folds", "2"]) == 2
    assert "not the one holder 'site1' trained on" in capsys.readouterr().err


def test_federated_dp_vae_then_each_holder_publishes_its_own_synthetic_rows(
        prefect_harness, workdir: Path):
    from cloakflow.flows.federate import FederateParameters, federate
    from cloakflow.tasks.privacy.ledger import entries
    from tests.helpers import release_epsilon_by_dp_accounting

    files, profile = _holders(workdir, rows=150, bounds={
        **BOUNDS, "label": {"categories": ["no", "yes"]}})  # the VAE models the target too
    outcome = federate(FederateParameters(
        profile_path=str(profile), holders=files, model="vae", rounds=1, local_epochs=1,
        learning_rate=0.01, dp_epsilon=3.0, dp_sampling_rate=0.2, weighting="dp-count",
        out=str(workdir / "federated"), timeout=600, accept_risk="test fixture"))
    folder = Path(outcome.folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["model"] == "vae" and manifest["models"] == ["vae"]
    assert set(np.load(folder / "global.npz").files) == {
        f"vae/{i}" for i in range(len(np.load(folder / "global.npz").files))}
    for holder in manifest["holders"]:
        dp = holder["dp"]
        assert [m["models"] for m in dp["mechanisms"]] == [["vae"], ["condition histogram"]]
        assert release_epsilon_by_dp_accounting(dp, "add_remove") <= 3.0
        assert "rows" not in holder and len(holder["dp_counts"]) == 2
        assert [e["run_id"] for e in entries(f"tiny@{holder['holder']}",
                                             include_mlflow=False)] == [outcome.mlflow_run_id]
    assert _processes_of(folder) == []
    # the server saw no loss and no timing of a DP holder; the holders reported them after
    server = [json.loads(line) for line in (folder / "rounds.jsonl").read_text().splitlines()]
    assert all(set(h) <= {"weight", "dp-epsilon-spent", "dp-delta", "dp-sigma",
                          "dp-sampling-rate", "dp-steps"} for h in server[0]["holders"])
    assert outcome.rounds[0]["overhead_seconds"] is not None
    assert [h["holder"] for h in outcome.rounds[0]["holders"]] == ["site1", "site2"]
    # each holder sampled its own synthetic rows from the global VAE, with its DP labels, and
    # published them through the synthetic release's evaluation, attacks and gate
    assert [r["holder"] for r in outcome.releases] == ["site1", "site2"]
    for r, holder in zip(outcome.releases, manifest["holders"], strict=True):
        assert r["verdict"] in ("pass", "accepted"), r
        release = json.loads((Path(r["release"]) / "manifest.json").read_text())
        assert release["kind"] == "synthetic"
        assert release["federation"]["this_holder"] == r["holder"]
        assert release["dp"]["epsilon"] == holder["dp"]["epsilon"]
        assert release["rows"] == round(sum(holder["dp_counts"]))  # the DP count, not the rows
        rows = pl.read_parquet(Path(r["release"]) / "synthetic.parquet")
        assert rows.height == release["rows"] and "label" in rows.columns


@pytest.mark.slow  # ~40 s: a second federation; the flow test above checks the clean stop
def test_a_killed_holder_fails_the_run_and_no_process_remains(tmp_path: Path, monkeypatch):
    from cloakflow.tasks.federation import Federation, FederationFailed

    monkeypatch.setenv("CLOAKFLOW_LEDGER_DIR", str(tmp_path / "ledger"))
    files, profile = _holders(tmp_path)
    folder = tmp_path / "run"
    config = {"num-server-rounds": 4, "local-epochs": 1, "batch-size": 64,
              "learning-rate": 0.01, "seed": 0, "dp-epsilon": 0.0, "dp-delta": 0.0,
              "dp-clip": 0.1, "weighting": "examples", "declared-size": 0.0,
              "run-name": "test", "timeout": 300.0}
    with pytest.raises(FederationFailed) as err:
        with Federation(folder, str(profile), {"a": files[0], "b": files[1]}) as fed:
            fed.start_workers()
            fed.start_flower()
            victim = next(p for p in fed.procs if p.name == "worker-b").popen.pid

            def kill_after_first(line: dict) -> None:
                if line["round"] == 1:
                    os.kill(victim, signal.SIGKILL)
            fed.run(config, on_round=kill_after_first, timeout=300)
    assert "worker-b" in str(err.value) or "holder" in str(err.value)
    assert _processes_of(folder) == []


def test_a_killed_coordinator_leaves_no_process_behind(tmp_path: Path, monkeypatch):
    import subprocess
    import sys
    import time

    monkeypatch.setenv("CLOAKFLOW_LEDGER_DIR", str(tmp_path / "ledger"))
    files, profile = _holders(tmp_path)
    folder = tmp_path / "run"
    script = (
        "import time\n"
        "from cloakflow.tasks.federation import Federation\n"
        f"with Federation({str(folder)!r}, {str(profile)!r}, "
        f"{{'a': {files[0]!r}, 'b': {files[1]!r}}}) as fed:\n"
        "    fed.start_workers()\n"
        "    fed.start_flower()\n"
        "    print('started', flush=True)\n"
        "    time.sleep(600)\n")
    coordinator = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                                   text=True)
    try:
        assert coordinator.stdout.readline().strip() == "started"
        # the watchdog, two workers, the SuperLink and two SuperNodes (and Flower's children)
        assert len(_processes_of(folder)) >= 6
    finally:
        coordinator.kill()  # SIGKILL: no cleanup code of the coordinator runs
        coordinator.wait()
    deadline = time.monotonic() + 30
    while _processes_of(folder) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _processes_of(folder) == []


def test_a_holder_outside_the_shared_schema_is_refused_before_training(
        prefect_harness, workdir: Path, capsys):
    from cloakflow.flows.cli import main

    files, profile = _holders(workdir)
    frame = pl.read_csv(files[1]).with_columns(pl.lit("mars").alias("city"))
    frame.write_csv(files[1])
    rc = main(["federate", "--profile", str(profile), "--holders", ",".join(files),
               "--rounds", "1", "--out", str(workdir / "federated")])
    err = capsys.readouterr().err
    assert rc == 2
    assert "FEDERATION FAILED" in err and "site2" in err and "city" in err and "mars" in err
    assert _processes_of(workdir) == []


@pytest.mark.slow  # DP planning on every holder: ~90 s; the DP composition is unit-tested
def test_dp_federation_spends_each_holders_budget_and_records_it(prefect_harness,
                                                                  workdir: Path):
    from cloakflow.flows.federate import FederateParameters, federate
    from cloakflow.tasks.privacy.ledger import entries
    from tests.helpers import release_epsilon_by_dp_accounting

    files, profile = _holders(workdir)
    outcome = federate(FederateParameters(
        profile_path=str(profile), holders=files, rounds=2, local_epochs=1, batch_size=64,
        learning_rate=0.01, dp_epsilon=3.0, dp_sampling_rate=0.1, weighting="dp-count",
        out=str(workdir / "federated"), timeout=600))
    manifest = json.loads((Path(outcome.folder) / "manifest.json").read_text())
    assert manifest["weighting"] == "dp-count"
    assert "adding or removing one" in manifest["dp_statement"]
    server = [json.loads(line) for line in
              (Path(outcome.folder) / "rounds.jsonl").read_text().splitlines()]
    for line in server:  # what the server saw: DP figures, never an exact count or a loss
        for metrics in line["holders"]:
            assert "rows" not in metrics and "train-loss" not in metrics
            assert metrics["weight"] != 180
    for holder in manifest["holders"]:
        assert "rows" not in holder and holder["dp_rows"] > 0  # a DP count, not the rows
        assert release_epsilon_by_dp_accounting(holder["dp"], "add_remove") <= 3.0
        assert [e["run_id"] for e in entries(f"tiny@{holder['holder']}",
                                             include_mlflow=False)] == [outcome.mlflow_run_id]
    assert _processes_of(Path(outcome.folder)) == []
