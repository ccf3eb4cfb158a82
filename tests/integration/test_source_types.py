"""Integration: a Parquet export with a decimal128 balance and a zone-aware timestamp goes
through `cloakflow run` and `cloakflow synthesize` (the CLI, under a real Prefect server,
sqlite MLflow and GX): both publish, the attacks (anonymeter inferring the decimal balance
included) compare one type per column, the synthetic rows come back as decimal(12,2) and UTC
timestamps, and each manifest states the conversions."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
import yaml

from tests.unit.tasks.data.test_source_types import source_frame

pytestmark = pytest.mark.integration

# a policy every release passes: this test is about types, not about blocking
LENIENT = {"max_inversion_gain": 1.0, "max_inversion_r2": 1.0, "max_membership_auc": 1.0,
           "max_reidentification": 1.0, "max_dcr_share": 1.0, "max_exact_copy_excess": 1.0,
           "max_membership_tpr": 1.0}


def _files(folder: Path) -> tuple[Path, Path]:
    path = folder / "accounts.parquet"
    source_frame(n=600, seed=7).write_parquet(path)
    assert pl.read_parquet_schema(path)["balance"] == pl.Decimal(12, 2)
    prof = folder / "accounts.yaml"
    prof.write_text(yaml.safe_dump({
        "name": "accounts", "format": "parquet",
        "target": {"column": "churned", "positive": "yes"},
        "groups": {"money": ["balance", "products", "online"],
                   "person": ["opened_at", "branch", "segment"]},
        "quasi_identifiers": ["branch", "opened_at"],
        "privacy": {"sensitive": ["balance"], "anonymeter_attacks": 25, "policy": LENIENT}}))
    return path, prof


def _cli(capsys, *args: str) -> tuple[int, str]:
    from cloakflow.flows.cli import main

    capsys.readouterr()
    rc = main(list(args))
    return rc, capsys.readouterr().err


def _manifest(workdir: Path, kind: str) -> tuple[Path, dict]:
    for folder in sorted((workdir / "releases" / "accounts").iterdir()):
        manifest = json.loads((folder / "manifest.json").read_text())
        if manifest["kind"] == kind:
            return folder, manifest
    raise AssertionError(f"no {kind} release published")


def test_decimal_and_zoned_columns_run_and_synthesize(prefect_harness, workdir: Path, capsys):
    path, prof = _files(workdir)
    common = ["--input", str(path), "--profile", str(prof), "--out", str(workdir / "releases")]
    rc, err = _cli(capsys, "run", *common, "--epochs", "2", "--folds", "2",
                   "--importance-rows", "200")
    assert rc == 0, err[-3000:]
    rc, err = _cli(capsys, "synthesize", *common, "--epochs", "3")
    assert rc == 0, err[-3000:]

    _, codes = _manifest(workdir, "codes")
    assert codes["conversions"] == {"balance": "decimal(12,2) -> Float64 for the models",
                                    "opened_at": "datetime[us, Europe/Paris] -> UTC"}
    attacked = codes["privacy"]["report"]["releases"]["ENCODED"]["anonymeter"]
    assert "balance" in attacked["inference"]  # the decimal secret, inferred as a number

    folder, synthetic = _manifest(workdir, "synthetic")
    assert codes["source"]["format"] == synthetic["source"]["format"] == "parquet"
    rows = pl.read_parquet(folder / "synthetic.parquet")
    assert rows.schema["balance"] == pl.Decimal(12, 2)
    assert rows.schema["opened_at"] == pl.Datetime("us", "UTC")
    assert synthetic["conversions"] == {
        "balance": "decimal(12,2) -> Float64 for the models, released as decimal(12,2)",
        "opened_at": "datetime[us, Europe/Paris] -> UTC, released as datetime[us, UTC]"}
    assert "balance" in synthetic["evaluation"]["privacy"]["anonymeter"]["inference"]
