"""A duplicate-heavy table (40% of rows repeat an earlier row's features) splits cleanly end to
end: the manifest states the duplicates and the grouped split, no control row copies a training
row, and the exact-copy baseline is the distinct control rows' own (0), not the table's
duplicates."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
import yaml

from tests.helpers import duplicated_table, tiny_profile_dict

pytestmark = pytest.mark.integration


def test_duplicate_heavy_synthetic_release_states_and_keeps_its_groups(prefect_harness,
                                                                        workdir: Path):
    from cloakflow.flows.parameters import SynthesizeParameters
    from cloakflow.flows.synthesize import synthesize

    frame = duplicated_table(800).with_columns(
        owns=pl.when(pl.col("age") > 50).then(pl.lit("y")).otherwise(pl.lit("n")))
    csv, prof = workdir / "dup.csv", workdir / "dup.yaml"
    frame.write_csv(csv)
    prof.write_text(yaml.safe_dump(tiny_profile_dict()))
    out = synthesize(SynthesizeParameters(profile_path=str(prof), input_path=str(csv),
                                          epochs=3, out=str(workdir / "releases")))
    manifest = json.loads((Path(out.release) / "manifest.json").read_text())
    split = manifest["split"]
    assert split["duplicates"]["feature_rows"] == 320 and split["duplicates"]["share"] == 0.4
    assert "one side of the split" in split["grouped_on"]
    distance = manifest["evaluation"]["privacy"]["distance"]
    assert distance["exact_copies_control"] == 0.0
    assert distance["control_rows_distinct"] <= split["control_rows"]
    assert distance["dcr_ratio"] is None or distance["dcr_ratio"] < 1e6
