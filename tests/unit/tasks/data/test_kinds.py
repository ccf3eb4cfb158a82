"""Column kinds: each kind is inferred or declared, encoded, decoded back to its source type,
validated, and refused with the column named when its values do not fit."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest
import yaml

from cloakflow.tasks.data import kinds
from cloakflow.tasks.data.ingest import IngestError, check_columns, read_table
from cloakflow.tasks.data.preprocess import PreprocessError, TablePreprocessor
from cloakflow.tasks.data.profile import DatasetProfile
from cloakflow.tasks.data.validate import default_suite, validate_frame


def _kinds_frame(n: int = 120, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    return pl.DataFrame({
        "amount": rng.gamma(2.0, 50.0, n).round(2),
        "visits": rng.integers(0, 40, n),
        "branch": rng.choice(["n", "s", "e"], n).tolist(),
        "grade": rng.choice([1, 2, 3, 5], n),  # categories stored as numbers
        "member": rng.random(n) < 0.4,
        "opened": pl.Series([dt.date(1990, 1, 1) + dt.timedelta(days=int(d))
                             for d in rng.integers(0, 12000, n)], dtype=pl.Date),
        "seen_at": pl.Series([dt.datetime(2024, 1, 1) + dt.timedelta(seconds=int(s))
                              for s in rng.integers(0, 3 * 10**7, n)],
                             dtype=pl.Datetime("ms", "UTC")),
        "y": rng.choice(["a", "b"], n).tolist(),
    })


def _profile(**over) -> DatasetProfile:
    d = {"name": "kinds", "target": {"column": "y", "positive": "a"},
         "groups": {"one": ["amount", "visits", "branch", "grade"],
                    "two": ["member", "opened", "seen_at"]},
         "columns": {"grade": "categorical"}}
    d.update(over)
    return DatasetProfile.model_validate(d)


def test_each_kind_is_inferred_encoded_and_decoded_back_to_its_source_type():
    frame = _kinds_frame()
    pre = TablePreprocessor(_profile()).fit(frame, "t.parquet")
    got = {s.name: (s.kind, s.family) for s in pre.specs}
    assert got == {"amount": ("numeric", "numeric"), "visits": ("numeric", "numeric"),
                   "branch": ("categorical", "categorical"),
                   "grade": ("categorical", "categorical"),
                   "member": ("boolean", "categorical"), "opened": ("date", "numeric"),
                   "seen_at": ("datetime", "numeric")}
    x = pre.transform(frame, "t.parquet")
    # one column per scaled kind, one per category otherwise (booleans: false, true)
    assert x.shape == (len(frame), 1 + 1 + 3 + 4 + 2 + 1 + 1)
    assert x.min() >= 0 and x.max() <= 1
    back = pre.reverse_transform(x)
    features = frame.drop("y")
    assert back.schema == features.schema  # integers, booleans, dates, zoned datetimes
    for col in ["visits", "branch", "grade", "member", "opened"]:
        assert back[col].to_list() == features[col].to_list(), col
    assert np.allclose(back["amount"].to_numpy(), features["amount"].to_numpy(), atol=0.01)
    drift = (back["seen_at"].dt.epoch("s") - features["seen_at"].dt.epoch("s")).abs().max()
    assert drift <= 5  # float32 model input over a year: seconds, not minutes


def test_state_round_trips_with_kinds_and_types():
    frame = _kinds_frame()
    pre = TablePreprocessor(_profile()).fit(frame, "t.parquet")
    again = TablePreprocessor.from_dict(yaml.safe_load(pre.to_json()))
    x = pre.transform(frame, "t.parquet")
    assert again.reverse_transform(x).equals(pre.reverse_transform(x))


def test_text_columns_declared_boolean_or_date_are_parsed_at_ingest(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("flag,day,when,y\nYes,31/01/2024,2024-01-31 10:00:00,a\n"
                    "no,01/02/2024,2024-02-01 11:30:00,b\n" * 1)
    prof = _profile(groups={"g": ["flag", "day", "when"]},
                    columns={"flag": "boolean", "day": "date", "when": "datetime"})
    frame = read_table(path, prof)
    assert frame.schema["flag"] == pl.Boolean and frame["flag"].to_list() == [True, False]
    assert frame.schema["day"] == pl.Date and frame["day"][0] == dt.date(2024, 1, 31)
    assert isinstance(frame.schema["when"], pl.Datetime)


@pytest.mark.parametrize("text, fmt, outcome", [
    (["12/31/2023", "01/02/2024"], None, dt.date(2023, 12, 31)),  # only month first reads
    (["31/12/2023", "01/02/2024"], None, dt.date(2023, 12, 31)),  # only day first reads
    (["05/06/2024", "01/02/2024"], None, "ambiguous"),  # both read: refused
    (["05/06/2024", "01/02/2024"], "%m/%d/%Y", dt.date(2024, 5, 6)),  # date_formats decides
    (["2024-06-05", "x"], None, "do not read"),
])
def test_declared_date_text_is_read_in_its_one_order_or_refused(tmp_path, text, fmt, outcome):
    path = tmp_path / "t.csv"
    pl.DataFrame({"day": text, "y": ["a", "b"]}).write_csv(path)
    prof = _profile(groups={"g": ["day"]}, columns={"day": "date"},
                    date_formats={"day": fmt} if fmt else {})
    if isinstance(outcome, str):
        with pytest.raises(IngestError, match=rf"t.csv, column 'day': .*{outcome}.*"
                                              r"`date_formats:`"):
            read_table(path, prof)
    else:
        assert read_table(path, prof)["day"][0] == outcome


def test_iso_dates_in_a_csv_are_read_as_dates_without_a_declaration(tmp_path):
    path = tmp_path / "t.csv"
    pl.DataFrame({"day": ["2024-01-31", "2024-02-01"], "y": ["a", "b"]}).write_csv(path)
    frame = read_table(path, _profile(groups={"g": ["day"]}, columns={}))
    assert frame.schema["day"] == pl.Date


@pytest.mark.parametrize("text, declared, message", [
    ("maybe", "boolean", r"t.csv, column 'c': declared boolean .* e.g. \['maybe'\]"),
    ("not a day", "date", r"t.csv, column 'c': 1 of 2 values do not read as dates in the "
                          r"format 'ISO 8601', e.g. \['not a day'\]"),
])
def test_values_that_do_not_read_as_the_declared_kind_are_refused(tmp_path, text, declared,
                                                                   message):
    path = tmp_path / "t.csv"
    good = "true" if declared == "boolean" else "2024-01-01"
    path.write_text(f"c,y\n{good},a\n{text},b\n")
    with pytest.raises(IngestError, match=message):
        read_table(path, _profile(groups={"g": ["c"]}, columns={"c": declared}))


def test_dates_written_as_text_are_refused_unless_declared():
    frame = pl.DataFrame({"day": ["31/01/2024", "01/02/2024"] * 10, "y": ["a", "b"] * 10})
    with pytest.raises(IngestError, match=r"t.csv, column 'day': dates written as text "
                                          r"\(e.g. '31/01/2024'\).*`date` or `datetime`"):
        check_columns(frame, _profile(groups={"g": ["day"]}, columns={}), "t.csv")
    # declared categorical: the text itself is meant
    assert check_columns(frame, _profile(groups={"g": ["day"]},
                                         columns={"day": "categorical"}), "t.csv") == []


def test_a_type_no_kind_covers_is_refused_with_the_column_named():
    frame = pl.DataFrame({"at": [dt.time(10, 0), dt.time(11, 0)], "y": ["a", "b"]})
    with pytest.raises(IngestError, match=r"t.parquet, column 'at': type Time is not a column "
                                          r"kind.*`columns:`.*`drop:`"):
        check_columns(frame, _profile(groups={"g": ["at"]}, columns={}), "t.parquet")


@pytest.mark.parametrize("name, values, declared", [
    ("account_id", list(np.random.default_rng(1).permutation(900_000)[:60] + 100_000), None),
    ("ref", list(range(5000, 5060)), "numeric"),  # a dense run; declaring numeric is no way out
])
def test_an_integer_key_is_refused_as_a_feature(name, values, declared):
    frame = pl.DataFrame({name: values, "z": [1.5, 2.5] * 30, "y": ["a", "b"] * 30})
    prof = _profile(groups={"g": [name, "z"]}, columns={name: declared} if declared else {})
    with pytest.raises(PreprocessError, match=rf"column '{name}': 60 distinct integers in 60 "
                                              r"rows and .*`identifiers:`"):
        TablePreprocessor(prof).fit(frame, "t.csv")


def test_integer_amounts_unique_per_row_are_not_keys():
    rng = np.random.default_rng(2)
    frame = pl.DataFrame({"income": rng.permutation(90_000)[:60] + 10_000,
                          "y": ["a", "b"] * 30})
    pre = TablePreprocessor(_profile(groups={"g": ["income"]}, columns={})).fit(frame, "t")
    assert pre.specs[0].kind == "numeric"


def test_default_suite_checks_each_declared_kind_type():
    frame = _kinds_frame(n=20)
    prof = _profile(columns={"grade": "categorical", "member": "boolean", "opened": "date",
                             "seen_at": "datetime", "amount": "numeric"})
    assert validate_frame(frame, default_suite(prof), "t.parquet").success
    broken = frame.with_columns(pl.col("opened").cast(pl.String),
                                pl.col("member").cast(pl.String))
    report = validate_frame(broken, default_suite(prof), "t.parquet")
    assert {f.column for f in report.failures} == {"opened", "member"}
    assert all(f.expectation == "expect_column_values_to_be_in_type_list"
               for f in report.failures)


def test_public_date_bounds_scale_dates_and_data_bounds_are_never_public():
    frame = _kinds_frame()
    dates = {"opened": {"min": dt.date(1980, 1, 1), "max": dt.date(2030, 1, 1)}}
    pre = TablePreprocessor(_profile(bounds=dates), public_bounds=True).fit(frame, "t")
    spec = {s.name: s for s in pre.specs}
    assert spec["opened"].bounds == "public"
    assert spec["opened"].minimum == (dt.date(1980, 1, 1) - dt.date(1970, 1, 1)).days
    assert "amount" in pre.bounds_used()["data"] and "member" in pre.bounds_used()["public"]
    # measured on the table (origin: data): a DP run refuses them as public bounds
    drafted = _profile(bounds={**dates, "amount": {"min": 0, "max": 900, "origin": "data"}})
    with pytest.raises(PreprocessError, match=r"bounds of \['amount'\] are marked origin: "
                                              r"data .* cannot use them as public"):
        TablePreprocessor(drafted, public_bounds=True).fit(frame, "t")
    # a run without DP measures on the training rows anyway: nothing to refuse
    assert TablePreprocessor(drafted).fit(frame, "t").specs[0].bounds == "data"


def test_date_bounds_must_match_their_kind():
    with pytest.raises(ValueError, match="do not match its kind 'date'"):
        _profile(columns={"opened": "date"}, bounds={"opened": {"categories": ["x"]}})
    with pytest.raises(ValueError, match="both be numbers or both dates"):
        _profile(bounds={"opened": {"min": 0, "max": dt.date(2030, 1, 1)}})


def test_unit_conversions_are_inverse():
    days = np.array([0.0, 19000.0, np.nan])
    back = kinds.from_numbers("d", days, "date", "Date")
    assert back[0] == dt.date(1970, 1, 1) and back[2] is None
    assert kinds.to_numbers(back, "date")[1] == 19000.0
    assert kinds.parse_dtype(kinds.dtype_name(pl.Datetime("ns", "Europe/Paris"))) \
        == pl.Datetime("ns", "Europe/Paris")


def test_typos_are_named_with_the_near_column():
    from pydantic import ValidationError

    from cloakflow.tasks.data.profile import readable

    with pytest.raises(ValidationError) as info:
        _profile(groups={"g": ["pay_bonsu", "amount"]}, columns={},
                 bounds={"pay_bonus": {"min": 0, "max": 1}})
    assert "close names in the groups: 'pay_bonus' ~ 'pay_bonsu'" in readable(info.value)
    frame = _kinds_frame(n=20)
    prof = _profile(groups={"g": ["amont", "visits"]}, columns={})
    report = validate_frame(frame, default_suite(prof), "t.parquet")
    assert "column 'amont': expect_column_to_exist() failed; the table has 'amount': a typo?" \
        in report.text()


def test_integer_codes_may_be_written_as_numbers_in_bounds():
    prof = _profile(bounds={"grade": {"categories": [1, 2, 3, 5]}})
    assert prof.bounds["grade"].categories == ["1", "2", "3", "5"]
    pre = TablePreprocessor(prof, public_bounds=True).fit(_kinds_frame(), "t")
    assert {s.name: s.bounds for s in pre.specs}["grade"] == "public"


def test_a_group_typo_is_caught_by_the_columns_it_no_longer_matches():
    from pydantic import ValidationError

    from cloakflow.tasks.data.profile import readable

    with pytest.raises(ValidationError) as info:
        _profile(groups={"g": ["lab_glucoes", "amount"]}, columns={"lab_glucose": "numeric"})
    assert ("columns names ['lab_glucose'] but no group lists them (a typo? close names in "
            "the groups: 'lab_glucose' ~ 'lab_glucoes')") in readable(info.value)


@pytest.mark.parametrize("name", ["amount_paid", "valid", "turkey", "casino"])
def test_ordinary_names_are_not_read_as_keys(name):
    rng = np.random.default_rng(3)
    frame = pl.DataFrame({name: rng.permutation(900_000)[:60] + 1000, "y": ["a", "b"] * 30})
    pre = TablePreprocessor(_profile(groups={"g": [name]}, columns={name: "numeric"}))
    assert pre.fit(frame, "t").specs[0].kind == "numeric"


def test_sorted_alone_is_no_key():
    # a table sorted by a measure: unique, sorted, but neither dense nor named like a key
    frame = pl.DataFrame({"income": sorted(np.random.default_rng(4).permutation(90_000)[:60]
                                           + 10_000), "y": ["a", "b"] * 30})
    pre = TablePreprocessor(_profile(groups={"g": ["income"]}, columns={})).fit(frame, "t")
    assert pre.specs[0].kind == "numeric"


def test_two_digit_years_empty_dates_and_iso_datetimes_declared_date(tmp_path):
    path = tmp_path / "t.csv"
    pl.DataFrame({"day": ["01/02/24", "13/02/24"], "y": ["a", "b"]}).write_csv(path)
    prof = _profile(groups={"g": ["day"]}, columns={"day": "date"})
    with pytest.raises(IngestError, match="two-digit years .*`date_formats:`"):
        read_table(path, prof)
    pl.DataFrame({"day": [None, None], "y": ["a", "b"]},
                 schema_overrides={"day": pl.String}).write_csv(path)
    frame = read_table(path, prof)
    with pytest.raises(IngestError, match="column 'day': empty in every row"):
        check_columns(frame, prof, "t.csv")
    pl.DataFrame({"day": ["2024-01-31 10:00:00", "2024-02-01 11:30:00"],
                  "y": ["a", "b"]}).write_csv(path)
    assert read_table(path, prof)["day"].to_list() == [dt.date(2024, 1, 31),
                                                       dt.date(2024, 2, 1)]


def test_whole_number_floats_name_their_categories_as_integers():
    frame = pl.DataFrame({"code": [1.0, 2.0, 1.0, 3.0] * 10, "y": ["a", "b"] * 20})
    prof = _profile(groups={"g": ["code"]}, columns={"code": "categorical"},
                    bounds={"code": {"categories": [1, 2, 3]}})
    pre = TablePreprocessor(prof, public_bounds=True).fit(frame, "t")
    x = pre.transform(frame, "t")
    assert x.sum(axis=1).min() == 1.0  # every row found its category
    assert pre.reverse_transform(x)["code"].to_list() == frame["code"].to_list()
    assert kinds.coerce(pl.Series("f", [1.0, 0.0]), "boolean", "t").to_list() == [True, False]


def test_date_bounds_on_a_declared_numeric_are_refused():
    with pytest.raises(ValueError, match="bounds for 'amount' are dates"):
        _profile(columns={"amount": "numeric"},
                 bounds={"amount": {"min": dt.date(2020, 1, 1), "max": dt.date(2021, 1, 1)}})


def test_tidy_text_strips_spaces_and_reads_numbers_with_markers_only_where_text_is_no_choice():
    frame = pl.DataFrame({
        "zip": ["01234", "99501", "10001", "02139"],  # text of digits stored as text: kept
        "n": [" 1", "2", "NA", " 4"],  # padded numbers and a marker: Int64 with a null
        "x": ["1.5", "?", "-", "2"],  # half numbers, half markers: Float64
        "code": [" ?", "a", "b ", "a"],  # declared categorical: stripped, '?' kept
        "word": ["?", "?", "?", "a"],  # mostly markers and text: not numbers
        "blank": ["  ", "a", "b", "a"],  # a value of spaces only is null
    })
    out, notes = kinds.tidy_text(frame, {"code": "categorical"}, "t.csv")
    assert out.get_column("zip").to_list() == ["01234", "99501", "10001", "02139"]
    assert out.get_column("n").to_list() == [1, 2, None, 4]
    assert out.get_column("x").dtype == pl.Float64 and out.get_column("x").null_count() == 2
    assert out.get_column("code").to_list() == ["?", "a", "b", "a"]
    assert out.get_column("word").dtype == pl.String
    assert out.get_column("blank").to_list() == [None, "a", "b", "a"]
    assert [n.split(":")[0] for n in notes] == ["t.csv, column 'n'", "t.csv, column 'x'",
                                                "t.csv, column 'code'", "t.csv, column 'blank'"]
    assert "2 with leading or trailing spaces; 1 missing-value markers ['NA']" in notes[0]
    assert kinds.missing_markers(out.get_column("code")) == {"?": 1}
    assert kinds.infinite_count(pl.Series([1.0, float("inf"), None])) == 1
    assert kinds.infinite_count(pl.Series([1, 2])) == 0
