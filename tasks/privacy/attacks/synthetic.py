"""Distance-based privacy figures of synthetic rows (Prefect-free): DCR share, DCR ratio, exact
copies and the nearest-neighbour distance ratio, all read against real control rows that were
never trained on.

Rows are compared in the preprocessor's space (categories one-hot, numbers scaled to [0, 1]), by
Euclidean distance; nearest neighbours come from scikit-learn's ``NearestNeighbors``.

- **DCR share** (Platzer & Reutterer 2021): for each synthetic row, is its closest training row
  nearer than its closest control row? The training rows are subsampled to the control rows'
  count, so a synthesizer that samples fresh rows from the true distribution scores 0.5 (ties
  count half); above 0.5 the rows sit nearer the training rows than new data would.
- **DCR ratio**: median distance of synthetic rows to their closest training row over the same
  for control rows; below 1 the synthetic rows are closer to the training rows than new data is.
- **Exact copies**: share of synthetic rows identical to a training row, beside the control
  rows' own share (a table with many duplicate rows has copies by nature).
- **NNDR**: distance to the closest over the second-closest training row; near 0 a synthetic row
  sits on one training row rather than among several.
"""

from __future__ import annotations

import numpy as np


def _neighbours(queries: np.ndarray, reference: np.ndarray, k: int) -> np.ndarray:
    from sklearn.neighbors import NearestNeighbors

    k = min(k, len(reference))
    nn = NearestNeighbors(n_neighbors=k, algorithm="brute", n_jobs=1).fit(reference)
    distances, _ = nn.kneighbors(queries)
    return distances


def _copies(queries: np.ndarray, reference: np.ndarray) -> float:
    """Share of ``queries`` rows equal, value for value (as float32), to some reference row."""
    def keys(x):
        x = np.ascontiguousarray(x, dtype=np.float32) + np.float32(0.0)  # -0.0 == 0.0
        return x.view(np.dtype((np.void, x.dtype.itemsize * x.shape[1]))).ravel()

    return float(np.isin(keys(queries), keys(reference)).mean())


def distance_privacy(synthetic: np.ndarray, train: np.ndarray, control: np.ndarray,
                     seed: int = 0, max_rows: int = 10_000) -> dict:
    """The four figures above.

    Args:
        synthetic, train, control: float matrices in the same preprocessed space, shape
            (rows, width); ``control`` rows were not trained on.
        seed: draws the training subsample for the DCR share and, above ``max_rows``, the
            synthetic and control rows scored.
        max_rows: at most this many synthetic and control rows are scored (the distances are
            rows x training rows).

    Returns:
        ``{"dcr_share", "dcr_ratio", "exact_copies", "exact_copies_control", "nndr_median",
        "nndr_p5", "rows"}``.

    Raises:
        ValueError: an empty matrix, or matrices of different widths.
    """
    if min(len(synthetic), len(train), len(control)) == 0:
        raise ValueError("distance figures need synthetic, training and control rows")
    if not synthetic.shape[1] == train.shape[1] == control.shape[1]:
        raise ValueError(f"widths differ: synthetic {synthetic.shape[1]}, train "
                         f"{train.shape[1]}, control {control.shape[1]}")
    rng = np.random.default_rng(seed)

    def cap(x: np.ndarray) -> np.ndarray:
        return x if len(x) <= max_rows else x[np.sort(rng.choice(len(x), max_rows, False))]

    syn, ctl = cap(synthetic), cap(control)
    to_train = _neighbours(syn, train, 2)
    ctl_to_train = _neighbours(ctl, train, 1)[:, 0]
    sample = train[np.sort(rng.choice(len(train), min(len(control), len(train)), False))]
    d_train = _neighbours(syn, sample, 1)[:, 0]
    d_control = _neighbours(syn, control, 1)[:, 0]
    share = float(np.mean(d_train < d_control) + 0.5 * np.mean(d_train == d_control))
    nearest = to_train[:, 0]
    ratio = float(np.median(nearest) / max(np.median(ctl_to_train), 1e-12))
    nndr = nearest / np.maximum(to_train[:, -1], 1e-12) if to_train.shape[1] > 1 else \
        np.ones(len(nearest))
    return {"dcr_share": share, "dcr_ratio": ratio,
            "exact_copies": _copies(syn, train),
            "exact_copies_control": _copies(ctl, train),
            "nndr_median": float(np.median(nndr)), "nndr_p5": float(np.percentile(nndr, 5)),
            "rows": int(len(syn))}
