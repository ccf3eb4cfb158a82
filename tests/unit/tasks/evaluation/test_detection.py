"""The classifier two-sample test: 0.5 for rows from one distribution, near 1 for a shifted
column, and the column that gives the rows away named first."""

import numpy as np
import pytest

from cloakflow.tasks.evaluation.detection import detection


def _rows(n: int, seed: int, shift: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.random((n, 3))
    x[:, 1] = np.clip(x[:, 1] + shift, 0, 1)
    return x


def test_same_distribution_is_near_chance():
    out = detection(_rows(1500, 1), _rows(1000, 2), seed=0,
                    blocks=[("a", 0, 1), ("b", 1, 2), ("c", 2, 3)])
    assert out["rows_per_side"] == 1000 and out["folds"] == 5
    assert abs(out["auc"] - 0.5) < 0.06


def test_a_shifted_column_is_told_apart_and_named():
    out = detection(_rows(1000, 1, shift=0.4), _rows(1000, 2), seed=0,
                    blocks=[("a", 0, 1), ("b", 1, 2), ("c", 2, 3)])
    assert out["auc"] > 0.8
    assert out["giveaways"][0][0] == "b" and out["giveaways"][0][1] > 0.5


def test_too_few_rows_and_bad_shapes():
    assert "skipped" in detection(_rows(10, 1), _rows(10, 2), seed=0)
    with pytest.raises(ValueError, match="one width"):
        detection(_rows(50, 1), _rows(50, 2)[:, :2], seed=0)
