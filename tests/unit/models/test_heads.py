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
from cloakflow.models.heads import (
    Head,
    block_sizes,
    code_size,
    column_aligned_kernel,
    dead_outputs,
    per_example_loss,
)

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
    for layer in out["whole"].decoder.layers:  # DP steps keep the decoder column by column
        if getattr(layer, "kernel_constraint", None) is not None:
            off = 1.0 - np.asarray(layer.kernel_constraint.mask())
            assert np.abs(layer.kernel.numpy() * off).max() == 0.0


@pytest.mark.slow  # ~25 s of training; the kinds architecture runs in every flow test
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


def test_column_aligned_start_is_a_lossless_per_column_code():
    # numerics copied to their own dimension; a 12-level column's level i written as the
    # 4 binary digits of i; the boolean's 2 levels as 1 digit
    heads = Head("numeric", 1), Head("numeric", 1), Head("categorical", 12), \
        Head("categorical", 2)
    assert block_sizes(heads) == [1, 1, 4, 1]
    kernel = column_aligned_kernel(heads)
    assert kernel.shape == (16, 7)
    x, _ = _table(200)
    code = x @ kernel
    np.testing.assert_array_equal(code[:, :2], x[:, :2])
    level = x[:, 2:14].argmax(axis=1)
    np.testing.assert_array_equal(code[:, 2:6] @ (2 ** np.arange(4)), level)
    np.testing.assert_array_equal(code[:, 6], x[:, 15])
    # the built model starts there: its linear path holds the kernel, the ReLU path adds 0
    _, enc, _ = build_autoencoder(16, AutoencoderConfig(architecture="kinds", heads=heads), 0)
    np.testing.assert_allclose(encode(enc, x), code + enc.get_layer("linear_path").bias.numpy(),
                               atol=1e-6)


def test_each_column_is_decoded_from_its_own_block():
    # changing column j's code block moves only column j's outputs
    cfg = AutoencoderConfig(architecture="kinds", heads=HEADS)
    _, _, dec = build_autoencoder(16, cfg, seed=0)
    code = np.random.default_rng(0).normal(size=(5, 7)).astype(np.float32)
    moved = code.copy()
    moved[:, 2:6] += 1.0  # the 12-level column's block
    delta = np.abs(np.asarray(dec(moved)) - np.asarray(dec(code))).max(axis=0)
    assert (delta[2:14] > 0).any() and (delta[:2] == 0).all() and (delta[14:] == 0).all()


def test_a_constant_column_is_not_a_dead_output():
    target = np.array([[0.0, 1.0, 0.2], [0.0, 1.0, 0.9]], dtype=np.float32)
    out = np.array([[1e-9, 0.99, 0.5], [1e-9, 0.99, 0.5]], dtype=np.float32)
    assert dead_outputs(out) == 3  # every unit constant
    assert dead_outputs(out, target) == 1  # only the third: its column moves, it does not


def test_saved_model_loads_in_a_fresh_process(tmp_path):
    import subprocess
    import sys

    cfg = AutoencoderConfig(architecture="kinds", heads=HEADS)
    ae, _, _ = build_autoencoder(16, cfg, seed=0)
    path = tmp_path / "ae.keras"
    ae.save(path)
    x, _ = _table(4)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", np.asarray(ae(x)))
    script = ("import numpy as np, keras\n"
              "from cloakflow.models.heads import custom_layers\n"
              "custom_layers()\n"
              f"m = keras.models.load_model({str(path)!r}, compile=False)\n"
              f"d = np.abs(np.asarray(m(np.load({str(tmp_path / 'x.npy')!r}))) - "
              f"np.load({str(tmp_path / 'y.npy')!r})).max()\n"
              "print('diff', d)\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert float(out.stdout.split("diff")[-1]) < 1e-6


def test_dp_clips_the_gradient_of_the_kept_kernel_entries_exactly():
    # per-example norms of the block-connected decoder = one-row gradients with the entries
    # the constraint removes left out; a DP step keeps those entries at zero
    import keras

    from cloakflow.models.training.dp_sgd import DpSgd

    cfg = AutoencoderConfig(architecture="kinds", heads=HEADS)
    ae, _, dec = build_autoencoder(16, cfg, seed=0)
    x, _ = _table(12)
    loss = per_example_loss(HEADS)
    norms = DpSgd(ae, keras.optimizers.SGD(0.1)).per_example_norms(x)
    masks = {id(v): np.asarray(layer.kernel_constraint.mask())
             for layer in dec.layers if getattr(layer, "kernel_constraint", None) is not None
             for v in [layer.kernel]}
    assert len(masks) == 2
    expected = []
    for i in range(len(x)):
        row = x[i:i + 1]
        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            with tf.GradientTape() as tape:
                value = tf.reduce_sum(loss(row, ae(row)))
            grads = tape.gradient(value, ae.trainable_variables)
        else:
            pytest.skip("reference gradients written for the tensorflow backend")
        total = 0.0
        for v, g in zip(ae.trainable_variables, grads, strict=True):
            g = np.asarray(g) * masks.get(id(v), 1.0)
            total += float(np.sum(g ** 2))
        expected.append(np.sqrt(total))
    np.testing.assert_allclose(norms, expected, rtol=1e-4)
    budget_free = train_autoencoder(x, AutoencoderConfig(architecture="kinds", heads=HEADS,
                                                         epochs=2), seed=0)
    for layer in budget_free.decoder.layers:
        if getattr(layer, "kernel_constraint", None) is not None:
            off = 1.0 - np.asarray(layer.kernel_constraint.mask())
            assert np.abs(layer.kernel.numpy() * off).max() == 0.0


def test_head_activation_is_a_stable_softmax_per_block():
    from cloakflow.models.heads import custom_layers

    act = custom_layers()["HeadActivation"]([["numeric", 1], ["categorical", 2],
                                             ["categorical", 3]])
    logits = np.array([[7.5, 40.0, 35.0, -200.0, -210.0, -190.0]], dtype=np.float32)
    out = np.asarray(act(logits))[0]
    assert out[0] == 7.5  # a numeric passes through
    np.testing.assert_allclose(out[1:3], np.exp([5, 0]) / np.exp([5, 0]).sum(), rtol=1e-5)
    np.testing.assert_allclose(out[3:], np.exp([-10, -20, 0]) / np.exp([-10, -20, 0]).sum(),
                               rtol=1e-5)
