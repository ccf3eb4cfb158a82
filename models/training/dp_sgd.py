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

Several models can share one mechanism (``DpSgd([m1, m2, ...], columns=[...])``): they take
the same Poisson batch each step, each row's gradient over *all* their parameters is clipped
jointly to C (the squared ghost norms of the models add up), and one Gaussian draw covers every
parameter, so the models together cost one mechanism's epsilon.

Each model must be a chain of Dense and Activation layers (nested functional models such as an
encoder and a decoder are followed in order); the chain's forward pass is checked against the
model's own output before training.

Randomness: batch sampling and noise come from secret generators seeded from OS entropy
(``secret_streams``), one independent stream per purpose, never recorded: a published seed must
not let anyone replay a DP training. Tests inject a generator to make a run reproducible.

This module imports neither Prefect, MLflow nor polars.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from cloakflow.models.training.accounting import (
    Accountant,
    Adjacency,
    DpBudget,
    accountants_for,
    default_delta,
    epsilon,
    noise_multiplier_for,
)

# Median per-example gradient norm of the tutorial autoencoder on the public UCI Bank Marketing
# table, measured by benchmarks/bench_dp.py (README, "Differential privacy"): clipping at about
# the median keeps the direction of most gradients while the noise, sigma * C, stays at the
# scale of one example. Tuned on a public table, it is a public default for every other table;
# tuning C on a private table would itself look at the private rows.
DEFAULT_CLIP_NORM = 0.1


def secret_streams(n: int, rng: np.random.Generator | None = None) -> list[np.random.Generator]:
    """``n`` independent random generators for DP sampling, noise or initialisation.

    Without ``rng`` they are seeded from 128 bits of OS entropy (``numpy.random.SeedSequence()``
    with no seed) and their state is never returned or recorded. ``rng`` is for tests only: the
    streams are then spawned from it, so a run is reproducible.
    """
    if n < 1:
        raise ValueError("n must be positive")
    if rng is None:
        return [np.random.Generator(np.random.PCG64(s))
                for s in np.random.SeedSequence().spawn(n)]
    return list(rng.spawn(n))


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
    accountant: Accountant | None = None  # None: RDP for add/remove, PLD for replace-one
    adjacency: Adjacency = "add_remove"
    pad_to: int = 32  # batch rows are padded to a multiple of this (fewer compiled shapes)

    def __post_init__(self):
        if self.accountant is None:
            object.__setattr__(self, "accountant",
                               "pld" if self.adjacency == "replace_one" else "rdp")
        if self.accountant not in accountants_for(self.adjacency):
            raise ValueError(f"the {self.accountant} accountant cannot bound Poisson sampling "
                             f"under {self.adjacency} adjacency")
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


def plan(rows: int, batch_size: int, epochs: int, dp: DpSgdConfig,
         runs: int = 1) -> DpBudget:
    """Sampling rate, steps and sigma of a run, and the epsilon it will spend.

    q = batch_size / rows (the expected batch size is ``batch_size``); one epoch is 1/q steps.
    ``runs`` > 1 plans one of that many identical, independently randomised runs on the same
    rows (a budget split): sigma is solved so that all of them *composed* spend at most
    ``target_epsilon``; the returned budget is one run's own (its epsilon is smaller).
    """
    if rows < 1 or batch_size < 1 or epochs < 1 or runs < 1:
        raise ValueError("rows, batch_size, epochs and runs must be positive")
    q = min(batch_size / rows, 1.0)
    steps = max(int(round(epochs / q)), 1)
    delta = dp.delta if dp.delta is not None else default_delta(rows)
    kw = dict(accountant=dp.accountant, adjacency=dp.adjacency)
    if dp.noise_multiplier is None:
        solved = noise_multiplier_for(dp.target_epsilon, delta, q, steps * runs, **kw)
        return solved if runs == 1 else epsilon(solved.noise_multiplier, q, steps, delta, **kw)
    if runs != 1:
        raise ValueError("a budget split over several runs needs target_epsilon, not a sigma")
    if dp.noise_multiplier == 0:
        return DpBudget(math.inf, delta, 0.0, q, steps, steps * q, dp.accountant, "poisson",
                        dp.adjacency)
    spent = epsilon(dp.noise_multiplier, q, steps, delta, **kw)
    if dp.target_epsilon is None or spent.epsilon <= dp.target_epsilon:
        return spent
    return _steps_within(dp.target_epsilon, delta, dp.noise_multiplier, q, steps, **kw)


def _steps_within(target: float, delta: float, sigma: float, q: float, max_steps: int,
                  accountant: Accountant, adjacency: Adjacency) -> DpBudget:
    """The longest run (at most ``max_steps``) that spends at most ``target``."""
    kw = dict(accountant=accountant, adjacency=adjacency)
    low, high = 0, max_steps  # epsilon(low) <= target < epsilon(high)
    while high - low > 1:
        mid = (low + high) // 2
        if epsilon(sigma, q, mid, delta, **kw).epsilon <= target:
            low = mid
        else:
            high = mid
    if low == 0:
        raise ValueError(f"a single step at sigma {sigma} and q {q:.4g} already spends more "
                         f"than epsilon {target}")
    return epsilon(sigma, q, low, delta, **kw)


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


def _ghost(chain: list, values: list, x, y, mask, loss_fn: Callable):
    """One forward and one backward pass: every Dense layer's inputs ``a`` and pre-activation
    gradients ``g``, each row's squared gradient norm over the chain, and the summed loss."""
    from keras import ops

    dense = [op for op in chain if hasattr(op, "kernel")]
    batch = ops.shape(x)[0]
    probes = [ops.zeros((batch, op.units), dtype=x.dtype) for op in dense]

    def summed_loss(p):
        out, inputs = _forward(chain, values, x, p)
        total = ops.sum(loss_fn(y, out) * mask)
        return total, (inputs, total)

    grads_z, (inputs, total) = _probe_gradients(summed_loss, probes)
    squared = 0.0
    for op, a, g in zip(dense, inputs, grads_z, strict=True):
        g2 = ops.sum(ops.square(g), axis=1)
        squared = squared + g2 * (ops.sum(ops.square(a), axis=1) + (1.0 if op.use_bias else 0.0))
    return (dense, inputs, grads_z), squared, total


def _clipped_sum(ghost, factor) -> list:
    """sum_i factor_i * (gradient of row i), layer by layer, in ``chain_variables`` order."""
    from keras import ops

    out = []
    for op, a, g in zip(*ghost, strict=True):
        scaled = g * factor[:, None]
        out.append(ops.matmul(ops.transpose(a), scaled))
        if op.use_bias:
            out.append(ops.sum(scaled, axis=0))
    return out


def _clip_factor(squared, clip_norm: float, mask):
    from keras import ops

    norms = ops.sqrt(squared)
    return ops.minimum(1.0, clip_norm / ops.maximum(norms, 1e-12)) * mask, norms


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
    ghost, squared, total = _ghost(chain, values, x, y, mask, loss_fn)
    factor, norms = _clip_factor(squared, clip_norm, mask)
    return _clipped_sum(ghost, factor), norms, total


# --------------------------------------------------------------------------- training
@dataclass
class DpTrainLog:
    """What a DP-SGD run did (losses are per-row sums over the mechanism's models)."""

    budget: DpBudget
    clip_norm: float
    steps_run: int = 0
    epochs_run: int = 0
    history: dict[str, list[float]] = field(default_factory=lambda: {"loss": []})
    clipped_share: list[float] = field(default_factory=list)  # per epoch
    seconds: float = 0.0
    seconds_per_epoch: list[float] = field(default_factory=list)


@dataclass
class _Member:
    """One model of a mechanism: its chain, variables, optimizer and input columns."""

    model: object
    chain: list
    variables: list
    optimizer: object
    columns: np.ndarray | None  # column indices of x the model reads; None = all

    def inputs(self, x):
        from keras import ops

        return x if self.columns is None else ops.take(x, self.columns, axis=1)


class DpSgd:
    """Compiled DP-SGD steps for one model, or for several models sharing one mechanism.

    Args:
        models: a Keras model (a chain of Dense/Activation layers, see ``dense_chain``) or a
            list of them. Several models take the same batch each step, are clipped jointly
            (each row's gradient over all their parameters has norm <= C) and share one noise
            draw: one mechanism, accounted once.
        optimizers: a Keras optimizer or one per model; default each model's own.
        loss_fn: per-example loss ``loss_fn(y_true, y_pred) -> (batch,)``; each model
            reconstructs its own inputs and the losses add up.
        columns: per model, the column indices of ``x`` it reads (None: all columns).

    Raises:
        TypeError: a model is not a chain of Dense and Activation layers.
        ValueError: no optimizer, or an optimizer built for other variables.
    """

    def __init__(self, models, optimizers=None, loss_fn: Callable = mse_per_example,
                 columns: list | None = None):
        import keras

        models = list(models) if isinstance(models, (list, tuple)) else [models]
        if optimizers is None:
            optimizers = [m.optimizer for m in models]
        elif not isinstance(optimizers, (list, tuple)):
            optimizers = [optimizers]
        columns = columns if columns is not None else [None] * len(models)
        if not len(models) == len(optimizers) == len(columns):
            raise ValueError("give one optimizer and one column list per model")
        self.members: list[_Member] = []
        for model, opt, cols in zip(models, optimizers, columns, strict=True):
            chain = dense_chain(model)
            variables = chain_variables(chain)
            if opt is None:
                raise ValueError(f"{model.name}: give an optimizer or compile the model first")
            if not opt.built:
                opt.build(variables)
            elif [id(v) for v in opt._trainable_variables] != [id(v) for v in variables]:
                raise ValueError("the optimizer was built for other variables (or another "
                                 "order); give DP-SGD a fresh optimizer")
            cols = None if cols is None else np.asarray(cols, dtype=np.int32)
            self.members.append(_Member(model, chain, variables, opt, cols))
        self.loss_fn = loss_fn
        self.backend = keras.backend.backend()
        self.variables = [v for m in self.members for v in m.variables]
        self.sizes = [int(np.prod(v.shape)) for v in self.variables]
        self.shapes = [tuple(v.shape) for v in self.variables]
        self._step = self._compile()
        self._state = None  # jax: per model (trainable values, optimizer values) between steps

    def check_forward(self, x: np.ndarray) -> None:
        """Fail unless each chain reproduces its model's output (it would train another
        function)."""
        for m in self.members:
            xm = np.asarray(m.inputs(x))
            expected = np.asarray(m.model(xm))
            got = np.asarray(_forward(m.chain, [v.value for v in m.variables], xm, None)[0])
            if not np.allclose(expected, got, atol=1e-5):
                raise TypeError(f"{m.model.name}: the layers in order do not compute the "
                                "model's output (not a chain of Dense and Activation layers)")

    def _noisy_mean(self, values, x, mask, noise, clip_norm, noise_std, denominator):
        """The noisy clipped mean gradient of every model (``values``: one list per model)."""
        from keras import ops

        ghosts, squared, total = [], 0.0, 0.0
        for m, vals in zip(self.members, values, strict=True):
            xm = m.inputs(x)
            ghost, sq, t = _ghost(m.chain, vals, xm, xm, mask, self.loss_fn)
            ghosts.append(ghost)
            squared, total = squared + sq, total + t
        factor, norms = _clip_factor(squared, clip_norm, mask)  # joint over all models
        out, start, i = [], 0, 0
        for ghost in ghosts:
            grads = []
            for g in _clipped_sum(ghost, factor):
                size, shape = self.sizes[i], self.shapes[i]
                n = ops.reshape(noise[start:start + size], shape)
                grads.append((g + noise_std * n) / denominator)
                start, i = start + size, i + 1
            out.append(grads)
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
                    values = [[v.value for v in m.variables] for m in self.members]
                    grads, t, c = self._noisy_mean(values, x, tf.ones(tf.shape(x)[:1]),
                                                   noises[i], clip_norm, noise_std, denominator)
                    for m, g in zip(self.members, grads, strict=True):
                        m.optimizer.apply(g, m.variables)
                    total, clipped = total + t, clipped + c
                return total, clipped

            return tf.function(steps, reduce_retracing=True)
        if self.backend == "jax":
            import jax

            # jit needs static shapes: one step per call, each batch padded (and masked) to a
            # multiple of pad_to; dispatch is cheap enough on jax.
            def step(state, x, mask, noise, clip_norm, noise_std, denominator):
                grads, total, clipped = self._noisy_mean([s[0] for s in state], x, mask, noise,
                                                         clip_norm, noise_std, denominator)
                state = [m.optimizer.stateless_apply(opt_values, g, values)
                         for m, g, (values, opt_values) in zip(self.members, grads, state,
                                                               strict=True)]
                return state, total, clipped

            return jax.jit(step)
        raise NotImplementedError(f"DP-SGD runs on the tensorflow and jax backends, not "
                                  f"{self.backend!r}")

    def run(self, x: np.ndarray, batches: list[np.ndarray], noises: np.ndarray,
            clip_norm: float, noise_std: float, denominator: float, pad_to: int = 32):
        """Apply one update per batch (row indices into ``x``), in order.

        ``noises[i]`` holds standard normal draws for step i, one per parameter of every model
        (scaled here by ``noise_std``). Returns (summed per-row loss, rows whose joint gradient
        norm exceeded C) as backend scalars; reading them forces the device to finish.
        """
        args = (np.float32(clip_norm), np.float32(noise_std), np.float32(denominator))
        if self.backend == "tensorflow":
            offsets = np.zeros(len(batches) + 1, dtype=np.int64)
            np.cumsum([len(b) for b in batches], out=offsets[1:])
            rows = x[np.concatenate(batches)] if batches else x[:0]
            return self._step(rows, offsets, noises, *args)
        if self._state is None:
            self._state = [([v.value for v in m.variables],
                            [v.value for v in m.optimizer.variables]) for m in self.members]
        total = clipped = 0.0
        for idx, noise in zip(batches, noises, strict=True):
            batch, mask = padded(x, idx, pad_to)
            self._state, t, c = self._step(self._state, batch, mask, noise, *args)
            total, clipped = total + t, clipped + c
        return total, clipped

    def sync(self) -> None:
        """Write the jax state back into the Keras variables (a no-op on TensorFlow)."""
        if self._state is None:
            return
        for m, (values, opt_values) in zip(self.members, self._state, strict=True):
            for v, value in zip(m.variables, values, strict=True):
                v.assign(value)
            for v, value in zip(m.optimizer.variables, opt_values, strict=True):
                v.assign(value)

    def per_example_norms(self, x: np.ndarray) -> np.ndarray:
        """Unclipped per-example gradient norms over all models' parameters (for choosing C
        on a public table)."""
        self.sync()
        mask = np.ones(len(x), dtype=np.float32)
        squared = 0.0
        for m in self.members:
            xm = m.inputs(x)
            _, sq, _ = _ghost(m.chain, [v.value for v in m.variables], xm, xm, mask,
                              self.loss_fn)
            squared = squared + sq
        return np.sqrt(np.asarray(squared))


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


def train_dp(models, x: np.ndarray, budget: DpBudget, clip_norm: float, *,
             columns: list | None = None, rng: np.random.Generator | None = None,
             pad_to: int = 32, steps_per_execution: int = 32,
             on_epoch: Callable[[int, dict[str, float]], None] | None = None,
             optimizers=None) -> DpTrainLog:
    """Train ``models`` (each to reproduce its columns of ``x``) with DP-SGD for exactly
    ``budget.steps`` steps of one mechanism.

    Batches are Poisson samples with rate ``budget.sampling_rate``, run ``steps_per_execution``
    steps per compiled call (TensorFlow); each row's gradient over all models' parameters is
    clipped to ``clip_norm``; the noise has standard deviation ``budget.noise_multiplier *
    clip_norm`` on every parameter; the update is divided by the expected batch size q * n.

    Args:
        models: one Keras model or a list sharing the mechanism (see ``DpSgd``).
        x: float32 matrix, one row per training row (n = len(x)).
        columns: per model, the columns of ``x`` it reads (None: all).
        rng: tests only. Without it the batch sampler and the noise are two independent
            streams seeded from OS entropy and never recorded (``secret_streams``); the run is
            then not reproducible, by design.
        on_epoch: ``on_epoch(epoch, {"loss": mean per-row loss of the epoch's batches,
            "clipped": share of rows whose gradient norm exceeded C})``, every 1/q steps and
            after the last.

    Raises:
        ValueError: the budget is not for Poisson sampling.
    """
    if budget.sampling != "poisson":
        raise ValueError("train_dp draws Poisson batches; its budget must say so")
    x = np.ascontiguousarray(x, dtype=np.float32)
    n = len(x)
    q = budget.sampling_rate
    trainer = DpSgd(models, optimizers, columns=columns)
    trainer.check_forward(x[: min(n, 64)])
    sampler, noise_rng = secret_streams(2, rng)
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
            batches = list(poisson_batches(n, q, k, sampler))
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
