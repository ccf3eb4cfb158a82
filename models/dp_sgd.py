"""DP-SGD for Keras 3 models made of Dense layers, on the TensorFlow and jax backends.

One step (Abadi et al. 2016): draw a batch by Poisson sampling (every row independently with
probability q), take each example's gradient, clip it to L2 norm C, sum, add Gaussian noise of
standard deviation sigma * C to every coordinate, divide by the expected batch size q * n, and
let the optimizer apply the result.

Per-example gradients are never materialised. For a Dense layer z = a W + b, the gradient of
example i's loss is a_i^T g_i for W and g_i for b, where g_i is the gradient with respect to
z_i; so its squared norm is (|a_i|^2 + 1) |g_i|^2 (the "ghost norm"), and the clipped sum is
a^T (f * g) with f_i = min(1, C / norm_i). One forward and one backward pass give every a and g:
the backward pass differentiates the summed loss with respect to zero "probe" tensors added to
each layer's pre-activation. That gradient is the only backend-specific code
(``_probe_gradients``); the step is compiled with ``tf.function`` or ``jax.jit``.

The model must be a chain of Dense and Activation layers (nested functional models such as an
encoder and a decoder are followed in order); the chain's forward pass is checked against the
model's own output before training.

This module imports neither Prefect, MLflow nor polars.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from cloakflow.models.accounting import (
    Accountant,
    DpBudget,
    default_delta,
    epsilon,
    noise_multiplier_for,
)

# Median per-example gradient norm of the tutorial autoencoder on the bank table, measured by
# benchmarks/bench_dp.py (README, "Differential privacy"): clipping at about the median keeps
# the direction of most gradients while the noise, sigma * C, stays at the scale of one example.
DEFAULT_CLIP_NORM = 0.1


@dataclass(frozen=True)
class DpSgdConfig:
    """What a DP-SGD run must spend.

    Give ``target_epsilon`` (sigma is solved for the planned epochs) or ``noise_multiplier``
    (epsilon is what the planned epochs spend); with both, training stops early once the next
    step would spend more than the target.
    """

    target_epsilon: float | None = None
    delta: float | None = None  # None: default_delta(rows)
    clip_norm: float = DEFAULT_CLIP_NORM
    noise_multiplier: float | None = None
    accountant: Accountant = "rdp"
    pad_to: int = 32  # batch rows are padded to a multiple of this (fewer compiled shapes)

    def __post_init__(self):
        if self.target_epsilon is None and self.noise_multiplier is None:
            raise ValueError("DP-SGD needs target_epsilon or noise_multiplier")
        if self.target_epsilon is not None and self.target_epsilon <= 0:
            raise ValueError("target_epsilon must be positive")
        if self.noise_multiplier is not None and self.noise_multiplier < 0:
            raise ValueError("noise_multiplier must be >= 0")
        if not self.clip_norm > 0:
            raise ValueError("clip_norm must be positive (math.inf turns clipping off)")
        if self.delta is not None and not 0 < self.delta < 1:
            raise ValueError("delta must be in (0, 1)")


def plan(rows: int, batch_size: int, epochs: int, dp: DpSgdConfig) -> DpBudget:
    """Sampling rate, steps and sigma of a run, and the epsilon it will spend.

    q = batch_size / rows (the expected batch size is ``batch_size``); one epoch is 1/q steps.
    """
    if rows < 1 or batch_size < 1 or epochs < 1:
        raise ValueError("rows, batch_size and epochs must be positive")
    q = min(batch_size / rows, 1.0)
    steps = max(int(round(epochs / q)), 1)
    delta = dp.delta if dp.delta is not None else default_delta(rows)
    if dp.noise_multiplier is None:
        return noise_multiplier_for(dp.target_epsilon, delta, q, steps, dp.accountant)
    if dp.noise_multiplier == 0:
        return DpBudget(math.inf, delta, 0.0, q, steps, steps * q, dp.accountant, "poisson")
    spent = epsilon(dp.noise_multiplier, q, steps, delta, dp.accountant)
    if dp.target_epsilon is None or spent.epsilon <= dp.target_epsilon:
        return spent
    return _steps_within(dp.target_epsilon, delta, dp.noise_multiplier, q, steps, dp.accountant)


def _steps_within(target: float, delta: float, sigma: float, q: float, max_steps: int,
                  accountant: Accountant) -> DpBudget:
    """The longest run (at most ``max_steps``) that spends at most ``target``."""
    low, high = 0, max_steps  # epsilon(low) <= target < epsilon(high)
    while high - low > 1:
        mid = (low + high) // 2
        if epsilon(sigma, q, mid, delta, accountant).epsilon <= target:
            low = mid
        else:
            high = mid
    if low == 0:
        raise ValueError(f"a single step at sigma {sigma} and q {q:.4g} already spends more "
                         f"than epsilon {target}")
    return epsilon(sigma, q, low, delta, accountant)


# --------------------------------------------------------------------------- the model as a chain
def dense_chain(model) -> list:
    """The model's Dense layers and activation functions in order.

    Raises:
        TypeError: a layer other than Input, Dense or Activation (or a Dense on inputs of
            rank > 2), for which the ghost norm does not hold.
    """
    import keras

    chain: list = []

    def walk(layer) -> None:
        if isinstance(layer, keras.layers.InputLayer):
            return
        if isinstance(layer, keras.layers.Dense):
            if len(layer.input.shape) != 2:
                raise TypeError(f"Dense layer {layer.name!r} has inputs of rank "
                                f"{len(layer.input.shape)}; DP-SGD here needs rank 2")
            chain.append(layer)
        elif isinstance(layer, keras.layers.Activation):
            chain.append(layer.activation)
        elif hasattr(layer, "layers"):
            for inner in layer.layers:
                walk(inner)
        else:
            raise TypeError(f"layer {layer.name!r} ({type(layer).__name__}) is not supported by "
                            "DP-SGD here: only Dense and Activation layers")

    walk(model)
    return chain


def chain_variables(chain: list) -> list:
    """Trainable variables of the chain's Dense layers: kernel, then bias, layer by layer."""
    out = []
    for op in chain:
        if hasattr(op, "kernel"):
            out.append(op.kernel)
            if op.use_bias:
                out.append(op.bias)
    return out


def _forward(chain: list, values: list, x, probes: list | None):
    """Run the chain on ``x`` with the given variable values; returns output and layer inputs."""
    from keras import ops

    a, inputs, i, k = x, [], 0, 0
    for op in chain:
        if not hasattr(op, "kernel"):
            a = op(a)
            continue
        inputs.append(a)
        z = ops.matmul(a, values[i])
        i += 1
        if op.use_bias:
            z = z + values[i]
            i += 1
        if probes is not None:
            z = z + probes[k]
        k += 1
        a = op.activation(z)
    return a, inputs


def mse_per_example(y_true, y_pred):
    """Mean squared error of each row (Keras's ``mse`` before its mean over the batch)."""
    from keras import ops

    return ops.mean(ops.square(y_pred - y_true), axis=-1)


def _probe_gradients(fn: Callable, probes: list):
    """Gradient of ``fn(probes)[0]`` with respect to ``probes``, and ``fn``'s auxiliary output.

    The only backend-specific code of DP-SGD.
    """
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            tape.watch(probes)
            total, aux = fn(probes)
        return tape.gradient(total, probes), aux
    if backend == "jax":
        import jax

        return jax.grad(fn, has_aux=True)(probes)
    raise NotImplementedError(f"DP-SGD runs on the tensorflow and jax backends, not {backend!r}")


def clipped_gradient_sum(chain: list, values: list, x, y, mask, clip_norm: float,
                         loss_fn: Callable = mse_per_example):
    """Sum over rows of each row's gradient clipped to ``clip_norm``, and the norms before.

    Args:
        chain: from ``dense_chain``.
        values: current values of ``chain_variables(chain)``.
        x, y: a batch of inputs and targets.
        mask: 1.0 for real rows, 0.0 for padding (padding contributes nothing).
        clip_norm: C; ``math.inf`` leaves every gradient as it is.

    Returns:
        (gradients in the order of ``values``, per-example gradient norms, summed loss).
    """
    from keras import ops

    dense = [op for op in chain if hasattr(op, "kernel")]
    batch = ops.shape(x)[0]
    probes = [ops.zeros((batch, op.units), dtype=x.dtype) for op in dense]

    def summed_loss(p):
        out, inputs = _forward(chain, values, x, p)
        losses = loss_fn(y, out) * mask
        return ops.sum(losses), (inputs, ops.sum(losses))

    grads_z, (inputs, total) = _probe_gradients(summed_loss, probes)
    squared = 0.0
    for op, a, g in zip(dense, inputs, grads_z, strict=True):
        g2 = ops.sum(ops.square(g), axis=1)
        squared = squared + g2 * (ops.sum(ops.square(a), axis=1) + (1.0 if op.use_bias else 0.0))
    norms = ops.sqrt(squared)
    factor = ops.minimum(1.0, clip_norm / ops.maximum(norms, 1e-12)) * mask
    out = []
    for op, a, g in zip(dense, inputs, grads_z, strict=True):
        scaled = g * factor[:, None]
        out.append(ops.matmul(ops.transpose(a), scaled))
        if op.use_bias:
            out.append(ops.sum(scaled, axis=0))
    return out, norms, total


# --------------------------------------------------------------------------- training
@dataclass
class DpTrainLog:
    """What a DP-SGD run did."""

    budget: DpBudget
    clip_norm: float
    steps_run: int = 0
    epochs_run: int = 0
    history: dict[str, list[float]] = field(default_factory=lambda: {"loss": []})
    clipped_share: list[float] = field(default_factory=list)  # per epoch
    seconds: float = 0.0
    seconds_per_epoch: list[float] = field(default_factory=list)


class DpSgd:
    """Compiled DP-SGD steps for one model and its (already compiled or given) optimizer.

    Args:
        model: a chain of Dense/Activation layers (see ``dense_chain``).
        optimizer: a Keras optimizer; default the model's own.
        loss_fn: per-example loss ``loss_fn(y_true, y_pred) -> (batch,)``.
    """

    def __init__(self, model, optimizer=None, loss_fn: Callable = mse_per_example):
        import keras

        self.model = model
        self.chain = dense_chain(model)
        self.variables = chain_variables(self.chain)
        self.optimizer = optimizer or model.optimizer
        if self.optimizer is None:
            raise ValueError("give an optimizer or compile the model first")
        if not self.optimizer.built:
            self.optimizer.build(self.variables)
        elif [id(v) for v in self.optimizer._trainable_variables] != [id(v) for v in
                                                                    self.variables]:
            raise ValueError("the optimizer was built for other variables (or another order); "
                             "give DP-SGD a fresh optimizer")
        self.loss_fn = loss_fn
        self.backend = keras.backend.backend()
        self.sizes = [int(np.prod(v.shape)) for v in self.variables]
        self.shapes = [tuple(v.shape) for v in self.variables]
        self._step = self._compile()
        self._state = None  # jax: (trainable values, optimizer values) between steps

    def check_forward(self, x: np.ndarray) -> None:
        """Fail unless the chain reproduces ``model(x)`` (it would train another function)."""
        expected = np.asarray(self.model(x))
        got = np.asarray(_forward(self.chain, [v.value for v in self.variables], x, None)[0])
        if not np.allclose(expected, got, atol=1e-5):
            raise TypeError(f"{self.model.name}: the layers in order do not compute the model's "
                            "output (not a chain of Dense and Activation layers)")

    def _noisy_mean(self, values, x, mask, noise, clip_norm, noise_std, denominator):
        from keras import ops

        grads, norms, total = clipped_gradient_sum(self.chain, values, x, x, mask, clip_norm,
                                                   self.loss_fn)
        out, start = [], 0
        for g, size, shape in zip(grads, self.sizes, self.shapes, strict=True):
            n = ops.reshape(noise[start:start + size], shape)
            out.append((g + noise_std * n) / denominator)
            start += size
        clipped = ops.sum(ops.cast(norms > clip_norm, "float32") * mask)
        return out, total, clipped

    def _compile(self):
        if self.backend == "tensorflow":
            import tensorflow as tf

            # Several steps per call, as Keras's steps_per_execution: one Python dispatch per
            # step costs more than the step itself on a small model. The batches arrive
            # concatenated (Poisson batches differ in size) with their offsets.
            def steps(rows, offsets, noises, clip_norm, noise_std, denominator):
                total, clipped = tf.constant(0.0), tf.constant(0.0)
                for i in tf.range(tf.shape(noises)[0]):
                    x = rows[offsets[i]:offsets[i + 1]]
                    values = [v.value for v in self.variables]
                    grads, t, c = self._noisy_mean(values, x, tf.ones(tf.shape(x)[:1]),
                                                   noises[i], clip_norm, noise_std, denominator)
                    self.optimizer.apply(grads, self.variables)
                    total, clipped = total + t, clipped + c
                return total, clipped

            return tf.function(steps, reduce_retracing=True)
        if self.backend == "jax":
            import jax

            # jit needs static shapes: one step per call, each batch padded (and masked) to a
            # multiple of pad_to; dispatch is cheap enough on jax.
            def step(state, x, mask, noise, clip_norm, noise_std, denominator):
                values, opt_values = state
                grads, total, clipped = self._noisy_mean(values, x, mask, noise, clip_norm,
                                                         noise_std, denominator)
                values, opt_values = self.optimizer.stateless_apply(opt_values, grads, values)
                return (values, opt_values), total, clipped

            return jax.jit(step)
        raise NotImplementedError(f"DP-SGD runs on the tensorflow and jax backends, not "
                                  f"{self.backend!r}")

    def run(self, x: np.ndarray, batches: list[np.ndarray], noises: np.ndarray,
            clip_norm: float, noise_std: float, denominator: float, pad_to: int = 32):
        """Apply one update per batch (row indices into ``x``), in order.

        ``noises[i]`` holds standard normal draws for step i (scaled here by ``noise_std``).
        Returns (summed per-row loss, rows whose gradient norm exceeded C) as backend scalars;
        reading them forces the device to finish.
        """
        args = (np.float32(clip_norm), np.float32(noise_std), np.float32(denominator))
        if self.backend == "tensorflow":
            offsets = np.zeros(len(batches) + 1, dtype=np.int64)
            np.cumsum([len(b) for b in batches], out=offsets[1:])
            rows = x[np.concatenate(batches)] if batches else x[:0]
            return self._step(rows, offsets, noises, *args)
        if self._state is None:
            self._state = ([v.value for v in self.variables],
                           [v.value for v in self.optimizer.variables])
        total = clipped = 0.0
        for idx, noise in zip(batches, noises, strict=True):
            batch, mask = padded(x, idx, pad_to)
            self._state, t, c = self._step(self._state, batch, mask, noise, *args)
            total, clipped = total + t, clipped + c
        return total, clipped

    def sync(self) -> None:
        """Write the jax state back into the Keras variables (a no-op on TensorFlow)."""
        if self._state is not None:
            values, opt_values = self._state
            for v, value in zip(self.variables, values, strict=True):
                v.assign(value)
            for v, value in zip(self.optimizer.variables, opt_values, strict=True):
                v.assign(value)

    def per_example_norms(self, x: np.ndarray) -> np.ndarray:
        """Unclipped per-example gradient norms of the rows of ``x`` (for choosing C)."""
        self.sync()
        values = [v.value for v in self.variables]
        mask = np.ones(len(x), dtype=np.float32)
        _, norms, _ = clipped_gradient_sum(self.chain, values, x, x, mask, math.inf,
                                           self.loss_fn)
        return np.asarray(norms)


def poisson_batches(rows: int, q: float, steps: int, rng: np.random.Generator):
    """Row indices of each step: every row joins independently with probability ``q``."""
    for _ in range(steps):
        yield np.flatnonzero(rng.random(rows) < q)


def padded(x: np.ndarray, idx: np.ndarray, pad_to: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows ``idx`` of ``x`` padded with zero rows to a multiple of ``pad_to``, and their mask."""
    size = max(pad_to * math.ceil(len(idx) / pad_to), pad_to)
    batch = np.zeros((size, x.shape[1]), dtype=np.float32)
    batch[:len(idx)] = x[idx]
    mask = np.zeros(size, dtype=np.float32)
    mask[:len(idx)] = 1.0
    return batch, mask


def train_dp(model, x: np.ndarray, budget: DpBudget, clip_norm: float, seed: int,
             pad_to: int = 32, steps_per_execution: int = 32,
             on_epoch: Callable[[int, dict[str, float]], None] | None = None,
             optimizer=None) -> DpTrainLog:
    """Train ``model`` (to reproduce ``x``) with DP-SGD for exactly ``budget.steps`` steps.

    Batches are Poisson samples with rate ``budget.sampling_rate``, run ``steps_per_execution``
    steps per compiled call (TensorFlow); the noise has standard
    deviation ``budget.noise_multiplier * clip_norm``; the update is divided by the expected
    batch size q * n. Noise is drawn from numpy's PCG64 generator seeded with ``seed``: fine
    for reproducible research, not a cryptographically secure source (see README).

    ``on_epoch(epoch, {"loss": mean per-row loss of the epoch's batches, "clipped": share of
    rows whose gradient norm exceeded C})`` is called every 1/q steps and after the last.
    """
    if budget.sampling != "poisson":
        raise ValueError("train_dp draws Poisson batches; its budget must say so")
    x = np.ascontiguousarray(x, dtype=np.float32)
    n = len(x)
    q = budget.sampling_rate
    trainer = DpSgd(model, optimizer)
    trainer.check_forward(x[: min(n, 64)])
    rng = np.random.default_rng(seed)
    noise_rng = np.random.default_rng([seed, 1])
    total_params = sum(trainer.sizes)
    noise_std = budget.noise_multiplier * clip_norm if budget.noise_multiplier > 0 else 0.0
    denominator = q * n
    per_epoch = max(int(round(1 / q)), 1)
    log = DpTrainLog(budget, clip_norm)
    start = epoch_start = time.perf_counter()
    done = 0
    while done < budget.steps:
        # one epoch (the last may be shorter), in chunks of steps_per_execution steps
        epoch_steps = min(per_epoch, budget.steps - done)
        loss = clipped = 0.0
        rows_seen = 0
        for first in range(0, epoch_steps, steps_per_execution):
            k = min(steps_per_execution, epoch_steps - first)
            batches = list(poisson_batches(n, q, k, rng))
            noises = noise_rng.standard_normal((k, total_params), dtype=np.float32)
            t, c = trainer.run(x, batches, noises, clip_norm, noise_std, denominator, pad_to)
            loss, clipped = loss + t, clipped + c
            rows_seen += sum(len(b) for b in batches)
        done += epoch_steps
        log.steps_run = done
        log.epochs_run += 1
        metrics = {"loss": float(loss) / max(rows_seen, 1),
                   "clipped": float(clipped) / max(rows_seen, 1)}
        now = time.perf_counter()
        log.seconds_per_epoch.append(now - epoch_start)
        epoch_start = now
        log.history["loss"].append(metrics["loss"])
        log.clipped_share.append(metrics["clipped"])
        if on_epoch is not None:
            on_epoch(log.epochs_run, metrics)
    trainer.sync()
    log.seconds = time.perf_counter() - start
    return log
