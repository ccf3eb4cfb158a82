"""Integration: DP runs of the whole flow under a real Prefect server, sqlite MLflow and GX —
one release budget, the private/full report, the privacy ledger and its lifetime cap."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from tests.helpers import release_epsilon_by_dp_accounting, tiny_profile_dict

pytestmark = pytest.mark.integration

BOUNDS = {"age": {"min": 0, "max": 120},
          "city": {"categories": ["north", "south", "east", "west"]}}


def _profile(folder: Path, **privacy) -> Path:
    d = tiny_profile_dict(bounds=BOUNDS)
    d["privacy"].update(privacy)
    path = folder / "tiny-dp.yaml"
    path.write_text(yaml.safe_dump(d))
    return path


def _run(csv: Path, profile: Path, *extra: str) -> list[str]:
    return ["run", "tiny", "--input", str(csv), "--profile", str(profile), "--folds", "2",
            "--importance-rows", "100", "--dp-epochs", "2", "--dp-clip", "0.2",
            "--batch-size", "32", *extra]


def _cli(capsys, args: list[str]) -> tuple[int, str, str]:
    """Run the CLI; returns (exit status, stdout, stderr)."""
    from cloakflow.flows.cli import main

    capsys.readouterr()
    rc = main(args)
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def test_dp_run_spends_one_budget_keeps_private_figures_out_and_records_it(
        prefect_harness, workdir: Path, tiny_files, monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    csv, _ = tiny_files
    profile = _profile(workdir, dp_cap={"epsilon": 4.5, "delta": 1e-4})
    rc, out, _ = _cli(capsys, _run(csv, profile, "--dp-epsilon", "4", "--dp-design", "joint"))
    assert rc == 0
    release = Path(out.strip().splitlines()[-1])
    manifest = json.loads((release / "manifest.json").read_text())
    dp = manifest["dp"]
    # one release budget: the total over all models, recomputed from the manifest
    assert dp["design"] == "joint" and dp["adjacency"] == "replace_one"
    assert len(dp["mechanisms"]) == 1
    assert sorted(dp["mechanisms"][0]["models"]) == ["money", "person", "whole"]
    total = release_epsilon_by_dp_accounting(dp)
    assert total <= 4.0 and dp["epsilon"] == pytest.approx(total)
    assert dp["preprocessing"]["public_bounds"] == ["age", "city"]
    assert dp["preprocessing"]["measured_on_data"] == ["income", "owns"]
    assert dp["codes_covered"] is False and "not the released codes" in \
        manifest["privacy"]["statement"]
    rows = manifest["rows"]
    for name in dp["models"]:
        m = manifest["models"][name]
        assert m["dp"]["sampling_rate"] == pytest.approx(32 / rows)
        assert m["dp"]["steps_run"] == m["dp"]["steps"] == round(2 / m["dp"]["sampling_rate"])
        assert m["init_seed"] is None and "final_loss" not in m
        assert "clipped_share_per_epoch" not in m["dp"]
    # private report: no figure computed on private rows in the release; MLflow has them
    assert isinstance(manifest["utility"], str) and "sha256" not in manifest["source"]
    assert "report" not in manifest["privacy"] and "verdict" not in manifest["privacy"]
    assert manifest["documents"] == ["README.md"]  # no report beside the codes: it is private
    assert "stay in MLflow run" in (release / "README.md").read_text()
    keys = {f["manifest_key"] for f in dp["private_row_figures"]}
    assert {"utility", "source.sha256"} <= keys
    client = MlflowClient()
    run_id = manifest["mlflow"]["run_id"]
    for artifact in ("utility/table.md", "privacy/report.json", "dp/ledger_entry.json"):
        assert Path(client.download_artifacts(run_id, artifact)).is_file()
    children = client.search_runs(
        [client.get_experiment_by_name("cloakflow/tiny").experiment_id],
        f"tags.mlflow.parentRunId = '{run_id}'")
    assert len(children) == 3
    for child in children:  # no DP random seed anywhere: there is none to log
        assert "seed" not in child.data.params and child.data.params["dp.design"] == "joint"
    assert "seed" not in out.lower().replace("derived seed", "")
    # the owner can still rerun the attacks: hash, report and row order come from MLflow
    from cloakflow.flows.attack import attack_published

    rerun = attack_published(release, str(csv))
    assert set(rerun.releases) == {"ENCODED", "GROUP_ENCODED"}
    # the ledger: one entry; a second run would pass the lifetime cap and is refused
    entry = json.loads((workdir / "ledger" / "tiny.jsonl").read_text().splitlines()[0])
    assert entry["run_id"] == run_id and entry["epsilon"] == dp["epsilon"]
    rc, _, err = _cli(capsys, _run(csv, profile, "--dp-epsilon", "4"))
    assert rc == 3 and "RUN REFUSED" in err and "dp_cap" in err
    assert len((workdir / "ledger" / "tiny.jsonl").read_text().splitlines()) == 1
    rc, text, _ = _cli(capsys, ["budget", "tiny", "--profile", str(profile)])
    assert rc == 0
    assert run_id in text and "lifetime cap" in text


@pytest.mark.slow  # the DP flow runs end to end above; the split design's accounting and
# independence are unit tests (tests/unit/tasks/privacy/test_dp_release.py)
def test_split_design_with_full_report(prefect_harness, workdir: Path, tiny_files, capsys):
    csv, _ = tiny_files
    profile = _profile(workdir)
    rc, out, _ = _cli(capsys, _run(csv, profile, "--dp-epsilon", "3", "--dp-design", "split",
                           "--dp-report", "full"))
    assert rc == 0
    release = Path(out.strip().splitlines()[-1])
    manifest = json.loads((release / "manifest.json").read_text())
    dp = manifest["dp"]
    assert dp["design"] == "split" and dp["report"] == "full"
    assert sorted(m["models"][0] for m in dp["mechanisms"]) == ["money", "person", "whole"]
    assert release_epsilon_by_dp_accounting(dp) <= 3.0
    assert all(m["epsilon"] < dp["epsilon"] for m in dp["mechanisms"])  # each model's share
    # full report: the private-row figures stay, listed as not covered
    assert isinstance(manifest["utility"], list) and "report" in manifest["privacy"]
    assert all(not f["covered"] for f in dp["private_row_figures"]
               if f["manifest_key"] == "utility")
