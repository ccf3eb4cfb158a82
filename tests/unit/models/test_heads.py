"""The ``kinds`` architecture: per-kind heads and losses, the code-size rule, no dead outputs,
rebuilt from weights, trainable through the DP-SGD seam, and codes that keep a skewed numeric's
signal where the tutorial's lose it."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from cloakflow.models.autoencoder import (
    AutoencoderConfig,
    autoencoder_from_weights,
    build_autoencoder,
    encode,
    reconstruct,
    train_autoencoder,
)
from cloakflow.models.heads import Head, code_size, dead_outputs, per_example_loss

HEADS = (("numeric", 1), ("numeric", 1), ("categorical", 12), ("categorical", 2))


@pytest.mark.parametrize("heads, code", [
    ((("numeric", 1),) * 3, 3),  # a group of three numerics: 3, never n/2 = 1
    (HEADS, 1 + 1 + 4 + 1),  # numerics 1 each, a 12-level categorical log2 -> 4, boolean 1
    ((("categorical", 2),), 1),
])
def test_code_size_rule_cannot_starve_a_group(heads, code):
    from cloakflow.models.heads import as_heads

    assert code_size(as_heads(heads)) == code
    cfg = AutoencoderConfig(architecture="kinds", heads=heads)
    width = sum(w for _, w in heads)
    hidden, got = cfg.sizes(width)
    assert got == code and hidden >= 2 * code
    _, enc, dec = build_autoencoder(width, cfg, seed=0)
    assert enc.output_shape == (None, code) and dec.output_shape == (None, width)


def test_loss_is_squared_error_plus_cross_entropy_per_block():
    y = np.array([[0.2, 1.0, 0.0]], dtype=np.float32)
    out = np.array([[0.5, 0.25, 0.75]], dtype=np.float32)
    loss = per_example_loss((("numeric", 1), ("categorical", 2)))
    got = float(np.asarray(loss(y, out))[0])
    assert got == pytest.approx(0.3 ** 2 - np.log(0.25), rel=1e-5)


def test_heads_reject_a_bad_shape():
    with pytest.raises(ValueError, match="bad head width"):
        Head("numeric", 2)
    with pytest.raises(ValueError, match="output heads cover 3 columns, the input has 4"):
        AutoencoderConfig(architecture="kinds", heads=(("categorical", 3),)).sizes(4)


def _table(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    cat = np.eye(12, dtype=np.float32)[rng.integers(0, 12, n)]
    flag = np.eye(2, dtype=np.float32)[rng.integers(0, 2, n)]
    num = rng.random((n, 2)).astype(np.float32)
    return np.hstack([num, cat, flag]), rng


def test_no_dead_output_and_rebuilt_from_weights():
    x, _ = _table(1500)
    cfg = AutoencoderConfig(architecture="kinds", heads=HEADS, epochs=4)
    result = train_autoencoder(x, cfg, seed=3)
    rec = reconstruct(result.autoencoder, x)
    assert dead_outputs(rec) == 0
    # each category block is a distribution
    assert np.allclose(rec[:, 2:14].sum(axis=1), 1.0, atol=1e-4)
    again, enc, _ = autoencoder_from_weights(x.shape[1], cfg, result.autoencoder.get_weights())
    assert np.allclose(encode(enc, x[:50]), encode(result.encoder, x[:50]), atol=1e-6)


def test_kinds_model_trains_through_the_dp_sgd_seam():
    from cloakflow.models.autoencoder import train_autoencoders_dp
    from cloakflow.models.training.dp_sgd import DpSgdConfig, plan

    x, _ = _table(600)
    cfg = AutoencoderConfig(architecture="kinds", batch_size=60, epochs=2)
    budget = plan(len(x), 60, 2, DpSgdConfig(target_epsilon=5.0, delta=1e-5))
    out = train_autoencoders_dp(x, {"whole": None, "g": [2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,
                                                         13]}, cfg, budget, clip_norm=1.0,
                                rng=np.random.default_rng(1),
                                heads={"whole": HEADS, "g": (("categorical", 12),)})
    assert out["g"].encoder.output_shape == (None, 4)
    assert np.isfinite(out["whole"].history["loss"]).all()
    assert out["whole"].dp["steps_run"] == budget.steps


def test_group_codes_keep_a_skewed_numeric_that_drives_the_target():
    # target depends only on a skewed numeric inside a three-column group: the kinds codes
    # (quantile scaling, 3 code dimensions) keep it; ORIGINAL is the forest on the source
    from cloakflow.tasks.data.preprocess import TablePreprocessor
    from cloakflow.tasks.data.profile import DatasetProfile
    from cloakflow.tasks.evaluation.utility import cross_validate_forest

    rng = np.random.default_rng(7)
    n = 4000
    wage = rng.lognormal(3.0, 1.2, n)
    frame = pl.DataFrame({"wage": wage, "hours": rng.normal(38, 6, n),
                          "tenure": rng.exponential(5, n),
                          "y": np.where(wage + rng.normal(0, 3, n) < 12, "yes", "no")})
    profile = DatasetProfile.model_validate({
        "name": "skew", "target": {"column": "y", "positive": "yes"},
        "groups": {"pay": ["wage", "hours", "tenure"]}})
    y = (frame["y"] == "yes").to_numpy().astype(int)
    scores = {}
    for arch, numeric in (("kinds", "quantile"), ("tutorial", "minmax")):
        pre = TablePreprocessor(profile, numeric=numeric).fit(frame, "t")
        x = pre.transform(frame, "t")
        cfg = AutoencoderConfig(architecture=arch, heads=pre.heads("pay"), epochs=40)
        codes = encode(train_autoencoder(x, cfg, seed=1).encoder, x)
        scores[arch] = cross_validate_forest(codes, y, folds=3, seed=1,
                                             n_estimators=100)["mean"]["test_roc_auc"]
        scores["ORIGINAL"] = cross_validate_forest(x, y, folds=3, seed=1,
                                                   n_estimators=100)["mean"]["test_roc_auc"]
    assert scores["ORIGINAL"] - scores["kinds"] <= 0.02, scores
