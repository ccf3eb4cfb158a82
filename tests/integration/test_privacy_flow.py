"""Integration: the attack step, the release policy, --accept-risk, `cloakflow attack` and the
frontier, under a real Prefect server, sqlite MLflow and GX."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from cloakflow.flows.anonymize import anonymize
from cloakflow.tasks.privacy.policy import PolicyViolation
from tests.helpers import fast, make_tiny_frame, releases_of

pytestmark = pytest.mark.integration

REASON = "public UCI Bank Marketing table, test run"


def test_default_policy_blocks_then_accept_risk_publishes(prefect_harness, workdir: Path,
                                                          bank_sample: Path, capsys):
    from cloakflow.flows.cli import main

    args = ["run", "--input", str(bank_sample), "--epochs", "3", "--folds", "3",
            "--importance-rows", "500", "--seed", "5"]
    assert main(args) == 3
    err = capsys.readouterr().err
    assert "RELEASE BLOCKED" in err and "nothing was published" in err
    assert "max_inversion_gain" in err and "--accept-risk" in err
    assert releases_of(workdir, "bank-marketing") == []
    # Prefect records the run as Blocked (type FAILED, the crossed limits as its message), not
    # as a crash; its task runs are named by what they did
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowRunFilter
    from prefect.client.schemas.sorting import FlowRunSort

    with get_client(sync_client=True) as prefect:
        run = prefect.read_flow_runs(flow_filter=FlowFilter(name={"any_": ["anonymize"]}),
                                     sort=FlowRunSort.START_TIME_DESC, limit=1)[0]
        tasks = {t.name for t in prefect.read_task_runs(flow_run_filter=FlowRunFilter(
            id={"any_": [run.id]}))}
    assert (run.state.type.value, run.state.name) == ("FAILED", "Blocked")
    assert "max_inversion_gain" in run.state.message
    assert {"train[autoencoder:whole]", "evaluate[GROUP_ENCODED]", "attack[ENCODED]",
            "importance[ORIGINAL]"} <= tasks, tasks

    client = MlflowClient()
    exp = client.get_experiment_by_name("cloakflow/bank-marketing")
    blocked = client.search_runs([exp.experiment_id], "attributes.run_name = "
                                 "'anonymize-bank-marketing'")[0]
    assert blocked.info.status == "FAILED"
    assert blocked.data.tags["cloakflow.privacy_verdict"] == "blocked"
    assert {a.path for a in client.list_artifacts(blocked.info.run_id, "privacy")} == {
        "privacy/report.json", "privacy/summary.md", "privacy/inversion.png"}

    outcome = anonymize(fast(input_path=str(bank_sample), seed=5, accept_risk=REASON))
    manifest = json.loads((Path(outcome.release) / "manifest.json").read_text())
    privacy = manifest["privacy"]
    assert privacy["verdict"] == "accepted"
    assert privacy["policy"]["accepted_risk"] == REASON
    assert privacy["policy"]["limits"]["max_inversion_gain"] == 0.05
    assert any("max_inversion_gain" in c for c in privacy["policy"]["crossed"])
    assert privacy["control_split"]["rows"] == manifest["control_rows"] > 0
    for name in ("ENCODED", "GROUP_ENCODED"):
        section = privacy["report"]["releases"][name]
        measured = privacy["policy"]["measured"][name]
        assert set(section["known_plaintext_inversion"]) == {"0.001", "0.01", "0.1"}
        housing = section["known_plaintext_inversion"]["0.01"]["linear"]["housing"]
        assert housing["kind"] == "categorical" and 0.4 < housing["baseline"] < 0.7
        assert section["leaked_decoder"]["age"]["kind"] == "numeric"
        assert 0 <= section["reidentification"]["unique_on_quasi_identifiers"] <= 1
        assert all(0 <= m["auc"] <= 1 for m in section["membership"].values())
        assert measured["max_membership_auc"] == max(  # two-sided
            max(m["auc"], 1 - m["auc"]) for m in section["membership"].values())
        assert measured["max_inversion_r2"] is None  # no sensitive numeric: not measured
        # each distinct control row once (duplicates among the control rows count once)
        assert 0.95 * manifest["control_rows"] <= section["dcr"]["control_to_train"][
            "rows"] <= manifest["control_rows"]
        assert set(section["anonymeter"]["inference"]) == {"default", "housing", "loan"}
    assert set(privacy["report"]["releases"]["GROUP_ENCODED"]["membership"]) == {
        "personal", "financial", "campaign", "economic"}
    # the accepted run reused the blocked run's models and evaluations
    assert any(r.startswith("model:") for r in manifest["reused_from_cache"])

    # `cloakflow attack` reproduces the flow's measurements from the release, source and MLflow
    out = workdir / "attack.json"
    assert main(["attack", outcome.release, "--input", str(bank_sample), "--json",
                 str(out)]) == 3
    assert "# Privacy report: bank-marketing" in capsys.readouterr().out
    measured = json.loads(out.read_text())["policy"]["measured"]
    for name, values in privacy["policy"]["measured"].items():
        for key, value in values.items():
            assert measured[name][key] == pytest.approx(value, abs=1e-6), key


# two runs, ~25 s: the gate's unattacked case is unit-tested (tests/unit/tasks/privacy)
@pytest.mark.slow
def test_skipping_attacks_needs_accept_risk(prefect_harness, workdir: Path, tiny_files):
    csv, profile = tiny_files
    kw = dict(input_path=str(csv), profile_path=str(profile), epochs=2, folds=2,
              importance_rows=100, privacy_attacks=False)
    with pytest.raises(PolicyViolation, match="no privacy attacks were run"):
        anonymize(fast(**kw))
    assert releases_of(workdir, "tiny") == []
    outcome = anonymize(fast(accept_risk="quick local check", **kw))
    manifest = json.loads((Path(outcome.release) / "manifest.json").read_text())
    assert manifest["privacy"]["verdict"] == "accepted"
    assert manifest["privacy"]["report"]["releases"] == {}


# two runs, ~45 s: the frontier flow test applies code noise end to end in the default suite
@pytest.mark.slow
def test_noise_is_applied_and_recorded(prefect_harness, workdir: Path, tiny_files):
    import polars as pl

    csv, profile = tiny_files
    kw = dict(input_path=str(csv), profile_path=str(profile), epochs=2, folds=2,
              importance_rows=100)
    plain = Path(anonymize(fast(**kw)).release)
    noisy = Path(anonymize(fast(noise_multiplier=0.5, **kw)).release)
    a, b = (pl.read_parquet(p / "group_encoded.parquet") for p in (plain, noisy))
    assert a.columns == b.columns and not a.equals(b)
    manifest = json.loads((noisy / "manifest.json").read_text())
    noise = manifest["privacy"]["report"]["releases"]["GROUP_ENCODED"]["noise"]
    assert set(noise) == {"person", "money"}
    assert all(n["multiplier"] == 0.5 and n["clip_source"] == "median code norm"
               for n in noise.values())
    assert manifest["privacy"]["report"]["noise"]["multiplier"] == 0.5


def test_frontier_trades_utility_for_inversion(prefect_harness, workdir: Path, tiny_profile):
    import yaml

    from cloakflow.flows.frontier import FrontierParameters, frontier
    from tests.helpers import tiny_profile_dict

    csv = workdir / "tiny.csv"
    make_tiny_frame(n=3000, seed=3).write_csv(csv)
    prof = workdir / "tiny.yaml"
    prof.write_text(yaml.safe_dump(tiny_profile_dict()))
    result = frontier(FrontierParameters(input_path=str(csv), profile_path=str(prof),
                                         multipliers=[0.0, 4.0], epochs=30, folds=2))
    points = {(p["release"], p["multiplier"]): p for p in result["points"]}
    assert len(points) == 4
    for name in ("ENCODED", "GROUP_ENCODED"):
        clean, noisy = points[(name, 0.0)], points[(name, 4.0)]
        assert noisy["mean_accuracy"] < clean["mean_accuracy"] - 0.1
        assert noisy["max_gain"] < clean["max_gain"]
        assert noisy["roc_auc"] < clean["roc_auc"]
    folder = Path(result["folder"])
    assert {p.name for p in folder.iterdir()} == {"frontier.png", "frontier.json", "frontier.md"}
    assert "| 4 | GROUP_ENCODED |" in (folder / "frontier.md").read_text()
