"""Helpers shared by the DP-SGD tests here and their jax subprocess (not a test module)."""

from __future__ import annotations

import math

import keras
import numpy as np

from cloakflow.models.autoencoder import AutoencoderConfig, build_autoencoder
from cloakflow.models.training.dp_sgd import DpSgd


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
    trainer = DpSgd(private, keras.optimizers.Adam(cfg.learning_rate))
    rng = np.random.default_rng(2)
    for _ in range(3):
        batches = [rng.choice(300, 64, replace=False) for _ in range(5)]
        for b in batches:
            plain.train_on_batch(x[b], x[b])
        zeros = np.zeros((len(batches), sum(trainer.sizes)), dtype=np.float32)
        trainer.run(x, batches, zeros, math.inf, 0.0, 64.0)
    trainer.sync()
    assert not np.allclose(plain.get_weights()[0], start[0])  # training did move the weights
    return max(float(np.max(np.abs(a - b)))
               for a, b in zip(plain.get_weights(), private.get_weights(), strict=True))
