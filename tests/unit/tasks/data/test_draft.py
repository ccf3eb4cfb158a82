"""`cloakflow profile`: a drafted profile states kinds, groups, target, identifiers and drops,
is valid, marks measured bounds as data, and runs through ingest and preprocessing unedited."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest
import yaml

from cloakflow.tasks.data.draft import DraftError, draft_profile, sniff_separator
from cloakflow.tasks.data.ingest import check_columns, read_table
from cloakflow.tasks.data.preprocess import TablePreprocessor
from cloakflow.tasks.data.profile import load_profile


def _table(n: int = 200, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    return pl.DataFrame({
        "patient_ref": [f"P{i:05d}" for i in rng.permutation(n)],
        "row_no": np.arange(n),
        "lab_glucose": rng.normal(5.5, 1.0, n).round(2),
        "lab_sodium": rng.normal(140, 3, n).round(1),
        "visit_day": [str(dt.date(2024, 1, 1) + dt.timedelta(days=int(d)))
                      for d in rng.integers(0, 300, n)],
        "gender": rng.choice(["f", "m", "x"], n).tolist(),
        "site": ["one"] * n,
        "notes": [None] * n,
        "price": [f"{v:,.2f}" for v in rng.uniform(1000, 90000, n)],
        "readmitted": rng.random(n) < 0.3,
    }, schema_overrides={"notes": pl.String})


def test_draft_names_kinds_groups_target_identifiers_and_drops(tmp_path):
    path = tmp_path / "clinic visits.csv"
    _table().write_csv(path, separator=";")
    draft = draft_profile(path)
    p = draft.profile
    assert p.name == "clinic-visits" and p.separator == ";"
    assert p.target.column == "readmitted" and p.target.positive is True
    assert set(p.identifiers) == {"patient_ref", "row_no"}
    assert set(p.drop) == {"site", "notes", "price"}  # constant, empty, number-as-text
    assert p.groups == {"lab": ["lab_glucose", "lab_sodium"], "other": ["visit_day", "gender"]}
    assert p.columns["visit_day"] == "date" and p.columns["gender"] == "categorical"
    assert p.quasi_identifiers == ["gender"]
    assert all(b.origin == "data" for b in p.bounds.values())
    assert p.bounds["visit_day"].min >= dt.date(2024, 1, 1)
    assert "price: numbers written as text with separators" in draft.text
    # the YAML text is the profile
    again = yaml.safe_load(draft.text)
    assert again["target"] == {"column": "readmitted", "positive": True}


def test_a_draft_runs_through_ingest_and_preprocessing_unedited(tmp_path):
    path = tmp_path / "t.parquet"
    _table().write_parquet(path)
    out = tmp_path / "t.yaml"
    out.write_text(draft_profile(path).text)
    profile = load_profile(out)
    frame = read_table(path, profile)
    check_columns(frame, profile, path.name)
    pre = TablePreprocessor(profile).fit(frame, path.name)
    assert {s.name for s in pre.specs} == {"lab_glucose", "lab_sodium", "visit_day", "gender"}


def test_no_target_candidate_leaves_the_target_unset_and_unreadable_files_are_refused(
        tmp_path):
    path = tmp_path / "t.csv"
    pl.DataFrame({"a": np.arange(100) * 1.5, "b": np.arange(100) * 0.5}).write_csv(path)
    draft = draft_profile(path)
    assert draft.profile.target is None and draft.profile.target_candidates == []
    assert "TARGET NOT SET: no column is named like a label; candidates: none" in draft.text
    empty = tmp_path / "e.csv"
    empty.write_text("")
    with pytest.raises(DraftError, match="e.csv: file is empty"):
        draft_profile(empty)


def test_separator_sniffing(tmp_path):
    for sep in [",", ";", "\t", "|"]:
        path = tmp_path / "s.csv"
        path.write_text(sep.join(["a", "b", "c"]) + "\n" + sep.join(["1", "x,y", "3"]) + "\n")
        assert sniff_separator(path) == (sep if sep != "," else ",")


def test_cli_writes_the_draft_and_says_what_to_run(tmp_path, capsys):
    from cloakflow.flows.cli import main

    path = tmp_path / "t.csv"
    _table().write_csv(path)
    assert main(["profile", str(path), "--out", str(tmp_path / "p.yaml")]) == 0
    err = capsys.readouterr().err
    assert "cloakflow run --profile" in err and "row_no: one distinct integer per row" in err
    assert load_profile(tmp_path / "p.yaml").target.column == "readmitted"
    assert main(["profile", str(tmp_path / "absent.csv")]) == 2


def test_decimal_columns_and_nan_floats_are_drafted(tmp_path):
    from decimal import Decimal

    n = 60
    frame = pl.DataFrame({
        "price": pl.Series([Decimal(f"{i}.50") for i in range(n)], dtype=pl.Decimal(10, 2)),
        "score": [float("nan") if i % 7 == 0 else i * 0.5 for i in range(n)],
        "churn": ["yes", "no", "no"] * 20})
    path = tmp_path / "d.parquet"
    frame.write_parquet(path)
    draft = draft_profile(path)
    assert draft.profile.missing == "impute"  # NaN counts as missing
    assert draft.profile.bounds["price"].max == 59.5


def test_nullable_columns_and_few_valued_numerics_are_drafted(tmp_path):
    rng = np.random.default_rng(0)
    n = 300
    frame = pl.DataFrame({
        "visits": rng.integers(0, 6, n),  # six values: a value list
        "weight": rng.normal(70, 10, n).round(1),
        "referrer": [None if i % 5 == 0 else str(v) for i, v in
                     enumerate(rng.choice(["gp", "er"], n))],
        "churn": rng.choice(["yes", "no"], n)})
    path = tmp_path / "v.parquet"
    frame.write_parquet(path)
    draft = draft_profile(path)
    p = draft.profile
    assert p.nullable == ["referrer"]
    assert p.bounds["visits"].categories == [str(v) for v in range(6)]
    assert p.bounds["visits"].origin == "data"
    assert p.bounds["weight"].min is not None and p.bounds["weight"].categories is None
    assert "nullable lists the columns with nulls" in draft.text


def test_a_three_class_label_is_never_replaced_by_a_two_valued_feature(tmp_path):
    """The only two-valued column is a health attribute: drafting it as the label would
    publish it in clear. The draft proposes no target, lists the candidates, and the unedited
    draft is refused with what to set."""
    from cloakflow.tasks.data.profile import ProfileError

    rng = np.random.default_rng(0)
    n = 300
    path = tmp_path / "health.csv"
    pl.DataFrame({"age": rng.integers(18, 90, n), "bmi": rng.normal(27, 4, n).round(1),
                  "smoker": rng.choice(["yes", "no"], n).tolist(),
                  "region": rng.choice(["north", "south", "east"], n).tolist(),
                  "risk": rng.choice(["low", "medium", "high"], n).tolist()}).write_csv(path)
    draft = draft_profile(path)
    assert draft.profile.target is None
    assert draft.profile.target_candidates == ["smoker", "region", "risk"]
    assert "smoker" in draft.profile.features  # still a feature, never the label
    out = tmp_path / "health.yaml"
    out.write_text(draft.text)
    with pytest.raises(ProfileError, match=r"target is not set \(candidates the draft found: "
                                           r"smoker, region, risk\): write `target: "):
        load_profile(out)
    # one label-like name with three classes: a multiclass target, and the draft runs
    named = tmp_path / "named.csv"
    pl.read_csv(path).rename({"risk": "outcome"}).write_csv(named)
    (tmp_path / "named.yaml").write_text(draft_profile(named).text)
    target = load_profile(tmp_path / "named.yaml").target
    assert (target.column, target.kind, target.positive) == ("outcome", "multiclass", None)
    # two label-like names: unset, and the note says why
    both = tmp_path / "both.csv"
    pl.read_csv(named).with_columns(target=pl.col("smoker")).write_csv(both)
    assert draft_profile(both).notes[0].startswith(
        "TARGET NOT SET: several columns are named like a label (outcome, target)")


def test_padded_values_missing_markers_and_infinities_are_drafted_as_ingest_reads_them(
        tmp_path):
    rng = np.random.default_rng(5)
    n = 300
    hours = [" ?" if i % 30 == 4 else f" {v:.1f}" for i, v in enumerate(rng.normal(40, 8, n))]
    ratio = rng.lognormal(0, 1, n)
    ratio[[3, 9]] = np.inf
    frame = pl.DataFrame({"hours": hours,
                          "sex": [(" " if i % 3 else "") + s
                                  for i, s in enumerate(rng.choice(["Male", "Female"], n))],
                          "ratio": ratio, "y": rng.choice(["yes", "no"], n).tolist()})
    path = tmp_path / "adult.csv"
    frame.write_csv(path)
    draft = draft_profile(path)
    p = draft.profile
    # numbers with '?' markers: numeric with nulls, not hundreds of categories
    assert p.columns["hours"] == "numeric" and p.nullable == ["hours"]
    assert p.missing == "impute"
    # ' Male' and 'Male' are one category
    assert p.bounds["sex"].categories == ["Female", "Male"]
    # an infinity is refused at ingest: the draft drops the column and says why
    assert "ratio" in p.drop
    assert "ratio: 2 infinite values (ingest refuses them): dropped" in draft.text
    assert "adult.csv, column 'hours': numbers written as text" in draft.text
    out = tmp_path / "adult.yaml"
    out.write_text(draft.text)
    profile = load_profile(out)
    read = read_table(path, profile)
    assert read.get_column("hours").null_count() == 10
    check_columns(read, profile, path.name)
    TablePreprocessor(profile).fit(read, path.name)


def test_a_zero_one_label_is_drafted_with_one_as_its_positive_value(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "t.csv"
    pl.DataFrame({"age": rng.integers(18, 90, 200), "bmi": rng.normal(27, 4, 200).round(1),
                  "y": (rng.random(200) < 0.7).astype(int)}).write_csv(path)  # 1 is common
    target = draft_profile(path).profile.target
    assert (target.column, target.positive) == ("y", 1)


def test_the_draft_proposes_inequalities_that_held_on_every_row_for_review(tmp_path):
    from tests.helpers import hospital_table

    path = tmp_path / "hospital.csv"
    hospital_table(300).write_csv(path)
    draft = draft_profile(path)
    rules = [(c.low, c.high, c.origin) for c in draft.profile.constraints]
    # the dates' rule; not age <= cost (their ranges do not overlap: nothing to learn)
    assert rules == [("admission_date", "discharge_date", "data")]
    assert any("inequalities held on every row" in n for n in draft.notes)


def test_an_identifier_repeated_only_by_duplicate_rows_is_still_an_identifier(tmp_path):
    """15% of the rows are exact copies (their visit_id too): the id's distinct share of all
    rows falls under the identifier rule, of the distinct rows it does not."""
    from cloakflow.tasks.data.preprocess import PreprocessError
    from cloakflow.tasks.data.profile import DatasetProfile

    rng = np.random.default_rng(0)
    n = 1000
    base = pl.DataFrame({"visit_id": [f"V{i:05d}" for i in range(n)],
                         "account": np.arange(10_000, 10_000 + n),
                         "clinic": rng.choice(["a", "b", "c"], n),
                         "bmi": np.round(rng.normal(26, 4, n), 1),
                         "outcome": rng.choice(["0", "1"], n)})
    frame = pl.concat([base, base.sample(180, seed=1)])
    path = tmp_path / "visits.csv"
    frame.write_csv(path)
    draft = draft_profile(path)
    assert draft.profile.identifiers == ["visit_id", "account"]
    assert any("visit_id: 1000 distinct values in 1180 rows (1000 distinct rows): an "
               "identifier" in n for n in draft.notes)
    # preprocessing judges a profile that keeps them as features the same way
    profile = DatasetProfile.model_validate({
        "name": "visits", "target": {"column": "outcome", "positive": "1"},
        "groups": {"g": ["visit_id", "clinic", "bmi"]}})
    with pytest.raises(PreprocessError, match="'visit_id': 1000 distinct values in 1180 rows"):
        TablePreprocessor(profile).fit(frame)
    profile = DatasetProfile.model_validate({
        "name": "visits", "target": {"column": "outcome", "positive": "1"},
        "groups": {"g": ["account", "clinic", "bmi"]}, "columns": {"account": "numeric"}})
    with pytest.raises(PreprocessError, match="'account': 1000 distinct integers"):
        TablePreprocessor(profile).fit(frame)


def test_the_draft_proposes_one_inequality_per_high_column(tmp_path):
    """Two bids both below the winning price on every row: one proposal for the price, so the
    draft still passes the profile's contract (a column is the high side of one inequality)."""
    rng = np.random.default_rng(0)
    n = 300
    first, second = rng.uniform(10, 100, n).round(2), rng.uniform(10, 100, n).round(2)
    frame = pl.DataFrame({"first_bid": first, "second_bid": second,
                          "price": np.round(np.maximum(first, second) + rng.uniform(0, 2, n), 2),
                          "sold": rng.choice(["yes", "no"], n)})
    path = tmp_path / "auctions.csv"
    frame.write_csv(path)
    draft = draft_profile(path)
    assert [c.high for c in draft.profile.constraints].count("price") == 1


def test_an_inequality_the_distributions_imply_is_not_proposed(tmp_path):
    """A count of nights and a price in overlapping ranges, unrelated: nights <= price holds
    on every row, and would on nearly every row with the pairing shuffled (a small count below
    an amount), so it is no rule of the rows; the dates' rule is."""
    from tests.helpers import hospital_table

    rng = np.random.default_rng(1)
    frame = hospital_table(400)
    frame = frame.with_columns(nights=rng.integers(1, 8, frame.height),
                               price=rng.uniform(6, 400, frame.height).round(2))
    path = tmp_path / "stays.csv"
    frame.write_csv(path)
    rules = [(c.low, c.high) for c in draft_profile(path).profile.constraints]
    assert ("admission_date", "discharge_date") in rules
    assert not [r for r in rules if "nights" in r or "price" in r], rules


def test_a_cp1252_export_is_drafted_with_its_encoding(tmp_path):
    rows = ["age;clinic;wait;no_show"] + [
        f"{20 + i % 50};{['Zürich Nord', 'Málaga', 'Köln Süd'][i % 3]};{i % 9};"
        f"{'yes' if i % 5 == 0 else 'no'}" for i in range(300)]
    path = tmp_path / "export.csv"
    path.write_bytes(("\r\n".join(rows) + "\r\n").encode("cp1252"))
    draft = draft_profile(path)
    assert draft.profile.encoding == "cp1252" and "encoding: cp1252" in draft.text
    assert any("not UTF-8" in n and "cp1252" in n for n in draft.notes), draft.notes
    frame = read_table(path, draft.profile)
    assert set(frame.get_column("clinic").to_list()) == {"Zürich Nord", "Málaga", "Köln Süd"}
    # stated: a wrong encoding is refused by name
    with pytest.raises(DraftError, match="does not decode as utf-8"):
        draft_profile(path, encoding="utf-8")


def test_a_yes_no_column_is_drafted_categorical_and_the_draft_says_so(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "t.csv"
    pl.DataFrame({"age": rng.integers(18, 90, 200), "smoker": rng.choice(["Yes", "No"], 200),
                  "y": rng.choice(["a", "b"], 200)}).write_csv(path)
    draft = draft_profile(path)
    assert draft.profile.columns["smoker"] == "categorical"
    assert any(n.startswith("smoker: two values ('No', 'Yes'): drafted categorical, released "
                            "as the same text; declare it boolean") for n in draft.notes)
