import numpy as np
import polars as pl
import pytest

from cloakflow.tasks.data.preprocess import PreprocessError, TablePreprocessor
from cloakflow.tasks.data.profile import DatasetProfile
from tests.helpers import tiny_profile_dict


def test_fit_transform_reverse_round_trip(tiny_profile, tiny_frame):
    pre = TablePreprocessor(tiny_profile).fit(tiny_frame)
    x = pre.transform(tiny_frame)
    assert x.dtype == np.float32 and x.min() >= 0 and x.max() <= 1
    assert pre.output_columns == ["age", "city_east", "city_north", "city_south", "city_west",
                                  "income", "owns_no", "owns_yes"]
    back = pre.reverse_transform(x)
    assert back.get_column("city").to_list() == tiny_frame.get_column("city").to_list()
    np.testing.assert_allclose(back.get_column("income").to_numpy(),
                               tiny_frame.get_column("income").to_numpy(), rtol=1e-5)


def test_group_slices_partition_outputs(tiny_profile, tiny_frame):
    pre = TablePreprocessor(tiny_profile).fit(tiny_frame)
    slices = pre.group_slices()
    assert slices == {"person": [0, 1, 2, 3, 4], "money": [5, 6, 7]}


def test_fitted_on_training_rows_only(tiny_profile, tiny_frame):
    train, rest = tiny_frame.head(200), tiny_frame.tail(200)
    pre = TablePreprocessor(tiny_profile).fit(train)
    spec = next(s for s in pre.specs if s.name == "income")
    assert spec.maximum == train.get_column("income").max()
    x = pre.transform(rest)  # values outside the training range fall outside [0, 1]
    assert x.shape == (200, 8)


def test_unseen_category_error_names_column(tiny_profile, tiny_frame):
    pre = TablePreprocessor(tiny_profile).fit(tiny_frame)
    new = tiny_frame.with_columns(pl.lit("atlantis").alias("city"))
    with pytest.raises(PreprocessError, match="new.csv: column 'city': 400 rows .*atlantis"):
        pre.transform(new, "new.csv")


def test_unseen_category_ignored_when_profile_says_so(tiny_frame):
    prof = DatasetProfile.model_validate(tiny_profile_dict(unseen="ignore"))
    pre = TablePreprocessor(prof).fit(tiny_frame)
    x = pre.transform(tiny_frame.with_columns(pl.lit("atlantis").alias("city")))
    assert x[:, 1:5].sum() == 0


def test_nulls_error_by_default(tiny_profile, tiny_frame):
    holes = tiny_frame.with_columns(
        pl.when(pl.int_range(pl.len()) < 3).then(None).otherwise(pl.col("income")).alias("income"))
    with pytest.raises(PreprocessError, match="column 'income': 3 null values"):
        TablePreprocessor(tiny_profile).fit(holes, "holes.csv")


def test_nulls_imputed_from_training_rows(tiny_frame):
    prof = DatasetProfile.model_validate(tiny_profile_dict(missing="impute"))
    holes = tiny_frame.with_columns(
        pl.when(pl.int_range(pl.len()) < 3).then(None).otherwise(pl.col("income")).alias("income"),
        pl.when(pl.int_range(pl.len()) < 3).then(None).otherwise(pl.col("city")).alias("city"))
    pre = TablePreprocessor(prof).fit(holes)
    x = pre.transform(holes)
    income = next(s for s in pre.specs if s.name == "income")
    expected = (income.fill - income.minimum) / (income.maximum - income.minimum)
    np.testing.assert_allclose(x[:3, 5], expected, rtol=1e-6)
    assert (x[:3, 1:5].sum(axis=1) == 1).all()


def test_non_numeric_values_in_numeric_column(tiny_profile, tiny_frame):
    bad = tiny_frame.with_columns(pl.col("age").cast(pl.String).str.replace("^3", "x"))
    with pytest.raises(PreprocessError, match="column 'age' is declared numeric"):
        TablePreprocessor(tiny_profile).fit(bad, "bad.csv")


def test_state_round_trips(tiny_profile, tiny_frame):
    pre = TablePreprocessor(tiny_profile).fit(tiny_frame)
    again = TablePreprocessor.from_dict(__import__("json").loads(pre.to_json()))
    np.testing.assert_array_equal(pre.transform(tiny_frame), again.transform(tiny_frame))


BOUNDS = {"age": {"min": 0, "max": 50}, "city": {"categories": ["north", "south", "east",
                                                                 "west", "centre"]}}


def test_public_bounds_replace_data_statistics(tiny_frame):
    profile = DatasetProfile.model_validate(tiny_profile_dict(bounds=BOUNDS))
    pre = TablePreprocessor(profile, public_bounds=True).fit(tiny_frame)
    assert pre.bounds_used() == {"public": ["age", "city"], "data": ["income", "owns"],
                                 "public_knots": [], "dp_knots": [],
                                 "dp_values": []}
    x = pre.transform(tiny_frame)
    cols = pre.output_columns
    age = x[:, cols.index("age")]
    # ages 18..79 scaled by the public 0..50: clipped at 1, never measured
    assert age.max() == 1.0 and age.min() == pytest.approx(18 / 50)
    assert "city_centre" in cols and x[:, cols.index("city_centre")].sum() == 0
    # without the flag the same profile measures everything (non-DP runs)
    plain = TablePreprocessor(profile).fit(tiny_frame)
    assert plain.bounds_used()["public"] == [] and "city_centre" not in plain.output_columns
    state = TablePreprocessor.from_dict(pre.to_dict())
    assert state.bounds_used() == pre.bounds_used()


def test_value_outside_public_categories_is_named_against_the_public_bounds(tiny_frame):
    bounds = {"city": {"categories": ["north", "south"]}}
    profile = DatasetProfile.model_validate(tiny_profile_dict(bounds=bounds))
    pre = TablePreprocessor(profile, public_bounds=True)
    with pytest.raises(PreprocessError, match="'city'.*outside the profile's public bounds"):
        pre.fit(tiny_frame, "tiny.csv").transform(tiny_frame, "tiny.csv")


@pytest.mark.parametrize("bounds, message", [
    ({"age": {"min": 5, "max": 5}}, "min < max"),
    ({"age": {"min": 1}}, "both min and max"),
    ({"age": {"min": 0, "max": 1, "categories": ["a"]}}, "either"),
    ({"city": {"categories": []}}, "non-empty"),
    ({"age": {"categories": ["a"]}}, "do not match its kind"),
    ({"nowhere": {"min": 0, "max": 1}}, "bounds names columns that are in no group"),
])
def test_bad_public_bounds_are_rejected(bounds, message):
    with pytest.raises(ValueError, match=message):
        DatasetProfile.model_validate(tiny_profile_dict(bounds=bounds))


def test_an_identifier_column_is_refused_as_a_feature():
    # one distinct value per row: declaring it categorical does not make it a feature
    import polars as pl

    frame = pl.DataFrame({"cust": [f"C-{i}" for i in range(100)],
                          "age": [20 + i % 50 for i in range(100)],
                          "city": ["a", "b"] * 50, "income": [1.0] * 100,
                          "owns": ["yes", "no"] * 50, "label": ["yes", "no"] * 50})
    profile = DatasetProfile.model_validate(tiny_profile_dict(
        groups={"person": ["cust", "age", "city"], "money": ["income", "owns"]},
        columns={"cust": "categorical", "age": "numeric", "income": "numeric",
                 "city": "categorical", "owns": "categorical"}))
    with pytest.raises(PreprocessError, match=r"t.csv: column 'cust': 100 distinct values in "
                                              r"100 rows .*`identifiers:`"):
        TablePreprocessor(profile).fit(frame, "t.csv")
    # given the identifier role, it is kept out of the features
    fixed = DatasetProfile.model_validate(tiny_profile_dict(identifiers=["cust"]))
    assert "cust" not in fixed.features
    pre = TablePreprocessor(fixed).fit(frame, "t.csv")
    assert not any(c.startswith("cust") for c in pre.output_columns)
    with pytest.raises(ValueError, match="identifiers listed in a group: \\['cust'\\]"):
        DatasetProfile.model_validate(tiny_profile_dict(
            identifiers=["cust"], groups={"person": ["cust", "age"], "money": ["income"]}))


def test_public_knots_give_a_dp_run_quantile_scaling(tiny_frame):
    # quartiles known without the data: the transform is the piecewise-linear CDF through
    # [min, q25, q50, q75, max] at levels 0, .25, .5, .75, 1; nothing is measured on the rows
    bounds = {**BOUNDS, "age": {"min": 0, "max": 100, "knots": [20, 30, 50]}}
    profile = DatasetProfile.model_validate(tiny_profile_dict(bounds=bounds))
    pre = TablePreprocessor(profile, public_bounds=True, numeric="quantile").fit(tiny_frame)
    age = next(s for s in pre.specs if s.name == "age")
    assert age.transform == "quantile" and age.knots == [0.0, 20.0, 30.0, 50.0, 100.0]
    assert pre.bounds_used()["public_knots"] == ["age"]
    assert age.fill == pytest.approx(30.0)  # the public median, not the rows'
    # a column without public bounds is measured min-max, never through the rows' quantiles
    assert next(s for s in pre.specs if s.name == "income").transform == "minmax"
    x = pre.transform(tiny_frame)
    source = tiny_frame["age"].to_numpy().astype(float)
    expected = np.interp(source, [0, 20, 30, 50, 100], [0, 0.25, 0.5, 0.75, 1])
    np.testing.assert_allclose(x[:, pre.output_columns.index("age")], expected, rtol=1e-6)
    # min-max over the bounds when the run scales min-max, and in non-DP runs the rows' knots
    minmax = TablePreprocessor(profile, public_bounds=True).fit(tiny_frame)
    assert next(s for s in minmax.specs if s.name == "age").transform == "minmax"
    plain = TablePreprocessor(profile, numeric="quantile").fit(tiny_frame)
    assert next(s for s in plain.specs if s.name == "age").knots[0] == source.min()


@pytest.mark.parametrize("bad, message", [
    ({"min": 0, "max": 100, "knots": [30, 20]}, "knots must ascend"),
    ({"min": 0, "max": 100, "knots": [50, 120]}, "within \\[min, max\\]"),
    ({"categories": ["a", "b"], "knots": [1]}, "knots need min and max"),
    ({"min": 0, "max": 100, "knots": []}, "non-empty"),
])
def test_bad_public_knots_are_refused(bad, message):
    with pytest.raises(ValueError, match=message):
        DatasetProfile.model_validate(tiny_profile_dict(bounds={"age": bad}))


def test_synthesis_mode_models_the_target_and_missing_values_as_a_state(tiny_frame):
    # a synthesizer models whole rows: the target is a column, and a null comes back as a null
    profile = DatasetProfile.model_validate(tiny_profile_dict(missing="impute"))
    holes = tiny_frame.with_columns(
        pl.when(pl.int_range(pl.len()) % 4 == 0).then(None).otherwise(pl.col("income"))
        .alias("income"),
        pl.when(pl.int_range(pl.len()) % 5 == 0).then(None).otherwise(pl.col("city"))
        .alias("city"))
    pre = TablePreprocessor(profile, numeric="quantile", with_target=True,
                            missing_state=True).fit(holes)
    names = [s.name for s in pre.specs]
    target = profile.target.column
    assert target in names and "income:missing" in names and "city:missing" in names
    assert "age:missing" not in names  # no nulls there: no flag
    assert "income:missing_true" in pre.output_columns
    x = pre.transform(holes)
    back = pre.reverse_transform(x)
    assert back.columns == [s.name for s in pre.specs if s.missing_of is None]
    assert back["income"].null_count() == holes["income"].null_count()
    assert back["city"].null_count() == holes["city"].null_count()
    assert back[target].to_list() == holes[target].cast(back[target].dtype).to_list()
    assert len(pre.heads()) == len(pre.specs)  # one head per block, flags included
    again = TablePreprocessor.from_dict(pre.to_dict())
    np.testing.assert_array_equal(again.transform(holes), x)
    assert "target" in pre.group_slices()


def _discrete_table(rows: int = 2_000) -> tuple[DatasetProfile, pl.DataFrame]:
    rng = np.random.default_rng(3)
    frame = pl.DataFrame({
        "rate": rng.choice([-1.8, -0.1, 1.1, 1.4], rows),  # a published quarterly rate
        "days": np.where(rng.random(rows) < 0.9, 999, rng.integers(0, 20, rows)),  # code 999
        "amount": rng.lognormal(3, 1, rows),  # continuous
        "label": rng.choice(["a", "b"], rows)})
    profile = DatasetProfile.model_validate({
        "name": "discrete", "target": {"column": "label", "positive": "b"},
        "groups": {"g": ["rate", "days", "amount"]},
        "columns": {"rate": "numeric", "days": "numeric", "amount": "numeric"},
        "bounds": {"rate": {"categories": [-1.8, -0.1, 1.1, 1.4, 2.0]},
                   "days": {"min": 0, "max": 999}, "amount": {"min": 0, "max": 1e4}}})
    return profile, frame


def test_discrete_numerics_are_categories_of_their_values_and_decode_exactly():
    profile, frame = _discrete_table()
    pre = TablePreprocessor(profile, numeric="quantile", discrete_levels=32).fit(frame)
    spec = {s.name: s for s in pre.specs}
    assert spec["rate"].discrete and spec["rate"].family == "categorical"
    assert spec["rate"].categories == ["-1.8", "-0.1", "1.1", "1.4"]
    assert spec["days"].discrete and "999" in spec["days"].categories  # 21 levels
    assert not spec["amount"].discrete and spec["amount"].transform == "quantile"
    back = pre.reverse_transform(pre.transform(frame))
    assert back["rate"].dtype == pl.Float64 and back["days"].dtype == pl.Int64
    assert back["rate"].to_list() == frame["rate"].to_list()  # exact values, not interpolated
    assert back["days"].to_list() == frame["days"].to_list()
    # off by default (the codes): the same columns stay numbers
    assert all(not s.discrete for s in TablePreprocessor(profile).fit(frame).specs)
    # too few rows per level: a continuous-looking column is not made discrete
    small = TablePreprocessor(profile, discrete_levels=32).fit(frame.head(60))
    assert not {s.name: s for s in small.specs}["days"].discrete
    again = TablePreprocessor.from_dict(pre.to_dict())
    assert again.discrete_levels == 32 and again.specs == pre.specs


def test_a_dp_run_takes_discrete_values_only_from_public_bounds():
    profile, frame = _discrete_table()
    pre = TablePreprocessor(profile, public_bounds=True, numeric="quantile",
                            discrete_levels=32).fit(frame)
    spec = {s.name: s for s in pre.specs}
    # public value list (one value the rows never show): discrete over it
    assert spec["rate"].discrete and spec["rate"].bounds == "public"
    assert spec["rate"].categories == ["-1.8", "-0.1", "1.1", "1.4", "2"]
    # no public value list: the rows' 21 values are data, so the column stays a number
    assert not spec["days"].discrete and spec["days"].bounds == "public"


def test_a_wide_categorical_gets_the_drafts_cardinality_warning(tiny_frame):
    from cloakflow.tasks.data import draft
    from cloakflow.tasks.data.preprocess import MAX_CATEGORIES

    assert draft.MAX_CATEGORIES is MAX_CATEGORIES  # one threshold for profile, run, synthesize
    n = tiny_frame.height
    wide = tiny_frame.with_columns(city=pl.Series([f"c{i % (MAX_CATEGORIES + 1)}"
                                                   for i in range(n)]))
    pre = TablePreprocessor(DatasetProfile.model_validate(tiny_profile_dict())).fit(wide, "t.csv")
    assert len(pre.warnings) == 1
    assert pre.warnings[0].startswith(f"t.csv: column 'city': {MAX_CATEGORIES + 1} categories")
    assert TablePreprocessor(DatasetProfile.model_validate(tiny_profile_dict())).fit(
        tiny_frame).warnings == []


def test_a_dp_fit_returns_whole_numbers_within_their_public_bounds(tiny_frame):
    """Under DP the types come from the profile: a column whose public bounds say integer
    comes back as Int64, and decoded values outside the bounds are clipped into them."""
    d = tiny_profile_dict(bounds={"age": {"min": 18, "max": 90, "integer": True},
                                  "income": {"min": 0, "max": 200000},
                                  "city": {"categories": ["north", "south", "east", "west"]},
                                  "owns": {"categories": ["yes", "no"]}})
    pre = TablePreprocessor(DatasetProfile.model_validate(d), public_bounds=True).fit(
        tiny_frame)
    width = pre.transform(tiny_frame).shape[1]
    x = np.random.default_rng(0).uniform(-0.3, 1.3, size=(200, width))  # past both bounds
    out = pre.reverse_transform(x)
    assert out.schema["age"] == pl.Int64 and out.schema["income"] == pl.Float64
    assert out.get_column("age").min() == 18 and out.get_column("age").max() == 90
    assert 0 <= out.get_column("income").min() and out.get_column("income").max() <= 200000
    with pytest.raises(ValueError, match="integer: true needs min and max"):
        DatasetProfile.model_validate(tiny_profile_dict(
            bounds={"city": {"categories": ["a"], "integer": True}}))


def test_a_mass_at_a_bound_becomes_a_state_of_its_own():
    """A capital gain that is 0 in 90% of rows: with bound_state the zeros are a category of a
    companion block, the knots cover the values inside, and decoding writes 0 exactly where
    the state says min."""
    rng = np.random.default_rng(0)
    n = 2000
    gain = np.where(rng.random(n) < 0.9, 0.0, np.round(rng.lognormal(8, 1, n), 2))
    frame = pl.DataFrame({"gain": gain, "label": rng.choice(["a", "b"], n)})
    profile = DatasetProfile.model_validate({
        "name": "g", "target": {"column": "label", "positive": "b"}, "groups": {"g": ["gain"]},
        "columns": {"gain": "numeric"}})
    pre = TablePreprocessor(profile, numeric="quantile", with_target=True,
                            bound_state=True).fit(frame)
    spec = {s.name: s for s in pre.specs}
    assert spec["gain:bound"].categories == ["inside", "min"]
    assert spec["gain"].knots[0] > 0  # fitted on the values inside
    x = pre.transform(frame)
    block = [i for i, c in enumerate(pre.output_columns) if c.startswith("gain:bound_")]
    assert x[:, block[1]].mean() == pytest.approx((gain == 0).mean())
    back = pre.reverse_transform(x)["gain"].to_numpy()
    assert ((back == 0) == (gain == 0)).all()
    assert np.allclose(back, gain, rtol=1e-3)  # through a float32 matrix
    # round trip through the saved state; without bound_state nothing changes
    again = TablePreprocessor.from_dict(pre.to_dict())
    assert np.array_equal(again.reverse_transform(x)["gain"].to_numpy(), back)
    plain = TablePreprocessor(profile, numeric="quantile", with_target=True).fit(frame)
    assert not any(s.companion == "bound" for s in plain.specs if s.missing_of)


def test_spread_draws_a_point_mass_over_its_levels_and_decodes_back():
    """``transform(spread=rng)`` (a generative model's training rows): a value tied over
    several quantile knots (a capital gain 0 in 90% of rows, an integer's repeats) is drawn
    uniformly over its levels instead of their middle, and decodes back to itself; a value at
    a bound with a state of its own is drawn over all levels; without ``spread`` nothing
    changes."""
    rng = np.random.default_rng(0)
    n = 4000
    gain = np.where(rng.random(n) < 0.9, 0.0, np.round(rng.lognormal(8, 1, n), 2))
    hours = np.where(rng.random(n) < 0.45, 40, rng.integers(1, 99, n))
    frame = pl.DataFrame({"gain": gain, "hours": hours, "label": rng.choice(["a", "b"], n)})
    profile = DatasetProfile.model_validate({
        "name": "g", "target": {"column": "label", "positive": "b"},
        "groups": {"g": ["gain", "hours"]}, "columns": {"gain": "numeric", "hours": "numeric"}})
    pre = TablePreprocessor(profile, numeric="quantile", with_target=True).fit(frame)
    mid, x = pre.transform(frame), pre.transform(frame, spread=np.random.default_rng(1))
    assert np.array_equal(mid, pre.transform(frame))  # deterministic without spread
    zeros = x[gain == 0, 0]
    assert np.unique(mid[gain == 0, 0]).size == 1  # one number: the middle of its levels
    assert zeros.min() < 0.01 and zeros.max() > 0.88 and abs(zeros.mean() - 0.45) < 0.01
    assert np.array_equal(x[gain > 0, 0], mid[gain > 0, 0])  # untied values: unchanged
    assert np.unique(x[hours == 40, 1]).size > 1000
    back = pre.reverse_transform(x)
    assert np.array_equal(back["hours"].to_numpy(), hours)
    assert ((back["gain"].to_numpy() == 0) == (gain == 0)).all()
    assert np.allclose(back["gain"].to_numpy(), gain, rtol=1e-3)
    # a bound state: the zeros' value is not decoded, so it is drawn over all levels
    states = TablePreprocessor(profile, numeric="quantile", with_target=True,
                               bound_state=True).fit(frame)
    xs = states.transform(frame, spread=np.random.default_rng(2))
    assert xs[gain == 0, 0].min() < 0.01 and xs[gain == 0, 0].max() > 0.99
    assert ((states.reverse_transform(xs)["gain"].to_numpy() == 0) == (gain == 0)).all()


def test_spread_on_a_public_grid_stays_in_the_value_cell():
    """A DP fit's integer column (public grid, step 1) whose knots spread each value over its
    cell: a spread value is drawn over the cell and snaps back to the value."""
    rng = np.random.default_rng(0)
    n = 3000
    hours = np.where(rng.random(n) < 0.45, 40, rng.integers(1, 99, n))
    frame = pl.DataFrame({"hours": hours, "label": rng.choice(["a", "b"], n)})
    profile = DatasetProfile.model_validate({
        "name": "g", "target": {"column": "label", "positive": "b"}, "groups": {"g": ["hours"]},
        "columns": {"hours": "numeric", "label": "categorical"},
        "bounds": {"hours": {"min": 1, "max": 99, "integer": True},
                   "label": {"categories": ["a", "b"]}}})
    # knots of a histogram with each value's mass spread over [v - 0.5, v + 0.5]
    values, counts = np.unique(hours, return_counts=True)
    cdf = np.concatenate([[0.0], np.cumsum(counts) / n])
    edges = np.concatenate([[values[0] - 0.5], values + 0.5])
    knots = list(np.clip(np.interp(np.linspace(0, 1, 1000), cdf, edges), 1, 99))
    pre = TablePreprocessor(profile, public_bounds=True, numeric="quantile", with_target=True,
                            dp_knots={"hours": knots}).fit(frame)
    assert pre.specs[0].step == 1.0 and pre.specs[0].bounds == "dp"
    mid, x = pre.transform(frame), pre.transform(frame, spread=np.random.default_rng(1))
    assert np.unique(mid[hours == 40, 0]).size == 1
    cell = x[hours == 40, 0]
    share = (hours == 40).mean()
    assert cell.max() - cell.min() > 0.9 * share  # spread over (nearly) all of its cell
    assert np.array_equal(pre.reverse_transform(x)["hours"].to_numpy(), hours)


def test_value_support_decodes_a_mostly_discrete_column_to_values_rows_hold():
    """``value_support``: a rate published to three decimals (200 values) decodes to the
    nearest value some training rows hold, not to a number between two knots; a continuous
    column, or one whose rare values cover more than 1% of its rows, keeps decoding between
    knots; the state round-trips."""
    rng = np.random.default_rng(0)
    n = 6000
    rates = np.round(np.sort(rng.uniform(0.6, 5.0, 200)), 3)
    rate = rng.choice(rates, n)
    frame = pl.DataFrame({"rate": rate, "amount": rng.lognormal(3, 1, n),
                          "label": rng.choice(["a", "b"], n)})
    profile = DatasetProfile.model_validate({
        "name": "s", "target": {"column": "label", "positive": "b"},
        "groups": {"g": ["rate", "amount"]}, "columns": {"rate": "numeric",
                                                        "amount": "numeric"}})
    pre = TablePreprocessor(profile, numeric="quantile", with_target=True,
                            value_support=True).fit(frame)
    spec = {s.name: s for s in pre.specs}
    assert spec["rate"].support == sorted(set(rate.tolist())) and spec["amount"].support == []
    x = rng.random((3000, len(pre.output_columns))).astype(np.float32)  # any model output
    back = pre.reverse_transform(x)
    assert set(back["rate"].to_list()) <= set(rate.tolist())
    assert back["amount"].n_unique() > 2900  # continuous: between knots as before
    plain = TablePreprocessor(profile, numeric="quantile", with_target=True).fit(frame)
    assert len(set(plain.reverse_transform(x)["rate"].to_list()) - set(rate.tolist())) > 100
    again = TablePreprocessor.from_dict(pre.to_dict())
    assert again.value_support and again.reverse_transform(x).equals(back)
    rare = np.where(rng.random(n) < 0.05, np.round(rng.uniform(0, 9, n), 4), rate)
    sparse = TablePreprocessor(profile, numeric="quantile", with_target=True,
                               value_support=True).fit(frame.with_columns(rate=pl.Series(rare)))
    assert next(s for s in sparse.specs if s.name == "rate").support == []
