from pathlib import Path

import polars as pl
import pytest

from cloakflow.tasks.data.ingest import IngestError, load_table, read_table
from cloakflow.tasks.data.profile import DatasetProfile
from tests.helpers import tiny_profile_dict


def test_csv_drops_profile_columns(tiny_files, tiny_profile):
    csv, _ = tiny_files
    frame = load_table(str(csv), tiny_profile)
    assert frame.height == 400
    assert "note" not in frame.columns and "label" in frame.columns


def test_parquet(tmp_path: Path, tiny_frame: pl.DataFrame):
    path = tmp_path / "tiny.parquet"
    tiny_frame.write_parquet(path)
    prof = DatasetProfile.model_validate(tiny_profile_dict(format="parquet"))
    assert read_table(path, prof).shape == (400, 5)


def test_full_length_schema_inference(tmp_path: Path, tiny_profile):
    # a decimal first seen after many integer rows must not break the read
    rows = ["age,city,income,owns,note,label"] + [f"{30},north,{i},yes,x,no" for i in range(300)]
    rows.append("30,north,12.5,yes,x,yes")
    path = tmp_path / "late_decimal.csv"
    path.write_text("\n".join(rows) + "\n")
    frame = read_table(path, tiny_profile)
    assert frame.get_column("income").dtype == pl.Float64


def test_bank_sample_reads(bank_sample: Path):
    from cloakflow.tasks.data.profile import load_profile

    frame = read_table(bank_sample, load_profile("bank-marketing"))
    assert frame.shape == (4119, 20)


@pytest.mark.parametrize("content, message", [
    ("", "file is empty"),
    ("age,city,income,owns,note,label\n", "no rows"),
    ('age,city\n1,"unterminated\n', "cannot be read"),
])
def test_bad_files_are_named(tmp_path: Path, tiny_profile, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(IngestError, match=message) as err:
        read_table(path, tiny_profile)
    assert str(path) in str(err.value)


def test_wrong_separator_is_explained(tmp_path: Path, tiny_frame, tiny_profile):
    path = tmp_path / "semi.csv"
    tiny_frame.write_csv(path, separator=";")
    with pytest.raises(IngestError, match="separator"):
        read_table(path, tiny_profile)


def test_missing_file(tmp_path: Path, tiny_profile):
    with pytest.raises(IngestError, match="no such file"):
        read_table(tmp_path / "absent.csv", tiny_profile)


def test_empty_and_number_as_text_columns_are_refused_with_the_way_out():
    import polars as pl

    from cloakflow.tasks.data.ingest import check_columns

    profile = DatasetProfile.model_validate(tiny_profile_dict())
    base = {"age": [30, 40, 50, 60], "city": ["a", "b", "a", "b"], "income": [1.0, 2.0, 3.0, 4.0],
            "owns": ["yes", "no", "no", "yes"], "label": ["yes", "no", "yes", "no"]}
    assert check_columns(pl.DataFrame(base), profile, "t.csv") == []
    empty = pl.DataFrame({**base, "income": [None] * 4}, schema_overrides={"income": pl.String})
    with pytest.raises(IngestError, match=r"t.csv, column 'income': empty in every row \(4 of 4 "
                                          r"null\).*`drop:`"):
        check_columns(empty, profile, "t.csv")
    text = pl.DataFrame({**base, "income": ["12,345.67", "1,234.00", "999,999.10", "2,000.5"]})
    with pytest.raises(IngestError, match=r"column 'income': 100% of its values are numbers "
                                          r"written as text with separators \(e.g. '12,345.67'\)"):
        check_columns(text, profile, "t.csv")
    comma = pl.DataFrame({**base, "income": ["1,5", "2,25", "3,0", "4,75"]})  # decimal comma
    with pytest.raises(IngestError, match="numbers written as text"):
        check_columns(comma, profile, "t.csv")
    constant = pl.DataFrame({**base, "city": ["a"] * 4})
    assert check_columns(constant, profile, "t.csv") == [
        "t.csv, column 'city': one value in every row; it carries no information (consider "
        "`drop:`)"]


def test_identifiers_the_table_does_not_have_are_refused_with_a_hint():
    import polars as pl

    from cloakflow.tasks.data.ingest import check_columns

    profile = DatasetProfile.model_validate(tiny_profile_dict(identifiers=["claimid"]))
    frame = pl.DataFrame({"claim_id": [1, 2], "age": [30, 40], "city": ["a", "b"],
                          "income": [1.0, 2.0], "owns": ["yes", "no"], "label": ["yes", "no"]})
    with pytest.raises(IngestError, match=r"t.csv: `identifiers:` names \['claimid'\], which "
                                          r"the table does not have \(a typo\? 'claimid' ~ "
                                          r"'claim_id'\)"):
        check_columns(frame, profile, "t.csv")


def _uci_style(tmp_path: Path, n: int = 400) -> Path:
    """A tiny-profile table exported the UCI Adult way: spaces after the separators and
    ``?`` for missing values, in a categorical and in a numeric column."""
    import numpy as np

    rng = np.random.default_rng(3)
    rows = ["age,city,income,owns,note,label"]
    for i in range(n):
        age = " ?" if i % 50 == 7 else f" {rng.integers(18, 80)}"
        city = " ?" if i % 40 == 3 else f" {rng.choice(['north', 'south'])}"
        income = "?" if i % 25 == 1 else f"{rng.normal(3000, 500):.2f}"
        rows.append(f"{age},{city},{income}, {rng.choice(['yes', 'no'])},x,"
                    f"{rng.choice(['yes', 'no'])}")
    path = tmp_path / "adult-like.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


def test_spaces_and_missing_markers_are_read_as_the_values_they_mean(tmp_path, tiny_profile):
    from cloakflow.tasks.data.ingest import check_columns

    path = _uci_style(tmp_path)
    notes: list[str] = []
    frame = read_table(path, tiny_profile, notes)
    # ' north' and 'north' are one category; a padded number is a number, '?' is missing
    assert set(frame.get_column("city").drop_nulls()) == {"north", "south", "?"}
    assert frame.get_column("owns").to_list().count(" yes") == 0
    assert frame.get_column("age").dtype == pl.Int64
    assert frame.get_column("age").null_count() == 8
    assert frame.get_column("income").dtype == pl.Float64
    assert frame.get_column("income").null_count() == 16
    assert any(n.startswith("adult-like.csv, column 'income': numbers written as text (16 "
                            "missing-value markers ['?'], read as nulls): read as Float64")
               for n in notes)
    assert any(n.startswith("adult-like.csv, column 'city': ") and "stripped" in n for n in notes)
    # a '?' kept as a category is named, with the way to make it missing
    warnings = check_columns(frame, tiny_profile, path.name)
    assert any(w.startswith("adult-like.csv, column 'city': '?' in 10 rows: a usual "
                            "missing-value marker, encoded as a category") for w in warnings)


def test_infinite_values_are_refused_by_column(tiny_profile):
    from cloakflow.tasks.data.ingest import check_columns

    frame = pl.DataFrame({"age": [30, 40, 50, 60], "city": ["a", "b", "a", "b"],
                          "income": [1.0, float("inf"), 2.0, float("-inf")],
                          "owns": ["yes", "no", "yes", "no"], "label": ["yes", "no", "no", "yes"]})
    with pytest.raises(IngestError, match=r"t.csv, column 'income': 2 infinite values \(-inf, "
                                          r"inf\) in 4 rows \(rule: numbers must be finite"):
        check_columns(frame, tiny_profile, "t.csv")


def test_an_input_is_read_as_what_its_bytes_say_with_a_notice(tmp_path, tiny_frame, tiny_profile):
    path = tmp_path / "export.csv"  # a Parquet file under a CSV name and a CSV profile
    tiny_frame.write_parquet(path)
    notes: list[str] = []
    frame = read_table(path, tiny_profile, notes)
    assert frame.shape == (400, 5) and frame.schema["income"] == tiny_frame.schema["income"]
    assert any("parquet file" in n and "`format: csv`" in n for n in notes), notes


def test_a_spreadsheet_export_in_cp1252_reads_with_its_encoding(tmp_path, tiny_profile):
    rows = ["age,city,income,owns,note,label"] + [
        f"{20 + i % 40},{'Zürich' if i % 2 else 'Málaga'},{1000 + i},yes,x,"
        f"{'yes' if i % 3 else 'no'}" for i in range(60)]
    path = tmp_path / "export.csv"
    path.write_bytes(("\r\n".join(rows) + "\r\n").encode("cp1252"))
    with pytest.raises(IngestError, match="encoding"):
        read_table(path, tiny_profile)
    prof = DatasetProfile.model_validate(tiny_profile_dict(encoding="cp1252"))
    frame = read_table(path, prof)
    assert set(frame.get_column("city").to_list()) == {"Zürich", "Málaga"}
    with pytest.raises(ValueError, match="not a text encoding"):
        DatasetProfile.model_validate(tiny_profile_dict(encoding="klingon"))


def test_null_tokens_read_as_nulls_and_other_text_is_shown(tmp_path, tiny_profile):
    from cloakflow.tasks.data.validate import validate_table

    rows = ["age,city,income,owns,note,label"] + [
        f"{20 + i % 40},north,{'unknown' if i % 7 == 0 else 1000 + i},yes,x,"
        f"{'yes' if i % 3 else 'no'}" for i in range(80)]
    path = tmp_path / "tokens.csv"
    path.write_text("\n".join(rows) + "\n")
    # undeclared token: validation names the column, shows the value and the way out
    frame = read_table(path, DatasetProfile.model_validate(tiny_profile_dict(columns={})))
    report = validate_table(frame, tiny_profile, "tokens.csv")
    text = report.text()
    assert "'income'" in text and "'unknown'" in text and "null_values:" in text
    prof = DatasetProfile.model_validate(tiny_profile_dict(null_values=["unknown"],
                                                           missing="impute"))
    frame = read_table(path, prof)
    assert frame.schema["income"].is_numeric()
    assert frame.get_column("income").null_count() == len(range(0, 80, 7))
