"""Utility of a release: RandomForest cross-validation and permutation importance.

Two forest engines give the same model family (bagged depth-2 trees, sqrt(p) features per split,
impurity-decrease splits):

* ``sklearn``: ``RandomForestClassifier(n_estimators=500, max_depth=2)``, the tutorial's forest.
* ``lightgbm`` (default): LightGBM's random-forest mode, histogram-based and several times faster.
  Its trees are fit on the gradients at the base rate p0, so every leaf outputs
  ``logit(p0) + (leaf positive share - p0) / (p0 (1 - p0))``, and the mean over trees is an
  affine map of the averaged leaf shares that scikit-learn's ``predict_proba`` returns.
  ``HistForestClassifier`` inverts that map, so thresholded metrics (balanced accuracy, F1)
  use scikit-learn's 0.5 vote-share cut. Differences left: bagging without replacement (63.2%
  of rows) instead of the bootstrap, and split thresholds on up to 255 bins. The benchmark and
  the tests compare the two engines on the same folds.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Literal

import numpy as np
from prefect import task
from sklearn.base import BaseEstimator, ClassifierMixin

from cloakflow.tasks.caching import CACHE_EXPIRATION, step_policy

SCORING = ["balanced_accuracy", "f1_weighted", "roc_auc", "average_precision"]
FoldScheme = Literal["stratified-shuffled", "tutorial"]
Engine = Literal["lightgbm", "sklearn"]


class HistForestClassifier(ClassifierMixin, BaseEstimator):
    """A random forest on LightGBM's histogram trees, with scikit-learn-scale probabilities.

    Args:
        n_estimators: trees in the forest.
        max_depth: depth of every tree.
        bagging_fraction: share of rows each tree sees (drawn without replacement).
        max_bin: histogram bins per numeric column.
        random_state: seed for row and feature sampling.
        n_jobs: LightGBM threads.
    """

    def __init__(self, n_estimators: int = 500, max_depth: int = 2,
                 bagging_fraction: float = 0.632, max_bin: int = 255,
                 random_state: int = 42, n_jobs: int = 1):
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.bagging_fraction = bagging_fraction
        self.max_bin = max_bin
        self.random_state = random_state
        self.n_jobs = n_jobs

    def fit(self, X, y):
        import lightgbm as lgb

        X = np.asarray(X, dtype=np.float32)
        y = np.asarray(y)
        self.classes_ = np.unique(y)
        if len(self.classes_) != 2:
            raise ValueError(f"HistForestClassifier is binary; got classes {self.classes_}")
        target = (y == self.classes_[1]).astype(np.int32)
        n_features = X.shape[1]
        self.n_features_in_ = n_features
        self.base_rate_ = float(target.mean())
        self.booster_ = lgb.train(
            {
                "objective": "binary",
                "boosting": "rf",
                "num_leaves": 2 ** self.max_depth,
                "max_depth": self.max_depth,
                "bagging_fraction": self.bagging_fraction,
                "bagging_freq": 1,
                "feature_fraction_bynode": max(int(np.sqrt(n_features)), 1) / n_features,
                "min_data_in_leaf": 1,
                "min_sum_hessian_in_leaf": 0.0,
                "lambda_l2": 0.0,
                "max_bin": self.max_bin,
                "seed": self.random_state,
                "num_threads": self.n_jobs,
                "deterministic": True,
                "force_col_wise": True,
                "verbosity": -1,
            },
            lgb.Dataset(X, label=target, params={"max_bin": self.max_bin, "verbosity": -1}),
            num_boost_round=self.n_estimators,
        )
        return self

    def predict_proba(self, X):
        raw = self.booster_.predict(np.asarray(X, dtype=np.float32), raw_score=True,
                                    num_threads=self.n_jobs)
        # raw_score sums the trees; each leaf holds init + (share - p0) / (p0 (1 - p0))
        mean = raw / self.booster_.num_trees()
        p0 = self.base_rate_
        share = p0 + p0 * (1.0 - p0) * (mean - np.log(p0 / (1.0 - p0)))
        share = np.clip(share, 0.0, 1.0)
        return np.column_stack([1.0 - share, share])

    def predict(self, X):
        return self.classes_[(self.predict_proba(X)[:, 1] > 0.5).astype(int)]


def make_forest(engine: Engine = "lightgbm", seed: int = 42, n_estimators: int = 500,
                max_depth: int = 2, n_jobs: int = 1):
    """The evaluation forest for an engine."""
    if engine == "sklearn":
        from sklearn.ensemble import RandomForestClassifier

        return RandomForestClassifier(n_estimators=n_estimators, max_depth=max_depth,
                                      random_state=seed, n_jobs=n_jobs)
    if engine == "lightgbm":
        return HistForestClassifier(n_estimators=n_estimators, max_depth=max_depth,
                                    random_state=seed, n_jobs=n_jobs)
    raise ValueError(f"unknown forest engine {engine!r} (lightgbm or sklearn)")


def make_folds(scheme: FoldScheme, folds: int, seed: int):
    """Cross-validation splitter.

    ``stratified-shuffled``: seeded shuffled stratified k-fold (the default).
    ``tutorial``: unshuffled stratified k-fold, as ``cross_validate(cv=k)`` does; on a table ordered
    by date every fold is a different period, so it measures drift more than utility.
    """
    from sklearn.model_selection import StratifiedKFold

    if scheme == "stratified-shuffled":
        return StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    if scheme == "tutorial":
        return StratifiedKFold(n_splits=folds, shuffle=False)
    raise ValueError(f"unknown fold scheme {scheme!r} (stratified-shuffled or tutorial)")


def cross_validate_forest(X: np.ndarray, y: np.ndarray, *, engine: Engine = "lightgbm",
                          scheme: FoldScheme = "stratified-shuffled", folds: int = 10,
                          seed: int = 42, n_estimators: int = 500, n_jobs: int = 1
                          ) -> dict[str, Any]:
    """``sklearn.model_selection.cross_validate`` of the evaluation forest.

    Returns:
        ``{"mean": {key: mean over folds}, "folds": {key: [per fold]}}`` with the keys of
        ``cross_validate`` (fit_time, score_time, test_*, train_*).
    """
    from sklearn.model_selection import cross_validate

    res = cross_validate(make_forest(engine, seed, n_estimators, n_jobs=n_jobs), X, y,
                         cv=make_folds(scheme, folds, seed), scoring=SCORING,
                         return_train_score=True)
    return {"mean": {k: float(np.mean(v)) for k, v in res.items()},
            "folds": {k: [float(x) for x in v] for k, v in res.items()}}


def permutation_importances(X: np.ndarray, y: np.ndarray, names: list[str], *,
                            engine: Engine = "lightgbm", seed: int = 42, rows: int = 10_000,
                            repeats: int = 10, n_estimators: int = 500, n_jobs: int = 1
                            ) -> dict[str, Any]:
    """Permutation importance (ROC AUC drop) of a forest fit on all rows.

    Scored with ROC AUC, not accuracy: a depth-2 forest on a rare positive class predicts almost
    only negatives, so accuracy barely moves when a feature is shuffled. ``rows`` is a stratified
    sample scored (all rows if 0 or larger than the table).
    """
    from sklearn.inspection import permutation_importance
    from sklearn.model_selection import train_test_split

    forest = make_forest(engine, seed, n_estimators, n_jobs=n_jobs).fit(X, y)
    idx = np.arange(len(y))
    if rows and rows < len(y):
        idx, _ = train_test_split(idx, train_size=rows, stratify=y, random_state=seed)
        idx = np.sort(idx)
    r = permutation_importance(forest, X[idx], y[idx], scoring="roc_auc", n_repeats=repeats,
                               random_state=seed, n_jobs=1)
    order = np.argsort(-r.importances_mean)
    return {
        "scoring": "roc_auc",
        "rows_scored": int(len(idx)),
        "repeats": repeats,
        "ranking": [{"feature": names[i], "mean": float(r.importances_mean[i]),
                     "std": float(r.importances_std[i])} for i in order],
    }


def plot_importance(result: dict[str, Any], title: str, path: str, top: int = 10) -> str:
    """Horizontal bar chart of the top features with their standard deviations."""
    from cloakflow.tasks.plots import figure

    rows = result["ranking"][:top][::-1]
    with figure(path, size=(7, 0.45 * len(rows) + 1.4), dpi=120) as axes:
        _bars(axes[0, 0], rows, result, title)
    return path


def _bars(ax, rows: list[dict], result: dict[str, Any], title: str) -> None:
    ax.barh([r["feature"] for r in rows], [r["mean"] for r in rows],
            xerr=[r["std"] for r in rows], color="#4C72B0", ecolor="#333333", capsize=3)
    ax.set_xlabel(f"mean drop in ROC AUC when shuffled ({result['repeats']} repeats, "
                  f"{result['rows_scored']} rows)")
    ax.set_title(title)
    ax.axvline(0, color="#999999", linewidth=0.8)


def utility_table(results: dict[str, dict[str, float]]) -> list[dict[str, Any]]:
    """Rows ``{"metric": key, DATASET: mean, ...}`` in cross_validate's key order."""
    names = list(results)
    keys = list(next(iter(results.values())))
    return [{"metric": k, **{n: round(results[n][k], 4) for n in names}} for k in keys]


def format_table(rows: list[dict[str, Any]]) -> str:
    """Markdown rendering of ``utility_table`` rows."""
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join(
            f"{r[c]:.4f}" if isinstance(r[c], float) else str(r[c]) for c in cols) + " |")
    return "\n".join(lines)


def log_utility(parent: str, cv: dict[str, dict], importances: dict[str, dict],
                fold_note: str, timings: dict[str, float],
                reused: list[str] = ()) -> tuple[list[dict], str]:
    """Log the utility of every view to the MLflow run (metrics, table, JSON, importance
    plots; ``reused``: the steps taken from the cache of an earlier identical run, as a tag)
    and print the table; returns (table rows, markdown)."""
    from cloakflow.tasks import tracking

    if reused:
        print(f"reused from the cache of an earlier identical run: {', '.join(sorted(reused))}",
              flush=True)
        tracking.set_tags(parent, {"cloakflow.reused_from_cache": ",".join(sorted(reused))})

    means = {k: v["mean"] for k, v in cv.items()}
    rows = utility_table(means)
    table_md = format_table(rows)
    print(f"utility ({fold_note}):\n{table_md}", flush=True)
    tracking.log_metrics(parent, {f"{ds}.{k}": v for ds, m in means.items() for k, v in m.items()})
    tracking.log_text(parent, f"{fold_note}\n\n{table_md}\n", "utility/table.md")
    tracking.log_dict(parent, {"note": fold_note, "cv": cv, "importance": importances,
                               "timings": timings}, "utility/results.json")
    with tracking.scratch_dir() as tmp:
        for name, result in importances.items():
            png = plot_importance(result, f"Permutation importance, {name} (top 10)",
                                  str(tmp / f"importance_{name}.png"))
            tracking.log_file(parent, png, "utility")
    return rows, table_md


# cached on inputs + this module's source: a rerun after a crash skips finished evaluations
_CACHE = dict(persist_result=True, cache_expiration=CACHE_EXPIRATION,
              cache_policy=step_policy(sys.modules[__name__]))


@task(name="evaluate-utility", **_CACHE)
def evaluate_utility(name: str, X: np.ndarray, y: np.ndarray, engine: Engine,
                     scheme: FoldScheme, folds: int, seed: int, n_jobs: int = 1
                     ) -> dict[str, Any]:
    """Prefect task: cross-validate the forest on one view of the table."""
    t0 = time.perf_counter()
    res = cross_validate_forest(X, y, engine=engine, scheme=scheme, folds=folds, seed=seed,
                                n_jobs=n_jobs)
    m = res["mean"]
    print(f"utility {name}: test ROC AUC {m['test_roc_auc']:.4f}, average precision "
          f"{m['test_average_precision']:.4f} ({folds} folds, {scheme}, {engine}, "
          f"{time.perf_counter() - t0:.1f}s)", flush=True)
    return res


@task(name="permutation-importance", **_CACHE)
def importance(name: str, X: np.ndarray, y: np.ndarray, names: list[str], engine: Engine,
               seed: int, rows: int) -> dict[str, Any]:
    """Prefect task: permutation importance of one view of the table."""
    t0 = time.perf_counter()
    res = permutation_importances(X, y, names, engine=engine, seed=seed, rows=rows)
    top = ", ".join(r["feature"] for r in res["ranking"][:3])
    print(f"importance {name}: top features {top} ({time.perf_counter() - t0:.1f}s)", flush=True)
    return res


class Evaluations:
    """The utility and importance tasks of one run, submitted (on the flow's task runner) as
    views of the table become available; ``results()`` waits for them."""

    def __init__(self, y: np.ndarray, *, engine: Engine, scheme: FoldScheme, folds: int,
                 seed: int, importance_rows: int, refresh: bool):
        self._cv_task = evaluate_utility.with_options(refresh_cache=refresh)
        self._imp_task = importance.with_options(refresh_cache=refresh)
        self._y = y
        self._cv_kw = dict(engine=engine, scheme=scheme, folds=folds, seed=seed)
        self._imp_kw = dict(engine=engine, seed=seed, rows=importance_rows)
        self.cv: dict = {}
        self.imp: dict = {}

    def __call__(self, name: str, x: np.ndarray, columns: list[str],
                 importance: bool = True) -> None:
        self.cv[name] = self._cv_task.submit(name, x, self._y, **self._cv_kw)
        if importance:
            self.imp[name] = self._imp_task.submit(name, x, self._y, columns, **self._imp_kw)

    def results(self) -> tuple[dict, dict, list[str]]:
        """(view -> CV result, view -> importance, the steps reused from the cache)."""
        cv = {k: f.result() for k, f in self.cv.items()}
        imp = {k: f.result() for k, f in self.imp.items()}
        # states are read after the results: before, a future may still be running
        cached = [f"utility:{k}" for k, f in self.cv.items() if f.state.name == "Cached"] + [
            f"importance:{k}" for k, f in self.imp.items() if f.state.name == "Cached"]
        return cv, imp, cached
