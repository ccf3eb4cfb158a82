import numpy as np
import pytest

from cloakflow.tasks.evaluation.utility import (
    HistForestClassifier,
    cross_validate_forest,
    evaluate_utility,
    format_table,
    make_folds,
    permutation_importances,
    plot_importance,
    utility_table,
)


@pytest.fixture(scope="module")
def xy():
    rng = np.random.default_rng(0)
    X = rng.random((3000, 8)).astype(np.float32)
    X[:, 3] = (X[:, 3] > 0.7).astype(np.float32)  # a one-hot-like column
    logit = 3 * X[:, 0] + 2 * X[:, 3] - 4 + rng.normal(0, 0.7, 3000)
    return X, (logit > 0).astype(int)


def test_hist_forest_probabilities_are_vote_shares(xy):
    X, y = xy
    m = HistForestClassifier(n_estimators=50, random_state=1).fit(X, y)
    p = m.predict_proba(X)
    assert p.shape == (3000, 2) and np.allclose(p.sum(1), 1)
    # leaf shares of depth-2 trees average to the base rate over the training rows
    assert abs(p[:, 1].mean() - y.mean()) < 0.02
    assert 0 < p[:, 1].min() and p[:, 1].max() < 1  # not clipped: the map is right
    assert set(m.predict(X)) <= {0, 1}


def test_engines_agree_on_the_same_folds(xy):
    X, y = xy
    kw = dict(scheme="stratified-shuffled", folds=3, seed=0, n_estimators=200)
    sk = cross_validate_forest(X, y, engine="sklearn", **kw)["mean"]
    lg = cross_validate_forest(X, y, engine="lightgbm", **kw)["mean"]
    assert abs(sk["test_roc_auc"] - lg["test_roc_auc"]) < 0.01
    assert abs(sk["test_average_precision"] - lg["test_average_precision"]) < 0.02
    assert lg["test_roc_auc"] > 0.75


def test_fold_schemes():
    y = np.array([0, 1] * 10)
    tutorial = [te.tolist() for _, te in make_folds("tutorial", 2, 0).split(y, y)]
    assert tutorial[0] == list(range(10))  # unshuffled: contiguous blocks
    shuffled = [te.tolist() for _, te in make_folds("stratified-shuffled", 2, 0).split(y, y)]
    assert shuffled[0] != list(range(10))
    with pytest.raises(ValueError, match="fold scheme"):
        make_folds("random", 2, 0)


def test_evaluate_task_returns_every_key(xy):
    X, y = xy
    res = evaluate_utility.fn("X", X, y, engine="lightgbm", scheme="tutorial", folds=3, seed=0)
    assert set(res["mean"]) == {"fit_time", "score_time"} | {
        f"{s}_{m}" for s in ("test", "train") for m in
        ("balanced_accuracy", "f1_weighted", "roc_auc", "average_precision")}
    assert len(res["folds"]["test_roc_auc"]) == 3


def test_permutation_importance_ranks_the_signal_first(xy, tmp_path):
    X, y = xy
    names = [f"f{i}" for i in range(8)]
    res = permutation_importances(X, y, names, rows=1000, repeats=3, n_estimators=100)
    assert res["ranking"][0]["feature"] == "f0" and res["rows_scored"] == 1000
    noise = [r["mean"] for r in res["ranking"] if r["feature"] in {"f5", "f6", "f7"}]
    assert max(noise) < res["ranking"][0]["mean"] / 5
    png = plot_importance(res, "test", str(tmp_path / "imp.png"))
    assert open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_table_formatting():
    rows = utility_table({"A": {"test_roc_auc": 0.81234}, "B": {"test_roc_auc": 0.7}})
    assert rows == [{"metric": "test_roc_auc", "A": 0.8123, "B": 0.7}]
    assert format_table(rows).splitlines()[2] == "| test_roc_auc | 0.8123 | 0.7000 |"


def test_hist_forest_rejects_multiclass():
    with pytest.raises(ValueError, match="binary"):
        HistForestClassifier().fit(np.zeros((3, 1)), [0, 1, 2])


def test_sklearn_engine_is_the_tutorials_forest():
    from cloakflow.tasks.evaluation.utility import make_forest

    f = make_forest("sklearn", seed=42)
    assert (f.n_estimators, f.max_depth, f.random_state) == (500, 2, 42)
