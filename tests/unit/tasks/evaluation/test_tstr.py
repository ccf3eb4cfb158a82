"""TSTR beside TRTR: rows from the true distribution score as real ones do, label-shuffled
rows score at chance."""

from __future__ import annotations

import numpy as np
import pytest

from cloakflow.tasks.evaluation.tstr import tstr


def _draw(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    x = rng.normal(size=(n, 4))
    y = (x[:, 0] + 0.5 * rng.normal(size=n) > 0.8).astype(int)
    return x, y


def test_tstr_reads_against_trtr():
    rng = np.random.default_rng(0)
    (sx, sy), (tx, ty), (cx, cy) = _draw(3000, rng), _draw(3000, rng), _draw(2000, rng)
    good = tstr(sx, sy, tx, ty, cx, cy)
    for learner in ("forest", "lightgbm"):
        assert good[learner]["tstr"] == pytest.approx(good[learner]["trtr"], abs=0.02)
        assert good[learner]["trtr"] > 0.85
    broken = tstr(sx, rng.permutation(sy), tx, ty, cx, cy)
    assert broken["forest"]["tstr"] < 0.6
    assert good["positive_rate"]["synthetic"] == pytest.approx(sy.mean())
    with pytest.raises(ValueError, match="single label value"):
        tstr(sx, np.zeros(len(sy), dtype=int), tx, ty, cx, cy)
