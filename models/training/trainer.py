"""The one trainer seam: plain or DP-SGD training of Keras models on NumPy rows.

``train(models, x, config, budget=None)`` trains one model, or several models that share one
DP mechanism, each reading its own columns of ``x`` and scoring its outputs with a per-example
loss that the model supplies (``per_example_loss``) or the caller passes. Without a budget
the same compiled step runs with no clipping and no noise (C = inf, sigma = 0) on shuffled
fixed-size batches, which is ordinary minibatch training (tested against Keras's own step);
with one, DP-SGD (Abadi et al. 2016) runs exactly the budget's steps. Both are one phase of
the phase trainer (``phases.train_phases``), the one loop every model trains in.
Nothing here depends on what the model is: an autoencoder, a VAE (sampling layer, several
heads, loss summed over heads) or a GAN discriminator go through the same call.

This module imports neither Prefect, MLflow nor polars.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from cloakflow.models.training.accounting import DpBudget
from cloakflow.models.training.dp_sgd import DpTrainLog

TrainLog = DpTrainLog  # what a run did; ``budget`` is None for plain runs


@dataclass(frozen=True)
class TrainConfig:
    """Loop settings shared by every model kind.

    Under DP the budget fixes the steps (plan it with the same ``epochs`` and ``batch_size``,
    which is then the expected Poisson batch); ``learning_rate`` sets the optimizer made for
    a model that has none.
    """

    epochs: int = 100
    batch_size: int = 256
    learning_rate: float = 1e-3
    steps_per_execution: int = 32
    pad_to: int = 32  # jax: batch rows are padded to a multiple of this (fewer compiled shapes)

    def __post_init__(self):
        if min(self.epochs, self.batch_size, self.steps_per_execution, self.pad_to) < 1:
            raise ValueError("epochs, batch_size, steps_per_execution and pad_to must be "
                             "positive")
        if not self.learning_rate > 0:
            raise ValueError("learning_rate must be positive")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def of(cls, settings) -> TrainConfig:
        """The loop settings of a model config that carries ``epochs``, ``batch_size``,
        ``learning_rate`` and ``steps_per_execution`` (``AutoencoderConfig``, ``VaeConfig``)."""
        return cls(epochs=settings.epochs, batch_size=settings.batch_size,
                   learning_rate=settings.learning_rate,
                   steps_per_execution=settings.steps_per_execution)


def train(models, x: np.ndarray, config: TrainConfig, *, budget: DpBudget | None = None,
          clip_norm: float | None = None, columns: list | None = None,
          targets: list | None = None, loss_fn: Callable | list | None = None,
          optimizers=None, seed: int = 0, rng: np.random.Generator | None = None,
          on_epoch: Callable[[int, dict[str, float]], None] | None = None,
          expected_batch: float | None = None, proximal_mu: float = 0.0) -> TrainLog:
    """Train ``models`` on the rows of ``x``, plainly or with DP-SGD: one phase of the phase
    trainer (``phases.train_phases``) whose private terms are the models' per-example losses.

    Args:
        models: a functional Keras model or a list of them (one DP mechanism: same batches,
            joint clipping, one noise draw); see ``dp_sgd.PerExampleGraph`` for the layers
            DP-SGD follows (Dense anywhere in the graph, other trainable layers, random
            layers, several heads).
        x: float32 matrix (n, features).
        config: epochs, batch size, learning rate, steps per compiled call.
        budget: ``dp_sgd.plan(...)``; None trains plainly (no clipping, no noise).
        clip_norm: C, required with a budget: bound on each row's gradient L2 norm over all
            models' parameters.
        columns, targets: per model, the columns of ``x`` it reads and the columns its loss
            compares with (None: all columns; the model's own inputs).
        loss_fn: per-example loss ``loss_fn(y, outputs) -> (batch,)`` or one per model;
            default each model's ``per_example_loss``, else MSE.
        optimizers: one Keras optimizer per model; default each model's compiled optimizer,
            else Adam(config.learning_rate).
        seed: plain runs only: the published seed of each epoch's row order.
        rng: DP runs, tests only: see ``phases.train_phases`` (without it every DP random
            draw comes from secret OS-entropy streams).
        on_epoch: ``on_epoch(epoch, {"loss": ..., "clipped": ...})`` after every epoch.
        expected_batch: DP runs with a private row count: the public divisor of the noisy
            gradient sum.
        proximal_mu: FedProx (Li et al. 2020, arXiv:1812.06127): a public term
            mu/2 ||w - w_0||^2, w_0 the models' parameters when training starts (a federated
            round's global model): its gradient mu (w - w_0) is added after clipping and
            noise (it reads no row); 0 trains without it.

    Returns:
        The run's log; steps_run equals ``budget.steps`` under DP.

    Raises:
        ValueError: a budget without clip_norm, x not a 2-D matrix with rows, a negative
            proximal mu, or one optimizer, column list, target list or loss per model missing.
        TypeError: a model DP-SGD cannot follow.
    """
    from cloakflow.models.training.phases import train_phases

    networks, phase, optimizers = one_phase(models, columns=columns, targets=targets,
                                            loss_fn=loss_fn, optimizers=optimizers,
                                            proximal_mu=proximal_mu)
    log, _ = train_phases(networks, [phase], x, config, budget=budget, clip_norm=clip_norm,
                          optimizers=optimizers, seed=seed,
                          rng=rng, expected_batch=expected_batch,
                          on_epoch=None if on_epoch is None else lambda e, m: on_epoch(
                              e, {"loss": m["train.private"], "clipped": m["clipped"]}))
    out = TrainLog(budget, log.clip_norm, steps_run=log.private_steps,
                   epochs_run=log.epochs_run, seconds=log.seconds)
    out.history["loss"] = list(log.history.get("train.private", []))
    out.clipped_share = list(log.clipped_share)
    out.seconds_per_epoch = list(log.seconds_per_epoch)
    return out


def one_phase(models, *, columns: list | None = None,
              targets: list | None = None, loss_fn: Callable | list | None = None,
              optimizers=None, proximal_mu: float = 0.0):
    """``models`` (one model or a list sharing one DP mechanism) as the phase trainer's
    networks and one phase ``"train"``: a private term per model (its per-example loss on the
    columns it reads), and FedProx's proximal term as the public term when ``proximal_mu``.

    Returns:
        (networks by name, the phase, optimizers by name); names are ``"<i>:<model name>"``.

    Raises:
        ValueError: a negative mu, or one optimizer, column list, target list or loss per
            model missing.
    """
    from cloakflow.models.training.dp_sgd import model_loss
    from cloakflow.models.training.phases import Phase, PrivateTerm

    models = list(models) if isinstance(models, (list, tuple)) else [models]
    if optimizers is None:  # the phase trainer's default: compiled, else Adam
        optimizers = [None] * len(models)
    elif not isinstance(optimizers, (list, tuple)):
        optimizers = [optimizers]
    columns = columns if columns is not None else [None] * len(models)
    targets = targets if targets is not None else [None] * len(models)
    losses = loss_fn if isinstance(loss_fn, (list, tuple)) else [loss_fn] * len(models)
    if not len(models) == len(optimizers) == len(columns) == len(targets) == len(losses):
        raise ValueError("give one optimizer, column list, target list and loss per model")
    if proximal_mu < 0:
        raise ValueError(f"the proximal mu must be >= 0, got {proximal_mu}")
    names = [f"{i}:{m.name}" for i, m in enumerate(models)]

    def cols(c):
        return None if c is None else tuple(int(i) for i in c)

    private = tuple(PrivateTerm(n, loss or model_loss(m), cols(c), cols(t))
                    for n, m, loss, c, t in zip(names, models, losses, columns, targets,
                                                strict=True))
    phase = Phase("train", tuple(names), private=private,
                  public=proximal_term(models, names, proximal_mu) if proximal_mu else None)
    return (dict(zip(names, models, strict=True)), phase,
            {n: o for n, o in zip(names, optimizers, strict=True) if o is not None})


def proximal_term(models: list, names: list[str], mu: float):
    """FedProx's proximal term as a public term: mu/2 sum ||w - w_0||^2 over the models'
    trainable weights, w_0 their values now (the round's global model)."""
    from keras import ops

    from cloakflow.models.training.dp_sgd import PerExampleGraph
    from cloakflow.models.training.phases import PublicTerm

    anchors = {n: [np.array(v.value, dtype=np.float32) for v in PerExampleGraph(m).variables]
               for n, m in zip(names, models, strict=True)}

    def loss(view, _):
        return 0.5 * mu * sum(ops.sum(ops.square(w - a)) for n in names
                              for w, a in zip(view.weights(n), anchors[n], strict=True))

    return PublicTerm(loss, lambda rng, rows: np.zeros((1, 1), dtype=np.float32), rows=1)
