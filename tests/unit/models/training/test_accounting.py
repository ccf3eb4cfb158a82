"""DP accounting: agreement with dp-accounting called directly, and the inverse."""

from __future__ import annotations

import dp_accounting
import pytest
from dp_accounting.pld import pld_privacy_accountant
from dp_accounting.rdp import rdp_privacy_accountant

from cloakflow.models.training import accounting as A

Q, STEPS, DELTA = 256 / 41188, 1600, 1e-6


def direct(accountant, sigma: float, q: float, steps: int, delta: float) -> float:
    event = dp_accounting.SelfComposedDpEvent(
        dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(sigma)), steps)
    return accountant.compose(event).get_epsilon(delta)


def test_forward_matches_dp_accounting():
    ours = A.epsilon(0.9, Q, STEPS, DELTA, "rdp")
    assert ours.epsilon == pytest.approx(direct(rdp_privacy_accountant.RdpAccountant(), 0.9, Q,
                                                STEPS, DELTA), rel=1e-12)
    assert ours.epochs == pytest.approx(STEPS * Q) and ours.sampling == "poisson"
    pld = A.epsilon(1.2, 0.01, 200, 1e-5, "pld")
    assert pld.epsilon == pytest.approx(direct(pld_privacy_accountant.PLDAccountant(), 1.2, 0.01,
                                               200, 1e-5), rel=1e-9)
    assert pld.epsilon <= A.epsilon(1.2, 0.01, 200, 1e-5, "rdp").epsilon  # PLD is tighter
    assert A.best_of(1.2, 0.01, 200, 1e-5).accountant == "pld"


@pytest.mark.parametrize("target", [1.0, 3.0, 8.0])
def test_solved_sigma_spends_the_target(target):
    budget = A.noise_multiplier_for(target, DELTA, Q, STEPS, "rdp")
    assert budget.epsilon == pytest.approx(target, rel=0.01)
    assert budget.epsilon <= target + 1e-6
    # a smaller sigma would spend more
    assert A.epsilon(budget.noise_multiplier * 0.95, Q, STEPS, DELTA).epsilon > target


@pytest.mark.slow  # PLD calibration, also run by every DP plan test in the default suite
def test_pld_inverse():
    budget = A.noise_multiplier_for(2.0, 1e-5, 0.01, 100, "pld")
    assert budget.epsilon == pytest.approx(2.0, rel=0.01)


def test_shuffled_batches_claim_no_amplification():
    poisson = A.epsilon(0.8, Q, STEPS, DELTA, sampling="poisson").epsilon
    shuffled = A.epsilon(0.8, Q, STEPS, DELTA, sampling="shuffle").epsilon
    assert shuffled > 5 * poisson


def test_default_delta_is_well_below_one_over_n():
    assert A.default_delta(37069) == 1e-6
    assert A.default_delta(10) == 0.01
    for n in (1, 99, 41188, 10**7):
        assert A.default_delta(n) <= 1 / (10 * n)


def test_bad_arguments():
    with pytest.raises(ValueError):
        A.epsilon(0.0, Q, 10, DELTA)
    with pytest.raises(ValueError):
        A.epsilon(1.0, 1.5, 10, DELTA)
    with pytest.raises(ValueError):
        A.epsilon(1.0, Q, 10, DELTA, sampling="sometimes")
    with pytest.raises(ValueError, match="no noise multiplier"):
        A.noise_multiplier_for(1e-4, DELTA, 0.5, 10_000, "rdp")
