from pathlib import Path

import polars as pl
import pytest

from cloakflow.tasks.data.ingest import read_table
from cloakflow.tasks.data.profile import load_profile
from cloakflow.tasks.data.validate import (
    default_suite,
    load_suite,
    validate_frame,
    validate_table,
)


@pytest.fixture(scope="module")
def bank():
    from tests.helpers import DATA_DIR

    path = DATA_DIR / "bank-additional.csv"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    profile = load_profile("bank-marketing")
    return profile, read_table(path, profile), load_suite(profile)


def test_bank_sample_passes_its_suite(bank):
    profile, frame, suite = bank
    report = validate_table(frame, profile, "bank-additional.csv")
    assert report.success, report.text()
    assert report.evaluated == len(suite["expectations"])


def test_missing_column_is_reported_once(bank):
    _, frame, suite = bank
    report = validate_frame(frame.drop("marital"), suite, "cut.csv")
    assert not report.success
    assert [(f.expectation, f.column) for f in report.failures] == [
        ("expect_column_to_exist", "marital")]
    assert "cut.csv" in report.text() and "'marital'" in report.text()
    # exist, not-null and in-set on 'marital' all failed; one line reports them
    assert report.passed == report.evaluated - 3
    assert f"{report.passed}/{report.evaluated} expectations passed" in report.text()
    # no near name: the table's own columns and the two ways out
    assert "the table's columns are 'age', 'job'" in report.text()
    assert "take the column out of the profile" in report.text()


def test_wrong_type_null_range_and_category(bank):
    _, frame, suite = bank
    bad = frame.with_columns(
        pl.when(pl.int_range(pl.len()) == 3).then(pl.lit("forty")).otherwise(
            pl.col("age").cast(pl.String)).alias("age"),
        pl.when(pl.int_range(pl.len()) < 2).then(None).otherwise(pl.col("job")).alias("job"),
        pl.when(pl.int_range(pl.len()) == 5).then(pl.lit(99.0)).otherwise(
            pl.col("euribor3m")).alias("euribor3m"),
        pl.when(pl.int_range(pl.len()) == 7).then(pl.lit("mars")).otherwise(
            pl.col("month")).alias("month"),
    )
    report = validate_frame(bad, suite, "bad.csv")
    failed = {(f.expectation, f.column) for f in report.failures}
    assert ("expect_column_values_to_be_in_type_list", "age") in failed
    assert ("expect_column_values_to_not_be_null", "job") in failed
    assert ("expect_column_values_to_be_between", "euribor3m") in failed
    assert ("expect_column_values_to_be_in_set", "month") in failed
    month = next(f for f in report.failures if f.column == "month")
    assert month.unexpected_count == 1 and month.examples == ["mars"]
    nulls = next(f for f in report.failures if f.column == "job")
    assert nulls.unexpected_count == 2
    assert "2 rows" in report.text()


def test_too_few_rows(bank):
    _, frame, suite = bank
    report = validate_frame(frame.head(50), suite, "head.csv")
    assert [f.expectation for f in report.failures] == ["expect_table_row_count_to_be_between"]
    assert report.failures[0].observed == 50


def test_default_suite_from_declared_columns(tiny_profile, tiny_frame):
    suite = default_suite(tiny_profile)
    types = {e["type"] for e in suite["expectations"]}
    assert {"expect_column_to_exist", "expect_column_values_to_not_be_null",
            "expect_column_values_to_be_in_type_list"} <= types
    assert validate_frame(tiny_frame, suite, "tiny.csv").success
    report = validate_frame(tiny_frame.drop("income"), suite, "tiny.csv")
    assert [f.column for f in report.failures] == ["income"]


def test_report_round_trips_to_dict(tiny_profile, tiny_frame):
    report = validate_frame(tiny_frame.drop("city"), default_suite(tiny_profile),
                            Path("t.csv").name)
    d = report.to_dict()
    assert d["success"] is False and d["failures"][0]["column"] == "city"


def test_a_decimal_column_declared_numeric_passes_the_default_suite():
    """A Parquet decimal(12,2) money column, declared numeric (as the drafter declares it),
    is checked as the Float64 the models read (a pandas copy holds Decimal objects)."""
    from decimal import Decimal

    import polars as pl

    from cloakflow.tasks.data.profile import DatasetProfile
    from tests.helpers import make_tiny_frame, tiny_profile_dict

    frame = make_tiny_frame(n=50).with_columns(
        pl.Series("income", [Decimal(f"{1000 + i}.25") for i in range(50)],
                  dtype=pl.Decimal(12, 2)))
    profile = DatasetProfile.model_validate(tiny_profile_dict())
    assert profile.columns["income"] == "numeric"
    report = validate_table(frame, profile, "t.parquet")
    assert report.success, report.text()
