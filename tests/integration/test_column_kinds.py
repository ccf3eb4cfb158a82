"""Integration: a Parquet table with every column kind (numeric, categorical, integer-coded
categorical, boolean, date, zoned datetime), types left to inference except the integer codes,
runs end to end under a real Prefect server, sqlite MLflow and GX: validated, encoded, attacked
per kind (dates as numbers, booleans as categories) and judged by the default policy with no
sensitive attribute declared: the leak of an undeclared attribute crosses it, so the release
is published only with the risk accepted."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml

from cloakflow.flows.anonymize import anonymize
from tests.helpers import fast

pytestmark = pytest.mark.integration


def _table(n: int = 400, seed: int = 3) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    born = rng.integers(0, 60 * 365, n)
    risk = rng.integers(1, 5, n)
    return pl.DataFrame({
        "patient_id": [f"PT-{i:06d}" for i in rng.permutation(900_000)[:n]],
        "born": pl.Series([dt.date(1940, 1, 1) + dt.timedelta(days=int(d)) for d in born],
                          dtype=pl.Date),
        "admitted": pl.Series([dt.datetime(2023, 1, 1) + dt.timedelta(minutes=int(m))
                               for m in rng.integers(0, 525_600, n)],
                              dtype=pl.Datetime("us", "Europe/Berlin")),
        "ward": rng.choice(["A", "B", "C"], n).tolist(),
        "risk_class": risk,  # categories stored as numbers
        "insured": rng.random(n) < 0.6,
        "stay_days": rng.integers(1, 30, n),
        "readmitted": np.where((risk >= 3) ^ (rng.random(n) < 0.15), "yes", "no").tolist(),
    })


def test_every_column_kind_runs_end_to_end_from_parquet(prefect_harness, workdir: Path):
    path = workdir / "stays.parquet"
    frame = _table()
    frame.write_parquet(path)
    prof = workdir / "stays.yaml"
    prof.write_text(yaml.safe_dump({
        "name": "stays", "format": "parquet",
        "target": {"column": "readmitted", "positive": "yes"},
        "groups": {"person": ["born", "insured", "ward"],
                   "stay": ["admitted", "risk_class", "stay_days"]},
        "columns": {"risk_class": "categorical"},
        "identifiers": ["patient_id"],
        "quasi_identifiers": ["born", "ward"],
        "privacy": {"anonymeter_attacks": 30},  # default policy, nothing declared sensitive
    }))
    outcome = anonymize(fast(profile_path=str(prof), input_path=str(path), epochs=2,
                             accept_risk="generated test table"))
    manifest = json.loads((Path(outcome.release) / "manifest.json").read_text())
    policy = manifest["privacy"]["policy"]
    # without --accept-risk this release is blocked: an undeclared attribute leaks
    assert manifest["privacy"]["verdict"] == "accepted"
    assert any("max_inversion" in c for c in policy["crossed"]), policy["crossed"]
    section = manifest["privacy"]["report"]["releases"]["ENCODED"]
    leaked = section["leaked_decoder"]
    # dates and datetimes are attacked as numbers (R^2), booleans and integer codes as
    # categories (accuracy gain); no sensitive list: every non-target column is covered
    assert {leaked[c]["kind"] for c in ("born", "admitted", "stay_days")} == {"numeric"}
    assert {leaked[c]["kind"] for c in ("insured", "risk_class", "ward")} == {"categorical"}
    covered = policy["covered"]
    assert set(covered["max_inversion_r2"]) == {"born", "admitted", "stay_days"}
    assert set(covered["max_inversion_gain"]) == {"insured", "risk_class", "ward"}
    assert "singling_out" in section["anonymeter"]
    assert ("Identifier columns, kept out of the features and the release: patient_id."
            in outcome.privacy_summary)  # ran on decoded dates and booleans
    files = manifest["files"]
    codes = pl.read_parquet(Path(outcome.release) / files["encoded"]["file"])
    assert len(codes) == len(frame) - manifest["control_rows"]
    assert not set(frame.columns[:-1]) & set(codes.columns)  # codes, not source columns
    assert not any("patient_id" in c["name"] for c in manifest["columns"])
