"""Integration: the whole flow under a real Prefect server, real sqlite MLflow and real GX."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import polars as pl
import pytest
from mlflow.tracking import MlflowClient

from cloakflow.flows.anonymize import anonymize
from cloakflow.tasks.data.validate import DataValidationError
from tests.helpers import fast, releases_of

pytestmark = pytest.mark.integration


def test_bank_sample_end_to_end(prefect_harness, workdir: Path, bank_sample: Path):
    # the default policy blocks this release (integration/test_privacy_flow.py); public table
    outcome = anonymize(fast(input_path=str(bank_sample), accept_risk="public table"))
    release = Path(outcome.release)
    assert release.parent == Path("releases") / "bank-marketing"
    assert sorted(p.name for p in release.iterdir()) == [
        "README.md", "encoded.parquet", "group_encoded.parquet", "inversion.png",
        "manifest.json", "privacy-report.md", "utility.md"]
    readme = (release / "README.md").read_text()
    assert "`encoded.parquet`: " in readme and "Verdict of the privacy gate: **accepted**" \
        in readme
    # what was crossed, the risk accepted on record, which rows the files hold
    assert "crossed the privacy policy's limits" in readme and '"public table"' in readme
    assert "control rows held out of training" in readme
    assert (release / "privacy-report.md").read_text() == outcome.privacy_summary
    assert "0.5 probability threshold" in (release / "utility.md").read_text()

    manifest = json.loads((release / "manifest.json").read_text())
    assert manifest["source"]["sha256"] == hashlib.sha256(bank_sample.read_bytes()).hexdigest()
    assert manifest["source"]["format"] == "csv"  # as read, by the file's bytes
    assert manifest["rows"] + manifest["control_rows"] == 4119
    assert manifest["folds"]["scheme"] == "stratified-shuffled" and manifest["folds"]["k"] == 3
    assert manifest["seed"] == 42 and manifest["mlflow"]["run_id"] == outcome.mlflow_run_id
    assert manifest["mlflow"]["tracking_uri"] == "sqlite:///mlflow.db"  # no path of this machine
    assert "pseudonymised" in manifest["privacy"]["statement"]
    assert manifest["privacy"]["models_in_release"] is False
    assert {r["metric"] for r in manifest["utility"]} >= {"test_roc_auc", "train_roc_auc"}
    groups = {c["group"] for c in manifest["columns"]}
    assert groups == {"whole", "personal", "financial", "campaign", "economic", "label"}

    enc = pl.read_parquet(release / "encoded.parquet")
    grp = pl.read_parquet(release / "group_encoded.parquet")
    assert enc.height == grp.height == manifest["rows"]
    assert enc.columns[:2] == ["latent_0", "latent_1"] and enc.columns[-1] == "y"
    assert "personal_0" in grp.columns and "economic_1" in grp.columns
    source_columns = set(pl.read_csv(bank_sample, separator=";", n_rows=1).columns) - {"y"}
    assert not source_columns & (set(enc.columns) | set(grp.columns))
    assert set(enc.get_column("y").unique()) == {"yes", "no"}

    client = MlflowClient()
    parent = client.get_run(outcome.mlflow_run_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["cloakflow.status"] == "published"
    flow_run_id = parent.data.tags["prefect.flow_run_id"]
    assert flow_run_id == manifest["prefect_flow_run_id"] != "none"
    assert 0.5 < parent.data.metrics["ORIGINAL.test_roc_auc"] <= 1
    assert "GROUP_ENCODED.test_average_precision" in parent.data.metrics
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id, "utility")}
    assert {"utility/importance_ORIGINAL.png", "utility/importance_GROUP_ENCODED.png",
            "utility/table.md", "utility/results.json"} <= artifacts

    # a model-training experiment: the MLflow UI opens its runs and logged models view
    experiment = client.get_experiment(parent.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    children = client.search_runs([parent.info.experiment_id],
                                  f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert sorted(r.data.tags["cloakflow.model"] for r in children) == [
        "campaign", "economic", "financial", "personal", "whole"]
    for child in children:
        assert child.data.params["seed"] == "42"
        assert len(client.get_metric_history(child.info.run_id, "val_loss")) >= 1
        models = client.search_logged_models([parent.info.experiment_id],
                                             filter_string=f"source_run_id = '{child.info.run_id}'")
        assert len(models) == 1

    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as prefect:
        run = prefect.read_flow_run(flow_run_id)
        assert run.state.is_completed()
        arts = prefect.read_artifacts()
        assert any(a.key == "utility-bank-marketing" and a.type == "table" for a in arts)


def test_corrupted_input_publishes_nothing(prefect_harness, workdir: Path, bank_sample: Path):
    frame = pl.read_csv(bank_sample, separator=";", infer_schema_length=None)
    bad = frame.drop("marital").with_columns(
        pl.when(pl.int_range(pl.len()) < 5).then(pl.lit("martian")).otherwise(pl.col("job"))
        .alias("job"))
    path = workdir / "corrupted.csv"
    bad.write_csv(path, separator=";")

    with pytest.raises(DataValidationError) as err:
        anonymize(fast(input_path=str(path)))
    text = str(err.value)
    assert "corrupted.csv" in text and "'marital'" in text and "'job'" in text
    assert "martian" in text
    assert releases_of(workdir, "bank-marketing") == []

    client = MlflowClient()
    exp = client.get_experiment_by_name("cloakflow/bank-marketing")
    run = client.search_runs([exp.experiment_id], order_by=["attribute.start_time DESC"])[0]
    assert run.info.status == "FAILED" and run.data.tags["cloakflow.status"] == "failed"
    report = json.loads(Path(client.download_artifacts(
        run.info.run_id, "validation/report.json", str(workdir))).read_text())
    assert report["success"] is False
    assert {f["column"] for f in report["failures"]} == {"marital", "job"}
    children = client.search_runs([exp.experiment_id],
                                  f"tags.mlflow.parentRunId = '{run.info.run_id}'")
    assert len(children) == 0  # nothing was trained


@pytest.mark.slow  # two full flows: make test ARGS="-m slow"
def test_same_seed_same_release(prefect_harness, workdir: Path, tiny_files):
    csv, profile = tiny_files
    kw = dict(input_path=str(csv), profile_path=str(profile), epochs=2, folds=2,
              importance_rows=100, use_cache=False)  # both runs compute everything
    first = Path(anonymize(fast(**kw)).release)
    second = Path(anonymize(fast(**kw)).release)
    assert first != second
    for name in ("encoded", "group_encoded"):
        a = pl.read_parquet(first / f"{name}.parquet")
        b = pl.read_parquet(second / f"{name}.parquet")
        # same content; the row order is a secret permutation, drawn afresh by each run
        assert not a.equals(b), f"{name}: row order repeats between runs"
        assert a.sort(a.columns).equals(b.sort(b.columns)), \
            f"{name} differs between two runs with the same seed"
    other = Path(anonymize(fast(seed=7, **kw)).release)
    assert not pl.read_parquet(other / "encoded.parquet").equals(
        pl.read_parquet(first / "encoded.parquet"))
    m1 = json.loads((first / "manifest.json").read_text())
    m2 = json.loads((second / "manifest.json").read_text())
    same = [r for r in m1["utility"] if not r["metric"].endswith("_time")]
    assert same == [r for r in m2["utility"] if not r["metric"].endswith("_time")]


def test_cli_reports_bad_input(prefect_harness, workdir: Path, tiny_files, capsys):
    from cloakflow.flows.cli import main

    csv, profile = tiny_files
    bad = workdir / "bad.csv"
    pl.read_csv(csv).with_columns(pl.lit(None, dtype=pl.Float64).alias("income")).write_csv(bad)
    code = main(["run", "--profile", str(profile), "--input", str(bad), "--epochs", "1",
                 "--folds", "2", "--out", "releases"])
    err = capsys.readouterr().err
    assert code == 2
    assert "nothing was published" in err and "'income'" in err and "bad.csv" in err
    assert releases_of(workdir, "tiny") == []


@pytest.mark.slow  # the CLI also publishes in test_degenerate_targets and test_concurrent_runs
def test_cli_prints_release_last(prefect_harness, workdir: Path, tiny_files, capsys):
    from cloakflow.flows.cli import main

    csv, profile = tiny_files
    code = main(["run", "--profile", str(profile), "--input", str(csv), "--epochs", "1",
                 "--folds", "2", "--importance-rows", "100", "--fold-scheme", "tutorial",
                 "--forest", "sklearn"])
    out = capsys.readouterr().out.strip().splitlines()
    assert code == 0
    release = Path(out[-1])
    assert release.parent == Path("releases") / "tiny" and (release / "manifest.json").is_file()
    assert out[-3] == f"report: {release}/privacy-report.md, {release}/utility.md " \
        "(--verbose prints it here)"
    manifest = json.loads((release / "manifest.json").read_text())
    assert manifest["folds"]["scheme"] == "tutorial" and manifest["folds"]["forest"] == "sklearn"


# three runs, ~70 s: the default suite sees the cache at work in test_privacy_flow.py (the
# accepted run reuses the blocked run's models)
@pytest.mark.slow
def test_rerun_after_a_crash_reuses_finished_steps(prefect_harness, workdir: Path, tiny_files):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    csv, profile = tiny_files
    kw = dict(input_path=str(csv), profile_path=str(profile), epochs=2, folds=2,
              importance_rows=100, seed=11)
    blocked = workdir / "not-a-folder"
    blocked.write_text("a file where the release folder should go")
    with pytest.raises(OSError):  # publish fails after every model and evaluation finished
        anonymize(fast(out=str(blocked), **kw))

    outcome = anonymize(fast(**kw))
    manifest = json.loads((Path(outcome.release) / "manifest.json").read_text())
    assert sorted(manifest["reused_from_cache"]) == sorted(
        [f"model:{m}" for m in ("whole", "person", "money")]
        + [f"utility:{v}" for v in ("ORIGINAL", "ENCODED", "GROUP_ENCODED")]
        + [f"importance:{v}" for v in ("ORIGINAL", "GROUP_ENCODED")])

    run_id = MlflowClient().get_run(outcome.mlflow_run_id).data.tags["prefect.flow_run_id"]
    with get_client(sync_client=True) as client:
        task_runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])))
    states = [t.state.name for t in task_runs if t.name.startswith("train[autoencoder:")]
    assert states == ["Cached"] * 3

    fresh = anonymize(fast(use_cache=False, **kw))
    fresh_manifest = json.loads((Path(fresh.release) / "manifest.json").read_text())
    assert fresh_manifest["reused_from_cache"] == []
    a = pl.read_parquet(Path(outcome.release) / "group_encoded.parquet")
    b = pl.read_parquet(Path(fresh.release) / "group_encoded.parquet")
    # the cached models are the ones a fresh run trains (rows in another secret order)
    assert a.sort(a.columns).equals(b.sort(b.columns))
