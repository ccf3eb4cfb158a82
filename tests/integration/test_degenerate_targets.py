"""A target that cannot support the run is refused before anything trains: exit 2, the counts
and the option to change named, nothing published (through the CLI, under a real Prefect
server); a boolean target is matched whether the profile writes true or "true"."""

from __future__ import annotations

import time
from pathlib import Path

import polars as pl
import pytest
import yaml

from tests.helpers import make_tiny_frame, tiny_profile_dict

pytestmark = pytest.mark.integration


def _files(tmp: Path, frame: pl.DataFrame, **profile) -> tuple[Path, Path]:
    csv, prof = tmp / "t.csv", tmp / "t.yaml"
    frame.write_csv(csv)
    prof.write_text(yaml.safe_dump(tiny_profile_dict(**profile)))
    return csv, prof


def _cli(capsys, csv: Path, prof: Path, *extra: str) -> tuple[int, str, float]:
    from cloakflow.flows.cli import main

    capsys.readouterr()
    t = time.perf_counter()
    rc = main(["run", "--input", str(csv), "--profile", str(prof), "--epochs", "1",
               "--accept-risk", "test", *extra])
    return rc, capsys.readouterr().err, time.perf_counter() - t


def test_single_positive_and_too_many_folds_exit_2_before_training(prefect_harness, workdir,
                                                                     capsys):
    frame = make_tiny_frame(n=60).with_columns(
        pl.when(pl.int_range(pl.len()) == 0).then(pl.lit("yes")).otherwise(pl.lit("no"))
        .alias("label"))
    csv, prof = _files(workdir, frame)
    rc, err, _ = _cli(capsys, csv, prof, "--folds", "3")
    assert rc == 2 and "INPUT REJECTED" in err
    assert "target column 'label': 1 positive row(s) of 60" in err and "--control-fraction 0" in err
    small = make_tiny_frame(n=8)
    csv, prof = _files(workdir, small)
    rc, err, seconds = _cli(capsys, csv, prof, "--control-fraction", "0")  # --folds 10 default
    assert rc == 2 and "cannot fill 10 stratified folds (--folds 10)" in err
    assert not (workdir / "releases").exists()
    assert seconds < 60  # refused before any model trained


def test_boolean_target_written_as_true(prefect_harness, workdir, capsys):
    frame = make_tiny_frame(n=300).with_columns(pl.col("label") == "yes")  # a bool column
    csv, prof = _files(workdir, frame, target={"column": "label", "positive": True})
    rc, err, _ = _cli(capsys, csv, prof, "--folds", "2", "--skip-attacks", "--out",
                      str(workdir / "releases"))
    assert rc == 0, err
    assert len(list((workdir / "releases" / "tiny").iterdir())) == 1


def test_a_three_class_target_is_refused_until_one_vs_rest_is_declared(prefect_harness,
                                                                        workdir, capsys):
    import json

    n = 300
    frame = make_tiny_frame(n=n).with_columns(
        label=pl.Series((["low"] * 5 + ["medium"] * 3 + ["high"] * 2) * (n // 10)))
    csv, prof = _files(workdir, frame, target={"column": "label", "positive": "high"})
    rc, err, seconds = _cli(capsys, csv, prof, "--folds", "2")
    assert rc == 2 and ("target column 'label': 3 distinct values ('low' 150, 'medium' 90, "
                        "'high' 60)") in err
    assert "one_vs_rest: true" in err and seconds < 60
    assert not (workdir / "releases").exists()
    csv, prof = _files(workdir, frame, target={"column": "label", "positive": "high",
                                               "one_vs_rest": True})
    rc, err, _ = _cli(capsys, csv, prof, "--folds", "2", "--skip-attacks", "--out",
                      str(workdir / "releases"))
    assert rc == 0, err
    (release,) = (workdir / "releases" / "tiny").iterdir()
    manifest = json.loads((release / "manifest.json").read_text())
    assert "one-vs-rest: 'high' against every other value of 'label'" in manifest["folds"]["note"]
    statement = manifest["privacy"]["statement"]
    assert "The label column 'label' is published in clear" in statement
    assert "'high' against all other values, while the released column keeps every value" \
        in statement
    assert set(pl.read_parquet(release / "encoded.parquet").get_column("label")) == {
        "low", "medium", "high"}
