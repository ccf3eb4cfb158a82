"""Train on synthetic, test on real (TSTR; Esteban et al. 2017, "Real-valued (medical) time
series generation with recurrent conditional GANs"), Prefect-free.

A learner is fitted on the synthetic rows and scored (ROC AUC) on real control rows that neither
the synthesizer nor the learner saw; beside it, the same learner fitted on the real training
rows (TRTR) and scored on the same control rows is what the synthetic rows are read against.
Two learners: the tutorial's forest (``utility.make_forest``: 500 bagged depth-2 trees, the
utility forest of codes releases) and a strong one, LightGBM's gradient-boosted trees with its
defaults (``lightgbm.LGBMClassifier``).
"""

from __future__ import annotations

import numpy as np

from cloakflow.tasks.evaluation.utility import make_forest


def _learners(seed: int) -> dict:
    import lightgbm as lgb

    return {"forest": make_forest("lightgbm", seed=seed),
            "lightgbm": lgb.LGBMClassifier(random_state=seed, n_jobs=1, verbose=-1)}


def tstr(synthetic_x: np.ndarray, synthetic_y: np.ndarray, train_x: np.ndarray,
         train_y: np.ndarray, control_x: np.ndarray, control_y: np.ndarray,
         seed: int = 42) -> dict:
    """TSTR and TRTR ROC AUC per learner on the control rows.

    Args:
        synthetic_x, train_x, control_x: features in one preprocessed space (rows, width),
            the label's own columns left out.
        synthetic_y, train_y, control_y: 0/1 labels (1 = the profile's positive value).

    Returns:
        ``{learner: {"tstr": auc, "trtr": auc}}`` and ``positive_rate`` of the synthetic and
        the training labels.

    Raises:
        ValueError: a label vector with a single class (no ROC AUC exists), or shapes that
            differ.
    """
    from sklearn.metrics import roc_auc_score

    for name, y in (("synthetic", synthetic_y), ("training", train_y),
                    ("control", control_y)):
        if len(np.unique(y)) < 2:
            raise ValueError(f"the {name} rows have a single label value: TSTR needs both")
    if not synthetic_x.shape[1] == train_x.shape[1] == control_x.shape[1]:
        raise ValueError("synthetic, training and control features differ in width")
    out: dict = {}
    for name in ("forest", "lightgbm"):
        scores = {}
        for kind, (x, y) in (("tstr", (synthetic_x, synthetic_y)), ("trtr", (train_x, train_y))):
            model = _learners(seed)[name].fit(x, y)
            scores[kind] = float(roc_auc_score(control_y, model.predict_proba(control_x)[:, 1]))
        out[name] = scores
    out["positive_rate"] = {"synthetic": float(np.mean(synthetic_y)),
                            "training": float(np.mean(train_y))}
    return out
