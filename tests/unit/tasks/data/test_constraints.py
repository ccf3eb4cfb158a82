"""The profile's constraints: how each is modelled (transform, formula, rejection), checked
and refused, on the generated hospital table (no model trained here)."""

import numpy as np
import polars as pl
import pytest

from cloakflow.tasks.data.constraints import ConstraintError, ConstraintSet, sample_valid
from cloakflow.tasks.data.preprocess import TablePreprocessor
from cloakflow.tasks.data.profile import DatasetProfile
from tests.helpers import HOSPITAL_CONSTRAINTS, hospital_profile, hospital_table


def _set(private: bool = False, **overrides) -> tuple[ConstraintSet, pl.DataFrame]:
    from cloakflow.tasks.data.constraints import kinds_from

    profile = DatasetProfile.model_validate(hospital_profile(**overrides))
    frame = hospital_table(600)
    pre = TablePreprocessor(profile, public_bounds=private, numeric="quantile",
                            with_target=True).fit(frame)
    return ConstraintSet(profile, kinds_from(pre), private).fit(frame), frame


def test_every_rule_holds_on_the_real_rows_and_the_encoding_round_trips():
    rules, frame = _set()
    assert all(v.all() for v in rules.valid(frame))
    encoded = rules.encode(frame)
    # the model sees the stay in days in place of the discharge date, one ward+floor column,
    # and no length of stay (computed)
    assert "length_of_stay" not in encoded.columns and "ward+floor" in encoded.columns
    assert encoded["discharge_date"].to_numpy().min() >= 0
    back = rules.decode(encoded).select(frame.columns)
    assert back.equals(frame)


def test_the_model_profile_models_the_difference_and_the_combination():
    rules, frame = _set(private=True)
    model = rules.model_profile()
    assert model.columns["discharge_date"] == "numeric"
    assert model.bounds["discharge_date"].span("numeric") == (0, 60)
    assert model.bounds["discharge_date"].integer  # a difference of dates: whole days
    assert model.bounds["ward+floor"].categories == sorted(
        ["cardio\u241f3", "general\u241f1", "neuro\u241f4", "ortho\u241f2"])
    assert "length_of_stay" not in model.features and "floor" not in model.features
    # the model's preprocessor fits on the encoded rows with public bounds only
    pre = TablePreprocessor(model, public_bounds=True, numeric="quantile",
                            with_target=True).fit(rules.encode(frame))
    assert {s.bounds for s in pre.specs} <= {"public"}


def test_decoded_rows_keep_the_transformed_rules_whatever_the_model_draws():
    """Anything a model could emit for the difference (negative too) decodes to a discharge
    on or after admission and a length of stay equal to the difference."""
    rules, frame = _set()
    encoded = rules.encode(frame).with_columns(
        pl.Series("discharge_date", np.random.default_rng(0).normal(3, 6, frame.height)))
    back = rules.decode(encoded)
    valid = rules.valid(back)
    assert valid[0].all() and valid[1].all() and valid[2].all()
    assert back["length_of_stay"].dtype == frame["length_of_stay"].dtype


def test_broken_rows_are_found_and_rejection_draws_again():
    rules, frame = _set()
    broken = frame.with_columns(
        pl.when(pl.int_range(pl.len()) % 4 == 0).then(pl.col("admission_date") - pl.duration(
            days=1)).otherwise(pl.col("discharge_date")).alias("discharge_date"),
        pl.when(pl.int_range(pl.len()) % 10 == 0).then(-5.0).otherwise(pl.col("cost"))
        .alias("cost"))
    valid = rules.valid(broken)
    assert valid[0].mean() == pytest.approx(0.75) and not valid[1].all()
    assert valid[3].mean() == pytest.approx(0.9)  # cost >= 0
    report = rules.report(frame, broken)
    assert [r["kept_by"] for r in report["rules"]] == [
        "transform", "formula", "transform", "rejection"]
    assert report["rules"][0]["valid_real"] == 1.0 and report["rules"][0][
        "valid_synthetic"] == 0.75
    # rejection: a draw that breaks the range one row in ten is drawn again until enough
    calls = []

    def draw(n: int) -> pl.DataFrame:
        calls.append(n)
        return broken.sample(n, with_replacement=True, seed=len(calls))

    rows, rejection = sample_valid(draw, 500, rules)
    assert rows.height == 500 and (rows["cost"] >= 0).all()
    assert 0.05 < rejection["rate"] < 0.15 and len(calls) >= 2


@pytest.mark.parametrize("change, message", [
    ({"constraints": [{**HOSPITAL_CONSTRAINTS[0], "difference": None}]},
     r"discharge_date - admission_date and needs its public range.*difference"),
    ({"constraints": [{**HOSPITAL_CONSTRAINTS[2], "combinations": None}]},
     r"keeps only the combinations the profile lists"),
    ({"constraints": [{**HOSPITAL_CONSTRAINTS[0], "origin": "data"}]},
     r"origin: data.*statistic of the private rows"),
])
def test_a_dp_release_refuses_constraints_without_their_public_facts(change, message):
    with pytest.raises(ConstraintError, match=message):
        _set(private=True, **change)


def test_bad_constraints_are_refused_by_name():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=r"names columns that are in no group: \['ag'\]"):
        DatasetProfile.model_validate(hospital_profile(constraints=[
            {"type": "range", "column": "ag", "low": 0}]))
    with pytest.raises(ValidationError, match="which a formula computes"):
        DatasetProfile.model_validate(hospital_profile(constraints=[
            HOSPITAL_CONSTRAINTS[1], {"type": "range", "column": "length_of_stay", "low": 0}]))
    with pytest.raises(ConstraintError, match="'ward' is categorical and 'age' is numeric"):
        _set(constraints=[{"type": "inequality", "low": "ward", "high": "age"}])
    with pytest.raises(ConstraintError, match="would transform the target"):
        _set(constraints=[{"type": "fixed_combinations", "columns": ["ward", "readmitted"]}])
    rules, frame = _set(constraints=[{"type": "formula", "column": "length_of_stay",
                                      "expression": "discharge - admission_date"}])
    with pytest.raises(ConstraintError, match="length_of_stay = discharge - admission_date"):
        rules.valid(frame)
