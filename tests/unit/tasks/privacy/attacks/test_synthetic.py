"""DCR share, DCR ratio, exact copies and NNDR: fresh rows from the true distribution score as
new data does; copied or jittered training rows are caught."""

from __future__ import annotations

import numpy as np
import pytest

from cloakflow.tasks.privacy.attacks.synthetic import distance_privacy


def _rows(n: int, rng: np.random.Generator) -> np.ndarray:
    onehot = np.eye(4)[rng.integers(0, 4, n)]
    return np.hstack([rng.random((n, 3)), onehot])


def test_fresh_rows_look_like_new_data_and_copies_are_caught():
    rng = np.random.default_rng(0)
    train, control, fresh = _rows(3000, rng), _rows(1000, rng), _rows(1000, rng)
    honest = distance_privacy(fresh, train, control)
    assert honest["dcr_share"] == pytest.approx(0.5, abs=0.05)
    assert honest["dcr_ratio"] == pytest.approx(1.0, abs=0.1)
    assert honest["exact_copies"] == 0.0 and honest["exact_copies_control"] == 0.0
    copies = train[rng.choice(3000, 1000, replace=False)]
    leaked = distance_privacy(copies, train, control)
    assert leaked["exact_copies"] == 1.0 and leaked["dcr_ratio"] < 1e-3
    assert leaked["dcr_share"] > 0.6  # a copy beats the control rows unless its twin is not
    #                                   in the subsample the share compares with
    jitter = copies + rng.normal(0, 0.005, copies.shape)
    near = distance_privacy(jitter, train, control)
    assert near["exact_copies"] == 0.0 and near["nndr_median"] < honest["nndr_median"] / 2


def test_bad_shapes_are_refused():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="widths differ"):
        distance_privacy(_rows(5, rng), _rows(5, rng)[:, :3], _rows(5, rng))
    with pytest.raises(ValueError, match="need synthetic"):
        distance_privacy(np.zeros((0, 7)), _rows(5, rng), _rows(5, rng))


def test_membership_attacks_catch_a_memorising_synthesizer():
    from cloakflow.tasks.privacy.attacks.synthetic import membership_of_synthetic

    rng = np.random.default_rng(1)
    train, control = _rows(2000, rng), _rows(2000, rng)
    fresh = _rows(2000, rng)
    honest = membership_of_synthetic(fresh, train, control)
    assert 0.4 < honest["auc"] < 0.6 and honest["tpr_at_1pct_fpr"] < 0.05
    # memorising: jittered copies of the training rows
    leaky = train + rng.normal(0, 0.01, train.shape)
    caught = membership_of_synthetic(leaky, train, control)
    assert caught["auc"] > 0.9 and caught["tpr_at_1pct_fpr"] > 0.2
    assert caught["distance"]["auc"] > 0.9 and caught["members"] == 1000
    with pytest.raises(ValueError, match="at least 20 control rows"):
        membership_of_synthetic(fresh, train, control[:10])


def test_dcr_share_compares_equal_sized_sets():
    # fewer training rows than control rows: still 0.5 for fresh rows
    rng = np.random.default_rng(3)
    train, control, fresh = _rows(300, rng), _rows(3000, rng), _rows(1000, rng)
    assert distance_privacy(fresh, train, control)["dcr_share"] == pytest.approx(0.5, abs=0.06)


def test_a_copying_model_on_a_duplicate_heavy_table_is_blocked():
    """40% duplicate rows, split on the feature groups: the control rows' own copy rate is 0
    (it was 40%+ with a row split), the DCR ratio is not a division by zero, and a "model"
    that returns training rows is blocked by the exact-copy limit; fresh rows pass."""
    import polars as pl

    from cloakflow.tasks.data.preprocess import TablePreprocessor
    from cloakflow.tasks.data.profile import DatasetProfile
    from cloakflow.tasks.data.split import feature_groups, split_rows
    from cloakflow.tasks.privacy.attacks.synthetic import membership_of_synthetic
    from cloakflow.tasks.release.synthetic import judge
    from tests.helpers import duplicated_table, tiny_profile_dict

    frame = duplicated_table(2000).with_columns(
        owns=pl.when(pl.col("city") == "a").then(pl.lit("y")).otherwise(pl.lit("n")))
    d = tiny_profile_dict()
    d["privacy"]["policy"] = {}  # the default limits
    profile = DatasetProfile.model_validate(d)
    groups = feature_groups(frame, ["age", "income", "city"])
    y = (frame.get_column("label") == "yes").to_numpy().astype(int)
    train_idx, control_idx = split_rows(y, 0.2, seed=0, groups=groups)
    pre = TablePreprocessor(profile).fit(frame[train_idx])
    train = pre.transform(frame[train_idx])
    control = pre.transform(frame[control_idx], unseen="ignore")
    rng = np.random.default_rng(0)
    copied = train[rng.choice(len(train), 1000)]
    dist = distance_privacy(copied, train, control)
    assert dist["exact_copies"] == 1.0 and dist["exact_copies_control"] == 0.0
    assert dist["control_rows_distinct"] <= len(control)
    evaluation = {"privacy": {"distance": dist,
                              "membership": membership_of_synthetic(copied, train, control)}}
    gate = judge(evaluation, profile, attacked=True, accept_risk=None)
    assert gate["verdict"] == "blocked"
    assert any("max_exact_copy_excess = 1.0000" in c for c in gate["crossed"])
    # a zero control baseline is "not measured", never a huge ratio
    same = distance_privacy(copied, train, train[:200])
    assert same["dcr_ratio"] is None


def _people(n: int, rng: np.random.Generator):
    import polars as pl

    return pl.DataFrame({"age": rng.integers(18, 90, n),
                         "balance": np.round(rng.lognormal(8, 1.5, n), 2),
                         "joined": pl.Series(np.datetime64("2015-01-01", "ms")
                                             + rng.integers(0, 3000 * 86400, n) * 1000),
                         "plan": rng.choice(["basic", "plus", "pro"], n),
                         "score": np.where(rng.random(n) < 0.1, np.nan, rng.normal(0, 1, n))})


FAMILIES = {"age": "numeric", "balance": "numeric", "joined": "numeric",
            "plan": "categorical", "score": "numeric"}


def test_copies_of_training_rows_are_caught_on_released_rows_with_numeric_columns():
    """Released rows in the source schema: a "model" that returns its training rows is caught
    (every column equal), fresh rows of a table with continuous columns copy nothing and sit
    as close to the training rows as new data does."""
    import polars as pl

    from cloakflow.tasks.privacy.attacks.synthetic import released_distance_privacy

    rng = np.random.default_rng(3)
    train, control, fresh = _people(2000, rng), _people(500, rng), _people(1000, rng)
    ranges = {c: (float(train.get_column(c).cast(pl.Float64).min()),
                  float(train.get_column(c).cast(pl.Float64).max()))
              for c in ("age", "balance", "score")}
    ranges["joined"] = (float(train.get_column("joined").dt.epoch("s").min()),
                        float(train.get_column("joined").dt.epoch("s").max()))
    copied = released_distance_privacy(train.sample(800, seed=1), train, control, FAMILIES,
                                       ranges)
    assert copied["exact_copies"] == 1.0 and copied["exact_copies_control"] == 0.0
    assert copied["dcr_ratio"] == 0.0 and copied["dcr_share"] > 0.6
    assert copied["space"] == "source schema (5 columns), Gower distance"
    honest = released_distance_privacy(fresh, train, control, FAMILIES, ranges)
    assert honest["exact_copies"] == 0.0
    assert honest["dcr_share"] == pytest.approx(0.5, abs=0.06)
    assert honest["dcr_ratio"] == pytest.approx(1.0, abs=0.15)
    # rounding a copy's balance to whole units is a different row, but it stays near its twin
    rounded = train.sample(800, seed=1).with_columns(pl.col("balance").round(0))
    near = released_distance_privacy(rounded, train, control, FAMILIES, ranges)
    assert near["exact_copies"] < 0.05 and near["nndr_median"] < honest["nndr_median"] / 2


def test_gower_space_is_the_gower_distance_times_the_columns():
    import polars as pl

    from cloakflow.tasks.privacy.attacks.synthetic import gower_space

    a = pl.DataFrame({"x": [0.0, 10.0, None], "c": ["u", "v", None]})
    b = pl.DataFrame({"x": [5.0, 20.0, None], "c": ["u", "u", None]})
    ma, mb = gower_space([a, b], {"x": "numeric", "c": "categorical"}, {"x": (0.0, 10.0)})
    l1 = np.abs(ma - mb).sum(axis=1)
    # row 0: |0-5|/10 + 0; row 1: clipped 1 vs 1 + categories differ; row 2: nulls equal
    np.testing.assert_allclose(l1, [0.5, 1.0, 0.0])
