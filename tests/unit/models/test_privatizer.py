"""The privatizer (``models.privatizer``): its configuration's rules, and on constructed data
that fresh attackers lose a sensitive bit that is a function of one column while the target
keeps its signal."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import cross_val_predict

from cloakflow.models.privatizer import PrivatizerConfig, layout, train_privatizer
from tests.helpers import jax_result

HEADS = (("numeric", 1), ("numeric", 1), ("categorical", 3), ("categorical", 2),
         ("categorical", 2))  # a, b, c, s (sensitive), y (kept)
NAMES = ("a", "b", "c", "s", "y")


def _table(n: int = 3000, seed: int = 0):
    """s = (c == 0): c gives s away; y follows b; a is noise."""
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal(n), rng.standard_normal(n)
    c = rng.integers(0, 3, n)
    s = (c == 0).astype(int)
    y = (b + 0.5 * rng.standard_normal(n) > 0).astype(int)
    x = np.column_stack([norm.cdf(a), norm.cdf(b), np.eye(3)[c], np.eye(2)[s],
                         np.eye(2)[y]]).astype(np.float32)
    return x, s, y


def _config(**kw) -> PrivatizerConfig:
    base = dict(heads=HEADS, sensitive=(3,), kept=(4,), shares=((2.0, 1.0),),
                column_names=NAMES)
    return PrivatizerConfig(**{**base, **kw})


def test_a_config_that_cannot_privatize_is_refused():
    with pytest.raises(ValueError, match="at least one sensitive column"):
        _config(sensitive=(), shares=())
    with pytest.raises(ValueError, match=r"\['a'\] are numeric"):
        _config(sensitive=(0,), shares=((1.0,),))
    with pytest.raises(ValueError, match="both sensitive and kept"):
        _config(kept=(3,))
    with pytest.raises(ValueError, match="nothing left to release"):
        PrivatizerConfig(heads=HEADS[3:], sensitive=(0,), kept=(1,), shares=((1.0, 1.0),))
    with pytest.raises(ValueError, match="shares"):
        _config(shares=((1.0, 1.0, 1.0),))


def _auc(features: np.ndarray, labels: np.ndarray) -> float:
    from lightgbm import LGBMClassifier

    p = cross_val_predict(LGBMClassifier(n_estimators=100, verbose=-1), features, labels,
                          cv=3, method="predict_proba")[:, 1]
    return float(roc_auc_score(labels, p))


def test_fresh_attackers_lose_the_sensitive_bit_and_the_target_keeps_its_signal():
    x, s, y = _table()
    cfg = _config(distortion=0.4, epochs=30)
    result = train_privatizer(x, cfg, seed=0).result()
    rows, distortion = result.privatizer.release(x, np.random.default_rng(1))
    lay = layout(cfg)
    published = [0, 1, 2, 3, 4, 7, 8]  # a, b, c and the label: s (columns 5, 6) is not
    assert np.all(rows[:, 5:7] == 0)  # the sensitive block is not released
    assert np.array_equal(rows[:, 7:9], x[:, 7:9])  # the kept label, copied
    assert np.allclose(rows[:, 2:5].sum(axis=1), 1) and set(np.unique(rows[:, 2:5])) <= {0, 1}
    assert np.all((rows[:, :2] >= 0) & (rows[:, :2] <= 1))
    assert lay.released_width == 5 and 0 < distortion.mean() <= 0.45
    raw = _auc(x[:, published], s)
    released = _auc(rows[:, published], s)
    assert raw > 0.99 and released < 0.58, (raw, released)
    assert _auc(rows[:, :5], y) > 0.85  # the target's signal (in b) is kept
    assert len(result.health["fresh_adversary"]) == 6  # 30 epochs, a fresh one every 5


JAX_CHECK = textwrap.dedent("""
    import sys
    import keras, numpy as np
    sys.path.insert(0, HELPERS)
    from test_privatizer import _config, _table
    from cloakflow.models.privatizer import train_privatizer
    assert keras.backend.backend() == "jax"
    x, s, y = _table(n=700)  # 700 rows: the last batch of each epoch is padded and masked
    result = train_privatizer(x, _config(distortion=0.3, epochs=5, batch_size=128),
                              seed=0).result()
    rows, distortion = result.privatizer.release(x, np.random.default_rng(1))
    history = result.log.history
    print("RESULT", rows.shape[0], rows.shape[1], float(np.abs(rows[:, 7:9] - x[:, 7:9]).max()),
          float(distortion.mean()), len(history["adversary"]),
          all(np.isfinite(history["adversary"] + history["privatizer"])))
""")


def test_the_privatizer_trains_and_releases_on_the_jax_backend():
    n, width, label_moved, distortion, epochs, finite = jax_result(
        JAX_CHECK, Path(__file__).resolve().parent)
    assert (int(n), int(width), float(label_moved)) == (700, 9, 0.0)
    assert 0 <= float(distortion) <= 0.35 and int(epochs) == 5 and finite == "True"
