"""Detection: can a classifier tell synthetic rows from real ones? A classifier two-sample
test (Lopez-Paz and Oquab 2017, "Revisiting Classifier Two-Sample Tests"; SDMetrics calls the
same idea ``LogisticDetection``), Prefect-free.

The real side is the control rows (never trained on, never released), the synthetic side as
many synthetic rows drawn without replacement (seeded), both in one evaluation space (the
release's preprocessor: numerics as quantile-scaled CDF values, categories one-hot). LightGBM's
gradient-boosted trees (its defaults) are fitted on k - 1 folds and score the held-out fold;
the figure is the ROC AUC of the out-of-fold scores over every row: 0.5 when the classifier
cannot tell the two apart, 1.0 when it separates them perfectly. The per-column importances
(summed over a column's block) say which columns give the synthetic rows away.
"""

from __future__ import annotations

import numpy as np

FOLDS = 5
MIN_ROWS = 20  # per side, below which no figure is computed


def detection(x_syn: np.ndarray, x_real: np.ndarray, seed: int, *,
              blocks: list[tuple[str, int, int]] | None = None, folds: int = FOLDS) -> dict:
    """The classifier two-sample test's ROC AUC of ``x_syn`` against ``x_real``.

    Args:
        x_syn: float matrix (n_syn, width), synthetic rows in the evaluation space.
        x_real: float matrix (n_real, width), real rows never trained on (control rows).
        seed: the subsample of synthetic rows, the folds and the classifier.
        blocks: ``(column, start, stop)`` of each source column in the matrix
            (``TablePreprocessor.column_blocks()``), for the importances; None: none.
        folds: stratified folds (>= 2).

    Returns:
        ``{"auc", "rows_per_side", "folds", "classifier", "giveaways"}``, ``giveaways`` the
        three columns with the largest share of the classifier's split gain; or
        ``{"skipped": reason}`` with fewer than ``MIN_ROWS`` rows a side.

    Raises:
        ValueError: matrices of different widths, or fewer than 2 folds.
    """
    import lightgbm as lgb
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold

    x_syn, x_real = np.asarray(x_syn, dtype=np.float32), np.asarray(x_real, dtype=np.float32)
    if x_syn.ndim != 2 or x_real.ndim != 2 or x_syn.shape[1] != x_real.shape[1]:
        raise ValueError(f"detection needs two matrices of one width, got {x_syn.shape} and "
                         f"{x_real.shape}")
    if folds < 2:
        raise ValueError(f"detection needs at least 2 folds, got {folds}")
    n = min(len(x_syn), len(x_real))
    if n < MIN_ROWS:
        return {"skipped": f"{n} rows a side (fewer than {MIN_ROWS})"}
    rng = np.random.default_rng([seed, 7])
    real = x_real[rng.choice(len(x_real), n, replace=False)] if len(x_real) > n else x_real
    syn = x_syn[rng.choice(len(x_syn), n, replace=False)] if len(x_syn) > n else x_syn
    x = np.concatenate([real, syn])
    y = np.concatenate([np.zeros(n, dtype=np.int64), np.ones(n, dtype=np.int64)])
    scores = np.zeros(len(x))
    gain = np.zeros(x.shape[1])
    split = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for fit_rows, test_rows in split.split(x, y):
        model = lgb.LGBMClassifier(random_state=seed, n_jobs=1, verbose=-1,
                                   importance_type="gain")
        model.fit(x[fit_rows], y[fit_rows])
        scores[test_rows] = model.predict_proba(x[test_rows])[:, 1]
        gain += model.feature_importances_
    out = {"auc": float(roc_auc_score(y, scores)), "rows_per_side": int(n), "folds": folds,
           "classifier": "LightGBM gradient-boosted trees (defaults), out-of-fold scores",
           "giveaways": []}
    if blocks and gain.sum() > 0:
        shares = [(name, float(gain[a:b].sum() / gain.sum())) for name, a, b in blocks]
        out["giveaways"] = sorted(shares, key=lambda t: -t[1])[:3]
    return out
