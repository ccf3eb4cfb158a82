"""Train on synthetic, test on real (TSTR; Esteban et al. 2017, "Real-valued (medical) time
series generation with recurrent conditional GANs"), Prefect-free.

A learner is fitted on the synthetic rows and scored on real control rows that neither the
synthesizer nor the learner saw; beside it, the same learner fitted on the real training rows
(TRTR) and scored on the same control rows is what the synthetic rows are read against. The
score follows the target's kind (``learners.HEADLINE``): ROC AUC for a binary target, macro
one-vs-rest ROC AUC for a multiclass one, R² (and MAE) for a numeric one. Two learners: the
tutorial's forest (``learners.make_learner``: 500 bagged depth-2 trees, the utility forest of
codes releases) and a strong one, LightGBM's gradient-boosted trees with its defaults. A
multiclass target is also scored per class: each class's one-vs-rest ROC AUC
(``learners.class_roc_auc``), for TSTR and TRTR.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cloakflow.tasks.evaluation.learners import (
    HEADLINE,
    class_roc_auc,
    make_learner,
    score,
    strong_learner,
)


def tstr(synthetic_x: np.ndarray, synthetic_y: np.ndarray, train_x: np.ndarray,
         train_y: np.ndarray, control_x: np.ndarray, control_y: np.ndarray,
         seed: int = 42, kind: str = "binary",
         class_names: Sequence[str] | None = None) -> dict:
    """TSTR and TRTR scores per learner on the control rows.

    Args:
        synthetic_x, train_x, control_x: features in one preprocessed space (rows, width),
            the label's own columns left out.
        synthetic_y, train_y, control_y: labels: 0/1 (1 = the profile's positive value), a
            class index (multiclass), or the target's value (numeric).
        kind: the target's kind (``profile.target.kind``).
        class_names: a multiclass target's: ``class_names[i]`` names class index i (the
            target block's categories); None: the index as text.

    Returns:
        ``{learner: {"tstr": score, "trtr": score, ...}}`` with ``metric`` naming the score
        (numeric: also ``tstr_mae`` and ``trtr_mae``; multiclass: also ``tstr_per_class`` and
        ``trtr_per_class``, ``{class: one-vs-rest ROC AUC}`` over every class of the three
        label vectors, in index order, None for a class absent from the control rows), and
        for a classifier ``positive_rate`` (binary) or ``class_shares`` (multiclass, in the
        same class order) of the synthetic and the training labels.

    Raises:
        ValueError: a label vector with a single class (no ROC AUC exists) or a constant
            numeric target, or shapes that differ.
    """
    for name, y in (("synthetic", synthetic_y), ("training", train_y),
                    ("control", control_y)):
        if len(np.unique(y)) < 2:
            raise ValueError(f"the {name} rows have a single label value: TSTR needs two")
    if not synthetic_x.shape[1] == train_x.shape[1] == control_x.shape[1]:
        raise ValueError("synthetic, training and control features differ in width")
    classes = (np.unique(np.concatenate([synthetic_y, train_y, control_y]))
               if kind == "multiclass" else None)
    names = ([str(class_names[c]) if class_names is not None else str(c)
              for c in classes.tolist()] if kind == "multiclass" else [])
    metric = HEADLINE[kind]
    out: dict = {"metric": metric}
    for name in ("forest", "lightgbm"):
        scores = {}
        for side, (x, y) in (("tstr", (synthetic_x, synthetic_y)),
                             ("trtr", (train_x, train_y))):
            model = (make_learner(kind, "lightgbm", seed) if name == "forest"
                     else strong_learner(kind, seed)).fit(x, y)
            got = score(kind, model, control_x, control_y, classes)
            scores[side] = got[metric]
            if kind == "numeric":
                scores[f"{side}_mae"] = got["mae"]
            elif kind == "multiclass":
                scores[f"{side}_per_class"] = dict(zip(
                    names, class_roc_auc(model, control_x, control_y, classes), strict=True))
        out[name] = scores
    if kind == "binary":
        out["positive_rate"] = {"synthetic": float(np.mean(synthetic_y)),
                                "training": float(np.mean(train_y))}
    elif kind == "multiclass":
        out["class_shares"] = {
            side: [float(np.mean(y == c)) for c in classes]
            for side, y in (("synthetic", synthetic_y), ("training", train_y))}
    return out
