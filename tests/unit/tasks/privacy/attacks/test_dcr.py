"""Distances to closest records (``tasks.privacy.attacks.dcr``)."""

from __future__ import annotations

import tracemalloc

import numpy as np

from cloakflow.tasks.privacy import attacks as A


def test_distance_to_closest_record():
    rng = np.random.default_rng(0)
    train = rng.uniform(size=(500, 6)).astype(np.float32)
    far = train[:100] + 10.0
    out = A.distance_to_closest_record(train.copy(), far, train, chunk_rows=64)
    assert out["release_to_train"]["exact_match_share"] == 1.0
    assert out["release_to_train"]["median"] == 0.0
    assert out["control_to_train"]["p5"] > 10.0 and out["control_to_train"]["rows"] == 100
    idx, dist = A.nearest_rows(train[:10] + 1e-3, train, chunk_rows=3)
    assert (idx == np.arange(10)).all() and np.allclose(dist, 1e-3 * np.sqrt(6), rtol=1e-3)


def test_chunked_distances_never_hold_a_rows_by_rows_matrix():
    rng = np.random.default_rng(0)
    a = rng.uniform(size=(4000, 8)).astype(np.float32)
    full_matrix = 4000 * 4000 * 4  # bytes of one float32 rows-by-rows matrix (64 MB)
    tracemalloc.start()
    A.nearest_rows(a, a, chunk_rows=128)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < full_matrix / 8
