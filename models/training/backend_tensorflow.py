"""TensorFlow pieces of DP-SGD: the probe / per-example gradients and the compiled steps.

Imported by ``dp_sgd`` when ``keras.backend.backend() == "tensorflow"``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import tensorflow as tf


def probe_gradients(fn: Callable, probes: list, others: list):
    """Gradients of a batch's summed loss with respect to the Dense probes, and per-example
    gradients with respect to ``others``.

    ``fn(probes, others)`` returns (summed loss, per-row losses (batch,), auxiliary output).
    The per-example gradients are the Jacobian of the per-row losses, computed vectorised
    (``GradientTape.jacobian`` with pfor, i.e. ``tf.vectorized_map`` over the rows), each of
    shape (batch, *variable shape). Returns (probe gradients, per-example gradients, aux).
    """
    with tf.GradientTape(persistent=bool(others)) as tape:
        tape.watch(probes)
        if others:
            tape.watch(others)
        total, per_example, aux = fn(probes, others)
    grads = tape.gradient(total, probes)
    per = tape.jacobian(per_example, others, experimental_use_pfor=True) if others else []
    return grads, per, aux


def compile_step(trainer, width: int):
    """Several DP-SGD steps per ``tf.function`` call, as Keras's steps_per_execution: one
    Python dispatch per step costs more than the step itself on a small model. The batches
    arrive concatenated (Poisson batches differ in size) with their offsets.

    The input signature is fixed (``width`` columns, any number of rows and steps), so the
    function is traced once per trainer and table width, whatever the batch sizes: Poisson
    batches of varying size used to retrace it.
    """
    members = trainer.members

    def steps(rows, offsets, noises, clip_norm, noise_std, denominator):
        total, clipped = tf.constant(0.0), tf.constant(0.0)
        for i in tf.range(tf.shape(noises)[0]):
            x = rows[offsets[i]:offsets[i + 1]]
            values = [[v.value for v in m.variables] for m in members]
            states = [[v.value for v in m.state] for m in members]
            grads, t, c, new_states = trainer._noisy_step(
                values, states, x, tf.ones(tf.shape(x)[:1]), noises[i], clip_norm, noise_std,
                denominator)
            for m, g, st in zip(members, grads, new_states, strict=True):
                m.optimizer.apply(g, m.variables)
                for v, value in zip(m.state, st, strict=True):
                    v.assign(value)
            total, clipped = total + t, clipped + c
        return total, clipped

    scalar = tf.TensorSpec([], tf.float32)
    signature = [tf.TensorSpec([None, width], tf.float32), tf.TensorSpec([None], tf.int64),
                 tf.TensorSpec([None, sum(trainer.sizes)], tf.float32), scalar, scalar, scalar]
    return tf.function(steps, input_signature=signature)


def run(trainer, x: np.ndarray, batches: list, noises: np.ndarray, args: tuple, pad_to: int):
    """All ``batches`` (row indices into ``x``) in one compiled call; ``pad_to`` is unused."""
    if trainer._step is None or trainer._step_width != x.shape[1]:
        trainer._step, trainer._step_width = compile_step(trainer, x.shape[1]), x.shape[1]
    offsets = np.zeros(len(batches) + 1, dtype=np.int64)
    np.cumsum([len(b) for b in batches], out=offsets[1:])
    rows = x[np.concatenate(batches)] if batches else x[:0]
    return trainer._step(rows, offsets, np.asarray(noises, dtype=np.float32), *args)
