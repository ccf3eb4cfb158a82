"""Helpers shared by the DP-SGD tests here and their jax subprocess (not a test module)."""

from __future__ import annotations

import math

import keras
import numpy as np

from cloakflow.models.autoencoder import AutoencoderConfig, build_autoencoder
from cloakflow.models.training.phases import PhaseTrainer
from cloakflow.models.training.trainer import one_phase


def one_phase_trainer(models, optimizers, columns=None, loss_fn=None):
    """(PhaseTrainer, its one phase) of ``models`` sharing one mechanism."""
    nets, phase, opts = one_phase(models, optimizers=optimizers, columns=columns,
                                  loss_fn=loss_fn)
    return PhaseTrainer(nets, [phase], opts), phase


def run_plain(trainer, phase, x, batches, denominator: float) -> None:
    """``batches`` steps of ``phase`` with C = inf, sigma = 0 and a fixed divisor."""
    k = len(batches)
    trainer.run_steps(phase, x, batches, np.zeros((k, trainer.noise_width(phase)), np.float32),
                      np.zeros((k, 1, 1), np.float32), math.inf, 0.0,
                      np.full(k, denominator, np.float32))
    trainer.sync()


def data(n: int = 200, d: int = 10, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, d), dtype=np.float32)


def plain_vs_dp_max_difference() -> float:
    """Largest weight difference between plain Keras steps and DP-SGD steps with sigma = 0 and
    C = inf on the same batches (divided by the actual batch size); used on both backends."""
    x = data(300, 12, seed=1)
    cfg = AutoencoderConfig()
    plain = build_autoencoder(12, cfg, seed=9)[0]
    private = build_autoencoder(12, cfg, seed=9)[0]
    start = [w.copy() for w in plain.get_weights()]
    trainer, phase = one_phase_trainer(private, keras.optimizers.Adam(cfg.learning_rate))
    rng = np.random.default_rng(2)
    for _ in range(3):
        batches = [rng.choice(300, 64, replace=False) for _ in range(5)]
        for b in batches:
            plain.train_on_batch(x[b], x[b])
        run_plain(trainer, phase, x, batches, 64.0)
    assert not np.allclose(plain.get_weights()[0], start[0])  # training did move the weights
    return max(float(np.max(np.abs(a - b)))
               for a, b in zip(plain.get_weights(), private.get_weights(), strict=True))
