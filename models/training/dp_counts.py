"""Differentially private counts of a categorical column (the Gaussian mechanism).

A synthesizer that samples rows for each label needs the label distribution; the exact private
rate would leak. ``noisy_distribution`` adds N(0, sigma^2) to every count (each row sits in one
cell: adding or removing a row moves one count by 1) with noise from a secret stream, clips at
0 and normalises. The cost is ``accounting.histogram_event(sigma)``, composed with the rest of
the release's mechanisms by the PLD accountant (``accounting.noise_multiplier_for(...,
extra_events=...)``). The domain (the list of categories) must be public: a category that only
the private rows show would leak by being listed.

This module imports neither Prefect, MLflow nor polars.
"""

from __future__ import annotations

import numpy as np

from cloakflow.models.training.dp_sgd import secret_streams


def noisy_counts(counts: np.ndarray, noise_multiplier: float,
                 rng: np.random.Generator | None = None) -> np.ndarray:
    """Gaussian-noised counts over a public domain, clipped at 0 (post-processing).

    Args:
        counts: rows per category over a public domain, shape (k,).
        noise_multiplier: sigma, in rows.
        rng: tests only; without it the noise comes from OS entropy (``secret_streams``).

    Returns:
        noisy counts, shape (k,), float64, non-negative; their sum is a DP estimate of the
        row count.

    Raises:
        ValueError: no categories, negative counts or a non-positive sigma.
    """
    counts = np.asarray(counts, dtype=np.float64)
    if counts.ndim != 1 or len(counts) == 0 or (counts < 0).any():
        raise ValueError("counts must be a non-empty vector of non-negative counts")
    if not noise_multiplier > 0:
        raise ValueError("noise_multiplier must be positive")
    (stream,) = secret_streams(1, rng)
    return np.clip(counts + stream.normal(0.0, noise_multiplier, len(counts)), 0.0, None)


def shares(noisy: np.ndarray) -> np.ndarray:
    """Noisy counts normalised to shares summing to 1 (uniform if every count is 0)."""
    total = noisy.sum()
    return noisy / total if total > 0 else np.full(len(noisy), 1.0 / len(noisy))


def noisy_distribution(counts: np.ndarray, noise_multiplier: float,
                       rng: np.random.Generator | None = None) -> np.ndarray:
    """The category shares from Gaussian-noised counts (``noisy_counts``, then ``shares``);
    shape (k,), non-negative, summing to 1.

    Raises:
        ValueError: no categories, negative counts or a non-positive sigma.
    """
    return shares(noisy_counts(counts, noise_multiplier, rng))
