"""A DP label distribution: noisy, secret, and charged to the release with DP-SGD."""

from __future__ import annotations

import numpy as np
import pytest

from cloakflow.models.training import accounting
from cloakflow.models.training.dp_counts import noisy_distribution


def test_noisy_shares_are_a_distribution_near_the_truth():
    counts = np.array([9000, 1000])
    shares = noisy_distribution(counts, 20.0, rng=np.random.default_rng(0))
    assert shares.sum() == pytest.approx(1.0) and (shares >= 0).all()
    assert shares[1] == pytest.approx(0.1, abs=0.01)
    # secret by default: two draws differ
    assert not np.array_equal(noisy_distribution(counts, 20.0), noisy_distribution(counts, 20.0))
    with pytest.raises(ValueError, match="non-negative"):
        noisy_distribution(np.array([-1, 2]), 1.0)


def test_histogram_composes_into_the_release_budget():
    delta, q, steps = 1e-6, 0.01, 500
    sigma_h = accounting.histogram_noise_for(0.1, delta, adjacency="replace_one")
    alone = accounting.epsilon(sigma_h, 1.0, 1, delta, "pld", adjacency="replace_one")
    assert sigma_h > 1.0
    hist = accounting.histogram_event(sigma_h)
    plan = accounting.noise_multiplier_for(3.0, delta, q, steps, "pld",
                                           adjacency="replace_one", extra_events=(hist,))
    assert plan.epsilon <= 3.0 + 1e-3
    sgd_only = accounting.epsilon(plan.noise_multiplier, q, steps, delta, "pld",
                                  adjacency="replace_one")
    assert sgd_only.epsilon < plan.epsilon  # the histogram's share is part of the total
    assert alone.epsilon > 0
