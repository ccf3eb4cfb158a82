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


def compile_step(trainer):
    """One ``jax.jit``-compiled DP-SGD step; jit needs static shapes, so each batch is padded
    (and masked) to a multiple of ``pad_to`` rows. The state (trainable, optimizer and seed
    values per model) goes in and out explicitly."""
    members = trainer.members

    def step(state, x, mask, noise, clip_norm, noise_std, denominator):
        grads, total, clipped, new_states = trainer._noisy_step(
            [s[0] for s in state], [s[2] for s in state], x, mask, noise, clip_norm, noise_std,
            denominator)
        state = [(*m.optimizer.stateless_apply(opt_values, g, values), st)
                 for m, g, (values, opt_values, _), st in zip(members, grads, state, new_states,
                                                              strict=True)]
        return state, total, clipped

    return jax.jit(step)


def run(trainer, x: np.ndarray, batches: list, noises: np.ndarray, args: tuple, pad_to: int):
    """One compiled step per batch, each padded to a multiple of ``pad_to`` rows."""
    from cloakflow.models.training.dp_sgd import padded

    if trainer._step is None:
        trainer._step = compile_step(trainer)
    if trainer._state is None:
        trainer._state = [([v.value for v in m.variables],
                           [v.value for v in m.optimizer.variables],
                           [v.value for v in m.state]) for m in trainer.members]
    total = clipped = 0.0
    for idx, noise in zip(batches, noises, strict=True):
        batch, mask = padded(x, idx, pad_to)
        trainer._state, t, c = trainer._step(trainer._state, batch, mask, noise, *args)
        total, clipped = total + t, clipped + c
    return total, clipped
