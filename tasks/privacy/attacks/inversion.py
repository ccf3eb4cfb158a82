"""Inversion attacks (Prefect-free): the known-plaintext attacker holds the whole release plus a
share ``p`` of source rows matched to their codes, fits codes -> scaled source features (ridge
regression and a small MLP) and reconstructs every other row; the leaked-model attacker decodes
the release with the decoder(s). Both are scored per attribute against a majority/mean baseline."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np

from cloakflow.tasks.privacy.attacks.common import CHUNK_ROWS, Block, predict_chunked

REGRESSORS = ("linear", "mlp")


def score_reconstruction(x_true: np.ndarray, x_hat: np.ndarray,
                         blocks: Sequence[Block]) -> dict[str, dict[str, float]]:
    """Per-attribute success of a reconstruction.

    Categorical: accuracy of the argmax within the attribute's one-hot block, beside the
    majority-class baseline (the share of the most frequent true category: what always guessing
    it scores). Numeric: R^2 and mean absolute error in original units, beside the MAE of
    always guessing the median.
    """
    from sklearn.metrics import r2_score

    out: dict[str, dict[str, float]] = {}
    for b in blocks:
        t, h = x_true[:, b.start:b.stop], x_hat[:, b.start:b.stop]
        if b.kind == "categorical":
            truth = t.argmax(axis=1)
            known = t.max(axis=1) > 0  # rows whose category was unseen in training are skipped
            truth, guess = truth[known], h[known].argmax(axis=1)
            counts = np.bincount(truth, minlength=b.stop - b.start)
            out[b.name] = {"kind": "categorical",
                           "accuracy": float((guess == truth).mean()) if len(truth) else 0.0,
                           "baseline": float(counts.max() / max(len(truth), 1))}
            out[b.name]["gain"] = out[b.name]["accuracy"] - out[b.name]["baseline"]
        else:
            tv, hv = t[:, 0].astype(np.float64), h[:, 0].astype(np.float64)
            to, ho = b.original_units(tv), b.original_units(hv)
            out[b.name] = {"kind": "numeric",  # R^2 on the model's scale (min-max or quantile)
                           "r2": float(r2_score(tv, hv)) if np.ptp(tv) > 0 else 0.0,
                           "mae": float(np.abs(to - ho).mean()),
                           "baseline_mae": float(np.abs(to - np.median(to)).mean())}
    return out


MLP_MAX_ITER = 300  # the MLP attacker's epochs at most


def make_regressor(kind: str, known_rows: int, seed: int):
    """The attacker's code -> features model: ``linear`` (ridge, alpha by leave-one-out) or
    ``mlp`` (one hidden layer of 128 ReLU units, Adam on batches of up to 512 rows, early
    stopping when rows allow)."""
    if kind == "linear":
        from sklearn.linear_model import RidgeCV

        return RidgeCV(alphas=np.logspace(-4, 2, 7))
    if kind == "mlp":
        from sklearn.neural_network import MLPRegressor

        early = known_rows >= 200  # holds out 10% of the known rows to stop on
        return MLPRegressor(hidden_layer_sizes=(128,), max_iter=MLP_MAX_ITER, random_state=seed,
                            batch_size=min(512, int(known_rows * (0.9 if early else 1.0))),
                            early_stopping=early, n_iter_no_change=10)
    raise ValueError(f"unknown regressor {kind!r}")


def known_rows_count(fraction: float, n: int) -> int:
    """How many rows a p-fraction attacker holds (at least 2)."""
    return min(max(math.ceil(fraction * n), 2), n - 1)


def known_plaintext_inversion(codes: np.ndarray, x: np.ndarray, blocks: Sequence[Block],
                              fraction: float, seed: int,
                              regressors: Sequence[str] = ("linear", "mlp"),
                              chunk_rows: int = CHUNK_ROWS) -> dict:
    """Fit code -> features on a random ``fraction`` of rows, score the rest.

    Returns:
        ``{"known_rows", "fraction", "known_index", <regressor>: {"scores", "x_hat",
        "capped"}}`` where ``x_hat`` reconstructs every row (the known rows by their true
        values, as the attacker holds them), ``scores`` covers the rows the attacker did not
        hold and ``capped`` says the regressor stopped at its iteration cap before converging
        (scikit-learn's ``ConvergenceWarning``, kept out of the console): a longer-trained
        attacker may reconstruct more.
    """
    n = len(codes)
    k = known_rows_count(fraction, n)
    known = np.random.default_rng(seed).choice(n, size=k, replace=False)
    unknown = np.setdiff1d(np.arange(n), known)
    out: dict = {"fraction": fraction, "known_rows": int(k), "known_index": known}
    for kind in regressors:
        with warnings.catch_warnings():  # a capped MLP is reported (``capped``), not warned
            from sklearn.exceptions import ConvergenceWarning

            warnings.simplefilter("ignore", ConvergenceWarning)
            model = make_regressor(kind, k, seed).fit(codes[known], x[known])
        x_hat = predict_chunked(lambda c, m=model: m.predict(c).reshape(len(c), -1), codes,
                                chunk_rows)
        x_hat[known] = x[known]
        out[kind] = {"scores": score_reconstruction(x[unknown], x_hat[unknown], blocks),
                     "x_hat": x_hat,
                     "capped": bool(getattr(model, "n_iter_", 0) >= getattr(model, "max_iter",
                                                                             float("inf")))}
    return out


def strongest(scores_by_regressor: dict[str, dict[str, dict]]) -> dict[str, dict]:
    """Per attribute, the result of the regressor that did best on it (largest gain over the
    baseline for a categorical attribute, largest R^2 for a numeric one)."""
    out: dict[str, dict] = {}
    for r, scores in scores_by_regressor.items():
        for attr, s in scores.items():
            key = "gain" if s["kind"] == "categorical" else "r2"
            if attr not in out or s[key] > out[attr][key]:
                out[attr] = {**s, "regressor": r}
    return out
