"""A two-network model for the phase trainer's tests (not a test module): a small GAN, critic
and generator trained in alternating phases on a 2-D mixture of two Gaussians (also run in a
jax subprocess). ``FAMILY`` is the same model as a model family: registered in
tests/unit/models/test_registry.py by one line, it trains through ``registry.fit``."""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from cloakflow.models.registry import ModelFamily
from cloakflow.models.training.phases import Phase, PrivateTerm, PublicTerm

CENTRES = np.array([[-2.0, 0.0], [2.0, 0.0]], dtype=np.float32)
LATENT = 4


def mixture(rows: int, seed: int = 0) -> np.ndarray:
    """(rows, 2) draws from two Gaussians (sd 0.3) at (-2, 0) and (2, 0), half each."""
    rng = np.random.default_rng(seed)
    return (CENTRES[rng.integers(0, 2, rows)]
            + 0.3 * rng.standard_normal((rows, 2))).astype(np.float32)


def networks(seed: int = 1, width: int = 32) -> dict:
    """{"generator": latent -> 2-D row, "critic": 2-D row -> score}."""
    keras.utils.set_random_seed(seed)

    def mlp(inputs: int, outputs: int, name: str):
        x = keras.Input((inputs,))
        h = keras.layers.Dense(width, activation="relu")(x)
        h = keras.layers.Dense(width, activation="relu")(h)
        return keras.Model(x, keras.layers.Dense(outputs)(h), name=name)

    return {"generator": mlp(LATENT, 2, "generator"), "critic": mlp(2, 1, "critic")}


def latent(rng: np.random.Generator, rows: int) -> np.ndarray:
    return rng.standard_normal((rows, LATENT), dtype=np.float32)


def critic_real(y, scores):
    """The critic's per-example loss on a real row: softplus(-D(x)) (the logistic GAN loss,
    Goodfellow et al. 2014): the private term."""
    return ops.softplus(-scores[:, 0])


def critic_fake(call, z):
    """The critic's loss on generated rows: mean softplus(D(G(z))): public (no real row)."""
    return ops.mean(ops.softplus(call("critic", call("generator", z))[:, 0]))


def generator_loss(call, z):
    """The generator's non-saturating loss, mean softplus(-D(G(z))): public."""
    return ops.mean(ops.softplus(-call("critic", call("generator", z))[:, 0]))


def phases(critic_steps: int = 1) -> list[Phase]:
    return [Phase("critic", ("critic",), private=(PrivateTerm("critic", critic_real),),
                  public=PublicTerm(critic_fake, latent), steps=critic_steps),
            Phase("generator", ("generator",), public=PublicTerm(generator_loss, latent))]


def mode_coverage(generator, rows: int = 2000, seed: int = 3) -> tuple[float, float]:
    """(share of generated rows within distance 1 of a centre, share on the left mode)."""
    s = np.asarray(generator(latent(np.random.default_rng(seed), rows)))
    d = np.min(np.linalg.norm(s[:, None, :] - CENTRES[None], axis=2), axis=1)
    return float((d < 1.0).mean()), float((s[:, 0] < 0).mean())


@dataclass(frozen=True)
class ToyGanSpec:
    critic_steps: int
    loop: object  # trainer.TrainConfig


class ToyGan(ModelFamily):
    """The toy GAN as a model family: its networks and phases, nothing about the loop."""

    name = "toy-gan"
    description = "a two-network GAN on 2-D rows (tests)"

    def spec(self, pre, loop, critic_steps: int = 1) -> ToyGanSpec:
        return ToyGanSpec(critic_steps, loop)

    def member_names(self, profile) -> list[str]:
        return ["generator", "critic"]

    def networks(self, spec: ToyGanSpec, seed: int) -> dict:
        nets = networks(seed)
        for net in nets.values():  # the optimizer the phase trainer takes: a GAN's Adam
            net.compile(optimizer=keras.optimizers.Adam(1e-3, beta_1=0.5))
        return nets

    def phases(self, spec: ToyGanSpec, networks: dict) -> list[Phase]:
        return phases(spec.critic_steps)


FAMILY = ToyGan()
