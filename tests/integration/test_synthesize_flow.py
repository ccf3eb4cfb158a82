"""Integration: the synthesize flow under a real Prefect server, sqlite MLflow and GX — a
plain release on the bank sample, a DP release end to end, the condition, the gate, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
import yaml
from mlflow.tracking import MlflowClient

from cloakflow.flows.parameters import SynthesizeParameters
from cloakflow.flows.synthesize import synthesize
from tests.helpers import release_epsilon_by_dp_accounting, releases_of, tiny_profile_dict

pytestmark = pytest.mark.integration

BOUNDS = {"age": {"min": 0, "max": 120}, "income": {"min": 0, "max": 300},
          "city": {"categories": ["north", "south", "east", "west"]},
          "owns": {"categories": ["no", "yes"]}, "label": {"categories": ["no", "yes"]}}


def _cli(capsys, args: list[str]) -> tuple[int, str, str]:
    from cloakflow.flows.cli import main

    capsys.readouterr()
    rc = main(args)
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def _profile(folder: Path, **overrides) -> Path:
    """The tiny profile with every kind declared, the target's too (a DP run needs them)."""
    d = tiny_profile_dict(**overrides)
    d["columns"] = {**d["columns"], "label": "categorical"}
    path = folder / "tiny-synth.yaml"
    path.write_text(yaml.safe_dump(d))
    return path


def test_bank_sample_synthetic_release_end_to_end(prefect_harness, workdir: Path,
                                                   bank_sample: Path):
    outcome = synthesize(SynthesizeParameters(input_path=str(bank_sample), epochs=4))
    release = Path(outcome.release)
    assert release.parent == Path("releases") / "bank-marketing"
    # the folder holds its reader's report, plots and README beside the data and manifest
    assert sorted(p.name for p in release.iterdir()) == [
        "README.md", "associations.png", "columns.png", "manifest.json", "report.md",
        "synthetic.parquet"]
    assert (release / "columns.png").read_bytes()[:4] == b"\x89PNG"
    readme = (release / "README.md").read_text()
    assert "`synthetic.parquet`: " in readme and "`report.md`" in readme
    assert (release / "report.md").read_text() == outcome.report_markdown
    source = pl.read_csv(bank_sample, separator=";").drop("duration")
    rows = pl.read_parquet(release / "synthetic.parquet")
    manifest = json.loads((release / "manifest.json").read_text())
    # the source's columns and types; categories only from the training domain
    assert rows.columns == source.columns and rows.schema == source.schema
    assert rows.height == manifest["rows"] == manifest["split"]["training_rows"]
    assert manifest["split"]["training_rows"] + manifest["split"]["control_rows"] == 4119
    for col in ("job", "month", "y", "pdays", "emp.var.rate"):
        assert set(rows[col].unique()) <= set(source[col].unique()), col
    assert 0.05 < (rows["y"] == "yes").mean() < 0.2  # drawn at the training rate (~11%)
    assert manifest["kind"] == "synthetic" and manifest["dp"] is None
    assert "synthetic" in manifest["privacy"]["statement"]
    assert manifest["privacy"]["verdict"] == outcome.verdict == "pass"
    ev = manifest["evaluation"]
    for k in ("univariate", "bivariate", "three_way"):
        assert 0 < ev["fidelity"][k]["synthetic"] <= ev["fidelity"][k]["holdout_maximum"] + 0.05
    assert 0.5 < ev["tstr"]["forest"]["tstr"] <= 1 and 0.5 < ev["tstr"]["forest"]["trtr"] <= 1
    assert {"distance", "membership", "anonymeter"} <= set(ev["privacy"])
    assert set(manifest["privacy"]["policy"]["measured"]) == {
        "max_dcr_share", "max_exact_copy_excess", "max_membership_auc", "max_membership_tpr",
        "max_detection_auc"}
    assert 0.3 < ev["detection"]["auc"] <= 1 and ev["detection"]["rows_per_side"] > 0
    # the model and the report live in MLflow only
    client = MlflowClient()
    run = client.get_run(outcome.mlflow_run_id)
    assert run.data.tags["cloakflow.status"] == "published"
    assert "fidelity.bivariate" in run.data.metrics and "vae.loss" in run.data.metrics
    report = {a.path for a in client.list_artifacts(outcome.mlflow_run_id, "report")}
    assert {"report/columns.png", "report/associations.png", "report/report.md",
            "report/report.json"} <= report
    logged = client.search_logged_models(experiment_ids=[run.info.experiment_id])
    assert any(m.name == "vae_decoder" for m in logged)


def test_dp_synthetic_release_spends_one_budget_end_to_end(prefect_harness, workdir: Path,
                                                           tiny_files, capsys):
    csv, _ = tiny_files
    holes = workdir / "holes.csv"  # income null in every 5th row
    pl.read_csv(csv).with_columns(pl.when(pl.int_range(pl.len()) % 5 == 0).then(None)
                                  .otherwise(pl.col("income")).alias("income")).write_csv(holes)
    profile = _profile(workdir, bounds=BOUNDS, missing="impute", nullable=["income"])
    rc, out, err = _cli(capsys, ["synthesize", "tiny", "--input", str(holes), "--profile",
                                 str(profile), "--dp-epsilon", "2", "--dp-epochs", "2",
                                 "--dp-sampling-rate", "0.05", "--rows", "300", "--epochs", "7"])
    assert rc == 0, err
    assert "--epochs 7 is not used under DP: DP-SGD trains --dp-epochs 2 epochs" in err
    release = Path(out.strip().splitlines()[-1])
    manifest = json.loads((release / "manifest.json").read_text())
    dp = manifest["dp"]
    assert dp["adjacency"] == "add_remove" and dp["delta"] == 1e-6
    # everything that read the rows: the histogram and DP-SGD, composed
    assert [m["models"] for m in dp["mechanisms"]] == [
        ["vae"], ["condition histogram"], ["quantile knots: income, age"]]
    total = release_epsilon_by_dp_accounting(dp, "add_remove")
    assert total <= 2.0 and dp["epsilon"] == pytest.approx(total, rel=1e-3)
    assert dp["preprocessing"]["measured_on_data"] == []
    assert sorted(dp["preprocessing"]["dp_quantile_knots"]) == ["age", "income"]
    assert "(2, 1e-06)-differentially private" in manifest["privacy"]["statement"]
    # private report: no figure computed on the private rows, no exact row count; the folder
    # has no report or plots, and its README says where they are
    assert manifest["evaluation"].startswith("in the MLflow run only")
    assert manifest["documents"] == ["README.md"]
    readme = (release / "README.md").read_text()
    assert "stay in MLflow run" in readme and "stays with the data owner" in readme
    assert manifest["split"]["rows"].startswith("private")
    assert "sha256" not in manifest["source"] and manifest["model"]["seed"] is None
    assert "secret coin" in dp["statement"]  # the control split is not the seed's
    assert "final_loss" not in manifest["model"]
    rows = pl.read_parquet(release / "synthetic.parquet")
    assert manifest["rows"] == 300 and rows.height == 300
    # missing values only where the profile's public nullable list allows them
    assert {c["name"] for c in manifest["columns"] if c["nullable"]} == {"income"}
    assert all(rows[c].null_count() == 0 for c in rows.columns if c != "income")
    assert rows["age"].dtype == pl.Float64  # a DP release's numbers: a fixed type
    ledger = (workdir / "ledger" / "tiny.jsonl").read_text().splitlines()
    assert len(ledger) == 1 and json.loads(ledger[0])["adjacency"] == "add_remove"


@pytest.mark.slow  # require_public_bounds is unit-tested (test_dp_synthetic.py)
def test_dp_synthesis_without_public_bounds_is_refused_before_anything_is_spent(
        prefect_harness, workdir: Path, tiny_files, capsys):
    csv, _ = tiny_files
    bounds = {k: v for k, v in BOUNDS.items() if k != "income"}
    profile = _profile(workdir, bounds=bounds)
    rc, _, err = _cli(capsys, ["synthesize", "tiny", "--input", str(csv), "--profile",
                               str(profile), "--dp-epsilon", "2"])
    assert rc == 2
    assert "DP PLAN REJECTED" in err and "['income']" in err and "public bounds" in err
    assert releases_of(workdir, "tiny") == [] and not (workdir / "ledger" / "tiny.jsonl").exists()


def test_condition_fixes_a_column_and_bad_conditions_name_the_rule(
        prefect_harness, workdir: Path, tiny_files, capsys):
    csv, profile = tiny_files
    base = ["synthesize", "tiny", "--input", str(csv), "--profile", str(profile),
            "--epochs", "2", "--skip-attacks", "--accept-risk", "test"]
    rc, out, err = _cli(capsys, base + ["--condition", "city=north"])
    assert rc == 0, err
    release = Path(out.strip().splitlines()[-1])
    rows = pl.read_parquet(release / "synthetic.parquet")
    assert rows["city"].unique().to_list() == ["north"]
    manifest = json.loads((release / "manifest.json").read_text())
    assert manifest["condition"] == {"column": "city", "value": "north",
                                     "distribution": "fixed value"}
    # the figures compare the rows with the real rows of that subpopulation
    assert manifest["evaluation"]["compared_with"].startswith("the rows with city = north")
    assert manifest["privacy"]["verdict"] == "accepted"  # not attacked: accepted risk
    for bad, message in (("city=moon", "'moon' is not a category of 'city'"),
                         ("income=3", "'income' is a continuous numeric"),
                         ("colour=red", "does not model"), ("city", "COLUMN=VALUE")):
        rc, _, err = _cli(capsys, base + ["--condition", bad])
        assert rc == 2 and "INPUT REJECTED" in err and message in err, (bad, err)
    assert len(releases_of(workdir, "tiny")) == 1


@pytest.mark.slow  # the synthetic gate is unit-tested (tests/unit/tasks/release)
def test_gate_blocks_a_synthetic_release_past_its_limits(prefect_harness, workdir: Path,
                                                         tiny_files, capsys):
    csv, _ = tiny_files
    d = tiny_profile_dict()
    d["privacy"]["policy"]["max_membership_tpr"] = 0.0  # any true positive crosses it
    d["privacy"]["policy"]["max_dcr_share"] = 0.5
    profile = _profile(workdir, privacy=d["privacy"])
    args = ["synthesize", "tiny", "--input", str(csv), "--profile", str(profile),
            "--epochs", "2"]
    rc, _, err = _cli(capsys, args)
    assert rc == 3 and "RELEASE BLOCKED" in err and "max_membership_tpr" in err
    assert releases_of(workdir, "tiny") == []
    rc, out, _ = _cli(capsys, args + ["--accept-risk", "a test of the gate"])
    assert rc == 0
    manifest = json.loads((Path(out.strip().splitlines()[-1]) / "manifest.json").read_text())
    assert manifest["privacy"]["verdict"] == "accepted"
    assert manifest["privacy"]["policy"]["accepted_risk"] == "a test of the gate"


def test_bad_input_publishes_no_synthetic_rows(prefect_harness, workdir: Path, tiny_files,
                                               capsys):
    csv, profile = tiny_files
    broken = workdir / "broken.csv"
    pl.read_csv(csv).drop("income").write_csv(broken)
    rc, _, err = _cli(capsys, ["synthesize", "tiny", "--input", str(broken), "--profile",
                               str(profile), "--epochs", "2"])
    assert rc == 2 and "INPUT REJECTED" in err and "income" in err and "broken.csv" in err
    assert releases_of(workdir, "tiny") == []


def test_dp_synthesis_refuses_kinds_read_off_the_rows(prefect_harness, workdir: Path,
                                                      tiny_files, capsys):
    csv, _ = tiny_files
    d = tiny_profile_dict(bounds=BOUNDS)  # label's kind not declared: inferred from the rows
    profile = workdir / "undeclared.yaml"
    profile.write_text(yaml.safe_dump(d))
    rc, _, err = _cli(capsys, ["synthesize", "tiny", "--input", str(csv), "--profile",
                               str(profile), "--dp-epsilon", "2"])
    assert rc == 2 and "declared kinds" in err and "['label']" in err
    assert releases_of(workdir, "tiny") == []


def test_gan_synthetic_release_plain_and_dp_end_to_end(prefect_harness, workdir: Path,
                                                       tiny_files, capsys):
    """``--model gan`` through the same pipeline: the release, its health probes, the
    generator in MLflow; under DP one composed budget whose DP-SGD trains the critic."""
    csv, _ = tiny_files
    profile = _profile(workdir, bounds=BOUNDS)
    rc, out, err = _cli(capsys, ["synthesize", "tiny", "--input", str(csv), "--profile",
                                 str(profile), "--model", "gan", "--epochs", "10"])
    assert rc == 0, err
    assert "GAN epoch 10/10: critic" in err
    release = Path(out.strip().splitlines()[-1])
    manifest = json.loads((release / "manifest.json").read_text())
    model = manifest["model"]
    assert model["kind"] == "gan" and model["config"]["pac"] == 10 and model["epochs_run"] == 10
    assert model["config"]["latent"] == 0 and model["latent_size"] == 16  # the rule's size
    assert [p["epoch"] for p in model["health"]["probes"]] == [5, 10]
    assert 0 < model["health"]["probes"][-1]["fidelity"] <= 1
    assert manifest["mlflow"]["model"] == "gan_generator"
    assert 0.3 < manifest["evaluation"]["detection"]["auc"] <= 1
    rows = pl.read_parquet(release / "synthetic.parquet")
    assert rows.height == manifest["rows"] and set(rows["city"].unique()) <= set(
        BOUNDS["city"]["categories"])
    client = MlflowClient()
    run = client.get_run(manifest["mlflow"]["run_id"])
    assert {"gan.critic_real_loss", "gan.generator_loss", "gan.probe_fidelity",
            "detection.auc"} <= set(run.data.metrics)
    logged = client.search_logged_models(experiment_ids=[run.info.experiment_id])
    assert any(m.name == "gan_generator" for m in logged)

    rc, out, err = _cli(capsys, ["synthesize", "tiny", "--input", str(csv), "--profile",
                                 str(profile), "--model", "gan", "--dp-epsilon", "2",
                                 "--dp-epochs", "2", "--dp-sampling-rate", "0.05",
                                 "--rows", "200"])
    assert rc == 0, err
    manifest = json.loads((Path(out.strip().splitlines()[-1]) / "manifest.json").read_text())
    dp = manifest["dp"]
    assert [m["models"] for m in dp["mechanisms"]][:2] == [["gan"], ["condition histogram"]]
    assert release_epsilon_by_dp_accounting(dp, "add_remove") <= 2.0
    assert "the GAN's critic" in dp["statement"] and manifest["model"]["config"]["pac"] == 1
    assert all(p["fidelity"] is None for p in manifest["model"]["health"]["probes"])
