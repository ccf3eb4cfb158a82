import numpy as np
import pytest

from cloakflow.tasks.evaluation.utility import (
    HistForestClassifier,
    cross_validate_forest,
    format_table,
    make_folds,
    permutation_importances,
    plot_importance,
    utility_of_view,
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
    res = utility_of_view("X", X, y, engine="lightgbm", scheme="tutorial", folds=3, seed=0)
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


# ----------------------------------------------------------------- block permutation importance
@pytest.fixture(scope="module")
def categorical_signal():
    """A 3-level categorical (one-hot columns 0-2) that alone decides the label, beside four
    numeric noise columns; blocks name the source columns."""
    rng = np.random.default_rng(7)
    n = 2000
    level = rng.integers(0, 3, n)
    X = np.column_stack([np.eye(3, dtype=np.float32)[level],
                         rng.random((n, 4)).astype(np.float32)])
    y = ((level == 0) ^ (rng.random(n) < 0.1)).astype(int)  # level "a" is positive, 10% flipped
    blocks = [("colour", [0, 1, 2])] + [(f"noise{i}", [3 + i]) for i in range(4)]
    names = [f"colour_{c}" for c in "abc"] + [f"noise{i}" for i in range(4)]
    return X, y, blocks, names


def test_a_categorical_block_ranks_first_as_one_feature(categorical_signal):
    X, y, blocks, names = categorical_signal
    res = permutation_importances(X, y, names, rows=1000, repeats=4, n_estimators=100,
                                  blocks=blocks, seed=3)
    ranking = res["ranking"]
    assert [r["feature"] for r in ranking][0] == "colour"
    assert sorted(r["feature"] for r in ranking) == sorted(n for n, _ in blocks)  # one each
    assert ranking[0]["columns"] == 3 and res["blocks"] == "source columns"
    assert ranking[0]["mean"] > 0.2  # shuffling the level costs most of the ROC AUC
    assert max(r["mean"] for r in ranking[1:]) < ranking[0]["mean"] / 10


def test_block_importance_is_seeded(categorical_signal):
    X, y, blocks, names = categorical_signal
    kw = dict(rows=800, repeats=3, n_estimators=50, blocks=blocks)
    first = permutation_importances(X, y, names, seed=5, **kw)
    assert permutation_importances(X, y, names, seed=5, **kw) == first
    assert permutation_importances(X, y, names, seed=6, **kw) != first


def test_one_column_blocks_give_scikit_learns_numbers(categorical_signal):
    from sklearn.inspection import permutation_importance

    from cloakflow.tasks.evaluation.utility import block_permutation_importance, make_forest

    X, y, _, _ = categorical_signal
    X, y = X[:600], y[:600]
    forest = make_forest("lightgbm", seed=1, n_estimators=30).fit(X, y)
    ours, baseline = block_permutation_importance(
        forest, X, y, [(str(i), [i]) for i in range(X.shape[1])], repeats=3, seed=11)
    theirs = permutation_importance(forest, X, y, scoring="roc_auc", n_repeats=3,
                                    random_state=11, n_jobs=1)
    np.testing.assert_allclose(ours, theirs.importances, atol=1e-12)
    assert 0.5 < float(baseline) <= 1.0


def test_permuting_a_block_keeps_its_rows_one_hot(categorical_signal):
    from cloakflow.tasks.evaluation.utility import block_permutation_importance

    X, y, blocks, _ = categorical_signal
    seen = []

    class Spy:
        def predict_proba(self, A):
            seen.append(A[:, :3].sum(axis=1))
            return np.column_stack([1 - A[:, 0], A[:, 0]])

    drops, _ = block_permutation_importance(Spy(), X, y, blocks[:1], repeats=2, seed=0)
    assert drops.shape == (1, 2) and all(np.all(s == 1) for s in seen)
    assert drops.min() > 0.3  # the spy reads column 0: shuffled, it loses its ROC AUC


def test_progress_lines_and_a_stop_between_permutations(categorical_signal, capsys):
    from cloakflow.tasks import runners

    X, y, blocks, names = categorical_signal
    permutation_importances(X, y, names, rows=500, repeats=1, n_estimators=20, blocks=blocks,
                            label="ORIGINAL", every_s=0.0)
    out = capsys.readouterr().out
    assert "importance ORIGINAL: fitting the forest" in out
    assert "permuting 5 columns x 1 repeats on 500 rows" in out
    assert "importance ORIGINAL: 1/5 columns, " in out and "4/5 columns" in out
    runners.interrupt(15)
    try:
        with pytest.raises(runners.StopRequested, match="stopped by a SIGTERM"):
            permutation_importances(X, y, names, rows=500, repeats=1, n_estimators=20,
                                    blocks=blocks)
        with pytest.raises(runners.StopRequested, match="importance ORIGINAL, block 'colour'"):
            from cloakflow.tasks.evaluation.utility import block_permutation_importance

            class Half:
                def predict_proba(self, A):
                    return np.column_stack([1 - A[:, 3], A[:, 3]])

            block_permutation_importance(Half(), X, y, blocks, what="importance ORIGINAL")
    finally:
        runners.clear_interrupt()


def test_source_blocks_of_a_preprocessor(tiny_profile, tiny_frame):
    from cloakflow.tasks.data.preprocess import TablePreprocessor
    from cloakflow.tasks.evaluation.utility import source_blocks

    pre = TablePreprocessor(tiny_profile).fit(tiny_frame)
    blocks = source_blocks(pre)
    assert [n for n, _ in blocks] == [s.name for s in pre.specs]
    assert [i for _, cols in blocks for i in cols] == list(range(len(pre.output_columns)))
    assert dict(blocks)["city"] == [pre.output_columns.index(f"city_{c}")
                                    for c in ("east", "north", "south", "west")]
