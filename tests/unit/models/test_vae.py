"""The tabular VAE: it recovers a known mixture (marginals and a dependency), samples with a
chosen label, is seeded when sampling, and trains through the DP-SGD seam."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from cloakflow.models.vae import VaeConfig, build_vae, to_model_space, train_vae
from cloakflow.tasks.data.preprocess import TablePreprocessor
from cloakflow.tasks.data.profile import DatasetProfile


def _mixture(n: int, seed: int = 0) -> pl.DataFrame:
    """A bimodal, skewed numeric whose mode is set by a 3-level category and which is missing
    in a fifth of the "b" rows, and a label that depends on the category."""
    rng = np.random.default_rng(seed)
    kind = rng.choice(["a", "b", "c"], n, p=[0.5, 0.3, 0.2])
    amount = np.where(kind == "a", rng.normal(10, 1, n), rng.lognormal(4, 0.3, n))
    label = np.where(rng.random(n) < np.where(kind == "c", 0.8, 0.1), "yes", "no")
    frame = pl.DataFrame({"kind": kind, "amount": amount, "label": label})
    gone = (kind == "b") & (rng.random(n) < 0.2)
    return frame.with_columns(pl.when(pl.Series(gone)).then(None).otherwise(pl.col("amount"))
                              .alias("amount"))


PROFILE = DatasetProfile.model_validate({
    "name": "mix", "target": {"column": "label", "positive": "yes"}, "missing": "impute",
    "groups": {"all": ["kind", "amount"]}})


def _prepared(n: int):
    frame = _mixture(n)
    pre = TablePreprocessor(PROFILE, numeric="quantile", with_target=True,
                            missing_state=True).fit(frame)
    return frame, pre, pre.transform(frame)


def _tv(a: np.ndarray, b: np.ndarray, bins: np.ndarray) -> float:
    pa = np.histogram(a, bins)[0] / len(a)
    pb = np.histogram(b, bins)[0] / len(b)
    return 0.5 * float(np.abs(pa - pb).sum())


def test_vae_recovers_a_known_mixture():
    frame, pre, x = _prepared(4000)
    heads = pre.heads()
    label = [s.name for s in pre.specs].index("label")
    assert [s.name for s in pre.specs] == ["kind", "amount", "amount:missing", "label"]
    cfg = VaeConfig(heads=heads, condition=label, hidden=(64, 64), epochs=60, batch_size=128)
    result = train_vae(x, cfg, seed=1)
    assert np.isfinite(result.history["loss"]).all()
    assert result.history["loss"][-1] < result.history["loss"][0]
    labels = (frame["label"] == "yes").to_numpy().astype(int)
    yes = pre.specs[label].categories.index("yes")
    condition = np.where(np.random.default_rng(2).random(4000) < labels.mean(), yes, 1 - yes)
    synth = pre.reverse_transform(result.vae.sample(4000, np.random.default_rng(3), condition))
    # marginals: the bimodal amount (TV over 20 bins) and the category shares
    real_amount = frame["amount"].drop_nulls().to_numpy()
    bins = np.quantile(real_amount, np.linspace(0, 1, 21))
    bins[0], bins[-1] = -np.inf, np.inf
    assert _tv(real_amount, synth["amount"].drop_nulls().to_numpy(), bins) < 0.1
    # missing values are a state of their own: about as many, and mostly in the "b" rows
    # (all of the real ones are; "b" is 30% of the rows)
    assert synth["amount"].null_count() / 4000 == pytest.approx(
        frame["amount"].null_count() / 4000, abs=0.02)
    assert synth.filter(pl.col("amount").is_null())["kind"].eq("b").mean() > 0.5
    real = frame["kind"].value_counts(normalize=True).sort("kind")["proportion"].to_numpy()
    got = synth["kind"].value_counts(normalize=True).sort("kind")["proportion"].to_numpy()
    assert np.abs(real - got).max() < 0.06
    # the dependency: amount's mode follows kind, and the label conditions kind
    a_rows = synth.filter(pl.col("kind") == "a")["amount"]
    assert a_rows.median() == pytest.approx(10, abs=2.0)
    assert synth.filter(pl.col("kind") != "a")["amount"].median() > 30
    share_c = lambda f, lab: (f.filter(pl.col("label") == lab)["kind"] == "c").mean()  # noqa: E731
    assert share_c(synth, "yes") > share_c(synth, "no") + 0.3


def test_sampling_is_seeded_and_asks_for_a_label():
    _, pre, x = _prepared(300)
    label = [s.name for s in pre.specs].index("label")
    vae = build_vae(VaeConfig(heads=pre.heads(), condition=label, hidden=(16,)), seed=0)
    a = vae.sample(50, np.random.default_rng(7), np.zeros(50, dtype=int))
    b = vae.sample(50, np.random.default_rng(7), np.zeros(50, dtype=int))
    np.testing.assert_array_equal(a, b)
    synth = pre.reverse_transform(a)
    assert synth["label"].unique().to_list() == [pre.specs[label].categories[0]]
    with pytest.raises(ValueError, match="needs the condition"):
        vae.sample(5, np.random.default_rng(0))
    with pytest.raises(ValueError, match="indices in"):
        vae.sample(2, np.random.default_rng(0), np.array([0, 5]))


def test_a_trained_vae_crosses_a_boundary_as_weights_and_samples_the_same():
    import pickle

    _, pre, x = _prepared(300)
    label = [s.name for s in pre.specs].index("label")
    cfg = VaeConfig(heads=pre.heads(), condition=label, hidden=(16,), epochs=2)
    result = train_vae(x, cfg, seed=3)
    portable = pickle.loads(pickle.dumps(result.portable()))  # plain data: no Keras object
    assert all(isinstance(w, np.ndarray) for w in portable.weights)
    again = portable.result()
    cond = np.zeros(40, dtype=int)
    np.testing.assert_array_equal(result.vae.sample(40, np.random.default_rng(5), cond),
                                  again.vae.sample(40, np.random.default_rng(5), cond))
    assert again.log.epochs_run == result.log.epochs_run == 2


def test_model_space_is_normal_scores_of_the_cdf_values():
    _, pre, x = _prepared(500)
    xm = to_model_space(x, pre.heads())
    amount = pre.output_columns.index("amount")
    assert abs(float(np.mean(xm[:, amount]))) < 0.1 and 0.8 < float(np.std(xm[:, amount])) < 1.2
    onehot = [i for i, c in enumerate(pre.output_columns) if c != "amount"]  # flags included
    np.testing.assert_array_equal(xm[:, onehot], x[:, onehot])


def test_vae_trains_through_the_dp_sgd_seam():
    from cloakflow.models.training.dp_sgd import DpSgdConfig, plan

    _, pre, x = _prepared(600)
    cfg = VaeConfig(heads=pre.heads(), condition=3, hidden=(16,), epochs=2, batch_size=60)
    budget = plan(len(x), 60, 2, DpSgdConfig(target_epsilon=3.0, delta=1e-5))
    result = train_vae(x, cfg, budget=budget, clip_norm=1.0, rng=np.random.default_rng(0))
    assert result.seed is None and result.log.steps_run == budget.steps
    assert np.isfinite(result.history["loss"]).all()


@pytest.mark.parametrize("kwargs, message", [
    ({"heads": ()}, "needs the heads"),
    ({"heads": (("numeric", 1), ("categorical", 2)), "condition": 0}, "categorical or boolean"),
    ({"heads": (("categorical", 2),), "condition": 0}, "nothing to model"),
    ({"heads": (("numeric", 1),), "condition": 3}, "not one of the 1 columns"),
])
def test_bad_configs_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        VaeConfig(**kwargs)
