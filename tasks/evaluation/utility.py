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

A multiclass target is also scored per class (``class_scores``: each class's one-vs-rest ROC
AUC and recall on every test fold), named by the class's label and shown in a table beside
the utility table (``class_table``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

from cloakflow.tasks import console, runners
from cloakflow.tasks.evaluation import learners

SCORING = learners.SCORING["binary"]
FoldScheme = Literal["stratified-shuffled", "tutorial"]
Engine = Literal["lightgbm", "sklearn"]
Blocks = Sequence[tuple[str, Sequence[int]]]  # (source column, its matrix column indices)
PROGRESS_EVERY_S = 10.0  # a permutation-importance progress line at most this often


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
            callbacks=[_stop_between_trees],
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


def _stop_between_trees(env) -> None:
    """LightGBM callback after every tree: stop when the process is interrupted (a signal
    reaches the whole process; a run's own ``runners.Stop`` is checked between folds and
    permutations)."""
    runners.check_interrupt(f"forest fit at tree {env.iteration + 1}")


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
                          seed: int = 42, n_estimators: int = 500, n_jobs: int = 1,
                          kind: str = "binary",
                          class_names: Sequence[str] | None = None,
                          stop: runners.Stop | None = None) -> dict[str, Any]:
    """``sklearn.model_selection.cross_validate`` of the evaluation forest for the target's
    ``kind`` (``learners.make_learner``, scored by ``learners.SCORING[kind]``).

    A multiclass target is also scored per class on every test fold (``class_scores``):
    ``class_names[i]`` names class index i (``split.class_names``); None: the index as text.

    Returns:
        ``{"mean": {key: mean over folds}, "folds": {key: [per fold]}}`` with the keys of
        ``cross_validate`` (fit_time, score_time, test_*, train_*); multiclass, also
        ``"per_class"`` (see ``class_scores``).

    Raises:
        StopRequested: the process was interrupted (LightGBM stops between trees), or
            ``stop`` was requested.
    """
    from sklearn.model_selection import cross_validate

    stop = stop or runners.Stop()
    stop.check("cross-validation")
    per_class = kind == "multiclass"
    try:
        res = cross_validate(learners.make_learner(kind, engine, seed, n_estimators,
                                                   n_jobs=n_jobs), X, y,
                             cv=learners.make_folds(kind, scheme, folds, seed),
                             scoring=learners.SCORING[kind], return_train_score=True,
                             return_estimator=per_class, return_indices=per_class)
    except ValueError:  # every fold's fit failed: stopped by an interrupt (or a real error)
        stop.check("cross-validation")
        raise
    stop.check("cross-validation")  # some folds stopped: their scores are NaN
    fitted, indices = res.pop("estimator", None), res.pop("indices", None)
    out = {"mean": {k: float(np.mean(v)) for k, v in res.items()},
           "folds": {k: [float(x) for x in v] for k, v in res.items()}}
    if per_class:
        failed = np.isnan(res[f"test_{learners.HEADLINE[kind]}"])  # a fold whose fit failed
        out["per_class"] = class_scores(
            [None if bad else m for m, bad in zip(fitted, failed, strict=True)],
            indices["test"], X, y, class_names)
    return out


def class_scores(models: Sequence[Any], tests: Sequence[np.ndarray], X: np.ndarray,
                 y: np.ndarray, class_names: Sequence[str] | None = None) -> dict[str, Any]:
    """Per-class figures of a multiclass cross-validation: each class's one-vs-rest ROC AUC
    (``learners.class_roc_auc``: the parts of ``test_roc_auc_ovr``) and recall
    (``learners.class_recall``: the parts of ``test_balanced_accuracy``) on every test fold.

    Args:
        models: the forest fitted on each fold (None: the fold's fit failed).
        tests: each fold's test row indices into ``X`` and ``y``.
        X: (rows, columns) matrix; y: (rows,) class indices.
        class_names: the name of class index i; None: the index as text.

    Returns:
        ``{"mean": {"test_roc_auc_ovr": {class: mean}, "test_recall": {class: mean}},
        "folds": {same keys: {class: [per fold]}}}``, classes (every class in ``y``) named
        and in index order; a fold whose test rows miss the class (or whose fit failed) gives
        None, the mean is over the folds that measured it (None when none did).
    """
    classes = np.unique(y)
    names = [str(class_names[c]) if class_names is not None else str(c)
             for c in classes.tolist()]
    figures = {"test_roc_auc_ovr": learners.class_roc_auc, "test_recall": learners.class_recall}
    folds: dict[str, dict[str, list]] = {k: {n: [] for n in names} for k in figures}
    for model, test in zip(models, tests, strict=True):
        for key, figure in figures.items():
            got = ([None] * len(classes) if model is None
                   else figure(model, X[test], y[test], classes))
            for n, v in zip(names, got, strict=True):
                folds[key][n].append(v)
    mean = {k: {n: _mean_measured(v) for n, v in by_class.items()}
            for k, by_class in folds.items()}
    return {"mean": mean, "folds": folds}


def _mean_measured(values: Sequence[float | None]) -> float | None:
    """The mean of the entries that are not None; None when every one is."""
    measured = [v for v in values if v is not None]
    return float(np.mean(measured)) if measured else None


def source_blocks(pre) -> list[tuple[str, list[int]]]:
    """The blocks of a fitted ``TablePreprocessor``'s matrix (the ORIGINAL view): one per
    source column, with the indices of all its outputs (a categorical's one-hot columns; a
    ``<column>:missing`` flag goes with its column), in matrix order."""
    blocks: dict[str, list[int]] = {}
    for spec, start, stop in pre.column_blocks():
        blocks.setdefault(spec.missing_of or spec.name, []).extend(range(start, stop))
    return list(blocks.items())


def block_permutation_importance(model, X: np.ndarray, y: np.ndarray, blocks: Blocks, *,
                                 repeats: int = 10, seed: int = 42,
                                 progress: Callable[[int, int], None] | None = None,
                                 what: str = "permutation importance", kind: str = "binary",
                                 stop: runners.Stop | None = None
                                 ) -> tuple[np.ndarray, np.ndarray]:
    """Permutation importance of column blocks: the drop in ROC AUC when the rows of a whole
    block are shuffled together (one permutation per block and repeat, the same for all its
    columns, so a one-hot block stays one-hot).

    scikit-learn's ``permutation_importance`` permutes single columns only; this is the same
    procedure over blocks, and with one-column blocks it gives its numbers exactly: ROC AUC of
    ``predict_proba(X)[:, 1]``, a seed drawn from ``RandomState(seed)``, every block's row
    orders from ``RandomState`` of that seed, shuffled again for each repeat.

    Another target ``kind`` is scored by its headline score instead (``learners.score``:
    macro one-vs-rest ROC AUC, or R²).

    Args:
        model: a fitted classifier with ``predict_proba`` (a regressor for ``numeric``).
        X: (rows, columns) matrix scored; y: (rows,) labels of the kind.
        blocks: (name, column indices of X) per block.
        repeats: permutations per block.
        seed: seeds the permutations.
        progress: called as ``progress(blocks done, blocks)`` after every block.
        what: names the computation in the ``StopRequested`` message.
        stop: checked before every permutation (None: the process's interrupt only).

    Returns:
        (importances, baseline): importances (blocks, repeats), the drop in ROC AUC of each
        permutation; baseline, the unpermuted ROC AUC (a 0-d array).

    Raises:
        StopRequested: ``stop`` was requested or the process interrupted (checked before
            every permutation).
        ValueError: a block without columns, or y with a single class.
    """
    from sklearn.metrics import roc_auc_score

    X = np.asarray(X)
    y = np.asarray(y)
    stop = stop or runners.Stop()
    if any(len(cols) == 0 for _, cols in blocks):
        raise ValueError("every block needs at least one column")
    if kind == "binary":
        def scored(m: np.ndarray) -> float:
            return roc_auc_score(y, model.predict_proba(m)[:, 1])
    else:
        classes = np.unique(y) if kind == "multiclass" else None

        def scored(m: np.ndarray) -> float:
            return learners.score(kind, model, m, y, classes)[learners.HEADLINE[kind]]
    baseline = scored(X)
    block_seed = np.random.RandomState(seed).randint(np.iinfo(np.int32).max + 1)
    work = X.copy()
    drops = np.empty((len(blocks), repeats))
    for b, (name, cols) in enumerate(blocks):
        cols = np.asarray(cols, dtype=np.intp)
        rng = np.random.RandomState(block_seed)
        order = np.arange(len(y))
        for r in range(repeats):
            stop.check(f"{what}, block {name!r}")
            rng.shuffle(order)
            work[:, cols] = work[np.ix_(order, cols)]
            drops[b, r] = baseline - scored(work)
        work[:, cols] = X[:, cols]  # restored for the next block
        if progress is not None:
            progress(b + 1, len(blocks))
    return drops, np.asarray(baseline)


def permutation_importances(X: np.ndarray, y: np.ndarray, names: list[str], *,
                            engine: Engine = "lightgbm", seed: int = 42, rows: int = 10_000,
                            repeats: int = 10, n_estimators: int = 500, n_jobs: int = 1,
                            blocks: Blocks | None = None, label: str | None = None,
                            every_s: float = PROGRESS_EVERY_S,
                            kind: str = "binary",
                            stop: runners.Stop | None = None) -> dict[str, Any]:
    """Permutation importance (ROC AUC drop) of a forest fit on all rows, per block.

    Scored with ROC AUC, not accuracy: a depth-2 forest on a rare positive class predicts almost
    only negatives, so accuracy barely moves when a feature is shuffled. ``rows`` is a stratified
    sample scored (all rows if 0 or larger than the table). A multiclass target is scored by
    macro one-vs-rest ROC AUC, a numeric one by R² (``kind``, ``learners.HEADLINE``).

    Args:
        X: (rows, columns) matrix; y: (rows,) labels of the kind; names: one per column of X.
        blocks: (source column, column indices of X) per feature ranked: each permuted as a
            whole (``block_permutation_importance``; ``source_blocks`` gives a preprocessor's).
            None: one block per column, named by ``names``.
        label: with it, progress lines on stdout: ``importance <label>: ...`` after the fit
            and at most every ``every_s`` seconds while permuting.
        stop: checked before every permutation (``block_permutation_importance``).

    Returns:
        ``{"scoring", "rows_scored", "repeats", "blocks", "ranking": [{"feature", "mean",
        "std", "columns"}, ...]}``, the ranking by mean drop (``columns``: the block's width).

    Raises:
        StopRequested: the process was interrupted (between trees and permutations).
    """
    from sklearn.model_selection import train_test_split

    if blocks is None:
        blocks = [(n, [i]) for i, n in enumerate(names)]
    t0 = time.perf_counter()
    if label:
        print(f"importance {label}: fitting the forest ({engine}, {n_estimators} trees) on "
              f"{X.shape[0]} rows x {X.shape[1]} columns", flush=True)
    forest = learners.make_learner(kind, engine, seed, n_estimators, n_jobs=n_jobs).fit(X, y)
    idx = np.arange(len(y))
    if rows and rows < len(y):
        idx, _ = train_test_split(idx, train_size=rows, random_state=seed,
                                  stratify=None if kind == "numeric" else y)
        idx = np.sort(idx)
    if label:
        print(f"importance {label}: forest fitted in {time.perf_counter() - t0:.1f} s; "
              f"permuting {len(blocks)} columns x {repeats} repeats on {len(idx)} rows",
              flush=True)
    last = [time.perf_counter()]

    def progress(done: int, total: int) -> None:
        now = time.perf_counter()
        if label and done < total and now - last[0] >= every_s:
            last[0] = now
            print(f"importance {label}: {done}/{total} columns, {now - t0:.0f} s", flush=True)

    drops, _ = block_permutation_importance(forest, X[idx], y[idx], blocks, repeats=repeats,
                                            seed=seed, progress=progress,
                                            what=f"importance {label or ''}".strip(), kind=kind,
                                            stop=stop)
    means, stds = drops.mean(axis=1), drops.std(axis=1)
    order = np.argsort(-means, kind="stable")
    return {
        "scoring": learners.HEADLINE[kind],
        "rows_scored": int(len(idx)),
        "repeats": repeats,
        "blocks": "source columns" if any(len(c) > 1 for _, c in blocks) else "columns",
        "ranking": [{"feature": blocks[i][0], "mean": float(means[i]), "std": float(stds[i]),
                     "columns": len(blocks[i][1])} for i in order],
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
    metric = learners.LABEL.get(result.get("scoring", "roc_auc"), result.get("scoring"))
    ax.set_xlabel(f"mean drop in {metric} when shuffled ({result['repeats']} repeats, "
                  f"{result['rows_scored']} rows)")
    ax.set_title(title)
    ax.axvline(0, color="#999999", linewidth=0.8)


def utility_table(results: dict[str, dict[str, float]]) -> list[dict[str, Any]]:
    """Rows ``{"metric": key, DATASET: mean, ...}`` in cross_validate's key order; an error
    scikit-learn reports negated (``test_neg_mean_absolute_error``) is shown as the error
    itself (``test_mean_absolute_error``, in the target's units)."""
    names = list(results)
    keys = list(next(iter(results.values())))
    rows = []
    for k in keys:
        sign, shown = (-1, k.replace("_neg_", "_", 1)) if "_neg_" in k else (1, k)
        rows.append({"metric": shown, **{n: round(sign * results[n][k], 4) for n in names}})
    return rows


def class_table(cv: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows ``{"class": name, "metric": key, VIEW: mean, ...}`` of the per-class figures
    (``class_scores``) of the views that have them (a multiclass target), ROC AUC rows first,
    classes in index order; a figure not measured is None. Empty: no view has them."""
    views = {v: r["per_class"]["mean"] for v, r in cv.items() if "per_class" in r}
    if not views:
        return []
    first = next(iter(views.values()))
    return [{"class": name, "metric": key, **{
        v: None if m[key].get(name) is None else round(m[key][name], 4)
        for v, m in views.items()}} for key in first for name in first[key]]


def format_table(rows: list[dict[str, Any]]) -> str:
    """Markdown rendering of ``utility_table`` (or ``class_table``) rows; None reads
    "not measured"."""
    cols = list(rows[0])

    def cell(v: Any) -> str:
        return f"{v:.4f}" if isinstance(v, float) else "not measured" if v is None else str(v)

    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join(cell(r[c]) for c in cols) + " |")
    return "\n".join(lines)


def log_utility(parent: str, cv: dict[str, dict], importances: dict[str, dict],
                fold_note: str, timings: dict[str, float],
                reused: list[str] = ()) -> tuple[list[dict], str]:
    """Log the utility of every view to the MLflow run (metrics, table, JSON, importance
    plots; ``reused``: the steps taken from the cache of an earlier identical run, as a tag)
    and print the table; returns (table rows, markdown).

    A multiclass target's per-class figures (``class_table``) follow the table in the
    markdown and are in ``utility/results.json`` (under each view's ``per_class``), not MLflow
    metrics: a figure may be None, and two labels can clean up to one metric name."""
    from cloakflow.tasks import console, tracking

    if reused:
        console.step("reused from the cache of an earlier identical run (no retraining): "
                     f"{', '.join(sorted(reused))}; --no-cache recomputes")
        tracking.set_tags(parent, {"cloakflow.reused_from_cache": ",".join(sorted(reused))})

    means = {k: v["mean"] for k, v in cv.items()}
    rows = utility_table(means)
    table_md = format_table(rows)
    per_class = class_table(cv)
    if per_class:
        table_md += ("\n\nPer class (one-vs-rest ROC AUC; recall, whose mean over the "
                     "classes is balanced accuracy), mean over the test folds:\n\n"
                     + format_table(per_class))
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


def utility_of_view(name: str, X: np.ndarray, y: np.ndarray, engine: Engine,
                     scheme: FoldScheme, folds: int, seed: int, n_jobs: int = 1,
                     kind: str = "binary",
                     class_names: list[str] | None = None,
                     stop: runners.Stop | None = None) -> dict[str, Any]:
    """Cross-validate the forest on one view of the table (target ``kind``; ``class_names``: a
    multiclass target's; ``stop``: see ``cross_validate_forest``), printing the headline
    figures (its cached Prefect task is ``tasks.evaluation.steps.evaluate_utility``)."""
    t0 = time.perf_counter()
    res = cross_validate_forest(X, y, engine=engine, scheme=scheme, folds=folds, seed=seed,
                                n_jobs=n_jobs, kind=kind, class_names=class_names, stop=stop)
    m = res["mean"]
    shown = {"binary": ("ROC AUC", "roc_auc", "average precision", "average_precision"),
             "multiclass": ("macro ROC AUC", "roc_auc_ovr", "balanced accuracy",
                            "balanced_accuracy"),
             "numeric": ("R²", "r2", "MAE", "neg_mean_absolute_error")}[kind]
    second = abs(m[f"test_{shown[3]}"])  # scikit-learn reports errors negated
    console.step(f"utility {name}: test {shown[0]} {m[f'test_{shown[1]}']:.4f}, {shown[2]} "
          f"{second:.4g} ({folds} folds, {scheme}, {engine}, "
          f"{time.perf_counter() - t0:.1f}s)")
    return res


def importance_of_view(name: str, X: np.ndarray, y: np.ndarray, names: list[str], engine: Engine,
               seed: int, rows: int, blocks: list[tuple[str, list[int]]] | None = None,
               kind: str = "binary", stop: runners.Stop | None = None) -> dict[str, Any]:
    """Permutation importance of one view of the table, per block (``blocks``: (source column,
    its column indices), see ``permutation_importances``; None: per column; ``stop``: checked
    before every permutation), with progress
    lines while it runs (its Prefect task is ``tasks.evaluation.steps.importance``)."""
    t0 = time.perf_counter()
    res = permutation_importances(X, y, names, engine=engine, seed=seed, rows=rows,
                                  blocks=blocks, label=name, kind=kind, stop=stop)
    top = ", ".join(r["feature"] for r in res["ranking"][:3])
    console.step(f"importance {name}: top features {top} ({time.perf_counter() - t0:.1f}s)")
    return res
