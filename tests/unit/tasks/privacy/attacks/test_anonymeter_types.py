"""anonymeter on the product's own records and decoded rows of a table with a decimal column
and a zoned datetime: one type per column on every side, whether the decoded rows come from a
plain fit (the source types) or a DP fit (numbers as Float64)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from cloakflow.tasks.data import kinds
from cloakflow.tasks.data.preprocess import TablePreprocessor
from cloakflow.tasks.privacy.attacks import as_records, run_anonymeter
from cloakflow.tasks.privacy.attacks.anonymeter import comparable
from tests.unit.tasks.data.test_source_types import source_frame, source_profile


@pytest.fixture
def records():
    frame = kinds.to_utc(source_frame(n=260, seed=1))  # as ingest hands it on
    profile = source_profile()
    pre = TablePreprocessor(profile).fit(frame[:200])
    return frame.select(profile.features), profile, pre


def test_anonymeter_runs_on_decimal_and_zoned_records_against_decoded_rows(records):
    frame, profile, pre = records
    train, control = frame[:200], frame[200:]
    decoded = as_records(pre, pre.transform(train), train)
    assert decoded.schema == train.schema  # decoded in the source types, decimal included
    out = run_anonymeter(train, decoded, control, profile, seed=0)
    secret = out["inference"]["balance"]  # a decimal secret: inferred by regression
    assert 0.0 <= secret["attack_rate"] <= 1.0
    assert "singling_out" in out and "linkability" in out


def test_a_dp_fit_decoding_decimals_as_float64_is_compared_in_one_type(records):
    frame, profile, _ = records
    train, control = frame[:200], frame[200:]
    dp_decoded = train.with_columns(pl.col("balance").cast(pl.Float64),
                                    pl.col("products").cast(pl.Float64))
    ori, syn, ctl = comparable(train, dp_decoded, control)
    assert ori.schema == syn.schema == ctl.schema
    assert ori.schema["balance"] == pl.Float64 and ori.schema["opened_at"] == pl.Float64
    pandas = [f.to_pandas().dtypes.to_dict() for f in (ori, syn, ctl)]
    assert pandas[0] == pandas[1] == pandas[2]
    assert np.issubdtype(pandas[0]["balance"], np.floating)  # not Python Decimal objects
    out = run_anonymeter(train, dp_decoded, control, profile, seed=0)
    assert "balance" in out["inference"]


def test_a_column_of_numbers_against_text_is_named(records):
    frame, profile, _ = records
    text = frame.with_columns(pl.col("products").cast(pl.String))
    with pytest.raises(kinds.KindError, match=r"column 'products'.*released rows"):
        run_anonymeter(frame[:200], text[:200], frame[200:], profile, seed=0)
