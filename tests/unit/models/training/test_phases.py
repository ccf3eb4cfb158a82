"""The phase trainer (``models.training.phases``): a two-network model trained in alternating
phases learns; under DP the private term's per-example norms are one-row gradient norms, the
public term is neither clipped nor noised, and the accountant's steps are the private phase's
steps."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from cloakflow.models.training.accounting import DpBudget
from cloakflow.models.training.dp_sgd import DpSgdConfig, plan, secret_streams
from cloakflow.models.training.phases import (
    EarlyStopping,
    JointTerm,
    Phase,
    PhaseTrainer,
    PrivateTerm,
    PublicTerm,
    private_steps_per_round,
    train_phases,
)
from cloakflow.models.training.trainer import TrainConfig
from tests.helpers import jax_result
from tests.unit.models.training import toy_gan

HERE = Path(__file__).resolve().parent


def _adam() -> dict:
    return {n: keras.optimizers.Adam(1e-3, beta_1=0.5) for n in ("critic", "generator")}


def test_plain_alternating_phases_learn_the_mixture():
    nets = toy_gan.networks(seed=1)
    untrained, _ = toy_gan.mode_coverage(nets["generator"])
    log, weights = train_phases(nets, toy_gan.phases(), toy_gan.mixture(2000), TrainConfig(
        epochs=20, batch_size=64), optimizers=_adam(), seed=0)
    near, left = toy_gan.mode_coverage(nets["generator"])
    # within distance 1 of a centre (sd 0.3: 99.6% of real rows); 60-96% over seeds 1-2 on
    # both backends after these 20 epochs
    assert untrained < 0.1 and near > 0.5, (untrained, near)
    assert 0.2 < left < 0.8, left  # both modes, not one
    assert log.steps == {"critic": 20 * 32, "generator": 20 * 32} and log.epochs_run == 20
    assert log.budget is None and math.isinf(log.clip_norm)
    # the weights come back as plain arrays, the same as the networks hold
    assert all(isinstance(w, np.ndarray) for w in weights["generator"])
    np.testing.assert_array_equal(weights["critic"][0], nets["critic"].get_weights()[0])


def test_private_norms_are_one_row_gradient_norms():
    nets = toy_gan.networks(seed=2)
    critic = toy_gan.phases()[0]
    trainer = PhaseTrainer(nets, toy_gan.phases(), _adam())
    x = toy_gan.mixture(16, seed=4)
    expected = []
    for row in x:
        with tf.GradientTape() as tape:
            loss = toy_gan.critic_real(None, nets["critic"](row[None]))[0]
        grads = tape.gradient(loss, nets["critic"].trainable_variables)
        expected.append(math.sqrt(sum(float(tf.reduce_sum(g * g)) for g in grads)))
    np.testing.assert_allclose(trainer.private_norms(critic, x), expected, rtol=1e-4)


def _one_dp_critic_step(clip_norm: float, sigma: float, seed: int = 5):
    """One DP step of the critic phase alone with SGD(lr 1) on 64 rows, every row sampled:
    (weights before, after, the public inputs it drew)."""
    nets = toy_gan.networks(seed=3)
    critic = toy_gan.phases()[0]
    before = [w.copy() for w in nets["critic"].get_weights()]
    budget = DpBudget(math.inf, 1e-5, sigma, 1.0, 1, 1.0, "rdp", "poisson")
    log, _ = train_phases(nets, [critic], toy_gan.mixture(64), TrainConfig(batch_size=64),
                          budget=budget, clip_norm=clip_norm,
                          optimizers={"critic": keras.optimizers.SGD(1.0)},
                          rng=np.random.default_rng(seed))
    assert log.private_steps == log.steps["critic"] == 1
    z = secret_streams(4, np.random.default_rng(seed))[3].standard_normal(
        (64, toy_gan.LATENT), dtype=np.float32)  # the run's public stream, replayed
    return before, nets, z


def test_the_public_term_is_neither_clipped_nor_noised():
    # C tiny, sigma 0: the private part is clipped to ~nothing, so the update is the public
    # gradient alone, at full size
    before, nets, z = _one_dp_critic_step(clip_norm=1e-9, sigma=0.0)
    fresh = toy_gan.networks(seed=3)
    with tf.GradientTape() as tape:
        loss = toy_gan.critic_fake(lambda name, v: fresh[name](v), z)
    public = tape.gradient(loss, fresh["critic"].trainable_variables)
    for b, a, g in zip(before, nets["critic"].get_weights(), public, strict=True):
        np.testing.assert_allclose(b - a, g.numpy(), atol=1e-6)


def test_the_private_term_is_clipped_and_noised():
    before, clipped, _ = _one_dp_critic_step(clip_norm=1e-9, sigma=0.0)
    _, noised, _ = _one_dp_critic_step(clip_norm=1e-9, sigma=1e8)
    _, unclipped, _ = _one_dp_critic_step(clip_norm=1e6, sigma=0.0)
    step = [np.abs(a - b).max() for a, b in zip(clipped["critic"].get_weights(),
                                                unclipped["critic"].get_weights(), strict=True)]
    assert max(step) > 1e-3  # the private gradient counts when it is not clipped away
    # sigma * C = 0.1 of noise per coordinate, divided by the 64 expected rows
    noise = np.concatenate([(a - b).ravel() for a, b in zip(
        clipped["critic"].get_weights(), noised["critic"].get_weights(), strict=True)])
    assert np.std(noise) == pytest.approx(0.1 / 64, rel=0.2)


def test_the_accountant_counts_exactly_the_private_phases_steps():
    x = toy_gan.mixture(500)
    budget = plan(500, 50, 3, DpSgdConfig(target_epsilon=3.0, delta=1e-5))
    phases = toy_gan.phases(critic_steps=2)  # two critic steps per generator step
    assert private_steps_per_round(phases) == 2
    log, _ = train_phases(toy_gan.networks(), phases, x, TrainConfig(batch_size=50),
                          budget=budget, clip_norm=1.0, optimizers=_adam(),
                          rng=np.random.default_rng(0))
    assert log.private_steps == log.steps["critic"] == budget.steps == 30
    assert log.steps["generator"] == budget.steps // 2  # reads no row: not accounted
    assert log.epochs_run == 3 and len(log.clipped_share) == 3


def test_phases_that_cannot_train_are_refused():
    fake = PublicTerm(toy_gan.critic_fake, toy_gan.latent)
    with pytest.raises(ValueError, match="has no term"):
        Phase("empty", ("critic",))
    with pytest.raises(ValueError, match="which it does not update"):
        Phase("wrong", ("generator",), private=(PrivateTerm("critic", toy_gan.critic_real),))
    with pytest.raises(ValueError, match="no phase reads the training rows"):
        train_phases(toy_gan.networks(), [Phase("g", ("critic",), public=fake)],
                     toy_gan.mixture(10), TrainConfig())
    with pytest.raises(ValueError, match="unknown networks"):
        PhaseTrainer(toy_gan.networks(), [Phase("p", ("discriminator",), public=fake)])
    with pytest.raises(ValueError, match="clip_norm"):
        train_phases(toy_gan.networks(), toy_gan.phases(), toy_gan.mixture(10), TrainConfig(),
                     budget=plan(10, 5, 1, DpSgdConfig(target_epsilon=3.0, delta=1e-3)))


def _chain(seed: int = 0):
    """Two one-Dense networks in a chain, fitted through both by joint terms: y = 3 x."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((256, 2)).astype(np.float32)
    x[:, 1] = 3 * x[:, 0]

    def dense(name: str):
        inputs = keras.Input((1,))
        return keras.Model(inputs, keras.layers.Dense(
            1, name=name, kernel_initializer=keras.initializers.Constant(0.1))(inputs))

    def loss(view, rows, mask):
        out = view("second", view("first", rows[:, :1]))
        return keras.ops.sum(keras.ops.square(out[:, 0] - rows[:, 1]) * mask) / \
            keras.ops.maximum(keras.ops.sum(mask), 1.0)

    phases = [Phase("first", ("first",), joint=JointTerm(loss)),
              Phase("second", ("second",), joint=JointTerm(loss))]
    return x, {"first": dense("first"), "second": dense("second")}, phases


def test_joint_terms_train_through_several_networks_plainly_and_are_refused_under_dp():
    x, nets, phases = _chain()
    before = float(np.mean((0.01 * x[:, 0] - x[:, 1]) ** 2))
    log, weights = train_phases(nets, phases, x, TrainConfig(epochs=40, batch_size=32,
                                                             learning_rate=0.05), seed=1)
    # an epoch is one pass over the rows by every phase that reads them, together
    assert log.steps == {"first": 160, "second": 160} and log.private_steps == 320
    w = float(weights["first"][0][0, 0] * weights["second"][0][0, 0])
    b = float(weights["first"][1][0] * weights["second"][0][0, 0] + weights["second"][1][0])
    assert abs(w - 3) < 0.05 and abs(b) < 0.05  # the chain learnt y = 3 x
    assert log.history["second.private"][-1] < 0.01 * before
    budget = plan(256, 32, 1, DpSgdConfig(target_epsilon=3.0, delta=1e-3))
    with pytest.raises(ValueError, match=r"\['first', 'second'\] have a joint term"):
        train_phases(_chain()[1], phases, x, TrainConfig(), budget=budget, clip_norm=1.0)


def _line(seed: int = 0):
    """A one-Dense regression network and its one-phase fit: y = 2 x0 - x1 + noise."""
    rng = np.random.default_rng(seed)
    x = rng.random((300, 3)).astype(np.float32)
    x[:, 2] = 2 * x[:, 0] - x[:, 1] + 0.01 * rng.standard_normal(300)
    inputs = keras.Input((2,))
    net = keras.Model(inputs, keras.layers.Dense(
        1, kernel_initializer=keras.initializers.GlorotUniform(seed))(inputs))

    def loss(y, out):
        return keras.ops.mean(keras.ops.square(out - y), axis=-1)

    phase = Phase("fit", ("net",), private=(PrivateTerm("net", loss, (0, 1), (2,)),))
    return x, net, phase


def test_early_stopping_keeps_the_best_epoch_and_stops_after_patience():
    x, net, phase = _line()
    # a large learning rate makes the validation loss bounce: the best epoch is not the last
    log, weights = train_phases({"net": net}, [phase], x[:200], TrainConfig(
        epochs=40, batch_size=16, learning_rate=0.5), seed=1,
        stopping=EarlyStopping(x[200:], patience=3))
    val = log.history["validation"]
    assert len(val) == log.epochs_run and log.best_epoch == int(np.argmin(val)) + 1
    assert log.epochs_run < 40 and log.epochs_run - log.best_epoch == 3
    out = np.asarray(net(x[200:, :2]))[:, 0]
    assert float(np.mean((out - x[200:, 2]) ** 2)) == pytest.approx(min(val), rel=1e-5)
    np.testing.assert_array_equal(weights["net"][0], net.get_weights()[0])
    # without early stopping: every epoch runs and the last one is kept
    log, _ = train_phases({"net": _line()[1]}, [phase], x[:200], TrainConfig(
        epochs=4, batch_size=16), seed=1)
    assert log.epochs_run == log.best_epoch == 4 and "validation" not in log.history


def test_early_stopping_is_refused_under_dp():
    x, net, phase = _line()
    budget = plan(200, 20, 1, DpSgdConfig(target_epsilon=3.0, delta=1e-5))
    with pytest.raises(ValueError, match="early stopping"):
        train_phases({"net": net}, [phase], x[:200], TrainConfig(batch_size=20), budget=budget,
                     clip_norm=1.0, stopping=EarlyStopping(x[200:]))
    with pytest.raises(ValueError, match="patience"):
        EarlyStopping(x, patience=0)


def test_a_phase_traces_at_most_twice_whatever_its_batches():
    # chunks of different lengths, batches of different sizes (an epoch's partial batch):
    # reduce_retracing makes the second trace generic, and nothing traces again
    x, net, phase = _line()
    trainer = PhaseTrainer({"net": net}, [phase])
    rng = np.random.default_rng(0)
    for k, b in [(4, 16), (3, 16), (1, 7), (5, 16), (2, 9)]:
        batches = [rng.choice(300, b, replace=False) for _ in range(k)]
        trainer.run_steps(phase, x, batches, np.zeros((k, trainer.noise_width(phase))),
                          np.zeros((k, 1, 1)), math.inf, 0.0, np.full(k, float(b)))
    assert 1 <= trainer.compiled["fit"].experimental_get_tracing_count() <= 2


JAX_CHECK = textwrap.dedent("""
    import sys
    import keras, numpy as np
    sys.path.insert(0, HELPERS)
    import toy_gan
    from cloakflow.models.training.dp_sgd import DpSgdConfig, plan
    from cloakflow.models.training.phases import PhaseTrainer, train_phases
    from cloakflow.models.training.trainer import TrainConfig
    assert keras.backend.backend() == "jax"
    nets = toy_gan.networks(seed=1)
    opts = {n: keras.optimizers.Adam(1e-3, beta_1=0.5) for n in nets}
    train_phases(nets, toy_gan.phases(), toy_gan.mixture(2000), TrainConfig(
        epochs=20, batch_size=64), optimizers=opts, seed=0)
    near, left = toy_gan.mode_coverage(nets["generator"])
    x = toy_gan.mixture(8, seed=4)
    trainer = PhaseTrainer(nets, toy_gan.phases(), opts)
    norms = trainer.private_norms(toy_gan.phases()[0], x)
    single = [trainer.private_norms(toy_gan.phases()[0], x[i:i + 1])[0] for i in range(8)]
    budget = plan(500, 50, 2, DpSgdConfig(target_epsilon=3.0, delta=1e-5))
    log, _ = train_phases(toy_gan.networks(), toy_gan.phases(critic_steps=2),
                          toy_gan.mixture(500), TrainConfig(batch_size=50), budget=budget,
                          clip_norm=1.0, rng=np.random.default_rng(0))
    print("RESULT", near, left, float(np.max(np.abs(norms - np.array(single)))),
          log.private_steps, budget.steps)
""")


def test_jax_backend_learns_the_mixture_and_counts_private_steps():
    near, left, norm_diff, private, steps = jax_result(JAX_CHECK, HERE)
    assert float(near) > 0.5 and 0.2 < float(left) < 0.8
    assert float(norm_diff) < 1e-5
    assert int(private) == int(steps) == 20
