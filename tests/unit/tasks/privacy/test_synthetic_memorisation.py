"""A synthesizer that memorises its training rows is caught by the release's attacks, and
DP-SGD lowers what they find."""

import numpy as np
import pytest

from cloakflow.models.training import accounting
from cloakflow.models.vae import VaeConfig, train_vae
from cloakflow.tasks.privacy.attacks.synthetic import distance_privacy, membership_of_synthetic

ROWS, WIDTH = 100, 16


def _table(rng: np.random.Generator, rows: int) -> np.ndarray:
    """Rows of independent uniform numerics (CDF values) and one binary category: every row is
    unique, and nothing but memorising brings a sample close to a training row."""
    u = rng.random((rows, WIDTH)).astype(np.float32)
    return np.hstack([u, np.eye(2, dtype=np.float32)[rng.integers(0, 2, rows)]])


def _attacked(result, train, control) -> tuple[float, float]:
    x = result.vae.sample(2000, np.random.default_rng(1))
    share = distance_privacy(x, train, control, seed=0)["dcr_share"]
    auc = membership_of_synthetic(x, train, control, seed=0)["distance"]["auc"]
    return share, auc


# ~30 s of training (500 epochs); the synthetic gate is unit-tested in tests/unit/tasks/release
@pytest.mark.slow
def test_memorisation_is_caught_by_dcr_share_and_membership_and_dp_lowers_it():
    rng = np.random.default_rng(0)
    train, control = _table(rng, ROWS), _table(rng, ROWS)
    heads = tuple([("numeric", 1)] * WIDTH + [("categorical", 2)])
    # few rows, many epochs, a weak KL term: the decoder learns the rows themselves
    config = VaeConfig(heads=heads, latent=16, hidden=(256, 256), beta=0.01, epochs=500,
                       batch_size=ROWS, learning_rate=3e-3)
    share, auc = _attacked(train_vae(train, config, seed=0), train, control)
    # the default policy's limits (max_dcr_share 0.6, max_membership_auc 0.6) are crossed
    assert share > 0.65 and auc > 0.7, (share, auc)

    q, steps = 0.5, 60
    budget = accounting.noise_multiplier_for(1.0, 1e-5, q, steps, "rdp")
    dp_share, dp_auc = _attacked(train_vae(train, config, budget=budget, clip_norm=0.1,
                                           rng=np.random.default_rng(2)), train, control)
    assert dp_share < 0.6 and dp_auc < 0.6 and dp_share < share and dp_auc < auc, \
        (dp_share, dp_auc)
