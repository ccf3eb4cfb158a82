"""Code noise: clipping and Gaussian noise per code vector (``tasks.release.noise``)."""

from __future__ import annotations

import numpy as np
import pytest

from cloakflow.tasks.release.noise import clip_and_noise


def test_clip_and_noise():
    codes = np.random.default_rng(0).normal(size=(5000, 4)).astype(np.float32) * 3
    same, info = clip_and_noise(codes, 0.0, None, seed=1)
    assert same is codes and info.clip_source == "none"
    clipped, info = clip_and_noise(codes, 1e-9, 1.0, seed=1)
    assert np.linalg.norm(clipped, axis=1).max() <= 1.0 + 1e-5 and info.clipped_share > 0.9
    noised, info = clip_and_noise(codes, 0.5, None, seed=1)
    median = float(np.median(np.linalg.norm(codes, axis=1)))
    assert info.clip_norm == pytest.approx(median) and info.clip_source == "median code norm"
    scale = np.minimum(1, median / np.linalg.norm(codes, axis=1))[:, None]
    assert np.std(noised - codes * scale) == pytest.approx(0.5 * median, rel=0.03)
    again, _ = clip_and_noise(codes, 0.5, None, seed=1)
    assert np.array_equal(noised, again)
    with pytest.raises(ValueError):
        clip_and_noise(codes, -1.0, None, seed=1)
