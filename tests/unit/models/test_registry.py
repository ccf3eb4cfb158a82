"""The model registry: a family registered by one line trains through ``registry.fit``, plainly
and under DP-SGD, and the registry refuses what it cannot resolve."""

from __future__ import annotations

import numpy as np
import pytest

from cloakflow.models import registry
from cloakflow.models.training.dp_sgd import DpSgdConfig, plan
from cloakflow.models.training.trainer import TrainConfig
from tests.unit.models.training import toy_gan


@pytest.fixture
def toy():
    family = registry.register(toy_gan.FAMILY)  # adding a model: its module and this line
    yield family
    registry.unregister(family.name)


def test_a_registered_two_network_family_learns_through_fit(toy):
    assert registry.get("toy-gan") is toy and "toy-gan" in registry.names()
    spec = toy.spec(None, TrainConfig(epochs=20, batch_size=64))
    untrained = toy.networks(spec, seed=1)["generator"]
    weights, log = registry.fit(toy, spec, toy_gan.mixture(2000), seed=1)
    assert log.steps == {"critic": 20 * 32, "generator": 20 * 32}
    # the weights are plain arrays; networks rebuilt from them generate the mixture
    nets = toy.networks(spec, seed=99)
    toy.set_weights(nets, weights)
    near, left = toy_gan.mode_coverage(nets["generator"])
    assert toy_gan.mode_coverage(untrained)[0] < 0.1 and near > 0.5, near
    assert 0.2 < left < 0.8, left


def test_under_dp_the_accountant_counts_the_private_phase_only(toy):
    spec = toy.spec(None, TrainConfig(batch_size=50), critic_steps=2)
    budget = plan(500, 50, 2, DpSgdConfig(target_epsilon=3.0, delta=1e-5))
    start = toy.initial_weights(spec, seed=0)
    weights, log = registry.fit(toy, spec, toy_gan.mixture(500), start, budget=budget,
                                clip_norm=1.0, rng=np.random.default_rng(0))
    assert log.private_steps == log.steps["critic"] == budget.steps
    assert log.steps["generator"] == budget.steps // 2
    assert not np.allclose(weights["critic"][0], start["critic"][0])


def test_the_registry_refuses_what_it_cannot_resolve(toy):
    assert registry.names()[:2] == ("codes", "vae")
    assert registry.get("vae").models_target and not registry.get("codes").models_target
    with pytest.raises(ValueError, match=r"unknown model 'gen'.*'codes', 'vae', 'gan'"):
        registry.get("gen")
    with pytest.raises(ValueError, match="registered already"):
        registry.register(type(toy)())
    with pytest.raises(ValueError, match="built in"):
        registry.unregister("codes")
    spec = toy.spec(None, TrainConfig(epochs=1, batch_size=50))
    with pytest.raises(ValueError, match="phases have their own"):
        registry.fit(toy, spec, toy_gan.mixture(100), proximal_mu=0.1)
    with pytest.raises(ValueError, match="another schema or architecture"):
        toy.set_weights(toy.networks(spec, 0), {"generator": [], "critic": []})


def test_the_federate_form_offers_exactly_the_registered_models():
    import typing

    from cloakflow.flows.parameters import FederateParameters

    offered = typing.get_args(FederateParameters.model_fields["model"].annotation)
    assert offered == tuple(n for n in registry.names() if registry.get(n).federates)
    assert "gan" in registry.names() and not registry.get("gan").federates
