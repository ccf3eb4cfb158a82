"""Privacy attacks on an encoded release: the maths, free of Prefect and MLflow.

Every attack states what its attacker knows:

- *known-plaintext inversion*: the whole release plus a share ``p`` of source rows matched to
  their codes; fits code -> scaled source features (ridge regression and a small MLP) and
  reconstructs every other row.
- *leaked-model inversion*: the release plus the decoder(s).
- *re-identification*: a target's true quasi-identifiers plus the p = 1% inversion of the whole
  release; links the target to the nearest reconstructed row on the quasi-identifiers.
- *membership inference*: the trained autoencoder and a candidate row; thresholds the row's
  reconstruction loss (training rows vs held-out control rows).
- *distance to closest record*: how close decoded released rows lie to training rows, against
  how close unseen control rows lie to them.

Every computation over all rows is chunked (``chunk_rows``): no step holds a rows-by-rows matrix.

Nothing here calls a Keras model (``run_attacks`` receives the decoded view and the
reconstruction losses), so the work can run in a worker process.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from cloakflow.tasks.data.preprocess import TablePreprocessor
from cloakflow.tasks.data.profile import DatasetProfile

CHUNK_ROWS = 1024
POLICY_FRACTION = 0.01
REGRESSORS = ("linear", "mlp")


@dataclass(frozen=True)
class Block:
    """One source attribute and its columns in the preprocessed matrix."""

    name: str
    kind: str  # "numeric" or "categorical"
    start: int
    stop: int
    span: float = 1.0  # max - min of a numeric column (to report errors in original units)


def blocks_of(pre: TablePreprocessor) -> list[Block]:
    """Attribute blocks of a fitted preprocessor."""
    return [Block(s.name, s.kind, a, b, (s.maximum - s.minimum) or 1.0)
            for s, a, b in pre.column_blocks()]


# --------------------------------------------------------------------------- scoring
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
            out[b.name] = {"kind": "numeric",
                           "r2": float(r2_score(tv, hv)) if np.ptp(tv) > 0 else 0.0,
                           "mae": float(np.abs(tv - hv).mean() * b.span),
                           "baseline_mae": float(np.abs(tv - np.median(tv)).mean() * b.span)}
    return out


# --------------------------------------------------------------------------- inversion
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
        return MLPRegressor(hidden_layer_sizes=(128,), max_iter=300, random_state=seed,
                            batch_size=min(512, int(known_rows * (0.9 if early else 1.0))),
                            early_stopping=early, n_iter_no_change=10)
    raise ValueError(f"unknown regressor {kind!r}")


def predict_chunked(fn: Callable[[np.ndarray], np.ndarray], x: np.ndarray,
                    chunk_rows: int = CHUNK_ROWS) -> np.ndarray:
    """Apply ``fn`` to ``x`` in row chunks."""
    parts = [np.asarray(fn(x[i:i + chunk_rows]), dtype=np.float32)
             for i in range(0, len(x), chunk_rows)]
    return np.concatenate(parts, axis=0)


def known_rows_count(fraction: float, n: int) -> int:
    """How many rows a p-fraction attacker holds (at least 2)."""
    return min(max(math.ceil(fraction * n), 2), n - 1)


def known_plaintext_inversion(codes: np.ndarray, x: np.ndarray, blocks: Sequence[Block],
                              fraction: float, seed: int,
                              regressors: Sequence[str] = ("linear", "mlp"),
                              chunk_rows: int = CHUNK_ROWS) -> dict:
    """Fit code -> features on a random ``fraction`` of rows, score the rest.

    Returns:
        ``{"known_rows", "fraction", "known_index", <regressor>: {"scores", "x_hat"}}`` where
        ``x_hat`` reconstructs every row (the known rows by their true values, as the
        attacker holds them) and ``scores`` covers the rows the attacker did not hold.
    """
    n = len(codes)
    k = known_rows_count(fraction, n)
    known = np.random.default_rng(seed).choice(n, size=k, replace=False)
    unknown = np.setdiff1d(np.arange(n), known)
    out: dict = {"fraction": fraction, "known_rows": int(k), "known_index": known}
    for kind in regressors:
        model = make_regressor(kind, k, seed).fit(codes[known], x[known])
        x_hat = predict_chunked(lambda c, m=model: m.predict(c).reshape(len(c), -1), codes,
                                chunk_rows)
        x_hat[known] = x[known]
        out[kind] = {"scores": score_reconstruction(x[unknown], x_hat[unknown], blocks),
                     "x_hat": x_hat}
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


# --------------------------------------------------------------------------- re-identification
def unique_share(qi_rows: np.ndarray) -> float:
    """Share of rows whose quasi-identifier combination occurs once."""
    if len(qi_rows) == 0:
        return 0.0
    _, inverse, counts = np.unique(qi_rows, axis=0, return_inverse=True, return_counts=True)
    return float((counts[inverse.ravel()] == 1).mean())


def nearest_rows(queries: np.ndarray, candidates: np.ndarray, chunk_rows: int = CHUNK_ROWS,
                 precise: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Index of and Euclidean distance to each query's nearest candidate.

    Squared distances are computed for ``chunk_rows`` queries at a time (a ``chunk_rows`` x
    candidates block, never queries x candidates); the distance to the chosen candidate is then
    recomputed exactly in float64. ``precise=False`` ranks candidates in float32 (about 1.7x
    faster), which may swap two candidates whose squared distances differ by less than ~1e-6;
    identity questions (re-identification) use ``precise=True``.
    """
    dtype = np.float64 if precise else np.float32
    cand = np.ascontiguousarray(candidates, dtype=dtype)
    cand_sq = np.einsum("ij,ij->i", cand, cand)
    idx = np.empty(len(queries), dtype=np.int64)
    dist = np.empty(len(queries), dtype=np.float64)
    step = max(1, chunk_rows // 2 if precise else chunk_rows)
    for i in range(0, len(queries), step):
        q = np.ascontiguousarray(queries[i:i + step], dtype=dtype)
        d2 = q @ cand.T
        d2 *= -2.0
        d2 += cand_sq[None, :]
        j = d2.argmin(axis=1)  # the query's own squared norm does not change the argmin
        idx[i:i + step] = j
        diff = q.astype(np.float64) - cand[j].astype(np.float64)
        dist[i:i + step] = np.sqrt(np.einsum("ij,ij->i", diff, diff))
    return idx, dist


def reidentification(x: np.ndarray, x_hat: np.ndarray, qi_columns: Sequence[int],
                     targets: np.ndarray, chunk_rows: int = CHUNK_ROWS) -> dict:
    """Link each target's true quasi-identifiers to the nearest reconstructed released row.

    Args:
        x: true scaled rows (the attacker knows the targets' quasi-identifier columns).
        x_hat: the attacker's reconstruction of every released row.
        qi_columns: preprocessed columns of the quasi-identifiers.
        targets: rows attacked (those the attacker did not already hold).
    """
    cols = list(qi_columns)
    if not cols or len(targets) == 0:
        return {"linked": 0.0, "targets": int(len(targets)), "baseline": 0.0}
    idx, _ = nearest_rows(x[targets][:, cols], x_hat[:, cols], chunk_rows, precise=True)
    return {"linked": float((idx == targets).mean()), "targets": int(len(targets)),
            "baseline": 1.0 / len(x_hat)}


# --------------------------------------------------------------------------- membership
def reconstruction_losses(model: Callable[[np.ndarray], np.ndarray], x: np.ndarray,
                          chunk_rows: int = 8192) -> np.ndarray:
    """Per-row mean squared reconstruction error of an autoencoder."""
    out = np.empty(len(x), dtype=np.float64)
    for i in range(0, len(x), chunk_rows):
        part = x[i:i + chunk_rows]
        out[i:i + chunk_rows] = ((np.asarray(model(part)) - part) ** 2).mean(axis=1)
    return out


def membership_inference(member_losses: np.ndarray, non_member_losses: np.ndarray) -> dict:
    """Loss-threshold attack: a lower loss says "member". AUC and TPR at 1% FPR."""
    from sklearn.metrics import roc_auc_score, roc_curve

    labels = np.r_[np.ones(len(member_losses)), np.zeros(len(non_member_losses))]
    scores = -np.r_[member_losses, non_member_losses]
    fpr, tpr, _ = roc_curve(labels, scores)
    return {"auc": float(roc_auc_score(labels, scores)),
            "tpr_at_1pct_fpr": float(tpr[fpr <= 0.01].max(initial=0.0)),
            "members": int(len(member_losses)), "non_members": int(len(non_member_losses)),
            "median_loss_members": float(np.median(member_losses)),
            "median_loss_non_members": float(np.median(non_member_losses))}


# --------------------------------------------------------------------------- DCR
def distance_summary(d: np.ndarray) -> dict:
    return {"median": float(np.median(d)), "p5": float(np.percentile(d, 5)),
            "exact_match_share": float((d < 1e-6).mean()), "rows": int(len(d))}


def distance_to_closest_record(released: np.ndarray, control: np.ndarray, train: np.ndarray,
                               chunk_rows: int = CHUNK_ROWS) -> dict:
    """DCR of decoded released rows and of control rows, both against all training rows."""
    _, d_rel = nearest_rows(released, train, chunk_rows)
    out = {"release_to_train": distance_summary(d_rel)}
    if len(control):
        _, d_ctl = nearest_rows(control, train, chunk_rows)
        out["control_to_train"] = distance_summary(d_ctl)
    return out


# --------------------------------------------------------------------------- all attacks
_LIMITS: list = []


def worker_init() -> None:
    """Initializer of an attack worker process: one BLAS thread per worker (the workers
    already use the cores), and the heavy imports done while the flow is still training."""
    from threadpoolctl import threadpool_limits

    _LIMITS.append(threadpool_limits(limits=1))
    import anonymeter.evaluators  # noqa: F401
    import sklearn.linear_model  # noqa: F401
    import sklearn.metrics  # noqa: F401
    import sklearn.neural_network  # noqa: F401


def attack_pool(workers: int = 2):
    """A process pool for :func:`run_attacks` (spawned: the parent holds TensorFlow threads)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    pool = ProcessPoolExecutor(max_workers=workers, initializer=worker_init,
                               mp_context=multiprocessing.get_context("spawn"))
    for _ in range(workers):  # start the workers now; their imports overlap training
        pool.submit(int)
    return pool


def as_records(pre: TablePreprocessor, matrix: np.ndarray, like: pl.DataFrame) -> pl.DataFrame:
    """Map a (reconstructed) matrix back to source records with the source's column types."""
    frame = pre.reverse_transform(matrix)
    casts = []
    for name in frame.columns:
        dtype = like.schema[name]
        if dtype.is_integer():
            casts.append(pl.col(name).round(0).cast(dtype))
        elif dtype.is_numeric():
            casts.append(pl.col(name).cast(dtype))
        else:
            casts.append(pl.col(name).cast(pl.String))
    return frame.with_columns(casts)


def run_attacks(codes: np.ndarray, decoded: np.ndarray,
                losses: dict[str, tuple[np.ndarray, np.ndarray]], x: np.ndarray,
                x_control: np.ndarray, train_records: pl.DataFrame,
                control_records: pl.DataFrame, pre: TablePreprocessor, profile: DatasetProfile,
                seed: int) -> dict:
    """Every attack on one release, given its codes, its leaked-decoder view ``decoded`` and
    the per-row reconstruction losses (members, control) of each model behind it."""
    settings = profile.privacy
    blocks = blocks_of(pre)
    by_name = {b.name: b for b in blocks}
    timings: dict[str, float] = {}
    report: dict[str, Any] = {"rows": int(len(x)), "control_rows": int(len(x_control))}

    t = time.perf_counter()
    inversion, policy_run = {}, None
    for p in settings.known_fractions:
        run = known_plaintext_inversion(codes, x, blocks, p, seed, REGRESSORS)
        inversion[str(p)] = {"known_rows": run["known_rows"],
                             **{r: run[r]["scores"] for r in REGRESSORS}}
        if p == POLICY_FRACTION:
            policy_run = run
    report["known_plaintext_inversion"] = inversion
    report["leaked_decoder"] = score_reconstruction(x, decoded, blocks)
    timings["inversion"] = time.perf_counter() - t

    t = time.perf_counter()
    qi_cols = [c for q in profile.quasi_identifiers
               for c in range(by_name[q].start, by_name[q].stop)]
    targets = np.setdiff1d(np.arange(len(x)), policy_run["known_index"])
    # the attacker links with the regressor that reconstructs the quasi-identifiers best
    regressor = max(REGRESSORS, key=lambda r: _qi_fit(policy_run[r]["scores"],
                                                     profile.quasi_identifiers))
    report["reidentification"] = {
        "quasi_identifiers": list(profile.quasi_identifiers),
        "unique_on_quasi_identifiers": unique_share(x[:, qi_cols]),
        "fraction": POLICY_FRACTION, "regressor": regressor,
        **reidentification(x, policy_run[regressor]["x_hat"], qi_cols, targets)}
    timings["reidentification"] = time.perf_counter() - t

    report["membership"] = {name: membership_inference(m, c) for name, (m, c) in losses.items()}

    t = time.perf_counter()
    decoded_records = as_records(pre, decoded, train_records)
    snapped = pre.transform(decoded_records, "<decoded release>", unseen="ignore")
    report["dcr"] = distance_to_closest_record(snapped, x_control, x)
    timings["dcr"] = time.perf_counter() - t

    t = time.perf_counter()
    report["anonymeter"] = run_anonymeter(train_records, decoded_records, control_records,
                                          profile, seed) if len(x_control) else {}
    timings["anonymeter"] = time.perf_counter() - t
    report["seconds"] = {k: round(v, 2) for k, v in timings.items()}
    return report


def _qi_fit(scores: dict[str, dict], quasi_identifiers) -> float:
    """Mean reconstruction quality over the quasi-identifiers (accuracy or R^2)."""
    vals = [scores[q]["accuracy"] if scores[q]["kind"] == "categorical" else scores[q]["r2"]
            for q in quasi_identifiers]
    return float(np.mean(vals)) if vals else 0.0


def run_anonymeter(ori: pl.DataFrame, syn: pl.DataFrame, control: pl.DataFrame,
                   profile: DatasetProfile, seed: int) -> dict:
    """anonymeter's three GDPR-style risks (value and 95% confidence interval)."""
    import logging

    from anonymeter.evaluators import (
        InferenceEvaluator,
        LinkabilityEvaluator,
        SinglingOutEvaluator,
    )

    logging.getLogger("anonymeter").setLevel(logging.ERROR)
    n = min(profile.privacy.anonymeter_attacks, len(control), len(ori))
    o, s, c = ori.to_pandas(), syn.to_pandas(), control.to_pandas()
    qis = list(profile.quasi_identifiers)
    others = [col for col in ori.columns if col not in qis]

    def risk(ev, **kw) -> dict:
        r = ev.risk(**kw)
        res = ev.results()
        return {"risk": float(r.value), "ci": [float(r.ci[0]), float(r.ci[1])],
                "attack_rate": float(res.attack_rate.value),
                "baseline_rate": float(res.baseline_rate.value),
                "control_rate": (None if res.control_rate is None
                                 else float(res.control_rate.value))}

    out: dict[str, Any] = {"attacks": n, "seconds": {}}
    t = time.perf_counter()
    so = SinglingOutEvaluator(ori=o, syn=s, control=c, n_attacks=n, n_cols=3, seed=seed,
                              max_attempts=20 * n).evaluate(mode="multivariate")
    out["singling_out"] = {**risk(so), "queries": len(so.queries()), "mode": "multivariate, 3 "
                                                                             "columns"}
    out["seconds"]["singling_out"] = round(time.perf_counter() - t, 2)
    t = time.perf_counter()
    if qis and others:
        lk = LinkabilityEvaluator(ori=o, syn=s, control=c, n_attacks=n, aux_cols=(qis, others),
                                  n_neighbors=1).evaluate(n_jobs=1)
        out["linkability"] = {**risk(lk), "aux_cols": [qis, others]}
    out["seconds"]["linkability"] = round(time.perf_counter() - t, 2)
    t = time.perf_counter()
    out["inference"] = {}
    for secret in profile.privacy.sensitive:
        aux = [q for q in qis if q != secret] or [col for col in others if col != secret]
        ev = InferenceEvaluator(ori=o, syn=s, control=c, aux_cols=aux, secret=secret,
                                regression=profile_kind(ori, secret) == "numeric",
                                n_attacks=n).evaluate(n_jobs=1)
        out["inference"][secret] = {**risk(ev), "aux_cols": aux}
    out["seconds"]["inference"] = round(time.perf_counter() - t, 2)
    return out


def profile_kind(frame: pl.DataFrame, column: str) -> str:
    return "numeric" if frame.schema[column].is_numeric() else "categorical"
