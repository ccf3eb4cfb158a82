"""Every attack on one release, given its codes, the leaked-decoder view and the per-row
reconstruction losses: pure NumPy, scikit-learn and anonymeter, so it runs in a worker process
(``tasks.runners``)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import polars as pl

from cloakflow.tasks.data.preprocess import TablePreprocessor
from cloakflow.tasks.data.profile import DatasetProfile
from cloakflow.tasks.privacy.attacks.anonymeter import run_anonymeter
from cloakflow.tasks.privacy.attacks.common import POLICY_FRACTION, as_records, blocks_of
from cloakflow.tasks.privacy.attacks.dcr import distance_to_closest_record
from cloakflow.tasks.privacy.attacks.inversion import (
    REGRESSORS,
    known_plaintext_inversion,
    score_reconstruction,
)
from cloakflow.tasks.privacy.attacks.membership import membership_inference
from cloakflow.tasks.privacy.attacks.reidentification import reidentification, unique_share


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
                             **{r: run[r]["scores"] for r in REGRESSORS},
                             "capped": [r for r in REGRESSORS if run[r]["capped"]]}
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
