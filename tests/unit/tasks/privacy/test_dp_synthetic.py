import numpy as np
import polars as pl
import pytest

from cloakflow.tasks.data.preprocess import TablePreprocessor
from cloakflow.tasks.data.profile import DatasetProfile
from cloakflow.tasks.privacy.dp import DpPlanError
from cloakflow.tasks.privacy.dp_synthetic import (
    DEFAULT_DELTA,
    HISTOGRAM_SHARE,
    dp_section,
    plan_synthesis_dp,
    require_public_bounds,
)
from tests.helpers import release_epsilon_by_dp_accounting, tiny_profile_dict


def test_the_plan_spends_at_most_the_budget_for_everything_that_reads_the_rows():
    plan = plan_synthesis_dp(2.0, None, None, epochs=3, sampling_rate=0.02)
    assert plan.delta == DEFAULT_DELTA  # public, not from the row count
    assert plan.sgd.steps == 150 and plan.sgd.sampling_rate == 0.02
    section = dp_section(plan, {"public": ["a"], "data": []}, "private")
    # recomputed with dp-accounting directly from what the manifest publishes
    total = release_epsilon_by_dp_accounting(section, "add_remove")
    assert total <= 2.0 and section["epsilon"] == pytest.approx(total, rel=1e-3)
    assert plan.histogram_epsilon == pytest.approx(HISTOGRAM_SHARE * 2.0, rel=0.01)
    assert plan.sgd.epsilon < 2.0 < plan.sgd.epsilon + plan.histogram_epsilon + 0.2


@pytest.mark.parametrize("kwargs, message", [
    ({"epsilon": 0.0}, "positive finite"), ({"epsilon": float("inf")}, "positive finite"),
    ({"delta": 1.5}, "dp-delta"), ({"sampling_rate": 0.0}, "sampling-rate"),
])
def test_bad_dp_settings_are_refused(kwargs, message):
    args = {"epsilon": 1.0, "delta": None, "clip_norm": None, "epochs": 1,
            "sampling_rate": 0.01, **kwargs}
    with pytest.raises(DpPlanError, match=message):
        plan_synthesis_dp(**args)


def test_a_dp_synthesizer_reads_no_statistic_off_the_rows(tiny_frame: pl.DataFrame):
    bounds = {"age": {"min": 0, "max": 120}, "income": {"min": 0, "max": 300},
              "city": {"categories": ["north", "south", "east", "west"]},
              "owns": {"categories": ["no", "yes"]}, "label": {"categories": ["no", "yes"]}}
    profile = DatasetProfile.model_validate(tiny_profile_dict(bounds=bounds, missing="impute",
                                                              nullable=["income", "city"]))
    pre = TablePreprocessor(profile, public_bounds=True, numeric="quantile", with_target=True,
                            missing_state=True, discrete_levels=32)
    fitted = pre.fit(tiny_frame)
    require_public_bounds(fitted.specs, "tiny.csv")  # nothing measured: accepted
    # the fitted state is the same whatever the rows: it is a function of the profile alone
    other = tiny_frame.with_columns(pl.col("income") * 0 + 7, pl.col("city").replace(
        {"west": "north"}))
    again = TablePreprocessor(profile, public_bounds=True, numeric="quantile",
                              with_target=True, missing_state=True,
                              discrete_levels=32).fit(other)
    assert again.specs == fitted.specs
    # missing flags for the public nullable list only (not read off the rows; no nulls here)
    assert sorted(s.missing_of for s in fitted.specs if s.missing_of) == ["city", "income"]
    # without bounds for a column: refused, naming it
    partial = DatasetProfile.model_validate(tiny_profile_dict(
        bounds={k: v for k, v in bounds.items() if k != "age"}))
    loose = TablePreprocessor(partial, public_bounds=True, numeric="quantile",
                              with_target=True).fit(tiny_frame)
    with pytest.raises(DpPlanError, match=r"tiny.csv.*\['age'\]"):
        require_public_bounds(loose.specs, "tiny.csv")
    assert np.isfinite(fitted.transform(tiny_frame)).all()


def _rate_table(rows: int, amount: tuple[float, float],
                days: bool = False) -> tuple[pl.DataFrame, DatasetProfile]:
    """A rate with three point masses, a lognormal amount (``amount``: mu, sigma), optionally
    a day count that is mostly the code 999, and a label; public ranges for all."""
    rng = np.random.default_rng(0)
    columns = {"rate": rng.choice([-1.8, 1.1, 1.4], rows, p=[0.2, 0.3, 0.5])}
    bounds = {"rate": {"min": -5, "max": 5}}
    if days:
        columns["days"] = np.where(rng.random(rows) < 0.9, 999, rng.integers(0, 20, rows))
        bounds["days"] = {"min": 0, "max": 999}
    columns["amount"] = rng.lognormal(*amount, rows)
    bounds.update(amount={"min": 0, "max": 500}, label={"categories": ["a", "b"]})
    frame = pl.DataFrame({**columns, "label": rng.choice(["a", "b"], rows)})
    names = list(columns)
    profile = DatasetProfile.model_validate({
        "name": "rates", "target": {"column": "label", "positive": "b"},
        "groups": {"g": names}, "columns": {c: "numeric" for c in names}, "bounds": bounds})
    return frame, profile


@pytest.mark.slow  # ~25 s; the DP synthetic flow test runs the knots end to end
def test_dp_quantile_knots_follow_point_masses_and_are_charged_to_the_budget():
    from cloakflow.tasks.privacy.dp_synthetic import (
        dp_quantile_knots,
        knot_columns,
        refit_with_knots,
    )

    rows = 20_000
    frame, profile = _rate_table(rows, amount=(3, 0.5))
    pre = TablePreprocessor(profile, public_bounds=True, numeric="quantile",
                            with_target=True).fit(frame)
    assert knot_columns(pre.specs) == ("rate", "amount")
    plan = plan_synthesis_dp(3.0, None, None, epochs=1, sampling_rate=0.05,
                             knot_columns=knot_columns(pre.specs))
    section = dp_section(plan, pre.bounds_used(), "private")
    assert [m["models"][0].split(":")[0] for m in section["mechanisms"]] == [
        "vae", "condition histogram", "quantile knots"]
    assert release_epsilon_by_dp_accounting(section, "add_remove") <= 3.0
    knots, values, info = dp_quantile_knots(frame, pre, plan, rows, rng=np.random.default_rng(1))
    assert values == {}  # discrete_levels off: knots only
    from cloakflow.tasks.privacy.dp_synthetic import KNOT_GRID

    # the three point masses, and at most a spurious bin or two
    assert info["rate"]["bins"] == KNOT_GRID
    assert 3 <= info["rate"]["kept"] <= 5
    refit = refit_with_knots(pre, frame, knots)
    spec = {s.name: s for s in refit.specs}
    assert spec["rate"].bounds == "dp" and spec["rate"].transform == "quantile"
    assert refit.bounds_used()["dp_knots"] == ["rate", "amount"]
    # decoded values sit at the point masses (within one bin of the public range)
    width = 10 / info["rate"]["bins"]
    back = refit.reverse_transform(refit.transform(frame))["rate"].to_numpy()
    assert np.abs(back - frame["rate"].to_numpy()).max() < width
    # the amount's quantiles are close to the true ones
    true = np.quantile(frame["amount"].to_numpy(), [0.1, 0.5, 0.9])
    dp = np.interp([0.1, 0.5, 0.9], np.linspace(0, 1, len(knots["amount"])), knots["amount"])
    assert np.allclose(dp, true, rtol=0.05)


@pytest.mark.slow  # ~25 s; the DP synthetic flow test runs the value lists end to end
def test_a_discrete_numeric_gets_a_dp_value_list_and_a_code_at_a_bound_survives():
    from cloakflow.tasks.privacy.dp_synthetic import (
        dp_quantile_knots,
        knot_columns,
        refit_with_knots,
    )

    rows = 20_000
    frame, profile = _rate_table(rows, amount=(4, 0.8), days=True)
    pre = TablePreprocessor(profile, public_bounds=True, numeric="quantile", with_target=True,
                            discrete_levels=32).fit(frame)
    plan = plan_synthesis_dp(3.0, None, None, epochs=1, sampling_rate=0.05,
                             knot_columns=knot_columns(pre.specs))
    knots, values, info = dp_quantile_knots(frame, pre, plan, rows, rng=np.random.default_rng(1))
    # the rate's three points stand out at the leaves: a value list; the day count's 10% of
    # small counts (about 100 rows per value) do not, so it keeps knots, whose bound bin holds
    # the code 999 exactly
    assert set(values) == {"rate"} and set(knots) == {"amount", "days"}
    assert info["days"]["at_max"] and knots["days"][-1] == 999.0
    refit = refit_with_knots(pre, frame, knots, values)
    spec = {s.name: s for s in refit.specs}
    assert spec["rate"].discrete and spec["rate"].bounds == "dp"
    assert refit.bounds_used()["dp_values"] == ["rate"]
    back = refit.reverse_transform(refit.transform(frame))
    width = 10 / info["rate"]["bins"]
    assert np.abs(back["rate"].to_numpy() - frame["rate"].to_numpy()).max() <= width
    # a DP fit publishes numbers as Float64: an integer type would be read off the rows
    assert back["days"].dtype == pl.Float64 and (back["days"] == 999).mean() > 0.85


def _knot_plan(columns: tuple[str, ...], sigma: float, levels: tuple[int, ...] = ()):
    """A plan holding only what ``dp_quantile_knots`` reads (no accounting: its noise)."""
    from cloakflow.tasks.privacy.dp_synthetic import SynthesisDpPlan

    return SynthesisDpPlan(target_epsilon=3.0, delta=DEFAULT_DELTA, sgd=None,
                           histogram_sigma=1.0, histogram_epsilon=0.0, clip_norm=0.1, epochs=1,
                           total_epsilon=3.0, knot_columns=columns, knot_sigma=sigma,
                           knot_levels=levels)


def _perfect_model_rows(pre, rows: int, seed: int = 2) -> pl.DataFrame:
    """What a model that learned the knots' CDF exactly would publish: uniform levels per
    numeric column (categories at their first value), decoded."""
    rng = np.random.default_rng(seed)
    matrix = np.zeros((rows, len(pre.output_columns)), dtype=np.float32)
    for spec, start, _stop in pre.column_blocks():
        if spec.family == "numeric":
            matrix[:, start] = rng.random(rows)
        else:
            matrix[:, start] = 1.0
    return pre.reverse_transform(matrix)


def test_dp_knots_keep_a_skewed_money_column_continuous_and_off_its_bound():
    """A wage-like column (5,000+ distinct values, all far above the public lower bound 0 on a
    wide public range) gets knots, not a value list of bin centres: its values are drawn
    within the bins, nothing piles on the bound, and most of its distinct values survive."""
    from scipy.stats import ks_2samp

    from cloakflow.tasks.privacy.dp_synthetic import dp_quantile_knots, refit_with_knots

    rng = np.random.default_rng(0)
    rows = 20_000
    wage = np.round(50.05 + rng.lognormal(5.5, 0.9, rows), 2)
    frame = pl.DataFrame({"wage": wage, "label": rng.choice(["a", "b"], rows)})
    profile = DatasetProfile.model_validate({
        "name": "wages", "target": {"column": "label", "positive": "b"},
        "groups": {"g": ["wage"]}, "columns": {"wage": "numeric"},
        "bounds": {"wage": {"min": 0, "max": 20_000}, "label": {"categories": ["a", "b"]}}})
    pre = TablePreprocessor(profile, public_bounds=True, numeric="quantile", with_target=True,
                            discrete_levels=32).fit(frame)
    plan = _knot_plan(("wage",), sigma=40.0)
    knots, values, info = dp_quantile_knots(frame, pre, plan, rows, rng=np.random.default_rng(1))
    assert values == {} and not info["wage"]["discrete"] and not info["wage"]["at_min"]
    synthetic = _perfect_model_rows(refit_with_knots(pre, frame, knots, values),
                                    rows)["wage"].to_numpy()
    assert synthetic.min() >= 0 and synthetic.max() <= 20_000
    assert (synthetic == 0).mean() < 0.01  # no pile-up on the public bound
    assert len(np.unique(synthetic)) >= 0.5 * len(np.unique(wage))
    assert 1 - ks_2samp(wage, synthetic).statistic >= 0.9


def test_dp_knots_of_a_count_sit_on_whole_numbers_and_keep_a_mass_at_the_bound():
    """An integer count (30% zeros at the public minimum, the rest Poisson) declared whole:
    whole-number bins, Int64 back, the zeros' share kept within a point, nothing outside
    the public range."""
    from cloakflow.tasks.privacy.dp_synthetic import dp_quantile_knots, refit_with_knots

    rng = np.random.default_rng(0)
    rows = 20_000
    visits = np.where(rng.random(rows) < 0.3, 0, 1 + rng.poisson(6, rows))
    frame = pl.DataFrame({"visits": visits, "label": rng.choice(["a", "b"], rows)})
    profile = DatasetProfile.model_validate({
        "name": "visits", "target": {"column": "label", "positive": "b"},
        "groups": {"g": ["visits"]}, "columns": {"visits": "numeric"},
        "bounds": {"visits": {"min": 0, "max": 400, "integer": True},
                   "label": {"categories": ["a", "b"]}}})
    pre = TablePreprocessor(profile, public_bounds=True, numeric="quantile",
                            with_target=True).fit(frame)
    knots, values, info = dp_quantile_knots(frame, pre, _knot_plan(("visits",), 40.0), rows,
                                            rng=np.random.default_rng(1))
    assert info["visits"]["whole"] and info["visits"]["at_min"]
    back = _perfect_model_rows(refit_with_knots(pre, frame, knots, values), rows)["visits"]
    assert back.dtype == pl.Int64
    synthetic = back.to_numpy()
    assert synthetic.min() >= 0 and synthetic.max() <= 400
    assert abs((synthetic == 0).mean() - (visits == 0).mean()) <= 0.01
    # the Poisson part stays on its values: the median and the upper tail within a count
    for q in (0.5, 0.9):
        assert abs(np.quantile(synthetic, q) - np.quantile(visits, q)) <= 1


def test_a_public_step_puts_dp_values_on_the_columns_grid():
    """A rate published to one decimal (step 0.1): its DP value list holds grid values exactly
    (a bin centre a hair off -1.8 would be another value to a KS test), decoded rows lie on
    the grid, and a step on dates or without min/max is refused."""
    from pydantic import ValidationError

    from cloakflow.tasks.data.preprocess import on_grid
    from cloakflow.tasks.data.profile import PublicBounds
    from cloakflow.tasks.privacy.dp_synthetic import dp_quantile_knots, refit_with_knots

    assert on_grid(np.array([-1.80004, 0.34999, 1.1]), -5.0, 0.1).tolist() == [-1.8, 0.3, 1.1]
    with pytest.raises(ValidationError, match="step needs numeric min and max"):
        PublicBounds.model_validate({"categories": ["a"], "step": 0.1})
    assert PublicBounds.model_validate({"min": 0, "max": 9, "integer": True}).grid_step() == 1
    rows = 20_000
    frame, profile = _rate_table(rows, amount=(3, 0.5))
    profile = DatasetProfile.model_validate({
        **profile.model_dump(mode="python"),
        "bounds": {**profile.model_dump(mode="python")["bounds"],
                   "rate": {"min": -5, "max": 5, "step": 0.1}}})
    pre = TablePreprocessor(profile, public_bounds=True, numeric="quantile", with_target=True,
                            discrete_levels=32).fit(frame)
    from cloakflow.tasks.privacy.dp_synthetic import KNOT_TREE_LEVELS, knot_levels

    assert knot_levels(pre.specs) == (1, KNOT_TREE_LEVELS)  # a bin per grid value; a tree
    knots, values, info = dp_quantile_knots(
        frame, pre, _knot_plan(("rate", "amount"), 40.0, knot_levels(pre.specs)), rows,
        rng=np.random.default_rng(1))
    assert values["rate"] == [-1.8, 1.1, 1.4] and info["rate"]["step"] == 0.1
    assert info["rate"]["grid"] and info["rate"]["bins"] == 101
    back = refit_with_knots(pre, frame, knots, values).reverse_transform(
        refit_with_knots(pre, frame, knots, values).transform(frame))
    assert set(back["rate"].unique()) <= {-1.8, 1.1, 1.4}


def test_the_top_quantile_stays_in_the_last_bin_holding_mass():
    from cloakflow.tasks.privacy.dp_synthetic import _inverse_cdf

    counts = np.array([0.0, 5.0, 5.0, 0.0, 0.0])
    edges = np.arange(6, dtype=np.float64)
    knots = _inverse_cdf(counts, edges[:-1], edges[1:], np.linspace(0, 1, 11))
    assert knots[0] == 1.0 and knots[-1] == 3.0  # never in the empty bins past the mass
