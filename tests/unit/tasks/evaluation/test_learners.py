"""Per-class figures of a multiclass learner: each class's one-vs-rest ROC AUC and recall are
the parts of the macro ROC AUC and of balanced accuracy, an easy class scores above a hard
one, and a class absent from the rows scored gets None."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics

from cloakflow.tasks.evaluation.learners import class_recall, class_roc_auc, make_learner, score


def easy_and_hard(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Four classes: 0 sits apart on feature 0 (easy), 1 and 2 apart on feature 1, 3 has no
    signal of its own (hard: its rows copy the features of rows of classes 1 and 2)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n)
    x = rng.normal(size=(n, 3))
    x[:, 0] += 4.0 * (y == 0)
    x[:, 1] += 2.5 * (y == 1) - 2.5 * (y == 2)
    hard = np.flatnonzero(y == 3)
    x[hard] = x[rng.choice(np.flatnonzero((y == 1) | (y == 2)), len(hard))]
    return x, y


@pytest.fixture(scope="module")
def fitted():
    x, y = easy_and_hard(2000)
    xt, yt = easy_and_hard(1000, seed=1)
    return make_learner("multiclass", "lightgbm", seed=0, n_estimators=100).fit(x, y), xt, yt


def test_an_easy_class_scores_above_a_hard_one(fitted):
    model, x, y = fitted
    classes = np.arange(4)
    auc, recall = class_roc_auc(model, x, y, classes), class_recall(model, x, y, classes)
    assert auc[0] > 0.97 and auc[3] < 0.75 and min(auc[1], auc[2]) > auc[3] + 0.1
    assert recall[0] > 0.9 and recall[3] < 0.2
    # the parts of the macro figures, by scikit-learn's own scorers
    assert np.mean(auc) == pytest.approx(score("multiclass", model, x, y)["roc_auc_ovr"],
                                         abs=1e-12)
    assert np.mean(recall) == pytest.approx(
        metrics.balanced_accuracy_score(y, model.predict(x)), abs=1e-12)


def test_a_class_absent_from_the_rows_gets_none(fitted):
    model, x, y = fitted
    classes = np.arange(4)
    keep = y != 2
    auc = class_roc_auc(model, x[keep], y[keep], classes)
    recall = class_recall(model, x[keep], y[keep], classes)
    assert auc[2] is None and recall[2] is None
    assert all(isinstance(v, float) for i, v in enumerate(auc + recall) if i % 4 != 2)
    assert np.mean([auc[i] for i in (0, 1, 3)]) == pytest.approx(
        score("multiclass", model, x[keep], y[keep], classes)["roc_auc_ovr"], abs=1e-12)
    # two classes left: one curve, the same for both; one class left: nothing to rank
    two = (y == 0) | (y == 1)
    pair = class_roc_auc(model, x[two], y[two], classes)
    assert pair[2] is None and pair[3] is None and pair[0] == pytest.approx(pair[1])
    one = y == 0
    assert class_roc_auc(model, x[one], y[one], classes) == [None] * 4
    assert class_recall(model, x[one], y[one], classes)[1:] == [None] * 3


def test_a_class_the_model_never_saw_ranks_at_chance():
    x, y = easy_and_hard(1500)
    keep = y != 1  # the learner's rows (a synthetic table) lack class 1
    model = make_learner("multiclass", "sklearn", seed=0, n_estimators=50).fit(x[keep], y[keep])
    xt, yt = easy_and_hard(800, seed=2)
    auc = class_roc_auc(model, xt, yt, np.arange(4))
    assert auc[1] == pytest.approx(0.5) and auc[0] > 0.95  # probability 0 for every row
    assert class_recall(model, xt, yt, np.arange(4))[1] == 0.0
