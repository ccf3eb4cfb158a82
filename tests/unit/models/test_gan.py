"""The tabular GAN: it learns a known mixture (marginals and dependencies), its probe finds a
collapsed column, a seed reproduces a plain run, and under DP one row moves the critic's
noiseless gradient sum by at most C while the accountant's epsilon stays within the plan."""

from __future__ import annotations

import numpy as np
import pytest

from cloakflow.models.gan import (
    Gan,
    GanConfig,
    build_networks,
    noise_inputs,
    phases,
    probe,
    train_gan,
)

HEADS = (("numeric", 1), ("categorical", 3), ("categorical", 2))


def mixture(n: int = 4000, seed: int = 0):
    """(rows in the preprocessor's space, the mode of each row): a bimodal number, a category
    whose shares depend on the mode, and a label (the condition) that depends on it too."""
    rng = np.random.default_rng(seed)
    mode = rng.integers(0, 2, n)
    v = np.where(mode == 1, rng.normal(3, 0.5, n), rng.normal(-1, 1, n))
    cat = np.where(mode == 1, rng.choice(3, n, p=[0.8, 0.1, 0.1]),
                   rng.choice(3, n, p=[0.1, 0.2, 0.7]))
    label = (rng.random(n) < np.where(mode == 1, 0.7, 0.2)).astype(int)
    x = np.zeros((n, 6), np.float32)
    x[:, 0] = (np.argsort(np.argsort(v)) + 0.5) / n  # the number's CDF value
    x[np.arange(n), 1 + cat] = 1
    x[np.arange(n), 4 + label] = 1
    return x


def _config(x, **kw) -> GanConfig:
    shares = tuple(float(v) for v in x[:, 4:6].mean(axis=0))
    return GanConfig(**{"heads": HEADS, "condition": 2, "shares": shares, "hidden": (64, 64),
                        "critic_hidden": (64, 64), "learning_rate": 1e-3, **kw})


def _summary(x):
    high = x[:, 0] > 0.5
    cat, label = x[:, 1:4].argmax(axis=1), x[:, 4:6].argmax(axis=1)
    return {"shares": np.bincount(cat, minlength=3) / len(x),
            "cat_gap": (cat[high] == 0).mean() - (cat[~high] == 0).mean(),
            "label_gap": label[high].mean() - label[~high].mean(),
            "high": high.mean()}


def test_the_gan_learns_a_mixture_and_its_dependencies():
    x = mixture()
    result = train_gan(x, _config(x, epochs=100), seed=1)
    syn = result.gan.sample(4000, np.random.default_rng(2))
    real, got = _summary(x), _summary(syn)
    assert np.abs(got["shares"] - real["shares"]).max() < 0.07, (got, real)
    assert abs(got["high"] - 0.5) < 0.1
    assert got["cat_gap"] > 0.4 and real["cat_gap"] > 0.6  # the category follows the mode
    assert got["label_gap"] > 0.2 and real["label_gap"] > 0.4  # so does the condition
    assert result.log.steps["critic"] == result.log.steps["generator"] == 100 * 8
    probes = result.health["probes"]
    assert [p["epoch"] for p in probes] == list(range(5, 101, 5)) and not probes[-1]["collapsed"]
    assert probes[-1]["fidelity"] > 0.9


def test_the_probe_finds_a_column_collapsed_to_one_level():
    x = mixture(1000)
    cfg = _config(x)
    nets = build_networks(cfg, 0)
    gan = Gan(cfg, nets)
    assert probe(gan, np.random.default_rng(0), reference=x)["collapsed"] == []
    out = nets["generator"].get_layer("generator_out")
    kernel, bias = (np.asarray(w) for w in out.get_weights())
    bias[1] = 100.0  # the category block's first logit far above the Gumbel noise
    out.set_weights([kernel * 0, bias])  # and the number one constant
    found = probe(gan, np.random.default_rng(0), reference=x)
    assert found["collapsed"] == [0, 1]
    assert probe(gan, np.random.default_rng(0))["collapsed"] == [0, 1]  # DP: generated only


def test_a_seed_reproduces_a_plain_run():
    x = mixture(600)
    a, b = (train_gan(x, _config(x, epochs=2), seed=3).gan.sample(
        50, np.random.default_rng(1)) for _ in range(2))
    np.testing.assert_array_equal(a, b)


def test_one_row_moves_the_dp_critic_gradient_by_at_most_c():
    """The critic's and the auxiliary classifier's private terms are clipped jointly per row:
    their noiseless gradient sum over a batch, with and without any one row, differs by at
    most C (add/remove sensitivity), generated packs held fixed (they read no row)."""
    from keras import ops

    from cloakflow.models.training.phases import PhaseTrainer
    from cloakflow.models.vae import to_model_space

    x = to_model_space(mixture(64), HEADS)
    cfg = _config(mixture(64), pac=1, batch_size=64, classifier=1.0)
    trainer = PhaseTrainer(build_networks(cfg, 0), phases(cfg))
    critic = trainer.phases[0]
    assert critic.updates == ("critic", "classifier")
    now = trainer.current()
    public = noise_inputs(cfg, np.random.default_rng(0), 64)
    c = 0.05
    assert (trainer.private_norms(critic, x) > c).mean() > 0.5  # the bound is active

    def grad(rows):
        g, *_ = trainer.gradients(critic, now["values"], now["seeds"],
                                  ops.convert_to_tensor(rows), ops.ones((len(rows),)),
                                  ops.zeros((trainer.noise_width(critic),)), public, c, 0.0,
                                  1.0)
        return np.concatenate([np.ravel(np.asarray(v)) for n in critic.updates for v in g[n]])

    full = grad(x)
    moved = [np.linalg.norm(full - grad(np.delete(x, j, axis=0))) for j in range(0, 64, 8)]
    assert max(moved) <= c * (1 + 1e-4) and max(moved) > 0.5 * c


def test_dp_training_runs_the_planned_critic_steps_within_epsilon():
    from cloakflow.models.training import accounting, dp_sgd

    x = mixture(800)
    budget = dp_sgd.plan(800, 40, 2, dp_sgd.DpSgdConfig(target_epsilon=3.0, delta=1e-5))
    result = train_gan(x, _config(x, pac=1, batch_size=40, epochs=2), budget=budget,
                       clip_norm=0.1, rng=np.random.default_rng(0), expected_batch=40.0)
    assert result.log.private_steps == budget.steps == result.log.steps["critic"]
    assert result.seed is None
    spent = accounting.epsilon(budget.noise_multiplier, budget.sampling_rate,
                               result.log.private_steps, 1e-5, budget.accountant)
    assert spent.epsilon <= 3.0 + 1e-6


def test_bad_settings_are_refused():
    x = mixture(100)
    with pytest.raises(ValueError, match="multiple of pac"):
        _config(x, pac=10, batch_size=55)
    with pytest.raises(ValueError, match="condition shares"):
        GanConfig(heads=HEADS, condition=2)
    with pytest.raises(ValueError, match="categorical or boolean"):
        GanConfig(heads=HEADS, condition=0, shares=(1.0,))
    with pytest.raises(ValueError, match="matrix for these heads"):
        train_gan(x[:, :5], _config(x))
    from cloakflow.models.training import dp_sgd

    budget = dp_sgd.plan(100, 10, 1, dp_sgd.DpSgdConfig(target_epsilon=3.0, delta=1e-5))
    with pytest.raises(ValueError, match="pac = 1"):
        train_gan(x, _config(x, batch_size=10), budget=budget, clip_norm=0.1)
