"""The one trainer seam: plain or DP-SGD training of Keras models on NumPy rows.

``train(models, x, config, budget=None)`` trains one model, or several models that share one
DP mechanism, each reading its own columns of ``x`` and scoring its outputs with a per-example
loss that the model supplies (``per_example_loss``) or the caller passes. Without a budget
the same compiled step runs with no clipping and no noise (C = inf, sigma = 0) on shuffled
fixed-size batches, which is ordinary minibatch training (tested against Keras's own step);
with one, DP-SGD (Abadi et al. 2016) runs exactly the budget's steps (``dp_sgd.train_dp``).
Nothing here depends on what the model is: an autoencoder, a VAE (sampling layer, several
heads, loss summed over heads) or a GAN discriminator go through the same call.

This module imports neither Prefect, MLflow nor polars.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from cloakflow.models.training.accounting import DpBudget
from cloakflow.models.training.dp_sgd import DpSgd, DpTrainLog, train_dp

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


def _optimizers(models: list, config: TrainConfig, optimizers):
    import keras

    if optimizers is not None:
        return optimizers
    return [getattr(m, "optimizer", None) or keras.optimizers.Adam(config.learning_rate)
            for m in models]


def train(models, x: np.ndarray, config: TrainConfig, *, budget: DpBudget | None = None,
          clip_norm: float | None = None, columns: list | None = None,
          targets: list | None = None, loss_fn: Callable | list | None = None,
          optimizers=None, seed: int = 0, rng: np.random.Generator | None = None,
          on_epoch: Callable[[int, dict[str, float]], None] | None = None,
          expected_batch: float | None = None, proximal_mu: float = 0.0) -> TrainLog:
    """Train ``models`` on the rows of ``x``, plainly or with DP-SGD.

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
        rng: DP runs, tests only: see ``dp_sgd.train_dp`` (without it every DP random draw
            comes from secret OS-entropy streams).
        on_epoch: ``on_epoch(epoch, {"loss": ..., "clipped": ...})`` after every epoch.
        expected_batch: DP runs with a private row count: the public divisor of the noisy
            gradient sum (``dp_sgd.train_dp``).
        proximal_mu: FedProx (Li et al. 2020): every step's gradient gains mu * (w - w_0),
            w_0 the models' parameters when training starts (a federated round's global
            model); 0 trains without it. Under DP it is added after clipping and noise.

    Returns:
        The run's log; steps_run equals ``budget.steps`` under DP.

    Raises:
        ValueError: a budget without clip_norm, or x not a 2-D matrix with rows.
        TypeError: a model DP-SGD cannot follow.
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 2 or len(x) < 1:
        raise ValueError(f"need a 2-D matrix with at least 1 row, got shape {x.shape}")
    models = list(models) if isinstance(models, (list, tuple)) else [models]
    optimizers = _optimizers(models, config, optimizers)
    if budget is not None:
        if clip_norm is None:
            raise ValueError("DP-SGD needs clip_norm with its budget")
        return train_dp(models, x, budget, clip_norm, columns=columns, targets=targets,
                        loss_fn=loss_fn, rng=rng, pad_to=config.pad_to,
                        steps_per_execution=config.steps_per_execution, on_epoch=on_epoch,
                        optimizers=optimizers, expected_batch=expected_batch,
                        proximal_mu=proximal_mu)
    return _train_plain(models, x, config, columns, targets, loss_fn, optimizers, seed,
                        on_epoch, proximal_mu)


def _train_plain(models, x, config, columns, targets, loss_fn, optimizers, seed,
                 on_epoch, proximal_mu: float = 0.0) -> TrainLog:
    """Shuffled fixed-size batches through the DP step with C = inf and sigma = 0."""
    trainer = DpSgd(models, optimizers, loss_fn=loss_fn, columns=columns, targets=targets)
    if proximal_mu:
        trainer.set_proximal(proximal_mu)
    order_rng = np.random.default_rng(seed)
    n, b = len(x), config.batch_size
    log = TrainLog(None, math.inf)
    start = time.perf_counter()
    for epoch in range(1, config.epochs + 1):
        epoch_start = time.perf_counter()
        order = order_rng.permutation(n)
        full, rest = [order[i:i + b] for i in range(0, n - n % b, b)], order[n - n % b:]
        loss = 0.0
        groups = [(full[i:i + config.steps_per_execution], b)
                  for i in range(0, len(full), config.steps_per_execution)]
        if len(rest):
            groups.append(([rest], len(rest)))
        for batches, size in groups:
            zeros = np.zeros((len(batches), sum(trainer.sizes)), dtype=np.float32)
            t, _ = trainer.run(x, batches, zeros, math.inf, 0.0, float(size), config.pad_to)
            loss += t
        log.steps_run += len(full) + (1 if len(rest) else 0)
        log.epochs_run = epoch
        log.history["loss"].append(float(loss) / n)
        log.clipped_share.append(0.0)
        log.seconds_per_epoch.append(time.perf_counter() - epoch_start)
        if on_epoch is not None:
            on_epoch(epoch, {"loss": log.history["loss"][-1], "clipped": 0.0})
    trainer.sync()
    log.seconds = time.perf_counter() - start
    return log
