"""Integration: ``cloakflow desensitize`` under a real Prefect server, sqlite MLflow and GX, on
a generated table whose sensitive column is given away by one other column: the release, its
evaluation and gate, and bad input refused with nothing published."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml
from mlflow.tracking import MlflowClient

from tests.helpers import releases_of, run_cli

pytestmark = pytest.mark.integration


def _table(folder: Path, rows: int = 1500) -> tuple[Path, Path]:
    """A clinic table: ``smoker`` follows ``plan`` (premium plans are smokers' 80% of the
    time); ``visits`` and ``region`` drive the ``readmitted`` label."""
    rng = np.random.default_rng(3)
    plan = rng.choice(["basic", "plus", "premium"], rows)
    smoker = np.where(plan == "premium", rng.random(rows) < 0.8, rng.random(rows) < 0.1)
    visits = rng.poisson(3, rows)
    region = rng.choice(["coast", "hills", "city"], rows)
    score = 0.5 * visits + (region == "city") + rng.normal(0, 1, rows)
    frame = pl.DataFrame({
        "visits": visits, "weight_kg": np.round(rng.normal(75, 12, rows), 1),
        "region": region, "plan": plan, "smoker": np.where(smoker, "yes", "no"),
        "readmitted": np.where(score > np.median(score), "yes", "no")})
    csv = folder / "clinic.csv"
    frame.write_csv(csv)
    profile = {
        "name": "clinic", "format": "csv", "separator": ",",
        "target": {"column": "readmitted", "positive": "yes"},
        "groups": {"care": ["visits", "weight_kg"], "person": ["region", "plan", "smoker"]},
        "quasi_identifiers": ["region", "plan"],
        "columns": {"visits": "numeric", "weight_kg": "numeric", "region": "categorical",
                    "plan": "categorical", "smoker": "categorical"},
        "privacy": {"sensitive": ["smoker"], "known_fractions": [0.01, 0.1],
                    "policy": {"desensitized": {"max_inference_advantage": 0.5,
                                                "max_gain_over_imputation": 0.5}}}}
    path = folder / "clinic.yaml"
    path.write_text(yaml.safe_dump(profile))
    return csv, path


def test_desensitized_release_end_to_end_and_bad_input(prefect_harness, workdir: Path,
                                                       capsys):
    csv, profile = _table(workdir)
    source = pl.read_csv(csv)
    rc, out, err = run_cli(capsys, ["desensitize", "clinic", "--input", str(csv), "--profile",
                                 str(profile), "--epochs", "6", "--distortion", "0.3"])
    assert rc == 0, err
    assert "privatizer epoch 6/6: adversary" in err and "desensitizing smoker" in err
    release = Path(out.strip().splitlines()[-1])
    assert sorted(p.name for p in release.iterdir()) == [
        "README.md", "desensitized.parquet", "manifest.json", "report.md"]
    rows = pl.read_parquet(release / "desensitized.parquet")
    manifest = json.loads((release / "manifest.json").read_text())
    # the source schema without the sensitive column; values from the training domain
    assert rows.columns == [c for c in source.columns if c != "smoker"]
    assert rows.schema == source.drop("smoker").schema
    assert rows.height == manifest["rows"] == manifest["split"]["training_rows"]
    for col in ("region", "plan"):
        assert set(rows[col].unique()) <= set(source[col].unique())
    assert rows["weight_kg"].min() >= source["weight_kg"].min()
    assert rows["weight_kg"].max() <= source["weight_kg"].max()
    assert set(rows["readmitted"].unique()) <= {"yes", "no"}
    assert manifest["kind"] == "desensitized" and manifest["sensitive"] == ["smoker"]
    assert "not membership or identity" in manifest["privacy"]["statement"]
    ev = manifest["evaluation"]
    smoker = ev["inference"]["smoker"]
    # the raw rows give smoker away through plan; the imputation baseline too (plan is not
    # sensitive): the release must be measured against both
    assert smoker["strongest"]["raw"] > 0.75 and smoker["strongest"]["imputation"] > 0.75
    assert set(smoker["by_fraction"]) == {"0.01", "0.1"}
    assert set(smoker["by_fraction"]["0.1"]["attackers"]) == {"logistic", "lightgbm", "mlp"}
    assert 0.5 <= smoker["strongest"]["release"] <= 1
    assert 0.5 < ev["utility"]["forest"]["release"] <= 1
    assert 0 < ev["moved"]["distortion"] <= 0.35 and "plan" in ev["moved"]["columns"]
    assert ev["reidentification"]["quasi_identifiers"] == ["region", "plan"]
    assert 0.5 <= ev["linkage"]["own_row_nearest"] <= 1
    gate = manifest["privacy"]["policy"]
    assert set(gate["measured"]) == {"max_inference_advantage", "max_gain_over_imputation",
                                     "max_reidentification"}
    assert manifest["privacy"]["verdict"] == "pass"
    report = (release / "report.md").read_text()
    assert "Sensitive-attribute inference" in report and "derive one-to-one" in report
    run = MlflowClient().get_run(manifest["mlflow"]["run_id"])
    assert {"privatizer.adversary_loss", "privatizer.privatizer_loss",
            "utility.forest.release", "policy.max_inference_advantage"} <= set(run.data.metrics)
    assert run.data.tags["cloakflow.kind"] == "desensitized"

    published = releases_of(workdir, "clinic")
    for args, said in ((["--sensitive", "smokes"], "['smokes'] are not feature columns"),
                       (["--sensitive", "readmitted"], "'readmitted' is the target"),
                       (["--sensitive", "weight_kg"], "['weight_kg'] are numeric")):
        rc, _, err = run_cli(capsys, ["desensitize", "clinic", "--input", str(csv), "--profile",
                                   str(profile), "--epochs", "1", *args])
        # refused from the profile alone, before a server starts or a row is read
        assert rc == 2 and "INPUT REJECTED, nothing was run" in err and said in err, err
    assert releases_of(workdir, "clinic") == published  # nothing more was published


@pytest.mark.slow
def test_bank_sample_desensitized_housing_and_loan(prefect_harness, workdir: Path,
                                                   bank_sample: Path):
    """The bank sample with ``housing`` and ``loan`` removed: the raw rows give each away
    through the other (their ``unknown`` rows coincide); the release keeps the target's
    signal and leaks no more than the dropped columns, within the measurement's noise."""
    from cloakflow.flows.desensitize import DesensitizeParameters, desensitize

    outcome = desensitize(DesensitizeParameters(
        input_path=str(bank_sample), sensitive=["housing", "loan"], epochs=15,
        accept_risk="test on the public bank sample"))
    manifest = json.loads((Path(outcome.release) / "manifest.json").read_text())
    ev = manifest["evaluation"]
    for col in ("housing", "loan"):
        best = ev["inference"][col]["strongest"]
        assert best["raw"] > 0.6 and best["release"] < best["raw"] - 0.05, (col, best)
        assert best["release"] < best["imputation"] + 0.03, (col, best)
    util = ev["utility"]["forest"]
    assert util["release"] > util["dropped"] - 0.04, util
    rows = pl.read_parquet(Path(outcome.release) / "desensitized.parquet")
    assert "housing" not in rows.columns and "loan" not in rows.columns
    assert rows.height == manifest["split"]["training_rows"]
