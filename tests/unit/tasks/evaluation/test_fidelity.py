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
    assert "code" in as_numbers.edges and as_codes.top["code"] == ["1", "2", "3"]
    assert as_codes.cells(pl.DataFrame({"code": [3, 9]}))["code"].tolist() == [2, OTHER]


def test_point_masses_a_rounding_error_away_stay_in_their_cells():
    rng = np.random.default_rng(0)
    rate = rng.choice([-1.8, -0.1, 1.1, 1.4], 5000, p=[0.3, 0.2, 0.2, 0.3])
    train = pl.DataFrame({"rate": rate})
    # the same values as a DP value list or float arithmetic gives them back: a hair off
    nudged = pl.DataFrame({"rate": rate + rng.choice([-1e-6, 1e-6, 0.02], 5000)})
    disc = Discretiser.fit(train)
    assert accuracy(train, nudged, disc, 1)["accuracy"] > 0.99
