"""Re-identification (Prefect-free): a target's true quasi-identifiers are linked to the nearest
row of an inverted release; every all-rows computation is chunked (no rows x rows matrix)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cloakflow.tasks.privacy.attacks.common import CHUNK_ROWS


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
