"""The phase trainer: one loop for models of several networks trained in turns, plainly or
with DP-SGD.

A model declares its **networks** (functional Keras models, by name) and its **training
phases** (:class:`Phase`). A phase names the networks it updates and up to two loss terms:

- a **private** term (:class:`PrivateTerm`): a per-example loss on real training rows, one
  per updated network that reads them. Under DP its per-example gradients are clipped to C
  jointly over the phase's private terms, summed, and Gaussian noise of standard deviation
  sigma * C is added (DP-SGD, Abadi et al. 2016; per-example norms by the ghost norm,
  ``dp_sgd.PerExampleGraph``). The phase's steps draw Poisson batches of the real rows and are
  the steps the accountant counts.
- a **public** term (:class:`PublicTerm`): a scalar loss on public or generated inputs only
  (latent noise for a generator, a proximal term), drawn by the term itself. Its gradient is
  neither clipped nor noised: it is added after the noise, which is post-processing and costs
  no privacy, exactly because it reads no real row. **Any term that reads real rows (a
  critic's score of a real row, a gradient penalty on interpolates between real and generated
  rows, a reconstruction) must be inside the private term**: a real-row term left out of
  clipping is the known leak of DP-GAN implementations that clip only part of the critic's
  loss.

A **joint** term (:class:`JointTerm`) is a scalar loss on the step's batch of real rows that
runs several networks (an adversarial privatizer's loss through its adversary, Huang et al.
2017). It has no per-example form, so nothing clips it: **plain training only** (a run with a
budget refuses a phase that has one).

A phase without a private or joint term reads no real row and costs nothing; a step of a phase with
one is one subsampled Gaussian step. The loop runs rounds of the phases in their order, each
``phase.steps`` times. Plainly (C = inf, sigma = 0) the private phases take shuffled
fixed-size batches, one epoch being one pass over the rows; under DP they take exactly the
budget's steps (``dp_sgd.plan``: sampling rate q, steps, sigma), counted over every private
phase together, and the loop stops there.

Every step is one compiled function per phase (``tf.function`` reading and updating the Keras
variables; ``jax.jit`` with the networks' values, seed states and optimizer states going in
and out explicitly), so a phase sees the other networks' current weights on both backends.
What the loop returns across a process boundary is weights and a log (:class:`PhaseLog`),
never a live Keras object.

This module imports neither Prefect, MLflow nor polars.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from cloakflow.models.training.accounting import DpBudget
from cloakflow.models.training.dp_sgd import (
    PerExampleGraph,
    _backend_module,
    _clip_factor,
    _clipped_sum,
    epoch_ends,
    per_example_pass,
    poisson_batches,
    secret_streams,
)
from cloakflow.models.training.trainer import TrainConfig


class Networks:
    """What a public term sees: ``view(name, x)`` runs network ``name`` on ``x`` at the step's
    weights; ``view.weights(name)`` is that network's list of trainable values
    (``PerExampleGraph.variables`` order). The phase's own networks are differentiable, the
    others fixed."""

    def __init__(self, graphs: Mapping[str, PerExampleGraph], values: Mapping, seeds: Mapping):
        self._graphs, self._values, self._seeds = graphs, values, seeds

    def __call__(self, name: str, inputs):
        graph = self._graphs[name]
        vmap = {id(v): val for v, val in zip(graph.variables, self._values[name], strict=True)}
        out, _, _ = graph.forward(vmap, inputs, None, self._seeds[name] if graph.state else None)
        return out

    def weights(self, name: str) -> list:
        return list(self._values[name])


@dataclass(frozen=True)
class PrivateTerm:
    """A per-example loss on real rows, of one network's outputs.

    Args:
        network: the network whose outputs are scored; the phase must update it.
        loss: ``loss(y, outputs) -> (batch,)``, one loss per row (``y``: the ``targets``
            columns of the batch, or the network's own inputs).
        columns: column indices of the training matrix the network reads (None: all).
        targets: column indices ``loss`` compares with (None: the network's inputs).
    """

    network: str
    loss: Callable
    columns: tuple[int, ...] | None = None
    targets: tuple[int, ...] | None = None

    def views(self, x):
        """(what the network reads, what the loss compares with) of a batch ``x``."""
        from keras import ops

        xm = x if self.columns is None else ops.take(x, np.asarray(self.columns), axis=1)
        return xm, xm if self.targets is None else ops.take(x, np.asarray(self.targets), axis=1)


@dataclass(frozen=True)
class PublicTerm:
    """A scalar loss on inputs that are not training rows.

    Args:
        loss: ``loss(view, inputs) -> scalar``; ``view(name, x)`` runs a network at the step's
            weights and ``view.weights(name)`` gives its values (:class:`Networks`).
        inputs: ``inputs(rng, rows) -> float32 array (rows, width)``, drawn on the host for
            every step (e.g. a generator's latent noise); ``rng`` is the run's public-input
            stream (secret under DP, seeded plainly).
        rows: rows drawn per step (None: the training batch size).
    """

    loss: Callable[[Networks, object], object]
    inputs: Callable[[np.random.Generator, int], np.ndarray]
    rows: int | None = None


@dataclass(frozen=True)
class JointTerm:
    """A scalar loss on the step's batch of real rows through several networks; plain
    training only (no per-example gradient exists to clip: ``train_phases`` refuses it with a
    budget).

    Args:
        loss: ``loss(view, x, mask) -> scalar``: the batch's loss (a mean over its rows);
            ``x`` (batch, features) the training matrix's rows, ``mask`` (batch,) 1 for a row
            of the batch, 0 for padding (rows a loss must leave out); ``view`` as a public
            term's (:class:`Networks`).
    """

    loss: Callable


@dataclass(frozen=True)
class Phase:
    """One kind of step: the networks it updates and its loss terms.

    Args:
        name: names the phase in the log.
        updates: the networks whose weights it changes (with their own optimizers).
        private: per-example terms on real rows (at most one per network).
        public: a term on public or generated inputs only.
        joint: a scalar term on real rows through several networks (plain training only).
        steps: consecutive steps of this phase in each round (e.g. 5 critic steps per
            generator step).

    Raises:
        ValueError: no network, no term, a private term on a network it does not update,
            two private terms on one network, or steps < 1.
    """

    name: str
    updates: tuple[str, ...]
    private: tuple[PrivateTerm, ...] = ()
    public: PublicTerm | None = None
    steps: int = 1
    joint: JointTerm | None = None

    def __post_init__(self):
        if not self.updates:
            raise ValueError(f"phase {self.name!r} updates no network")
        if not self.private and self.public is None and self.joint is None:
            raise ValueError(f"phase {self.name!r} has no term (private, public or joint)")
        nets = [t.network for t in self.private]
        if len(set(nets)) != len(nets):
            raise ValueError(f"phase {self.name!r}: one private term per network")
        outside = sorted(set(nets) - set(self.updates))
        if outside:
            raise ValueError(f"phase {self.name!r}: private terms on {outside}, which it does "
                             "not update")
        if self.steps < 1:
            raise ValueError(f"phase {self.name!r}: steps must be positive")

    @property
    def reads_rows(self) -> bool:
        """Whether a step reads real rows (it is then a DP-SGD step under a budget)."""
        return bool(self.private) or self.joint is not None


@dataclass(frozen=True)
class EarlyStopping:
    """Plain runs only: stop when the validation loss has not improved by more than
    ``min_delta`` for ``patience`` epochs, and restore the weights of the best epoch.

    The validation loss is the mean per-row loss of every private term of the phases on
    ``rows`` (held-out training rows: a look at the data that DP-SGD does not account, so a
    DP run refuses it), at the weights after each epoch.

    Args:
        rows: float32 matrix (n_val, features), the training matrix's columns.
        patience: epochs without improvement before the run stops (>= 1).
        min_delta: the improvement over the best loss that counts (same unit as the loss).
        batch_size: rows per forward pass (memory only).
    """

    rows: np.ndarray
    patience: int = 5
    min_delta: float = 0.0
    batch_size: int = 8192

    def __post_init__(self):
        if self.patience < 1 or self.batch_size < 1:
            raise ValueError("patience and batch_size must be positive")
        if np.ndim(self.rows) != 2 or len(self.rows) < 1:
            raise ValueError(f"validation rows must be a 2-D matrix with rows, got shape "
                             f"{np.shape(self.rows)}")


@dataclass
class PhaseLog:
    """What a phase-trained run did.

    ``steps[phase]`` counts each phase's steps; ``private_steps`` those that read real rows
    (under DP it equals ``budget.steps``). ``history`` holds each epoch's mean private loss
    per row (``"<phase>.private"``), mean public loss per step (``"<phase>.public"``) and,
    with early stopping, the validation loss (``"validation"``); ``best_epoch`` is the epoch
    whose weights were kept (the last one without early stopping).
    """

    budget: DpBudget | None
    clip_norm: float
    steps: dict[str, int] = field(default_factory=dict)
    private_steps: int = 0
    epochs_run: int = 0
    history: dict[str, list[float]] = field(default_factory=dict)
    clipped_share: list[float] = field(default_factory=list)  # per epoch, private rows
    seconds: float = 0.0
    seconds_per_epoch: list[float] = field(default_factory=list)
    best_epoch: int = 0


class PhaseTrainer:
    """Compiled steps of every phase over named networks, their state held explicitly.

    Args:
        networks: name -> functional Keras model (see ``dp_sgd.PerExampleGraph`` for the
            layers a private term can follow).
        phases: the training phases, run in this order in every round.
        optimizers: name -> Keras optimizer for each updated network (default each network's
            compiled optimizer, else Adam(``learning_rate``)).

    Raises:
        ValueError: no phase, a phase names an unknown network, or an optimizer built for
            other variables.
        TypeError: a network DP-SGD cannot follow (``PerExampleGraph``).
    """

    def __init__(self, networks: Mapping, phases: Sequence[Phase],
                 optimizers: Mapping | None = None, learning_rate: float = 1e-3):
        import keras

        if not phases:
            raise ValueError("give at least one phase")
        self.networks = dict(networks)
        self.phases = list(phases)
        unknown = sorted({n for p in self.phases for n in p.updates} - set(self.networks))
        if unknown:
            raise ValueError(f"phases update unknown networks {unknown}; networks: "
                             f"{sorted(self.networks)}")
        self.graphs = {n: PerExampleGraph(m) for n, m in self.networks.items()}
        updated = [n for n in self.networks if any(n in p.updates for p in self.phases)]
        optimizers = dict(optimizers or {})
        self.optimizers = {}
        for n in updated:
            opt = optimizers.get(n) or getattr(self.networks[n], "optimizer", None) \
                or keras.optimizers.Adam(learning_rate)
            if not opt.built:
                opt.build(self.graphs[n].variables)
            elif [id(v) for v in opt._trainable_variables] != [
                    id(v) for v in self.graphs[n].variables]:
                raise ValueError(f"{n}: the optimizer was built for other variables (or another "
                                 "order); give the network a fresh optimizer")
            self.optimizers[n] = opt
        self._backend = _backend_module()
        self._steps: dict[str, Callable] = {}
        self.compiled: dict[str, object] = {}  # TensorFlow: each phase's tf.function
        self.sizes = {n: [int(np.prod(v.shape)) for v in g.variables]
                      for n, g in self.graphs.items()}
        self.state: dict | None = None  # jax: what the compiled steps hold (``current``)

    # ------------------------------------------------------------------ state
    def current(self) -> dict:
        """The networks' values now: ``{"values": name -> trainable values (``graph.variables``
        order), "seeds": name -> seed-state values, "opt": name -> optimizer variables}``
        (jax: the state the compiled steps hold; TensorFlow: the Keras variables)."""
        if self.state is not None:
            return self.state
        return {"values": {n: [v.value for v in g.variables] for n, g in self.graphs.items()},
                "seeds": {n: [v.value for v in g.state] for n, g in self.graphs.items()},
                "opt": {n: [v.value for v in o.variables] for n, o in self.optimizers.items()}}

    def sync(self) -> None:
        """Write the state the compiled steps hold (jax) back into the Keras variables."""
        if self.state is None:
            return
        for n, g in self.graphs.items():
            for v, value in zip(g.variables, self.state["values"][n], strict=True):
                v.assign(value)
            for v, value in zip(g.state, self.state["seeds"][n], strict=True):
                v.assign(value)
        for n, o in self.optimizers.items():
            for v, value in zip(o.variables, self.state["opt"][n], strict=True):
                v.assign(value)

    def reseed(self, rng: np.random.Generator) -> None:
        """Draw every seed state (a sampling layer's ``SeedGenerator``) of every network from
        ``rng``, a secret stream under DP (``DpSgd.reseed``, network by network)."""
        from cloakflow.models.training.dp_sgd import reseed_states

        for graph in self.graphs.values():
            reseed_states(graph.state, rng)
        self.state = None

    def check_forward(self, x: np.ndarray) -> None:
        """Fail unless the traced graph of each private term's network reproduces its output
        (it would train another function); networks with seed state are not checked.

        Raises:
            TypeError: a network whose traced graph computes something else.
        """
        from cloakflow.models.training.dp_sgd import traced_matches

        for term in {t.network: t for p in self.phases for t in p.private}.values():
            graph = self.graphs[term.network]
            xm = x if term.columns is None else x[:, list(term.columns)]
            if not graph.state and not traced_matches(graph, xm):
                raise TypeError(f"{graph.model.name}: the traced graph does not compute the "
                                "model's output")

    def assign(self, weights: Mapping[str, list[np.ndarray]]) -> None:
        """Set networks' trainable values (``weights()`` order) in the Keras variables and in
        the state the compiled steps hold."""
        self.sync()
        for n, values in weights.items():
            for v, value in zip(self.graphs[n].variables, values, strict=True):
                v.assign(value)
            if self.state is not None:
                self.state["values"][n] = [v.value for v in self.graphs[n].variables]

    def validation_loss(self, x: np.ndarray, batch_size: int = 8192) -> float:
        """Mean per-row loss of every private term of the phases on the rows of ``x``, at the
        current weights (forward passes only)."""
        from keras import ops

        self.sync()
        terms = {(t.network, t.columns, t.targets): t for p in self.phases for t in p.private}
        total = 0.0
        for term in terms.values():
            model = self.networks[term.network]
            for i in range(0, len(x), batch_size):
                xm, y = term.views(ops.convert_to_tensor(x[i:i + batch_size]))
                total += float(ops.sum(term.loss(y, model(xm, training=False))))
        return total / len(x)

    def weights(self) -> dict[str, list[np.ndarray]]:
        """Each network's trainable weights as NumPy arrays (``graph.variables`` order)."""
        return {n: [np.asarray(v) for v in vals]
                for n, vals in self.current()["values"].items()}

    # ------------------------------------------------------------------ one step
    def _private_gradients(self, phase: Phase, values, seeds, x, mask, noise, clip_norm,
                           noise_std, denominator):
        """Noisy clipped mean gradient of the phase's private terms (joint clipping over
        them), their summed loss, the rows clipped and the new seed states."""
        from keras import ops

        pieces, squared, total, new_seeds = [], 0.0, 0.0, dict(seeds)
        for term in phase.private:
            graph = self.graphs[term.network]
            xm, y = term.views(x)
            p, sq, t, ns = per_example_pass(graph, values[term.network], xm, y, mask,
                                            term.loss, seeds[term.network] or None)
            pieces.append(p)
            if graph.state:
                new_seeds[term.network] = ns
            squared, total = squared + sq, total + t
        factor, norms = _clip_factor(squared, clip_norm, mask)
        grads, start = {}, 0
        for term, p in zip(phase.private, pieces, strict=True):
            out = []
            for g, size, v in zip(_clipped_sum(p, factor), self.sizes[term.network],
                                  self.graphs[term.network].variables, strict=True):
                n = ops.reshape(noise[start:start + size], tuple(v.shape))
                out.append((g + noise_std * n) / denominator)
                start += size
            grads[term.network] = out
        clipped = ops.sum(ops.cast(norms > clip_norm, "float32") * mask)
        return grads, total, clipped, new_seeds

    def gradients(self, phase: Phase, values, seeds, x, mask, noise, public_in, clip_norm,
                  noise_std, denominator):
        """One step's gradient of every network ``phase`` updates: its private terms' noisy
        clipped mean plus its public term's plain gradient (added after the noise). Returns
        (gradients by network, new seed states, summed private loss, public loss, rows
        clipped); the backend's compiled step applies them."""
        from keras import ops

        grads = {n: [ops.zeros_like(v) for v in values[n]] for n in phase.updates}
        total = clipped = ops.convert_to_tensor(0.0)
        if phase.private:
            private, total, clipped, seeds = self._private_gradients(
                phase, values, seeds, x, mask, noise, clip_norm, noise_std, denominator)
            grads.update(private)
        if phase.joint is not None:
            def joint(updated):
                return phase.joint.loss(Networks(self.graphs, {**values, **updated}, seeds), x,
                                        mask)

            value, grad = self._backend.value_and_grad(
                joint, {n: list(values[n]) for n in phase.updates})
            grads = {n: [a + b for a, b in zip(grads[n], grad[n], strict=True)]
                     for n in phase.updates}
            total = total + value * ops.sum(mask)  # reported per row, as a private term's
        public_loss = ops.convert_to_tensor(0.0)
        if phase.public is not None:
            def loss(updated):
                return phase.public.loss(Networks(self.graphs, {**values, **updated}, seeds),
                                         public_in)

            public_loss, public = self._backend.value_and_grad(
                loss, {n: list(values[n]) for n in phase.updates})
            grads = {n: [a + b for a, b in zip(grads[n], public[n], strict=True)]
                     for n in phase.updates}
        return grads, seeds, total, public_loss, clipped

    def run_steps(self, phase: Phase, x: np.ndarray, batches: list[np.ndarray],
                  noises: np.ndarray, publics: np.ndarray, clip_norm: float, noise_std: float,
                  denominators: np.ndarray, pad_to: int = 32):
        """``len(batches)`` steps of ``phase``, in order (TensorFlow: in one compiled call; jax:
        one compiled step each, batches padded to a multiple of ``pad_to`` rows).

        Args:
            x: the training matrix; ``batches[i]``: row indices of step i (empty for a phase
                without a private term).
            noises: (steps, ``noise_width(phase)``) standard normal draws (zeros plainly).
            publics: (steps, rows, width) public inputs of each step (unused without a public
                term).
            denominators: (steps,) the divisor of each step's private gradient sum.

        Returns:
            (summed private loss, summed public loss, rows clipped) as backend scalars.
        """
        if phase.name not in self._steps:
            self._steps[phase.name] = self._backend.compile_phase_steps(self, phase)
        return self._steps[phase.name](
            x, batches, np.asarray(noises, dtype=np.float32),
            np.asarray(publics, dtype=np.float32), np.float32(clip_norm),
            np.float32(noise_std), np.asarray(denominators, dtype=np.float32), pad_to)

    def private_norms(self, phase: Phase, x: np.ndarray) -> np.ndarray:
        """Unclipped per-example gradient norms of ``phase``'s private terms (jointly over
        them), shape (rows,): what DP-SGD clips."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        mask = np.ones(len(x), dtype=np.float32)
        squared, now = 0.0, self.current()
        for term in phase.private:
            xm, y = term.views(x)
            _, sq, _, _ = per_example_pass(self.graphs[term.network],
                                           now["values"][term.network], xm, y, mask,
                                           term.loss, now["seeds"][term.network] or None)
            squared = squared + sq
        return np.sqrt(np.asarray(squared))

    def noise_width(self, phase: Phase) -> int:
        """Parameters of the networks with a private term in ``phase`` (one noise draw each)."""
        return sum(sum(self.sizes[t.network]) for t in phase.private)


def private_steps_per_round(phases: Sequence[Phase]) -> int:
    """Steps that read real rows in one round of ``phases``."""
    return sum(p.steps for p in phases if p.reads_rows)


def train_phases(networks: Mapping, phases: Sequence[Phase], x: np.ndarray,
                 config: TrainConfig, *, budget: DpBudget | None = None,
                 clip_norm: float | None = None, optimizers: Mapping | None = None,
                 seed: int | np.random.Generator = 0, rng: np.random.Generator | None = None,
                 expected_batch: float | None = None,
                 on_epoch: Callable[[int, dict[str, float]], None] | None = None,
                 stopping: EarlyStopping | None = None,
                 ) -> tuple[PhaseLog, dict[str, list[np.ndarray]]]:
    """Train ``networks`` by rounds of ``phases`` on the rows of ``x``, plainly or with DP-SGD.

    Args:
        networks: name -> functional Keras model.
        phases: run in order every round, each ``phase.steps`` times; at least one reads rows.
        x: float32 matrix (n, features) of training rows.
        config: epochs (plain: passes over the rows by the private phases), batch size,
            learning rate of the default optimizers, ``pad_to`` (rows are padded to a multiple
            of it, masked out of every loss).
        budget: ``dp_sgd.plan(n, batch_size, epochs, ...)`` for the private steps of all
            phases together; None trains plainly (no clipping, no noise).
        clip_norm: C, required with a budget (per-example L2 norm over the phase's private
            networks' parameters).
        optimizers: name -> optimizer of an updated network (default: see ``PhaseTrainer``).
        seed: plain runs: the published seed of the row order and of the public inputs, or
            a ``numpy.random.Generator`` seeded from it whose stream continues there (each
            epoch's order is its next ``permutation``).
        rng: DP runs, tests only: without it sampling, noise and public inputs come from
            secret OS-entropy streams (``dp_sgd.secret_streams``).
        expected_batch: DP with a private row count: the public divisor of the noisy sum.
        on_epoch: ``on_epoch(epoch, metrics)`` after every epoch (1/q private steps under DP),
            metrics ``"<phase>.private"``, ``"<phase>.public"``, ``"clipped"`` and, with
            ``stopping``, ``"validation"``.
        stopping: plain runs only: early stopping on held-out rows (:class:`EarlyStopping`);
            the best epoch's weights are kept.

    Returns:
        (the run's log, each network's trained weights as NumPy arrays). The Keras networks
        hold the trained weights too.

    Raises:
        ValueError: no phase reads rows, a budget without clip_norm or not for Poisson
            sampling, early stopping under a budget, or ``x`` not a 2-D matrix with rows.
        TypeError: a network DP-SGD cannot follow.
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 2 or len(x) < 1:
        raise ValueError(f"need a 2-D matrix with at least 1 row, got shape {x.shape}")
    per_round = private_steps_per_round(phases)
    if per_round == 0:
        raise ValueError("no phase reads the training rows: nothing would learn from them")
    if budget is not None:
        if clip_norm is None:
            raise ValueError("DP-SGD needs clip_norm with its budget")
        if budget.sampling != "poisson":
            raise ValueError("the phase trainer draws Poisson batches; its budget must say so")
        if stopping is not None:
            raise ValueError("early stopping reads held-out rows after every epoch, which "
                             "DP-SGD's budget does not account: a DP run trains its planned "
                             "steps")
        joint = [p.name for p in phases if p.joint is not None]
        if joint:
            raise ValueError(f"phases {joint} have a joint term over real rows, which DP-SGD "
                             "cannot clip per example: train them plainly")
    trainer = PhaseTrainer(networks, phases, optimizers, config.learning_rate)
    n, b = len(x), config.batch_size
    if budget is None:
        public_rng = seed.spawn(1)[0] if isinstance(seed, np.random.Generator) else \
            np.random.default_rng([seed, 1])
        batches = _plain_batches(n, b, config.epochs, seed)
        noise_rng, c, noise_std, denominator = None, math.inf, 0.0, None
        ends = [math.ceil(n / b) * e for e in range(1, config.epochs + 1)]
    else:
        # spawn(4)[:3] equals spawn(3): sampling, noise and seed states are the streams a
        # one-phase DP-SGD run always drew from; public inputs get a fourth
        sampler, noise_rng, state_rng, public_rng = secret_streams(4, rng)
        trainer.check_forward(x[: min(n, 64)])
        if any(g.state for g in trainer.graphs.values()):
            trainer.reseed(state_rng)
        q = budget.sampling_rate
        batches = poisson_batches(n, q, budget.steps, sampler)
        c = clip_norm
        noise_std = budget.noise_multiplier * c if budget.noise_multiplier > 0 else 0.0
        denominator = expected_batch if expected_batch is not None else q * n
        if denominator <= 0:
            raise ValueError(f"the expected batch size must be positive, got {denominator}")
        ends = epoch_ends(budget.steps, q)
    log = PhaseLog(budget, c, steps={p.name: 0 for p in phases})
    draw = _Draws(trainer, x, b, batches, noise_rng, public_rng, denominator)
    sums, start = _Sums(phases), time.perf_counter()
    epoch_start = start
    best = _Best(trainer, stopping)
    # one phase: its steps are consecutive, run in chunks of steps_per_execution; several:
    # each round runs every phase's ``steps`` in order, and the last round is completed
    for phase, k in _schedule(phases, ends, config.steps_per_execution):
        idx, noises, publics, denominators = draw(phase, k)
        total, public, clipped = trainer.run_steps(phase, x, idx, noises, publics, c,
                                                   noise_std, denominators, config.pad_to)
        log.steps[phase.name] += k
        sums.add(phase, sum(len(i) for i in idx), k, total, public, clipped)
        if phase.reads_rows:
            log.private_steps += k
            if log.private_steps == ends[log.epochs_run]:
                metrics = sums.epoch()
                for key, v in metrics.items():
                    log.history.setdefault(key, []).append(v)
                log.clipped_share.append(metrics["clipped"])
                log.epochs_run += 1
                stop = best.after_epoch(log.epochs_run, metrics)
                for key in ("validation",) if stopping is not None else ():
                    log.history.setdefault(key, []).append(metrics[key])
                now = time.perf_counter()
                log.seconds_per_epoch.append(now - epoch_start)
                epoch_start = now
                if on_epoch is not None:
                    on_epoch(log.epochs_run, metrics)
                if stop:
                    break
    log.best_epoch = best.restore() or log.epochs_run
    trainer.sync()
    log.seconds = time.perf_counter() - start
    return log, trainer.weights()


class _Best:
    """Early stopping's bookkeeping: the best validation loss, its epoch and weights."""

    def __init__(self, trainer: PhaseTrainer, stopping: EarlyStopping | None):
        self.trainer, self.stopping = trainer, stopping
        self.loss, self.epoch, self.weights, self.waited = math.inf, 0, None, 0
        if stopping is not None:
            self.rows = np.ascontiguousarray(stopping.rows, dtype=np.float32)

    def after_epoch(self, epoch: int, metrics: dict) -> bool:
        """Add ``"validation"`` to ``metrics``; whether the run should stop now."""
        if self.stopping is None:
            return False
        loss = self.trainer.validation_loss(self.rows, self.stopping.batch_size)
        metrics["validation"] = loss
        if loss < self.loss - self.stopping.min_delta:
            self.loss, self.epoch, self.waited = loss, epoch, 0
            self.weights = self.trainer.weights()
            return False
        self.waited += 1
        return self.waited >= self.stopping.patience

    def restore(self) -> int:
        """Put the best epoch's weights back; that epoch (0 without early stopping)."""
        if self.weights is not None:
            self.trainer.assign(self.weights)
        return self.epoch


def _schedule(phases: Sequence[Phase], ends: list[int], chunk: int):
    """(phase, steps) in the order they run: private steps never cross an epoch end (so the
    epoch's metrics are read there) nor the last one."""
    done, total = 0, ends[-1]
    epoch = 0
    single = len(phases) == 1
    while done < total:
        for phase in phases:
            left = math.inf if single else phase.steps
            while left > 0:
                k = min(left, chunk)
                if phase.reads_rows:
                    if done >= total:
                        break
                    k = min(k, ends[epoch] - done)
                    done += k
                    if done == ends[epoch]:
                        epoch += 1
                yield phase, int(k)
                left -= k
                if single and done >= total:
                    return


class _Draws:
    """Each chunk's batches, noise draws, public inputs and divisors, from the run's
    streams."""

    def __init__(self, trainer: PhaseTrainer, x, b: int, batches, noise_rng, public_rng,
                 denominator: float | None):
        self.trainer, self.x, self.b = trainer, x, b
        self.batches, self.noise_rng, self.public_rng = batches, noise_rng, public_rng
        self.denominator = denominator
        self._empty = np.zeros(0, dtype=np.int64)

    def __call__(self, phase: Phase, k: int):
        if phase.reads_rows:
            idx = [next(self.batches) for _ in range(k)]
            width = self.trainer.noise_width(phase)
            noises = self.noise_rng.standard_normal((k, width), dtype=np.float32) \
                if self.noise_rng is not None else np.zeros((k, width), dtype=np.float32)
        else:
            idx, noises = [self._empty] * k, np.zeros((k, 1), dtype=np.float32)
        if phase.public is not None:
            rows = phase.public.rows or self.b
            publics = np.stack([np.asarray(phase.public.inputs(self.public_rng, rows),
                                           dtype=np.float32) for _ in range(k)])
        else:
            publics = np.zeros((k, 1, 1), dtype=np.float32)
        denominators = np.asarray([self.denominator if self.denominator is not None
                                   else max(len(i), 1) for i in idx], dtype=np.float32)
        return idx, noises, publics, denominators


class _Sums:
    """Per-epoch sums of the losses, read once per epoch (one device sync)."""

    def __init__(self, phases: Sequence[Phase]):
        self.phases = list(phases)
        self._reset()

    def _reset(self) -> None:
        self.private = {p.name: [] for p in self.phases}
        self.public = {p.name: [] for p in self.phases}
        self.rows = {p.name: 0 for p in self.phases}
        self.steps = {p.name: 0 for p in self.phases}
        self.clipped: list = []

    def add(self, phase: Phase, rows: int, steps: int, total, public, clipped) -> None:
        if phase.reads_rows:
            self.private[phase.name].append(total)
            self.rows[phase.name] += rows
            self.clipped.append(clipped)
        if phase.public is not None:
            self.public[phase.name].append(public)
            self.steps[phase.name] += steps

    def epoch(self) -> dict[str, float]:
        metrics = {}
        for p in self.phases:
            if p.reads_rows:
                metrics[f"{p.name}.private"] = float(sum(float(t) for t in self.private[
                    p.name])) / max(self.rows[p.name], 1)
            if p.public is not None and self.steps[p.name]:
                metrics[f"{p.name}.public"] = float(sum(float(t) for t in self.public[
                    p.name])) / self.steps[p.name]
        rows = sum(self.rows.values())
        metrics["clipped"] = float(sum(float(c) for c in self.clipped)) / max(rows, 1)
        self._reset()
        return metrics


def _plain_batches(n: int, b: int, epochs: int, seed):
    """Shuffled batches of at most ``b`` rows, epoch after epoch (the last of each epoch
    holds the remainder), from a published seed (or a Generator seeded from one)."""
    order_rng = np.random.default_rng(seed)
    for _ in range(epochs):
        order = order_rng.permutation(n)
        for i in range(0, n, b):
            yield order[i:i + b]
