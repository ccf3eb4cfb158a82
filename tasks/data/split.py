"""Seeded train / control split, stratified on the target.

Control rows never reach the autoencoders or the release: they are the held-out population that
the privacy attacks compare training rows against. Both index lists keep the file's row order.
"""

from __future__ import annotations

import numpy as np
from prefect import task


def positive_labels(frame, profile) -> np.ndarray:
    """The profile's target as 0/1 (1 = the positive value), one entry per row of ``frame``."""
    import polars as pl

    column = frame.get_column(profile.target.column).cast(pl.String)
    return (column == str(profile.target.positive)).to_numpy().astype(np.int8)


def split_rows(y: np.ndarray, control_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Return sorted (train, control) row indices.

    Args:
        y: target labels (used for stratification).
        control_fraction: share of rows held out, in [0, 0.5]; 0 keeps every row for training.
        seed: the split's seed.
    """
    if not 0.0 <= control_fraction <= 0.5:
        raise ValueError(f"control_fraction must be in [0, 0.5], got {control_fraction}")
    idx = np.arange(len(y))
    if control_fraction == 0:
        return idx, idx[:0]
    from sklearn.model_selection import train_test_split

    train, control = train_test_split(idx, test_size=control_fraction, stratify=y,
                                      random_state=seed)
    return np.sort(train), np.sort(control)


@task(name="split")
def split(y: np.ndarray, control_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Prefect task wrapper of :func:`split_rows`."""
    train, control = split_rows(y, control_fraction, seed)
    print(f"split: {len(train)} training rows, {len(control)} control rows (seed {seed})",
          flush=True)
    return train, control
