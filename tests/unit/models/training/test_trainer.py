"""The trainer seam (``models.training.trainer``): ``train`` is one phase of the phase trainer,
plain or DP-SGD; its log counts what ran and its settings refuse nonsense."""

from __future__ import annotations

import numpy as np
import pytest

from cloakflow.models.training.trainer import TrainConfig, train


def _model(width: int):
    import keras

    inputs = keras.Input((width,))
    return keras.Model(inputs, keras.layers.Dense(width)(inputs))


def test_plain_training_fits_and_logs_every_epoch():
    import keras

    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).normal(size=(256, 3)).astype(np.float32)
    seen = []
    log = train(_model(3), x, TrainConfig(epochs=5, batch_size=32, learning_rate=0.05),
                seed=1, on_epoch=lambda e, m: seen.append((e, m["loss"])))
    assert log.epochs_run == 5 and [e for e, _ in seen] == [1, 2, 3, 4, 5]
    assert log.history["loss"] == [loss for _, loss in seen]
    assert seen[-1][1] < 0.5 * seen[0][1]  # an identity map is learnt: the MSE falls
    assert log.steps_run == 5 * 8  # 256 rows in batches of 32


@pytest.mark.parametrize("kwargs", [{"epochs": 0}, {"batch_size": 0}, {"learning_rate": 0.0}])
def test_bad_loop_settings_are_refused(kwargs):
    with pytest.raises(ValueError, match="must be positive"):
        TrainConfig(**kwargs)


def test_a_dp_budget_needs_a_clip_norm():
    from cloakflow.models.training import dp_sgd

    x = np.zeros((64, 2), dtype=np.float32)
    budget = dp_sgd.plan(64, 16, 1, dp_sgd.DpSgdConfig(noise_multiplier=1.0))
    with pytest.raises(ValueError, match="clip"):
        train(_model(2), x, TrainConfig(epochs=1, batch_size=16), budget=budget)
