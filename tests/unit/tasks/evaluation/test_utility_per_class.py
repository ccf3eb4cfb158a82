"""The utility of a multiclass target per class: every test fold's one-vs-rest ROC AUC and
recall of each class, named by its label, are the parts of the fold's macro ROC AUC and
balanced accuracy; an easy class scores above a hard one; a class a fold's test rows miss gets
None; the table beside the utility table and the logged JSON carry them; binary and numeric
results are as before."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from cloakflow.tasks.data.split import class_names
from cloakflow.tasks.evaluation.learners import make_learner
from cloakflow.tasks.evaluation.steps import Evaluations
from cloakflow.tasks.evaluation.utility import (
    class_scores,
    class_table,
    cross_validate_forest,
    format_table,
    log_utility,
    utility_of_view,
)
from tests.unit.tasks.evaluation.test_learners import easy_and_hard

LABELS = np.array(["apart", "left", "right", "unclear"])  # class 0 easy, class 3 hard


@pytest.fixture(scope="module")
def labelled():
    """The four-class table with text labels: names and indices as ``split`` gives them."""
    x, index = easy_and_hard(1500)
    column = pl.Series("label", LABELS[index])
    names = class_names(column)
    y = np.searchsorted(names, column.to_numpy())
    return x, y, names


@pytest.fixture(scope="module")
def cv(labelled):
    x, y, names = labelled
    return cross_validate_forest(x, y, kind="multiclass", folds=3, seed=0, n_estimators=100,
                                 class_names=names)


def test_each_class_is_named_and_the_easy_one_scores_above_the_hard_one(cv):
    per = cv["per_class"]
    auc, recall = per["mean"]["test_roc_auc_ovr"], per["mean"]["test_recall"]
    assert list(auc) == list(recall) == ["apart", "left", "right", "unclear"]
    assert auc["apart"] > 0.97 and auc["unclear"] < 0.75
    assert min(auc["left"], auc["right"]) > auc["unclear"] + 0.1
    assert recall["apart"] > 0.9 and recall["unclear"] < 0.2
    assert all(len(v) == 3 for v in per["folds"]["test_recall"].values())


def test_the_classes_are_the_parts_of_each_folds_macro_figures(cv):
    per = cv["per_class"]["folds"]
    for fold in range(3):
        auc = [v[fold] for v in per["test_roc_auc_ovr"].values()]
        recall = [v[fold] for v in per["test_recall"].values()]
        assert np.mean(auc) == pytest.approx(cv["folds"]["test_roc_auc_ovr"][fold], abs=1e-12)
        assert np.mean(recall) == pytest.approx(cv["folds"]["test_balanced_accuracy"][fold],
                                                abs=1e-12)
    assert "per_class" not in cv["mean"]  # the macro figures' table is unchanged


def test_a_fold_without_the_class_gets_none(labelled):
    x, y, _ = labelled
    model = make_learner("multiclass", "lightgbm", seed=0, n_estimators=30).fit(x, y)
    everything, no_unclear = np.arange(len(y)), np.flatnonzero(y != 3)
    got = class_scores([model, model, None], [everything, no_unclear, everything], x, y)
    auc, recall = got["folds"]["test_roc_auc_ovr"], got["folds"]["test_recall"]
    assert list(auc) == ["0", "1", "2", "3"]  # no names: the class index as text
    assert auc["3"][1] is None and recall["3"][1] is None  # fold 2 has no row of class 3
    assert auc["0"][2] is None and recall["0"][2] is None  # fold 3's fit failed
    assert got["mean"]["test_roc_auc_ovr"]["3"] == auc["3"][0]  # over the folds measured
    assert got["mean"]["test_recall"]["0"] == pytest.approx(np.mean(recall["0"][:2]))
    nothing = class_scores([model], [no_unclear], x, y)["mean"]
    assert nothing["test_roc_auc_ovr"]["3"] is None and nothing["test_recall"]["3"] is None


def test_the_table_beside_and_the_logged_json(cv, monkeypatch):
    from cloakflow.tasks import tracking

    binary = {"mean": {"test_roc_auc": 0.8}, "folds": {"test_roc_auc": [0.8]}}
    missing = {**cv, "per_class": {"mean": {k: {**v, "unclear": None} for k, v in
                                            cv["per_class"]["mean"].items()}}}
    rows = class_table({"ORIGINAL": cv, "GROUP_ENCODED": missing})
    assert [(r["class"], r["metric"]) for r in rows[:5]] == [
        ("apart", "test_roc_auc_ovr"), ("left", "test_roc_auc_ovr"),
        ("right", "test_roc_auc_ovr"), ("unclear", "test_roc_auc_ovr"), ("apart", "test_recall")]
    assert rows[3]["ORIGINAL"] == round(cv["per_class"]["mean"]["test_roc_auc_ovr"]["unclear"],
                                        4) and rows[3]["GROUP_ENCODED"] is None
    assert format_table(rows).splitlines()[5].endswith(" | not measured |")
    assert class_table({"ORIGINAL": binary}) == []

    logged: dict = {}
    for name in ("log_metrics", "log_text", "log_dict", "log_file", "set_tags"):
        monkeypatch.setattr(tracking, name, lambda run, obj, *a, _n=name, **k:
                            logged.setdefault(_n, []).append((obj, *a)))
    _, table_md = log_utility("run", {"ORIGINAL": cv}, {}, "3 folds", {})
    assert "Per class (one-vs-rest ROC AUC; recall" in table_md
    assert "| class | metric | ORIGINAL |" in table_md and "| unclear | test_recall |" in table_md
    (results, path), = logged["log_dict"]
    assert path == "utility/results.json"
    assert results["cv"]["ORIGINAL"]["per_class"] == cv["per_class"]
    assert not any("unclear" in k for k in logged["log_metrics"][0][0])  # JSON, not metrics
    _, binary_md = log_utility("run", {"ORIGINAL": binary}, {}, "1 fold", {})
    assert binary_md == format_table([{"metric": "test_roc_auc", "ORIGINAL": 0.8}])


def test_binary_and_numeric_results_have_no_per_class_part():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 3))
    binary = utility_of_view("X", x, (x[:, 0] > 0).astype(int), engine="lightgbm",
                                 scheme="tutorial", folds=3, seed=0)
    numeric = cross_validate_forest(x, 2 * x[:, 0], kind="numeric", folds=3, n_estimators=20)
    assert set(binary) == set(numeric) == {"mean", "folds"}
    kw = dict(engine="lightgbm", scheme="tutorial", folds=3, seed=0, importance_rows=0,
              refresh=False)
    assert "class_names" not in Evaluations(x[:, 0], **kw, class_names=["a"])._cv_kw
    assert Evaluations(x[:, 0], **kw, kind="multiclass",
                       class_names=["a", "b"])._cv_kw["class_names"] == ["a", "b"]
