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
