"""Source types the models convert: decimal columns read as Float64 and decoded back to their
decimal type, zone-aware datetimes in UTC from ingest on, each conversion stated; nested
columns refused by name. Decoded rows have the schema of the records they stand for."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import numpy as np
import polars as pl
import pytest

from cloakflow.tasks.data import kinds
from cloakflow.tasks.data.ingest import IngestError, check_columns, conversions, read_table
from cloakflow.tasks.data.preprocess import PreprocessError, TablePreprocessor
from cloakflow.tasks.data.profile import DatasetProfile


def source_frame(n: int = 300, seed: int = 0) -> pl.DataFrame:
    """A table as a bank exports it: a decimal balance, a zoned timestamp, categories, a
    count, a boolean and a binary target."""
    rng = np.random.default_rng(seed)
    balance = rng.gamma(2.0, 800.0, n) - 300.0
    minutes = rng.integers(0, 2 * 525_600, n)
    return pl.DataFrame({
        "balance": pl.Series([Decimal(f"{v:.2f}") for v in balance], dtype=pl.Decimal(12, 2)),
        "opened_at": pl.Series([dt.datetime(2023, 1, 1) + dt.timedelta(minutes=int(m))
                                for m in minutes]).dt.replace_time_zone("Europe/Paris"),
        "branch": rng.choice(["north", "south", "east"], n).tolist(),
        "segment": rng.choice(["retail", "private"], n, p=[0.7, 0.3]).tolist(),
        "products": rng.integers(1, 6, n),
        "online": rng.random(n) < 0.5,
        "churned": np.where(balance + rng.normal(0, 500, n) < 500, "yes", "no").tolist(),
    })


def source_profile(**over) -> DatasetProfile:
    d = {"name": "accounts", "format": "parquet",
         "target": {"column": "churned", "positive": "yes"},
         "groups": {"money": ["balance", "products", "online"],
                    "person": ["opened_at", "branch", "segment"]},
         "quasi_identifiers": ["branch", "opened_at"],
         "privacy": {"sensitive": ["balance"], "anonymeter_attacks": 20}}
    d.update(over)
    return DatasetProfile.model_validate(d)


@pytest.fixture
def ingested(tmp_path) -> tuple[pl.DataFrame, DatasetProfile, object]:
    path = tmp_path / "accounts.parquet"
    source_frame().write_parquet(path)
    profile = source_profile()
    return read_table(path, profile), profile, path


def test_ingest_keeps_decimals_and_converts_zoned_datetimes_to_utc(ingested):
    frame, _, path = ingested
    assert frame.schema["balance"] == pl.Decimal(12, 2)
    assert frame.schema["opened_at"] == pl.Datetime("us", "UTC")
    source = pl.read_parquet(path)
    # the same instants, written in UTC
    assert (frame["opened_at"].dt.epoch("us") == source["opened_at"].dt.epoch("us")).all()


@pytest.mark.parametrize("options", [
    {},
    {"numeric": "quantile", "with_target": True, "missing_state": True, "discrete_levels": 32},
], ids=["codes", "synthetic"])
def test_decoded_rows_have_the_schema_of_the_records(ingested, options):
    frame, profile, _ = ingested
    pre = TablePreprocessor(profile, **options).fit(frame, "accounts.parquet")
    decoded = pre.reverse_transform(pre.transform(frame, "accounts.parquet"))
    records = frame.select(decoded.columns)
    assert decoded.schema == records.schema
    assert decoded.schema["balance"] == pl.Decimal(12, 2)
    assert decoded.schema["opened_at"] == pl.Datetime("us", "UTC")
    # the models read the decimal as a number: decoded values are close to the source's
    error = (decoded["balance"].cast(pl.Float64) - records["balance"].cast(pl.Float64)).abs()
    assert float(error.max()) < 0.01 * float(records["balance"].cast(pl.Float64).abs().max())
    # and the state, saved and read back, decodes into the same types
    again = TablePreprocessor.from_dict(pre.to_dict())
    assert again.reverse_transform(pre.transform(frame)).schema == records.schema


def test_a_decimal_declared_categorical_comes_back_decimal(ingested):
    frame, _, _ = ingested
    frame = frame.with_columns((pl.col("balance").round(0) % 3).cast(pl.Decimal(12, 2)))
    profile = source_profile(columns={"balance": "categorical"})
    pre = TablePreprocessor(profile).fit(frame)
    spec = next(s for s in pre.specs if s.name == "balance")
    assert spec.kind == "categorical" and set(spec.categories) <= {"0.00", "1.00", "2.00",
                                                                   "-1.00", "-2.00"}
    decoded = pre.reverse_transform(pre.transform(frame))
    assert decoded.schema["balance"] == pl.Decimal(12, 2)
    assert decoded["balance"].to_list() == frame["balance"].to_list()


def test_decoded_decimals_are_rounded_to_their_scale_and_clipped_to_their_precision():
    values = np.array([1.005, 2.675, -3.14159, 1e12, np.nan])
    out = kinds.from_numbers("b", values, "numeric", "Decimal[6,2]")
    assert out.dtype == pl.Decimal(6, 2)
    assert out.to_list()[:3] == [Decimal("1.00"), Decimal("2.68"), Decimal("-3.14")]
    assert out[3] == Decimal("9999.99") and out[4] is None  # beyond decimal(6,2): its maximum


def test_decimal_types_round_trip_through_the_saved_state():
    assert kinds.dtype_name(pl.Decimal(12, 2)) == "Decimal[12,2]"
    assert kinds.parse_dtype("Decimal[12,2]") == pl.Decimal(12, 2)
    assert kinds.parse_dtype("Decimal") == pl.Float64  # states saved before: as they decoded


def test_each_conversion_is_stated(ingested):
    frame, profile, path = ingested
    assert conversions(path, profile) == {
        "balance": "decimal(12,2) -> Float64 for the models",
        "opened_at": "datetime[us, Europe/Paris] -> UTC"}
    released = {"balance": pl.Decimal(12, 2), "opened_at": pl.Datetime("us", "UTC")}
    assert conversions(path, profile, released) == {
        "balance": "decimal(12,2) -> Float64 for the models, released as decimal(12,2)",
        "opened_at": "datetime[us, Europe/Paris] -> UTC, released as datetime[us, UTC]"}


def test_a_csv_source_states_no_conversion(tmp_path, ingested):
    frame, profile, _ = ingested
    path = tmp_path / "accounts.csv"
    frame.write_csv(path)
    assert conversions(path, profile.model_copy(update={"format": "csv"})) == {}


@pytest.mark.parametrize("declared", [None, "categorical", "numeric"])
@pytest.mark.parametrize("column", [
    pl.Series("tags", [["a", "b"], ["c"]] * 10),
    pl.Series("address", [{"street": "x", "no": 1}, {"street": "y", "no": 2}] * 10),
], ids=["list", "struct"])
def test_nested_columns_are_refused_by_name_declared_or_not(tmp_path, column, declared):
    path = tmp_path / "nested.parquet"
    pl.DataFrame({"age": list(range(20)), column.name: column,
                  "y": ["a", "b"] * 10}).write_parquet(path)
    profile = DatasetProfile.model_validate({
        "name": "nested", "format": "parquet", "target": {"column": "y", "positive": "a"},
        "groups": {"g": ["age", column.name]},
        **({"columns": {column.name: declared}} if declared else {})})
    with pytest.raises(IngestError) as err:
        check_columns(read_table(path, profile), profile, path.name)
    message = str(err.value)
    assert "nested.parquet" in message and repr(column.name) in message
    assert "`drop:`" in message  # the rule: what to do about it


def test_a_decimal_wider_than_a_float_is_warned_about():
    frame = pl.DataFrame({"amount": pl.Series([Decimal("1.5"), Decimal("2.25")] * 5,
                                              dtype=pl.Decimal(38, 10)),
                          "y": ["a", "b"] * 5})
    profile = DatasetProfile.model_validate({
        "name": "wide", "target": {"column": "y", "positive": "a"}, "groups": {"g": ["amount"]}})
    warnings = check_columns(frame, profile, "wide.parquet")
    assert any("wide.parquet, column 'amount': decimal(38,10)" in w and "Float64" in w
               for w in warnings)


def test_a_whole_number_decimal_key_is_refused_as_an_identifier():
    n = 50
    frame = pl.DataFrame({
        "account_no": pl.Series([Decimal(10_000 + i) for i in range(n)], dtype=pl.Decimal(10, 0)),
        "branch": ["n", "s"] * (n // 2), "y": ["a", "b"] * (n // 2)})
    profile = DatasetProfile.model_validate({
        "name": "keys", "target": {"column": "y", "positive": "a"},
        "groups": {"g": ["account_no", "branch"]}})
    with pytest.raises(PreprocessError, match=r"keys.csv: column 'account_no'.*identifiers:"):
        TablePreprocessor(profile).fit(frame, "keys.csv")


def test_common_types_give_one_type_per_column_and_name_a_clash():
    records = pl.DataFrame({"b": pl.Series([Decimal("1.50")], dtype=pl.Decimal(6, 2)),
                            "n": [1], "c": ["x"]})
    dp_decoded = pl.DataFrame({"b": [1.5], "n": [1.0], "c": ["x"]})  # a DP fit: Float64
    out = kinds.common_types({"training rows": records, "released rows": dp_decoded})
    assert out["training rows"].schema == out["released rows"].schema
    assert out["training rows"].schema["b"] == pl.Float64
    clash = pl.DataFrame({"b": [1.5], "n": [1.0], "c": [3]})
    with pytest.raises(kinds.KindError, match=r"column 'c': String in the training rows but|"
                                              r"column 'c': String in the training rows, Int64"):
        kinds.common_types({"training rows": records, "released rows": clash})


def test_text_declared_boolean_is_stated_as_read_and_released_as_boolean(tmp_path):
    from tests.helpers import make_tiny_frame, tiny_profile_dict

    path = tmp_path / "tiny.csv"
    make_tiny_frame(n=50).write_csv(path)
    d = tiny_profile_dict()
    d["columns"]["owns"] = "boolean"
    profile = DatasetProfile.model_validate(d)
    assert read_table(path, profile).schema["owns"] == pl.Boolean
    assert conversions(path, profile) == {
        "owns": "text booleans (true/false, yes/no, 1/0) read as Boolean"}
    assert conversions(path, profile, {"owns": pl.Boolean})["owns"].endswith(
        "released as Boolean (declare the column categorical to keep its text)")
