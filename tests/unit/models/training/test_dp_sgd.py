"""DP-SGD: ghost norms against per-example gradients taken one row at a time, clipping, the
sigma = 0 / C = inf equivalence with plain training, budget planning, both backends."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest
from dp_sgd_helpers import one_phase_trainer, plain_vs_dp_max_difference

from cloakflow.models.autoencoder import (
    AutoencoderConfig,
    build_autoencoder,
    train_autoencoder_dp,
)
from cloakflow.models.training import dp_sgd
from cloakflow.models.training.accounting import epsilon
from cloakflow.models.training.dp_sgd import DpSgd, DpSgdConfig, plan, train_dp
from tests.helpers import jax_result

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[3]


def _data(n: int = 200, d: int = 10, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, d), dtype=np.float32)


def _one_row_gradients(model, x: np.ndarray) -> list[np.ndarray]:
    """Each row's gradient, one GradientTape per row (the slow, obvious way)."""
    import tensorflow as tf

    out = []
    variables = dp_sgd.PerExampleGraph(model).variables
    for i in range(len(x)):
        row = x[i:i + 1]
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(model(row) - row))
        out.append(np.concatenate([np.ravel(g) for g in tape.gradient(loss, variables)]))
    return out


@pytest.fixture
def model():
    return build_autoencoder(10, AutoencoderConfig(), seed=3)[0]


def test_ghost_norms_equal_one_row_gradient_norms(model):
    x = _data(24)
    trainer = DpSgd(model, keras.optimizers.Adam(1e-3))
    norms = trainer.per_example_norms(x)
    expected = [np.linalg.norm(g) for g in _one_row_gradients(model, x)]
    assert norms.shape == (24,) and np.all(norms > 0)
    np.testing.assert_allclose(norms, expected, rtol=1e-4)


@pytest.mark.parametrize("clip", [0.05, 0.2])
def test_clipping_bounds_every_per_example_gradient(model, clip):
    x = _data(32)
    graph = dp_sgd.PerExampleGraph(model)
    values = [v.value for v in graph.variables]
    raw = _one_row_gradients(model, x)
    assert max(np.linalg.norm(g) for g in raw) > clip  # the bound has work to do
    clipped_rows = []
    for i in range(len(x)):  # one row in the batch at a time: its clipped contribution
        mask = np.zeros(len(x), dtype=np.float32)
        mask[i] = 1.0
        grads, _, _ = dp_sgd.clipped_gradient_sum(graph, values, x, x, mask, clip)
        flat = np.concatenate([np.ravel(np.asarray(g)) for g in grads])
        assert np.linalg.norm(flat) <= clip * (1 + 1e-5)
        # same direction as the true gradient, scaled by min(1, C / norm)
        scale = min(1.0, clip / np.linalg.norm(raw[i]))
        np.testing.assert_allclose(flat, raw[i] * scale, rtol=1e-4, atol=1e-7)
        clipped_rows.append(flat)
    grads, _, _ = dp_sgd.clipped_gradient_sum(graph, values, x, x, np.ones(len(x), np.float32),
                                              clip)
    batch = np.concatenate([np.ravel(np.asarray(g)) for g in grads])
    np.testing.assert_allclose(batch, np.sum(clipped_rows, axis=0), rtol=1e-4, atol=1e-6)


def test_no_noise_no_clipping_reproduces_plain_training():
    assert plain_vs_dp_max_difference() < 1e-6


def test_noise_changes_the_update_by_its_scale(model):
    x = _data(64)
    base = [w.copy() for w in model.get_weights()]
    trainer, phase = one_phase_trainer(model, keras.optimizers.SGD(learning_rate=1.0))
    noise = np.random.default_rng(0).standard_normal((1, trainer.noise_width(phase)),
                                                     dtype=np.float32)
    empty = [np.array([], dtype=np.int64)]  # no rows sampled: the update is the noise alone
    trainer.run_steps(phase, x, empty, noise, np.zeros((1, 1, 1), np.float32), 0.5, 0.5 * 2.0,
                      np.array([10.0], np.float32))
    trainer.sync()
    step = np.concatenate([np.ravel(b - a) for a, b in zip(model.get_weights(), base,
                                                           strict=True)])
    np.testing.assert_allclose(step, noise[0] * 1.0 / 10.0, rtol=1e-5, atol=1e-7)


def test_plan_solves_sigma_and_stops_when_the_budget_is_spent():
    solved = plan(10_000, 100, 5, DpSgdConfig(target_epsilon=2.0, delta=1e-6))
    assert solved.steps == 500 and solved.sampling_rate == pytest.approx(0.01)
    assert solved.epsilon == pytest.approx(2.0, rel=0.01) and solved.epsilon <= 2.0 + 1e-6
    # a given sigma that would overspend in 5 epochs: the run is cut to what 2.0 buys
    cut = plan(10_000, 100, 5, DpSgdConfig(target_epsilon=2.0, delta=1e-6,
                                           noise_multiplier=0.8))
    assert cut.steps < 500 and cut.epsilon <= 2.0
    assert epsilon(0.8, 0.01, cut.steps + 1, 1e-6).epsilon > 2.0
    assert plan(10_000, 100, 5, DpSgdConfig(noise_multiplier=0.8)).steps == 500
    with pytest.raises(ValueError, match="target_epsilon or noise_multiplier"):
        DpSgdConfig()
    with pytest.raises(ValueError, match="clip_norm"):
        DpSgdConfig(target_epsilon=1.0, clip_norm=0.0)


def test_train_dp_runs_exactly_the_planned_steps(model):
    x = _data(400)
    budget = plan(400, 50, 3, DpSgdConfig(target_epsilon=5.0, delta=1e-5))
    seen = []
    log = train_dp(model, x, budget, 0.1, rng=np.random.default_rng(0), steps_per_execution=5,
                   on_epoch=lambda e, m: seen.append((e, m)),
                   optimizers=keras.optimizers.Adam(1e-3))
    assert log.steps_run == budget.steps == 24
    assert [e for e, _ in seen] == [1, 2, 3] and log.epochs_run == 3
    assert all(0 <= m["clipped"] <= 1 and m["loss"] > 0 for _, m in seen)


def test_dp_autoencoder_learns_and_reports_its_budget():
    x = np.repeat(np.eye(6, dtype=np.float32), 100, axis=0)  # six one-hot patterns
    cfg = AutoencoderConfig(batch_size=60, learning_rate=1e-2)
    budget = plan(len(x), 60, 8, DpSgdConfig(target_epsilon=8.0, delta=1e-5))
    result = train_autoencoder_dp(x, cfg, budget, clip_norm=0.1)
    assert result.dp["steps_run"] == budget.steps and result.dp["clip_norm"] == 0.1
    assert result.best_val_loss is None and result.epochs_run == 8
    assert result.history["loss"][-1] < result.history["loss"][0]


def test_unsupported_layers_are_refused():
    inputs = keras.Input((4,))
    x = keras.layers.Dense(3)(inputs)
    x = keras.layers.BatchNormalization()(x)
    bad = keras.Model(inputs, keras.layers.Dense(4)(x))
    bad.compile(optimizer="adam", loss="mse")
    with pytest.raises(TypeError, match="BatchNormalization"):
        DpSgd(bad)


def test_poisson_batches_have_the_expected_size():
    rng = np.random.default_rng(0)
    sizes = [len(b) for b in dp_sgd.poisson_batches(5000, 0.02, 400, rng)]
    assert abs(np.mean(sizes) - 100) < 2 and np.std(sizes) == pytest.approx(
        math.sqrt(5000 * 0.02 * 0.98), rel=0.15)
    batch, mask = dp_sgd.padded(np.ones((10, 2), np.float32), np.array([1, 2, 3]), 8)
    assert batch.shape == (8, 2) and mask.tolist() == [1, 1, 1, 0, 0, 0, 0, 0]


JAX_CHECK = textwrap.dedent("""
    import sys
    import numpy as np, keras
    from cloakflow.models.autoencoder import AutoencoderConfig, build_autoencoder
    from cloakflow.models.training.dp_sgd import DpSgd, DpSgdConfig, plan, train_dp
    sys.path.insert(0, HELPERS)
    from dp_sgd_helpers import one_phase_trainer, plain_vs_dp_max_difference
    assert keras.backend.backend() == "jax"
    diff = plain_vs_dp_max_difference()
    x = np.random.default_rng(1).random((300, 12), dtype=np.float32)
    trainer = DpSgd(build_autoencoder(12, AutoencoderConfig(), seed=9)[0],
                    keras.optimizers.Adam(1e-3))
    norms = trainer.per_example_norms(x[:16])
    single = [trainer.per_example_norms(x[i:i + 1])[0] for i in range(16)]
    fresh = build_autoencoder(12, AutoencoderConfig(), seed=4)[0]
    budget = plan(300, 30, 2, DpSgdConfig(target_epsilon=4.0, delta=1e-5))
    log = train_dp(fresh, x, budget, 0.1, optimizers=keras.optimizers.Adam(1e-3))
    print("RESULT", diff, float(np.max(np.abs(norms - np.array(single)))), log.steps_run,
          budget.steps)
""")


def test_jax_backend_matches_plain_training_and_runs_dp():
    diff, norm_diff, steps_run, steps = jax_result(JAX_CHECK, HERE)
    assert float(diff) < 1e-6 and float(norm_diff) < 1e-5
    assert int(steps_run) == int(steps) == 20


@pytest.mark.slow  # ~30 s of training; DP-SGD's step and accounting are unit-tested above
def test_dp_sgd_defeats_membership_inference_that_works_without_it(bank_sample):
    """200 rows of the bank sample, 200 epochs: the plain model memorises its rows and the
    loss-threshold attack finds them; the DP-SGD model at epsilon 1 does not let it."""
    from cloakflow.tasks.data.ingest import scan_table
    from cloakflow.tasks.data.preprocess import TablePreprocessor
    from cloakflow.tasks.data.profile import load_profile
    from cloakflow.tasks.privacy.attacks import membership_inference, reconstruction_losses

    profile = load_profile("bank-marketing")
    frame = scan_table(bank_sample, profile).collect()
    x = TablePreprocessor(profile, public_bounds=True).fit(frame).transform(frame)
    order = np.random.default_rng(0).permutation(len(x))
    members, others = x[order[:200]], x[order[200:1200]]
    cfg = AutoencoderConfig(batch_size=32)

    def auc(model) -> float:
        return membership_inference(reconstruction_losses(model, members),
                                    reconstruction_losses(model, others))["auc"]

    plain = build_autoencoder(x.shape[1], cfg, seed=1)[0]
    plain.fit(members, members, batch_size=32, epochs=200, verbose=0)
    budget = plan(200, 32, 200, DpSgdConfig(target_epsilon=1.0))
    private = train_autoencoder_dp(members, cfg, budget, 0.1,
                                   rng=np.random.default_rng(1)).autoencoder
    assert auc(plain) > 0.65
    assert auc(private) < 0.58


@pytest.mark.parametrize("rows, batch, epochs", [(810, 256, 30), (1000, 100, 3), (37069, 256, 30),
                                                 (7, 5, 2)])
def test_a_plan_of_e_epochs_is_logged_as_e_epochs(rows, batch, epochs):
    budget = plan(rows, batch, epochs, DpSgdConfig(noise_multiplier=1.0))
    ends = dp_sgd.epoch_ends(budget.steps, budget.sampling_rate)
    assert len(ends) == epochs and ends[-1] == budget.steps
    assert all(b > a for a, b in zip([0, *ends], ends, strict=False))
