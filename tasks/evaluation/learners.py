"""The evaluation learners and their scores per target kind (``profile.target.kind``),
Prefect-free.

The utility of a release (``utility.py``) and TSTR (``tstr.py``) fit the same family of model on
every kind: the tutorial's forest of 500 bagged depth-2 trees.

- ``binary``: ``utility.make_forest`` (scikit-learn's ``RandomForestClassifier`` or the
  LightGBM random forest with scikit-learn-scale probabilities); scored by ROC AUC, average
  precision, balanced accuracy and weighted F1, as before.
- ``multiclass``: ``RandomForestClassifier``, or LightGBM's random-forest mode
  (``LGBMClassifier(boosting_type="rf")``, multiclass softmax over the averaged trees); scored
  by macro one-vs-rest ROC AUC (``roc_auc_ovr``), balanced accuracy, macro F1 and accuracy
  (the multi-class figures of SDMetrics' ML-efficacy metrics); per class, the parts of the
  first and third: each class's one-vs-rest ROC AUC (``class_roc_auc``) and recall
  (``class_recall``), None for a class absent from the rows scored.
- ``numeric``: ``RandomForestRegressor``, or ``LGBMRegressor(boosting_type="rf")``; scored by
  R², MAE and RMSE in the target's units (scikit-learn reports the errors negated).

Folds are stratified on the class for classifiers and plain shuffled k-fold for a numeric
target.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

TargetKind = Literal["binary", "multiclass", "numeric"]

SCORING: dict[str, list[str]] = {
    "binary": ["balanced_accuracy", "f1_weighted", "roc_auc", "average_precision"],
    "multiclass": ["balanced_accuracy", "f1_macro", "roc_auc_ovr", "accuracy"],
    "numeric": ["r2", "neg_mean_absolute_error", "neg_root_mean_squared_error"],
}
# the headline score of a kind: what the console, TSTR and the importance ranking report
HEADLINE: dict[str, str] = {"binary": "roc_auc", "multiclass": "roc_auc_ovr", "numeric": "r2"}
LABEL: dict[str, str] = {"roc_auc": "ROC AUC", "roc_auc_ovr": "macro ROC AUC (one-vs-rest)",
                         "r2": "R²"}


def make_learner(kind: TargetKind, engine: str = "lightgbm", seed: int = 42,
                 n_estimators: int = 500, max_depth: int = 2, n_jobs: int = 1):
    """The evaluation forest for a target kind and engine (see the module docstring).

    Raises:
        ValueError: an unknown kind or engine.
    """
    if kind == "binary":
        from cloakflow.tasks.evaluation.utility import make_forest

        return make_forest(engine, seed, n_estimators, max_depth, n_jobs)
    if kind not in ("multiclass", "numeric"):
        raise ValueError(f"unknown target kind {kind!r} (binary, multiclass or numeric)")
    if engine == "sklearn":
        from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

        cls = RandomForestClassifier if kind == "multiclass" else RandomForestRegressor
        return cls(n_estimators=n_estimators, max_depth=max_depth, random_state=seed,
                   n_jobs=n_jobs)
    if engine == "lightgbm":
        import lightgbm as lgb

        cls = lgb.LGBMClassifier if kind == "multiclass" else lgb.LGBMRegressor
        return cls(boosting_type="rf", n_estimators=n_estimators, max_depth=max_depth,
                   num_leaves=2 ** max_depth, subsample=0.632, subsample_freq=1,
                   colsample_bynode=0.3, min_child_samples=1, reg_lambda=0.0,
                   random_state=seed, n_jobs=n_jobs, deterministic=True,
                   force_col_wise=True, verbose=-1)
    raise ValueError(f"unknown forest engine {engine!r} (lightgbm or sklearn)")


def strong_learner(kind: TargetKind, seed: int = 42):
    """LightGBM's gradient-boosted trees with their defaults (TSTR's second learner)."""
    import lightgbm as lgb

    cls = lgb.LGBMRegressor if kind == "numeric" else lgb.LGBMClassifier
    return cls(random_state=seed, n_jobs=1, verbose=-1)


def make_folds(kind: TargetKind, scheme: str, folds: int, seed: int):
    """Cross-validation splitter: stratified k-fold for classifiers, k-fold for a numeric
    target; ``tutorial`` folds are not shuffled (see ``utility.make_folds``)."""
    from sklearn.model_selection import KFold, StratifiedKFold

    if scheme not in ("stratified-shuffled", "tutorial"):
        raise ValueError(f"unknown fold scheme {scheme!r} (stratified-shuffled or tutorial)")
    shuffle = scheme == "stratified-shuffled"
    cls = KFold if kind == "numeric" else StratifiedKFold
    return cls(n_splits=folds, shuffle=shuffle, random_state=seed if shuffle else None)


def score(kind: TargetKind, model, x: np.ndarray, y: np.ndarray,
          classes: np.ndarray | None = None) -> dict[str, float]:
    """The headline score (and, numeric, MAE) of a fitted ``model`` on (``x``, ``y``).

    ``classes``: every class index of a multiclass target; a model fitted on rows that miss a
    class (a synthetic table) predicts probability 0 for it.

    Returns:
        binary ``{"roc_auc"}``, multiclass ``{"roc_auc_ovr"}``, numeric ``{"r2", "mae"}``.
    """
    from sklearn import metrics

    if kind == "numeric":
        pred = model.predict(x)
        return {"r2": float(metrics.r2_score(y, pred)),
                "mae": float(metrics.mean_absolute_error(y, pred))}
    if kind == "binary":
        return {"roc_auc": float(metrics.roc_auc_score(y, model.predict_proba(x)[:, 1]))}
    classes = np.unique(y) if classes is None else np.asarray(classes)
    labels, full = _present_probabilities(model, x, y, classes)
    if len(labels) == 2:  # two of the classes in ``y``: one ROC curve
        return {"roc_auc_ovr": float(metrics.roc_auc_score(y == labels[1], full[:, 1]))}
    return {"roc_auc_ovr": float(metrics.roc_auc_score(
        y, full, multi_class="ovr", average="macro", labels=labels))}


def class_probabilities(model, x: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """(rows, len(classes)) probabilities of every class in ``classes`` (sorted class indices)
    from a fitted classifier; a class the model never saw in its training rows gets 0."""
    proba = model.predict_proba(x)
    classes = np.asarray(classes)
    full = np.zeros((len(x), len(classes)))
    for j, c in enumerate(model.classes_):
        full[:, np.searchsorted(classes, c)] = proba[:, j]
    return full


def _present_probabilities(model, x: np.ndarray, y: np.ndarray, classes: np.ndarray
                           ) -> tuple[np.ndarray, np.ndarray]:
    """(the classes of ``classes`` present in ``y``, their probabilities renormalised to sum
    to 1 per row): what the macro one-vs-rest ROC AUC averages over."""
    full = class_probabilities(model, x, classes)
    present = np.isin(classes, np.unique(y))
    part = full[:, present]
    return classes[present], part / np.maximum(part.sum(axis=1, keepdims=True), 1e-12)


def class_roc_auc(model, x: np.ndarray, y: np.ndarray,
                  classes: np.ndarray) -> list[float | None]:
    """One-vs-rest ROC AUC of each class of a multiclass target: the parts of ``score``'s
    macro ``roc_auc_ovr`` (same probabilities, renormalised over the classes in ``y``), so
    their mean over the classes present is that figure.

    Args:
        model: a fitted classifier with ``predict_proba`` and ``classes_``.
        x: (rows, width) features; y: (rows,) class indices.
        classes: (k,) every class index of the target, sorted.

    Returns:
        k entries in [0, 1] in the order of ``classes``; None for a class absent from ``y``
        (no positive row) and for every class when ``y`` holds a single one (no negative
        row): ROC AUC is not defined there.
    """
    from sklearn import metrics

    classes = np.asarray(classes)
    labels, full = _present_probabilities(model, x, y, classes)
    if len(labels) < 2:
        return [None] * len(classes)
    if len(labels) == 2:  # scikit-learn reads two labels as a binary target: one curve each
        parts = [metrics.roc_auc_score(y == c, full[:, j]) for j, c in enumerate(labels)]
    else:
        parts = metrics.roc_auc_score(y, full, multi_class="ovr", average=None, labels=labels)
    got = dict(zip(labels.tolist(), parts, strict=True))
    return [float(got[c]) if c in got else None for c in classes.tolist()]


def class_recall(model, x: np.ndarray, y: np.ndarray,
                 classes: np.ndarray) -> list[float | None]:
    """Recall of each class (the share of its rows ``model.predict`` labels right): the
    parts of balanced accuracy, which is their mean over the classes present in ``y``.

    Args:
        model: a fitted classifier; x: (rows, width) features; y: (rows,) class indices.
        classes: (k,) every class index of the target, sorted.

    Returns:
        k entries in [0, 1] in the order of ``classes``; None for a class absent from ``y``
        (recall has no rows to divide by).
    """
    from sklearn import metrics

    recall = metrics.recall_score(y, model.predict(x), labels=np.asarray(classes),
                                  average=None, zero_division=np.nan)
    return [None if np.isnan(r) else float(r) for r in recall]
