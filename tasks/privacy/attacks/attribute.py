"""Sensitive-attribute inference by fresh attackers, trained after release (Prefect-free).

An attacker holds the published rows and the true sensitive values of a known share p of
them (the known-plaintext setting of the codes attacks: p = 0.1%, 1%, 10% by default, the
profile's ``known_fractions``); it trains a classifier on those rows and infers the value of
every other row. Three attackers, none of them the adversary a privatizer trained against (an
adversary at chance during training says nothing: a classifier trained afterwards recovers the
attribute "substantially" better, Elazar & Goldberg 2018, "Adversarial removal of demographic
attributes from text data"): scikit-learn's logistic regression, LightGBM's gradient-boosted
trees and scikit-learn's MLP.

Each attacker is scored (ROC AUC; macro one-vs-rest for more than two values; read two-sided,
0.5 + |AUC - 0.5|: an attacker reliably wrong is as informative as one reliably right) on the
same rows in three views:

- **release**: the published rows (what this module measures);
- **imputation**: the real rows' non-sensitive columns only: what a release that only drops
  the sensitive columns leaks, the floor a privatizer must go below (the sensitive value is
  imputed from the columns it correlates with);
- **raw**: the real rows with every other column (the other sensitive ones included): the
  leakage before release.

Beside them, the majority floor: AUC 0.5, and the majority value's share (an attacker's
accuracy without any data).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import numpy as np
from sklearn.exceptions import ConvergenceWarning

ATTACKERS = ("logistic", "lightgbm", "mlp")
TEST_ROWS = 10_000  # rows each attacker is scored on (a seeded sample of the unknown rows)
MIN_KNOWN = 10  # fewest known rows an attacker trains on


def make_attacker(name: str, seed: int, rows: int = 1000):
    """A fresh attacker: ``logistic`` (scikit-learn LogisticRegression on standardised
    columns), ``lightgbm`` (LGBMClassifier, 200 trees) or ``mlp`` (scikit-learn
    MLPClassifier, one hidden layer of 64; early stopping on 10% of its ``rows`` known rows
    when they are 200 or more).

    Raises:
        ValueError: an unknown attacker.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if name == "logistic":
        return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    if name == "lightgbm":
        from lightgbm import LGBMClassifier

        return LGBMClassifier(n_estimators=200, random_state=seed, verbose=-1, n_jobs=1)
    if name == "mlp":
        return make_pipeline(StandardScaler(), MLPClassifier(
            (64,), max_iter=300, early_stopping=rows >= 200, random_state=seed))
    raise ValueError(f"unknown attacker {name!r}; choose one of {list(ATTACKERS)}")


def two_sided_auc(y: np.ndarray, proba: np.ndarray, classes: np.ndarray) -> float | None:
    """0.5 + |AUC - 0.5| of class probabilities ``proba`` (rows, len(classes)) for labels
    ``y``: binary ROC AUC of the second class, else the macro one-vs-rest ROC AUC over the
    classes present in ``y`` (None with fewer than two)."""
    from sklearn.metrics import roc_auc_score

    present = [i for i, c in enumerate(classes) if np.any(y == c)]
    if len(present) < 2:
        return None
    if len(classes) == 2:
        auc = roc_auc_score(y == classes[1], proba[:, 1])
    else:
        auc = float(np.mean([roc_auc_score(y == classes[i], proba[:, i]) for i in present]))
    return float(0.5 + abs(auc - 0.5))


def _scores(model, x: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Probabilities of every class of ``classes`` (zeros for one the model never saw)."""
    out = np.zeros((len(x), len(classes)))
    proba = model.predict_proba(x)
    for j, c in enumerate(model.classes_):
        out[:, int(np.searchsorted(classes, c))] = proba[:, j]
    return out


def attribute_inference(views: Mapping[str, np.ndarray], labels: np.ndarray,
                        fractions: Sequence[float], seed: int,
                        attackers: Sequence[str] = ATTACKERS) -> dict:
    """Fresh attackers inferring one sensitive attribute, per known share and view.

    Args:
        views: view name -> feature matrix (rows, width), rows aligned across views
            (``release``, ``imputation``, ``raw``: see the module docstring).
        labels: the attribute's value index per row, shape (rows,).
        fractions: the known shares p in (0, 1).
        seed: the known rows' choice, the test rows' sample and the attackers' seeds.

    An attacker whose predictions are one constant (it could not fit: LightGBM makes no split
    on a few known rows) scores None, not 0.5.

    Returns:
        ``{"majority": the majority value's share, "values": distinct values, "by_fraction":
        {p: {"known_rows": k, "attackers": {attacker: {view: two-sided AUC or None}}}},
        "strongest": {view: the largest AUC over attackers and shares}, "gain_over_imputation":
        the strongest release AUC minus the strongest imputation AUC}`` (strongest against
        strongest: a maximum of per-attacker differences would grow with the number of
        attackers by chance alone); a share whose known rows hold one value only is skipped
        (``"skipped"``).

    Raises:
        ValueError: views of different row counts, or labels of another length.
    """
    n = len(labels)
    if any(len(v) != n for v in views.values()):
        raise ValueError("every view needs one row per label")
    classes, counts = np.unique(labels, return_counts=True)
    out: dict = {"majority": float(counts.max() / n), "values": int(len(classes)),
                 "by_fraction": {}}
    rng = np.random.default_rng([seed, 11])
    best: dict[str, float] = {}
    for p in fractions:
        k = max(MIN_KNOWN, int(round(p * n)))
        order = rng.permutation(n)
        known, rest = order[:k], order[k:]
        test = rest if len(rest) <= TEST_ROWS else rng.choice(rest, TEST_ROWS, replace=False)
        entry: dict = {"known_rows": int(k), "attackers": {}}
        out["by_fraction"][str(p)] = entry
        if len(np.unique(labels[known])) < 2 or len(test) < 2:
            entry["skipped"] = "the known rows hold one value only"
            continue
        for name in attackers:
            scores = {}
            for view, x in views.items():
                with warnings.catch_warnings():  # a few known rows: not converging is the point
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    model = make_attacker(name, seed, k).fit(x[known], labels[known])
                proba = _scores(model, x[test], classes)
                # a model that could not fit (LightGBM splits nothing on a few rows)
                # predicts one constant: "could not fit", not chance
                scores[view] = None if np.ptp(proba, axis=0).max() < 1e-12 else \
                    two_sided_auc(labels[test], proba, classes)
                if scores[view] is not None:
                    best[view] = max(best.get(view, 0.0), scores[view])
            entry["attackers"][name] = scores
    out["strongest"] = best
    out["gain_over_imputation"] = (best["release"] - best["imputation"]
                                   if "release" in best and "imputation" in best else None)
    return out
