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
  (the multi-class figures of SDMetrics' ML-efficacy metrics).
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
    proba = model.predict_proba(x)
    if kind == "binary":
        return {"roc_auc": float(metrics.roc_auc_score(y, proba[:, 1]))}
    classes = np.unique(y) if classes is None else np.asarray(classes)
    full = np.zeros((len(x), len(classes)))
    for j, c in enumerate(model.classes_):
        full[:, np.searchsorted(classes, c)] = proba[:, j]
    present = np.isin(classes, np.unique(y))  # the macro average over classes in ``y``
    full = full[:, present] / np.maximum(full[:, present].sum(axis=1, keepdims=True), 1e-12)
    if present.sum() == 2:  # two of the classes in ``y``: one ROC curve
        return {"roc_auc_ovr": float(metrics.roc_auc_score(y == classes[present][1],
                                                           full[:, 1]))}
    return {"roc_auc_ovr": float(metrics.roc_auc_score(
        y, full, multi_class="ovr", average="macro", labels=classes[present]))}
