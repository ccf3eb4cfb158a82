"""TensorFlow pieces of DP-SGD: the probe / per-example gradients and the compiled steps.

Imported by ``dp_sgd`` when ``keras.backend.backend() == "tensorflow"``.
"""

from __future__ import annotations

import logging
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


def value_and_grad(fn: Callable, params):
    """(fn(params), gradient of that scalar with respect to every tensor of ``params``, a
    nested structure of tensors; zeros where it does not depend on one)."""
    flat = tf.nest.flatten(params)
    with tf.GradientTape() as tape:
        tape.watch(flat)
        value = fn(tf.nest.pack_sequence_as(params, flat))
    grads = tape.gradient(value, flat, unconnected_gradients=tf.UnconnectedGradients.ZERO)
    return value, tf.nest.pack_sequence_as(params, grads)



class FirstTracePerTrainerFilter(logging.Filter):
    """Drops TensorFlow's "N out of the last M calls to <...compile_phase_steps.<locals>.steps>
    triggered tf.function retracing" warning, and nothing else.

    Each phase trainer compiles its own ``tf.function`` per phase, traced once or twice
    (``reduce_retracing``: the second shape makes it generic), and every later call reuses it
    (tests/unit/models/training/test_phases.py counts the traces). But TensorFlow counts
    traces per Python code object, not per function: the codes flow's five autoencoders (the
    whole table and four feature groups) are five trainers of one closure, whose first traces
    it reports as excessive retracing. That is one compile per trainer, not a retrace.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not ("triggered tf.function retracing" in message
                    and "compile_phase_steps.<locals>.steps" in message)


def quiet_first_trace_per_trainer() -> None:
    """Install :class:`FirstTracePerTrainerFilter` on the ``tensorflow`` logger, once."""
    logger = logging.getLogger("tensorflow")
    if not any(isinstance(f, FirstTracePerTrainerFilter) for f in logger.filters):
        logger.addFilter(FirstTracePerTrainerFilter())


def compile_phase_steps(trainer, phase) -> Callable:
    """Steps of a phase (``phases.PhaseTrainer``) in one ``tf.function`` call, as
    ``compile_step`` does for DP-SGD: each step's gradients at the Keras variables' current
    values, applied by each updated network's optimizer, seed states assigned. The batches
    arrive concatenated with their offsets; compiled once per input shape
    (``reduce_retracing``)."""
    graphs = trainer.graphs

    def steps(rows, offsets, noises, publics, clip_norm, noise_std, denominators):
        total, public, clipped = tf.constant(0.0), tf.constant(0.0), tf.constant(0.0)
        for i in tf.range(tf.shape(noises)[0]):
            x = rows[offsets[i]:offsets[i + 1]]
            values = {n: [v.value for v in g.variables] for n, g in graphs.items()}
            seeds = {n: [v.value for v in g.state] for n, g in graphs.items()}
            grads, new_seeds, t, p, c = trainer.gradients(
                phase, values, seeds, x, tf.ones(tf.shape(x)[:1]), noises[i], publics[i],
                clip_norm, noise_std, denominators[i])
            for n in phase.updates:
                trainer.optimizers[n].apply(grads[n], graphs[n].variables)
            for n, g in graphs.items():
                for v, value in zip(g.state, new_seeds[n], strict=True):
                    v.assign(value)
            total, public, clipped = total + t, public + p, clipped + c
        return total, public, clipped

    quiet_first_trace_per_trainer()
    compiled = tf.function(steps, reduce_retracing=True)
    trainer.compiled[phase.name] = compiled  # tests count its traces

    def run(x, batches, noises, publics, clip_norm, noise_std, denominators, pad_to):
        offsets = np.zeros(len(batches) + 1, dtype=np.int64)
        np.cumsum([len(b) for b in batches], out=offsets[1:])
        rows = x[np.concatenate(batches)] if offsets[-1] else x[:0]
        return compiled(rows, offsets, noises, publics, clip_norm, noise_std, denominators)

    return run
