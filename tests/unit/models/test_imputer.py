"""The GAN imputer (``models.imputer``): its configuration's rules, and on constructed data
that a deterministic relation is regenerated (a column copied from another) while an
independent column is drawn at its marginal, the kept cells untouched."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from cloakflow.models.imputer import ImputerConfig, train_imputer

# a numeric, c (4 levels), d = c, e independent (3 levels), f = 2a + noise
HEADS = (("numeric", 1), ("categorical", 4), ("categorical", 4), ("categorical", 3),
         ("numeric", 1))
SHARES = (0.6, 0.3, 0.1)


def _table(n: int = 4000, seed: int = 0):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal(n)
    c = rng.integers(0, 4, n)
    e = rng.choice(3, n, p=SHARES)
    f = 2 * a + 0.1 * rng.standard_normal(n)
    x = np.column_stack([norm.cdf(a), np.eye(4)[c], np.eye(4)[c], np.eye(3)[e],
                         norm.cdf(f / 2)]).astype(np.float32)
    return x, c, e


def test_a_config_that_cannot_impute_is_refused():
    with pytest.raises(ValueError, match="at least one maskable column"):
        ImputerConfig(heads=HEADS, maskable=())
    with pytest.raises(ValueError, match="nothing is left to impute from"):
        ImputerConfig(heads=HEADS, maskable=(0, 1, 2, 3, 4))
    with pytest.raises(ValueError, match="not among the 5 columns"):
        ImputerConfig(heads=HEADS, maskable=(7,))


def test_a_copied_column_is_regenerated_and_an_independent_one_drawn_at_its_marginal():
    x, c, e = _table()
    cfg = ImputerConfig(heads=HEADS, maskable=(2, 3, 4), epochs=80, refresh_every=10,
                        learning_rate=3e-3)
    imputer = train_imputer(x, cfg, seed=0).result().imputer
    mask = np.ones((len(x), 3), dtype=np.float32)
    mask[: len(x) // 2] = 0  # the first half regenerated, the second kept
    out = imputer.impute(x, mask, np.random.default_rng(1))
    half = len(x) // 2
    assert np.array_equal(out[half:], x[half:])  # kept rows untouched
    assert np.array_equal(out[:, :5], x[:, :5])  # unmasked columns untouched
    d, drawn_e = out[:half, 5:9].argmax(axis=1), out[:half, 9:12].argmax(axis=1)
    assert (d == c[:half]).mean() > 0.9  # the copy is regenerated from c
    # e is independent of the row: drawn at its marginal (accuracy near sum p^2 = 0.46), not
    # set to its mode (accuracy 0.6)
    assert abs((drawn_e == e[:half]).mean() - sum(p * p for p in SHARES)) < 0.04
    shares = np.bincount(drawn_e, minlength=3) / half
    assert 0.5 * np.abs(shares - np.asarray(SHARES)).sum() < 0.05
    assert np.all((out[:, 12] >= 0) & (out[:, 12] <= 1))
