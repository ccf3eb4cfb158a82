"""jax pieces of DP-SGD: the probe / per-example gradients and the compiled step.

Imported by ``dp_sgd`` when ``keras.backend.backend() == "jax"``.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np


def probe_gradients(fn: Callable, probes: list, others: list):
    """Gradients of a batch's summed loss with respect to the Dense probes, and per-example
    gradients with respect to ``others``.

    ``fn(probes, others)`` returns (summed loss, per-row losses (batch,), auxiliary output).
    The per-example gradients are the rows of the Jacobian of the per-row losses:
    ``jax.vmap`` of the VJP over one-hot cotangents, each of shape (batch, *variable shape).
    One forward pass serves both, so random layers see the same draw in each.
    Returns (probe gradients, per-example gradients, aux).
    """
    if not others:
        def summed(p):
            total, _, aux = fn(p, others)
            return total, aux

        grads, aux = jax.grad(summed, has_aux=True)(probes)
        return grads, [], aux

    def losses(p, o):
        total, per_example, aux = fn(p, o)
        return per_example, aux

    per_example, vjp, aux = jax.vjp(losses, probes, others, has_aux=True)
    grads = vjp(jnp.ones_like(per_example))[0]
    eye = jnp.eye(per_example.shape[0], dtype=per_example.dtype)
    per = jax.vmap(lambda e: vjp(e)[1])(eye)
    return grads, list(per), aux


def value_and_grad(fn: Callable, params):
    """(fn(params), gradient of that scalar with respect to every array of ``params``)."""
    return jax.value_and_grad(fn)(params)




def compile_phase_steps(trainer, phase) -> Callable:
    """Steps of a phase (``phases.PhaseTrainer``), one ``jax.jit``-compiled step each (batches
    padded to a multiple of ``pad_to`` rows and masked): every network's values, seed states
    and optimizer state go in and out explicitly (held in ``trainer.state``;
    ``trainer.sync`` writes them back into the Keras variables), so each phase sees the
    weights the others left."""
    from cloakflow.models.training.dp_sgd import padded

    def step(state, x, mask, noise, public_in, clip_norm, noise_std, denominator):
        grads, seeds, total, public, clipped = trainer.gradients(
            phase, state["values"], state["seeds"], x, mask, noise, public_in, clip_norm,
            noise_std, denominator)
        values, opt = dict(state["values"]), dict(state["opt"])
        for n in phase.updates:
            values[n], opt[n] = trainer.optimizers[n].stateless_apply(opt[n], grads[n],
                                                                      values[n])
        return {"values": values, "seeds": seeds, "opt": opt}, total, public, clipped

    jitted = jax.jit(step)

    def run(x, batches, noises, publics, clip_norm, noise_std, denominators, pad_to):
        total = public = clipped = 0.0
        for idx, noise, public_in, denominator in zip(batches, noises, publics, denominators,
                                                      strict=True):
            batch, mask = padded(x, idx, pad_to) if len(idx) else (
                np.zeros((pad_to, x.shape[1]), np.float32), np.zeros(pad_to, np.float32))
            trainer.state, t, p, c = jitted(trainer.current(), batch, mask, noise, public_in,
                                            clip_norm, noise_std, denominator)
            total, public, clipped = total + t, public + p, clipped + c
        return total, public, clipped

    return run
