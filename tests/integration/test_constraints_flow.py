"""The generated hospital table with its four declared rules (discharge on or after
admission, length of stay = the difference, each ward on its floor, a cost >= 0): every
published synthetic row keeps them, plain and DP, and the report and manifest say so."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
import yaml

from cloakflow.flows.cli import main
from tests.helpers import hospital_profile, hospital_table


def _synthesize(capsys, workdir: Path, *extra: str) -> tuple[dict, pl.DataFrame, str]:
    """(manifest, synthetic rows, report) of a published synthetic release."""
    csv, prof = workdir / "hospital.csv", workdir / "hospital.yaml"
    hospital_table(1200).write_csv(csv)
    prof.write_text(yaml.safe_dump(hospital_profile()))
    capsys.readouterr()
    rc = main(["synthesize", "hospital", "--input", str(csv), "--profile", str(prof),
               "--out", str(workdir / "releases"), "--accept-risk", "test", *extra])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    release = Path(captured.out.strip().splitlines()[-1])
    manifest = json.loads((release / "manifest.json").read_text())
    report = release / "report.md"  # not in a DP release's folder under --dp-report private
    return manifest, pl.read_parquet(release / "synthetic.parquet"), \
        report.read_text() if report.is_file() else ""


def _assert_rules_kept(rows: pl.DataFrame) -> None:
    assert rows.height > 0
    assert (rows["discharge_date"] >= rows["admission_date"]).all()
    days = (rows["discharge_date"] - rows["admission_date"]).dt.total_days()
    assert (rows["length_of_stay"] == days).all()
    floors = {"cardio": "3", "ortho": "2", "neuro": "4", "general": "1"}
    assert all(floors[w] == str(f) for w, f in zip(rows["ward"], rows["floor"], strict=True))
    assert (rows["cost"] >= 0).all()


def test_synthetic_rows_keep_the_declared_rules(prefect_harness, workdir, capsys):
    manifest, rows, report = _synthesize(capsys, workdir, "--epochs", "5")
    _assert_rules_kept(rows)
    assert rows.schema["admission_date"] == pl.Date and rows.schema["length_of_stay"] == \
        pl.Int64
    rules = manifest["constraints"]["rules"]
    assert [(r["kept_by"], r["valid_synthetic"], r["valid_real"]) for r in rules] == [
        ("transform", 1.0, 1.0), ("formula", 1.0, 1.0), ("transform", 1.0, 1.0),
        ("rejection", 1.0, 1.0)]
    assert "## Constraints (share of rows keeping each rule)" in report


@pytest.mark.slow  # ~1 min: DP-SGD and the DP knots of the difference
def test_dp_synthetic_rows_keep_the_declared_rules(prefect_harness, workdir, capsys):
    manifest, rows, _ = _synthesize(capsys, workdir, "--dp-epsilon", "3", "--dp-epochs", "5",
                                    "--dp-sampling-rate", "0.05")
    _assert_rules_kept(rows)
    # the modelled difference took its scaling from the constraint's public range
    assert "discharge_date" in manifest["dp"]["preprocessing"]["dp_quantile_knots"]
    assert all("valid_real" not in r for r in manifest["constraints"]["rules"])  # private
    assert all(r["valid_synthetic"] == 1.0 for r in manifest["constraints"]["rules"])


def test_a_broken_rule_is_refused_as_input_before_training(prefect_harness, workdir, capsys):
    csv, prof = workdir / "hospital.csv", workdir / "typo.yaml"
    hospital_table(600).write_csv(csv)
    prof.write_text(yaml.safe_dump(hospital_profile(constraints=[
        {"type": "formula", "column": "length_of_stay",
         "expression": "discharge_date - checkin_date"}])))
    capsys.readouterr()
    rc = main(["synthesize", "hospital", "--input", str(csv), "--profile", str(prof),
               "--out", str(workdir / "releases"), "--epochs", "2"])
    err = capsys.readouterr().err
    assert rc == 2 and "INPUT REJECTED" in err
    assert "length_of_stay = discharge_date - checkin_date" in err and "checkin_date" in err
    assert "VAE epoch" not in err  # refused before any training
    assert not (workdir / "releases").exists() or not any((workdir / "releases").rglob("*.parquet"))
