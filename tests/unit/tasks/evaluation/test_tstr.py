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


def test_tstr_scores_multiclass_and_numeric_targets_by_their_kind():
    """A three-class label carried by one feature: TSTR on rows from the same distribution
    reaches TRTR's macro ROC AUC; a numeric target carried by a feature gets R² and MAE; a
    synthetic table missing a class is still scored over every class present in the control
    rows."""
    import numpy as np

    from cloakflow.tasks.evaluation.tstr import tstr

    rng = np.random.default_rng(0)

    def rows(n):
        x = rng.normal(size=(n, 3))
        return x, np.digitize(x[:, 0], [-0.5, 0.5]), 3 * x[:, 1] + rng.normal(0, 0.3, n)

    (sx, sc, sv), (tx, tc, tv), (cx, cc, cv) = rows(600), rows(600), rows(300)
    multi = tstr(sx, sc, tx, tc, cx, cc, kind="multiclass")
    assert multi["metric"] == "roc_auc_ovr" and len(multi["class_shares"]["synthetic"]) == 3
    assert multi["forest"]["trtr"] > 0.85 and abs(multi["forest"]["tstr"]
                                                  - multi["forest"]["trtr"]) < 0.05
    numeric = tstr(sx, sv, tx, tv, cx, cv, kind="numeric")
    assert numeric["metric"] == "r2" and numeric["lightgbm"]["trtr"] > 0.9
    assert 0 < numeric["lightgbm"]["tstr_mae"] < 1.0 and "positive_rate" not in numeric
    keep = sc != 2  # the synthesizer never produced class 2
    missing = tstr(sx[keep], sc[keep], tx, tc, cx, cc, kind="multiclass")
    assert 0.5 < missing["forest"]["tstr"] < missing["forest"]["trtr"]


def test_tstr_scores_every_class_of_a_multiclass_target():
    """Four classes, one easy and one hard (``test_learners.easy_and_hard``): per class, the
    one-vs-rest ROC AUC of TSTR and TRTR, named by class, whose mean is the macro figure; a
    class the control rows miss gets None; the report prints one line of them."""
    from cloakflow.tasks.release.synthetic import SYNTHETIC_LIMITS, UNCONDITIONED, report_markdown
    from tests.unit.tasks.evaluation.test_learners import easy_and_hard

    names = ["apart", "left", "right", "unclear"]
    (sx, sy), (tx, ty), (cx, cy) = (easy_and_hard(n, seed) for n, seed in
                                    ((1200, 0), (1200, 1), (800, 2)))
    got = tstr(sx, sy, tx, ty, cx, cy, kind="multiclass", class_names=names)
    for learner in ("forest", "lightgbm"):
        for side in ("tstr", "trtr"):
            per = got[learner][f"{side}_per_class"]
            assert list(per) == names
            assert np.mean(list(per.values())) == pytest.approx(got[learner][side], abs=1e-12)
            assert per["apart"] > 0.97 and per["unclear"] < 0.75
            assert min(per["left"], per["right"]) > per["unclear"] + 0.1
    keep = cy != 1  # no control row of class "left"
    missing = tstr(sx, sy, tx, ty, cx[keep], cy[keep], kind="multiclass")
    per = missing["forest"]["tstr_per_class"]
    assert list(per) == ["0", "1", "2", "3"] and per["1"] is None  # unnamed: the index
    assert missing["forest"]["trtr_per_class"]["1"] is None and per["0"] > 0.97
    assert "tstr_per_class" not in tstr(sx, sy % 2, tx, ty % 2, cx, cy % 2)["forest"]

    gate = {"verdict": "pass", "accepted_risk": None, "crossed": [],
            "measured": dict.fromkeys(SYNTHETIC_LIMITS), "limits": dict.fromkeys(
                SYNTHETIC_LIMITS, 1.0)}
    evaluation = {"fidelity": {"skipped": "test"}, "tstr": {**missing, "classes": names}}
    text = report_markdown("four", evaluation, gate, rows=800, model="vae", dp=None,
                           condition=UNCONDITIONED)
    line = next(ln for ln in text.splitlines() if ln.startswith("Per class, the forest's"))
    assert f"apart {per['0']:.3f} / {missing['forest']['trtr_per_class']['0']:.3f}" in line
    assert "left — / —, right " in line and line.count(" / ") == 1 + 4  # the header, 4 classes
