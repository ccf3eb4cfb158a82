"""DP-SGD for functional Keras 3 models, on the TensorFlow and jax backends.

One step (Abadi et al. 2016, "Deep Learning with Differential Privacy"): draw a batch by
Poisson sampling (every row independently with probability q), take each example's gradient,
clip it to L2 norm C, sum, add Gaussian noise of standard deviation sigma * C to every
coordinate, divide by the expected batch size q * n, and let the optimizer apply the result.

Per-example gradients of Dense layers are never materialised (the ghost norm: Goodfellow 2015,
"Efficient Per-Example Gradient Computations"; Li et al. 2022, "ghost clipping"). For a Dense
layer z = a W + b, the gradient of example i's loss is a_i^T g_i for W and g_i for b, where g_i
is the gradient with respect to z_i; so its squared norm is (|a_i|^2 + 1) |g_i|^2, and the
clipped sum is a^T (f * g) with f_i = min(1, C / norm_i). One forward and one backward pass
give every a and g, wherever the Dense layer sits in the graph (branches, several output
heads, nested models): the backward pass differentiates the summed per-example loss with
respect to zero "probe" tensors added to each Dense layer's pre-activation. Other layers with
trainable weights get explicit per-example gradients (a vectorised Jacobian of the per-row
losses); layers without weights, such as a reparameterisation sampling layer, run as they are,
their seed state threaded through the compiled step (``PerExampleGraph``). The losses of
several heads add up inside the model's per-example loss.

The backend-specific pieces (probe and per-example gradients, step compilation) live in
``backend_tensorflow`` and ``backend_jax``; the one used follows ``keras.backend.backend()``.

Several models can share one mechanism (``DpSgd([m1, m2, ...], columns=[...])``): they take
the same Poisson batch each step, each row's gradient over *all* their parameters is clipped
jointly to C (the squared per-example norms of the models add up), and one Gaussian draw covers
every parameter, so the models together cost one mechanism's epsilon.

Randomness: batch sampling, noise and the seed state of random layers come from secret
generators seeded from OS entropy (``secret_streams``), one independent stream per purpose,
never recorded: a published seed must not let anyone replay a DP training. Tests inject a
generator to make a run reproducible. ``trainer.train`` is the entry point for callers; the
steps themselves run in the phase trainer (``phases``), the one loop of every model.

This module imports neither Prefect, MLflow nor polars.
"""

from __future__ import annotations

import math
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


def epoch_ends(steps: int, q: float) -> list[int]:
    """The step after which each epoch ends when ``steps`` steps at sampling rate ``q`` are
    logged as epochs of 1/q steps: epoch e ends at step round(e / q) (at least one step each,
    the last at ``steps``). A plan of E epochs has ``round(E / q)`` steps, so E epochs."""
    ends, e = [], 1
    while not ends or ends[-1] < steps:
        ends.append(min(max(int(round(e / q)), (ends[-1] if ends else 0) + 1), steps))
        e += 1
    return ends


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


# --------------------------------------------------------------------------- the model as a graph
# Layers whose output for one row depends on other rows of the batch: no per-example gradient.
CROSS_EXAMPLE_LAYERS = ("BatchNormalization",)


def mse_per_example(y_true, y_pred):
    """Mean squared error of each row (Keras's ``mse`` before its mean over the batch)."""
    from keras import ops

    return ops.mean(ops.square(y_pred - y_true), axis=-1)


def _is_graph(layer) -> bool:
    """A functional model (or a built Sequential) whose graph we can run node by node."""
    import keras

    if isinstance(layer, keras.Sequential):
        return getattr(layer, "_functional", None) is not None
    return hasattr(layer, "_run_through_graph") and hasattr(layer, "_nodes_by_depth")


def _graph_of(layer):
    import keras

    return layer._functional if isinstance(layer, keras.Sequential) else layer


class PerExampleGraph:
    """A Keras model seen as what per-example gradients need.

    Every Dense layer on rank-2 inputs, wherever it sits in the (possibly nested, branching,
    multi-output) functional graph, gets its per-example gradient norm by the ghost norm
    (Goodfellow 2015, "Efficient per-example gradient computations"; Li et al. 2022, "ghost
    clipping"): for z = a W + b, the gradient of row i's loss is a_i^T g_i (W) and g_i (b),
    with g_i = dL_i/dz_i, so its squared norm is (|a_i|^2 + 1) |g_i|^2. Any other layer with
    trainable weights gets an explicit per-example gradient (a vectorised Jacobian of the
    per-row losses, ``tf.GradientTape.jacobian`` with pfor or ``jax.vmap`` of the VJP).
    Layers without trainable weights (activations, a reparameterisation sampling layer with a
    ``keras.random.SeedGenerator``) are called as they are; their non-trainable variables
    (seed states) are threaded through the step as explicit state.

    Raises:
        TypeError: a layer that mixes rows (BatchNormalization), a Dense layer on inputs of rank
            other than 2 or called more than once, or trainable variables outside the layers
            found (a custom ``call`` that reads another layer's weights).
    """

    def __init__(self, model):
        import keras

        self.model = model
        self.dense: list = []
        self.others: list = []  # non-Dense layers with trainable weights

        def walk(layer) -> None:
            for inner in _graph_of(layer).layers:
                name = type(inner).__name__
                if isinstance(inner, keras.layers.InputLayer):
                    continue
                if name in CROSS_EXAMPLE_LAYERS:
                    raise TypeError(f"layer {inner.name!r} ({name}) mixes the rows of a batch: "
                                    "no per-example gradient exists, DP-SGD cannot train it")
                if _is_graph(inner):
                    walk(inner)
                elif isinstance(inner, keras.layers.Dense):
                    if len(inner._inbound_nodes) != 1:
                        raise TypeError(f"Dense layer {inner.name!r} is called "
                                        f"{len(inner._inbound_nodes)} times; the ghost norm "
                                        "here needs each Dense layer called once")
                    if len(inner.input.shape) != 2:
                        raise TypeError(f"Dense layer {inner.name!r} has inputs of rank "
                                        f"{len(inner.input.shape)}; DP-SGD here needs rank 2")
                    self.dense.append(inner)
                elif inner.trainable_weights:
                    self.others.append(inner)

        if not _is_graph(model):
            raise TypeError(f"{model.name}: DP-SGD needs a functional or built Sequential "
                            "Keras model")
        walk(model)
        self.index = {id(layer): k for k, layer in enumerate(self.dense)}
        # Dense kernels constrained to within-block connections (``models.heads``'s
        # ``BlockConnectivity``): (input membership, output membership) one-hot matrices
        self.blocks = [_block_members(layer) for layer in self.dense]
        self.variables = list(model.trainable_variables)
        self.other_variables = [v for layer in self.others for v in layer.trainable_variables]
        covered = {id(v) for v in self.other_variables}
        for layer in self.dense:
            covered.add(id(layer.kernel))
            if layer.use_bias:
                covered.add(id(layer.bias))
        missing = [v.path for v in self.variables if id(v) not in covered]
        if missing:
            raise TypeError(f"{model.name}: trainable variables outside the layers DP-SGD can "
                            f"follow: {missing}")
        self.state = list(model.non_trainable_variables)  # seed-generator states

    def forward(self, values: dict, x, probes: list | None, state: list | None = None):
        """Run the model on ``x`` with variable values ``values`` (id(variable) -> value).

        ``probes[k]`` (batch, units) is added to Dense layer k's pre-activation. Returns
        (output structure, each Dense layer's input (batch, fan_in), the new state values).
        """
        import keras
        from keras import ops

        inputs: list = [None] * len(self.dense)

        def operation(op):
            if _is_graph(op):
                return lambda *args, **kw: _graph_of(op)._run_through_graph(
                    args[0] if len(args) == 1 else list(args), operation_fn=operation)
            if isinstance(op, keras.layers.Dense) and id(op) in self.index:
                k = self.index[id(op)]

                def dense(a, *args, **kw):
                    inputs[k] = a
                    z = ops.matmul(a, values[id(op.kernel)])
                    if op.use_bias:
                        z = z + values[id(op.bias)]
                    if probes is not None:
                        z = z + probes[k]
                    return op.activation(z)
                return dense
            if op.trainable_weights:
                def call(*args, **kw):
                    trainable = [values[id(v)] for v in op.trainable_variables]
                    fixed = [v.value for v in op.non_trainable_variables]
                    out, _ = op.stateless_call(trainable, fixed, *args, **kw)
                    return out
                return call
            return op

        def run():
            return _graph_of(self.model)._run_through_graph(x, operation_fn=operation)

        if not self.state:
            return run(), inputs, []
        with keras.StatelessScope(state_mapping=list(zip(self.state, state, strict=True))) \
                as scope:
            out = run()
        return out, inputs, [scope.get_current_value(v) for v in self.state]


def _block_members(layer):
    """(input, output) one-hot block membership of a Dense layer whose kernel constraint keeps
    only within-block connections (it has ``blocks()``), else None."""
    blocks = getattr(layer.kernel_constraint, "blocks", None)
    if blocks is None:
        return None
    inputs, outputs = (np.asarray(b) for b in blocks())
    ids = np.union1d(inputs, outputs)
    return ((inputs[:, None] == ids[None, :]).astype(np.float32),
            (outputs[:, None] == ids[None, :]).astype(np.float32),
            layer.kernel_constraint.mask())


def _backend_module():
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        from cloakflow.models.training import backend_tensorflow as module
    elif backend == "jax":
        from cloakflow.models.training import backend_jax as module
    else:
        raise NotImplementedError(f"DP-SGD runs on the tensorflow and jax backends, not "
                                  f"{backend!r}")
    return module


def per_example_pass(graph: PerExampleGraph, values: list, x, y, mask, loss_fn: Callable,
                     state: list | None = None):
    """One forward and one backward pass over a batch.

    Args:
        graph: the model (``PerExampleGraph``).
        values: current values of ``graph.variables`` (same order).
        x: the batch of model inputs, (batch, features) float32.
        y: what ``loss_fn`` compares the output with (batch, ...).
        mask: (batch,) 1.0 for real rows, 0.0 for padding (padding contributes nothing).
        loss_fn: ``loss_fn(y, outputs) -> (batch,)``, one loss per row (several heads: the sum).
        state: values of ``graph.state`` (seed states); None reads the variables.

    Returns:
        (per-example pieces for ``_clipped_sum``, squared per-example gradient norms (batch,),
        the summed loss, the new state values).
    """
    from keras import ops

    backend = _backend_module()
    vmap = {id(v): value for v, value in zip(graph.variables, values, strict=True)}
    if state is None:
        state = [v.value for v in graph.state]
    batch = ops.shape(x)[0]
    probes = [ops.zeros((batch, layer.units), dtype=x.dtype) for layer in graph.dense]
    others = [vmap[id(v)] for v in graph.other_variables]

    def losses(p, o):
        current = vmap if not o else {**vmap, **{id(v): value for v, value in
                                                 zip(graph.other_variables, o, strict=True)}}
        out, inputs, new_state = graph.forward(current, x, p, state)
        per_example = loss_fn(y, out) * mask
        total = ops.sum(per_example)
        return total, per_example, (inputs, total, new_state)

    grads_z, per_example_grads, (inputs, total, new_state) = backend.probe_gradients(
        losses, probes, others)
    squared = 0.0
    for layer, blocks, a, g in zip(graph.dense, graph.blocks, inputs, grads_z, strict=True):
        g2 = ops.sum(ops.square(g), axis=1)
        if blocks is None:
            squared = squared + g2 * (ops.sum(ops.square(a), axis=1)
                                      + (1.0 if layer.use_bias else 0.0))
        else:  # only the kept entries: sum over blocks of |a_block|^2 |g_block|^2
            rows, cols = (ops.cast(m, a.dtype) for m in blocks[:2])
            kernel = ops.sum(ops.matmul(ops.square(a), rows) * ops.matmul(ops.square(g), cols),
                             axis=1)
            squared = squared + kernel + (g2 if layer.use_bias else 0.0)
    for g in per_example_grads:
        squared = squared + ops.sum(ops.reshape(ops.square(g), (batch, -1)), axis=1)
    return (graph, inputs, grads_z, per_example_grads), squared, total, new_state


def _clipped_sum(pieces, factor) -> list:
    """sum_i factor_i * (gradient of row i), in the order of ``graph.variables``."""
    from keras import ops

    graph, inputs, grads_z, per_example_grads = pieces
    grads = {}
    for layer, blocks, a, g in zip(graph.dense, graph.blocks, inputs, grads_z, strict=True):
        scaled = g * factor[:, None]
        grads[id(layer.kernel)] = ops.matmul(ops.transpose(a), scaled)
        if blocks is not None:  # the entries the constraint removes carry no gradient
            grads[id(layer.kernel)] = grads[id(layer.kernel)] * ops.cast(blocks[2], a.dtype)
        if layer.use_bias:
            grads[id(layer.bias)] = ops.sum(scaled, axis=0)
    for v, g in zip(graph.other_variables, per_example_grads, strict=True):
        grads[id(v)] = ops.tensordot(factor, g, axes=1)
    return [grads[id(v)] for v in graph.variables]


def _clip_factor(squared, clip_norm: float, mask):
    from keras import ops

    norms = ops.sqrt(squared)
    return ops.minimum(1.0, clip_norm / ops.maximum(norms, 1e-12)) * mask, norms


def clipped_gradient_sum(graph: PerExampleGraph, values: list, x, y, mask, clip_norm: float,
                         loss_fn: Callable = mse_per_example):
    """Sum over rows of each row's gradient clipped to ``clip_norm``, and the norms before.

    Args:
        graph: ``PerExampleGraph(model)``.
        values: current values of ``graph.variables``.
        x, y: a batch of inputs (batch, features) and what the loss compares outputs with.
        mask: (batch,) 1.0 for real rows, 0.0 for padding (padding contributes nothing).
        clip_norm: C; ``math.inf`` leaves every gradient as it is.

    Returns:
        (gradients in the order of ``values``, per-example gradient norms (batch,), summed loss).
    """
    pieces, squared, total, _ = per_example_pass(graph, values, x, y, mask, loss_fn)
    factor, norms = _clip_factor(squared, clip_norm, mask)
    return _clipped_sum(pieces, factor), norms, total


# --------------------------------------------------------------------------- training
@dataclass
class DpTrainLog:
    """What a DP-SGD run did (losses are per-row sums over the mechanism's models)."""

    budget: DpBudget | None
    clip_norm: float
    steps_run: int = 0
    epochs_run: int = 0
    history: dict[str, list[float]] = field(default_factory=lambda: {"loss": []})
    clipped_share: list[float] = field(default_factory=list)  # per epoch
    seconds: float = 0.0
    seconds_per_epoch: list[float] = field(default_factory=list)


@dataclass
class _Member:
    """One model of a mechanism: its graph, optimizer, loss, and the columns it reads."""

    model: object
    graph: PerExampleGraph
    optimizer: object
    loss_fn: Callable
    columns: np.ndarray | None  # column indices of x the model reads; None = all
    targets: np.ndarray | None  # column indices of x the loss compares with; None = inputs

    @property
    def variables(self) -> list:
        return self.graph.variables

    @property
    def state(self) -> list:
        return self.graph.state

    def inputs(self, x):
        from keras import ops

        return x if self.columns is None else ops.take(x, self.columns, axis=1)

    def targets_of(self, x, xm):
        from keras import ops

        return xm if self.targets is None else ops.take(x, self.targets, axis=1)


def model_loss(model) -> Callable:
    """The per-example loss a model supplies (its ``per_example_loss(y, outputs)`` attribute),
    else ``mse_per_example`` (reconstruction)."""
    return getattr(model, "per_example_loss", None) or mse_per_example


class DpSgd:
    """The members of one DP-SGD mechanism (Abadi et al. 2016): one model, or several models
    sharing it, seen as what per-example gradients need: their per-example norms
    (``per_example_norms``, for choosing C on a public table). Training runs in the phase
    trainer (``phases.train_phases``; ``trainer.train`` for one phase).

    Args:
        models: a functional Keras model (see ``PerExampleGraph`` for what it may contain) or a
            list of them. Several models take the same batch each step, are clipped jointly
            (each row's gradient over all their parameters has norm <= C) and share one noise
            draw: one mechanism, accounted once.
        optimizers: a Keras optimizer or one per model; default each model's own.
        loss_fn: per-example loss ``loss_fn(y, outputs) -> (batch,)``, one callable or one per
            model; default the model's ``per_example_loss`` if it has one, else MSE against its
            own inputs. The losses of all models add up.
        columns: per model, the column indices of ``x`` it reads (None: all columns).
        targets: per model, the column indices of ``x`` its loss compares with (None: the
            model's own inputs, a reconstruction).

    Raises:
        TypeError: a model DP-SGD cannot follow (see ``PerExampleGraph``).
        ValueError: no optimizer, or an optimizer built for other variables.
        NotImplementedError: a backend other than tensorflow or jax.
    """

    def __init__(self, models, optimizers=None, loss_fn: Callable | list | None = None,
                 columns: list | None = None, targets: list | None = None):
        models = list(models) if isinstance(models, (list, tuple)) else [models]
        if optimizers is None:
            optimizers = [m.optimizer for m in models]
        elif not isinstance(optimizers, (list, tuple)):
            optimizers = [optimizers]
        columns = columns if columns is not None else [None] * len(models)
        targets = targets if targets is not None else [None] * len(models)
        losses = loss_fn if isinstance(loss_fn, (list, tuple)) else [loss_fn] * len(models)
        if not len(models) == len(optimizers) == len(columns) == len(targets) == len(losses):
            raise ValueError("give one optimizer, column list, target list and loss per model")
        self.members: list[_Member] = []
        for model, opt, cols, tgt, loss in zip(models, optimizers, columns, targets, losses,
                                               strict=True):
            graph = PerExampleGraph(model)
            if opt is None:
                raise ValueError(f"{model.name}: give an optimizer or compile the model first")
            if not opt.built:
                opt.build(graph.variables)
            elif [id(v) for v in opt._trainable_variables] != [id(v) for v in graph.variables]:
                raise ValueError("the optimizer was built for other variables (or another "
                                 "order); give DP-SGD a fresh optimizer")
            cols = None if cols is None else np.asarray(cols, dtype=np.int32)
            tgt = None if tgt is None else np.asarray(tgt, dtype=np.int32)
            self.members.append(_Member(model, graph, opt, loss or model_loss(model), cols, tgt))
        self.variables = [v for m in self.members for v in m.variables]
        self.sizes = [int(np.prod(v.shape)) for v in self.variables]

    def per_example_norms(self, x: np.ndarray) -> np.ndarray:
        """Unclipped per-example gradient norms over all models' parameters, shape (rows,)
        (for choosing C on a public table)."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        mask = np.ones(len(x), dtype=np.float32)
        squared = 0.0
        for m in self.members:
            xm = m.inputs(x)
            _, sq, _, _ = per_example_pass(m.graph, [v.value for v in m.variables], xm,
                                           m.targets_of(x, xm), mask, m.loss_fn)
            squared = squared + sq
        return np.sqrt(np.asarray(squared))


def reseed_states(states: list, rng: np.random.Generator) -> None:
    """Assign every seed-state variable in ``states`` a fresh draw from ``rng``."""
    from keras import backend

    for v in states:
        dtype = np.dtype(backend.standardize_dtype(v.dtype))
        high = min(np.iinfo(dtype).max, 2**31 - 1) if dtype.kind in "iu" else 1.0
        draw = rng.integers(0, high, size=v.shape) if dtype.kind in "iu" \
            else rng.random(v.shape)
        v.assign(draw.astype(dtype))


def traced_matches(graph: PerExampleGraph, x: np.ndarray) -> bool:
    """Whether ``graph.forward`` reproduces the model's own output on ``x``."""
    values = {id(v): v.value for v in graph.variables}
    expected = [np.asarray(t) for t in _flat(graph.model(x))]
    got = [np.asarray(t) for t in _flat(graph.forward(values, x, None)[0])]
    return all(np.allclose(a, b, atol=1e-5) for a, b in zip(expected, got, strict=True))


def _flat(structure) -> list:
    from keras import tree

    return tree.flatten(structure)


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
             columns: list | None = None, targets: list | None = None,
             loss_fn: Callable | list | None = None, rng: np.random.Generator | None = None,
             pad_to: int = 32, steps_per_execution: int = 32,
             on_epoch: Callable[[int, dict[str, float]], None] | None = None,
             optimizers=None, expected_batch: float | None = None,
             proximal_mu: float = 0.0) -> DpTrainLog:
    """Train ``models`` with DP-SGD (Abadi et al. 2016) for exactly ``budget.steps`` steps of
    one mechanism.

    Batches are Poisson samples with rate ``budget.sampling_rate``; each row's gradient over all
    models' parameters is clipped to ``clip_norm``; the noise has standard deviation
    ``budget.noise_multiplier * clip_norm`` on every parameter; the update is divided by the
    expected batch size q * n, or by ``expected_batch``.

    Args:
        models: one Keras model or a list sharing the mechanism (see ``DpSgd``).
        x: float32 matrix (n, features), one row per training row.
        budget: ``plan(...)``: sampling rate, steps and sigma (Poisson sampling).
        clip_norm: C, in units of the loss gradient's L2 norm.
        columns, targets, loss_fn: per model, see ``DpSgd`` (default: each model reconstructs
            all of ``x`` under MSE, or its own ``per_example_loss``).
        rng: tests only. Without it the batch sampler, the noise and the models' seed states
            (random layers) are three independent streams seeded from OS entropy and never
            recorded (``secret_streams``); the run is then not reproducible, by design.
        pad_to: jax only: each batch is padded to a multiple of this many rows (fewer
            compiled shapes); padding rows are masked out.
        steps_per_execution: steps drawn and run per call of the compiled step (TensorFlow
            runs them in one call; jax dispatches one compiled step per batch).
        on_epoch: ``on_epoch(epoch, {"loss": mean per-row loss of the epoch's batches,
            "clipped": share of rows whose gradient norm exceeded C})``, every 1/q steps and
            after the last.
        expected_batch: the divisor of the noisy gradient sum, when the row count n is private
            (add/remove adjacency): a public number (e.g. q times a DP count of the rows), so
            that the update is not a function of n itself. None: q * n (n public).
        proximal_mu: FedProx's mu (``DpSgd.set_proximal``): each step's gradient gains
            mu * (w - w_0), w_0 the parameters at the start; 0 for plain DP-SGD.

    Raises:
        ValueError: the budget is not for Poisson sampling, or steps_per_execution < 1.
        TypeError: a model DP-SGD cannot follow (see ``PerExampleGraph``).
    """
    if budget.sampling != "poisson":
        raise ValueError("train_dp draws Poisson batches; its budget must say so")
    if steps_per_execution < 1:
        raise ValueError("steps_per_execution must be positive")
    from cloakflow.models.training.trainer import TrainConfig, train

    batch = max(int(round(budget.sampling_rate * len(x))), 1)
    config = TrainConfig(epochs=max(int(round(budget.epochs)), 1), batch_size=batch,
                         steps_per_execution=steps_per_execution, pad_to=pad_to)
    return train(models, x, config, budget=budget, clip_norm=clip_norm, columns=columns,
                 targets=targets, loss_fn=loss_fn, optimizers=optimizers, rng=rng,
                 on_epoch=on_epoch, expected_batch=expected_batch, proximal_mu=proximal_mu)
