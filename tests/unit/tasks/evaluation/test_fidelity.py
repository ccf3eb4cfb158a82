"""k-way accuracy (1 - TVD of discretised marginals) and its holdout maximum."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest

from cloakflow.tasks.evaluation.fidelity import (
    OTHER,
    Discretiser,
    accuracy,
    fidelity_report,
    quality_report,
    total_variation,
)


def _table(n: int, seed: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    kind = rng.choice(["a", "b", "c"], n)
    amount = np.where(kind == "a", rng.normal(0, 1, n), rng.normal(5, 1, n))
    return pl.DataFrame({"kind": kind, "amount": amount, "flag": rng.random(n) < 0.3,
                         "day": [dt.date(2020, 1, 1) + dt.timedelta(days=int(d))
                                 for d in rng.integers(0, 300, n)]})


def test_total_variation_of_known_distributions():
    a = np.array([[0], [0], [1], [1]])
    b = np.array([[0], [1], [1], [1]])
    assert total_variation(a, b) == pytest.approx(0.25)
    assert total_variation(a, a) == 0.0
    assert total_variation(np.array([[0]]), np.array([[1]])) == 1.0


def test_same_distribution_scores_near_its_holdout_and_broken_pairs_score_lower():
    train, control = _table(4000, 0), _table(4000, 1)
    # columns shuffled independently: every marginal right, every dependency gone
    rng = np.random.default_rng(2)
    shuffled = pl.DataFrame({c: control[c].to_numpy()[rng.permutation(control.height)]
                             for c in control.columns})
    good = fidelity_report(train, control, control)
    broken = fidelity_report(train, shuffled, control)
    assert good["univariate"]["synthetic"] == pytest.approx(good["univariate"]["holdout_maximum"])
    assert good["univariate"]["holdout_maximum"] > 0.97
    assert broken["univariate"]["synthetic"] == pytest.approx(good["univariate"]["synthetic"])
    assert broken["bivariate"]["synthetic"] < good["bivariate"]["holdout_maximum"] - 0.05
    assert broken["bivariate"]["worst"][0][0] == "kind|amount"
    assert good["three_way"]["sets"] == 4  # C(4, 3)


def test_cells_keep_nulls_and_unseen_categories_apart():
    train = pl.DataFrame({"c": ["x"] * 5 + ["y"] * 3 + [None], "v": [1.0, 2, 3, 4, 5, 6, 7, 8,
                                                                     None]})
    disc = Discretiser.fit(train, bins=4, top=1)
    cells = disc.cells(pl.DataFrame({"c": ["x", "y", None], "v": [None, 1.0, 100.0]}))
    assert cells["c"].tolist() == [0, OTHER, -1]
    assert cells["v"][0] == -1 and cells["v"][2] == len(disc.edges["v"])
    with pytest.raises(ValueError, match="empty table"):
        Discretiser.fit(train.clear())


def test_sampling_caps_the_column_sets():
    train = pl.DataFrame({f"c{i}": np.arange(50) % (i + 2) for i in range(8)})
    out = accuracy(train, train, Discretiser.fit(train), k=3, max_sets=10)
    assert out["sets"] == 10 and out["accuracy"] == 1.0


def test_integer_codes_declared_categorical_get_cells_of_their_own():
    train = pl.DataFrame({"code": [1, 2, 3, 1, 2, 3, 1, 2]})
    as_numbers = Discretiser.fit(train, bins=2)
    as_codes = Discretiser.fit(train, categorical=("code",))
    assert "code" in as_numbers.edges and as_codes.top["code"] == ["1.0", "2.0", "3.0"]
    assert as_codes.cells(pl.DataFrame({"code": [3, 9]}))["code"].tolist() == [2, OTHER]
    # a DP release publishes the same codes as Float64: the same cells
    floats = pl.DataFrame({"code": [3.0, 9.0]})
    assert as_codes.cells(floats)["code"].tolist() == [2, OTHER]


def test_point_masses_a_rounding_error_away_stay_in_their_cells():
    rng = np.random.default_rng(0)
    rate = rng.choice([-1.8, -0.1, 1.1, 1.4], 5000, p=[0.3, 0.2, 0.2, 0.3])
    train = pl.DataFrame({"rate": rate})
    # the same values as a DP value list or float arithmetic gives them back: a hair off
    nudged = pl.DataFrame({"rate": rate + rng.choice([-1e-6, 1e-6, 0.02], 5000)})
    disc = Discretiser.fit(train)
    assert accuracy(train, nudged, disc, 1)["accuracy"] > 0.99


def test_quality_follows_the_sdmetrics_definitions_on_hand_computed_tables():
    real = pl.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "y": [2.0, 4.0, 6.0, 8.0],
                         "c": ["a", "a", "b", "b"]})
    # x shifted by one value: KS statistic 1/4; y reversed against x: r = -1 instead of 1;
    # c: frequencies (3/4, 1/4) against (1/2, 1/2), TVD 1/4
    synthetic = pl.DataFrame({"x": [2.0, 3.0, 4.0, 5.0], "y": [8.0, 6.0, 4.0, 2.0],
                              "c": ["a", "a", "a", "b"]})
    q = quality_report(real, synthetic)
    assert q["column_shapes"] == pytest.approx(((1 - 0.25) + 1.0 + (1 - 0.25)) / 3)
    pairs = dict(q["worst_pairs"])
    assert pairs["x|y"] == pytest.approx(1 - abs(1 - (-1)) / 2)  # CorrelationSimilarity
    # contingency x|c, each table in 10 equal-width bins of its own range: real cells
    # (1,a)(4,a)(7,b)(11,b), synthetic (1,a)(4,a)(7,a)(11,b): TVD 1/2 (1/4 + 1/4)
    assert pairs["x|c"] == pytest.approx(1 - 0.25)
    assert q["score"] == pytest.approx((q["column_shapes"] + q["column_pair_trends"]) / 2)
    assert quality_report(real, real)["score"] == pytest.approx(1.0)


def test_quality_counts_only_pairs_associated_in_the_real_rows():
    rng = np.random.default_rng(0)
    n = 3000
    x = rng.normal(size=n)
    real = pl.DataFrame({"x": x, "y": x + 0.3 * rng.normal(size=n),  # r about 0.96
                         "noise": rng.normal(size=n)})  # |r| about 0 with both
    q = quality_report(real, real.with_columns(pl.col("noise").shuffle(seed=1)))
    assert q["pairs"] == 1 and q["pairs_below_threshold"] == 2
    assert q["column_pair_trends"] == pytest.approx(1.0)
    assert [p for p, _ in q["worst_pairs"]] == ["x|y"]


def test_fidelity_report_carries_quality_for_synthetic_and_control_rows():
    train, control = _table(2000, 0), _table(2000, 1)
    report = fidelity_report(train, control, control)
    quality = report["quality"]
    assert quality["synthetic"]["score"] == pytest.approx(quality["holdout"]["score"])
    assert 0.9 < quality["holdout"]["column_shapes"] <= 1.0
    assert "SDMetrics" in quality["follows"]


def test_the_release_quality_scores_every_synthetic_row_not_the_subsample():
    import numpy as np
    import polars as pl

    from cloakflow.tasks.evaluation.fidelity import fidelity_report, quality_report

    rng = np.random.default_rng(0)

    def rows(n):
        a = rng.normal(size=n)
        return pl.DataFrame({"a": a, "b": a + rng.normal(0, 0.5, n),
                             "c": rng.choice(["x", "y", "z"], n)})

    train, synthetic, control = rows(2000), rows(3000), rows(300)
    report = fidelity_report(train, synthetic, control, seed=1)
    assert report["quality"]["release"] == quality_report(train, synthetic)
    assert report["quality"]["release"]["score"] != report["quality"]["synthetic"]["score"]
