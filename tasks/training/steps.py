"""Prefect tasks of training: one autoencoder per task (cached on its inputs and the model
code), the joint DP design as one task, and ``train_models``, which submits them on the flow's
task runner."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from prefect import task

from cloakflow.models import autoencoder as autoencoder_module
from cloakflow.models import heads as heads_module
from cloakflow.models.autoencoder import AutoencoderConfig
from cloakflow.models.training import accounting as accounting_module
from cloakflow.models.training import dp_sgd as dp_sgd_module
from cloakflow.tasks import runners, tracking
from cloakflow.tasks.privacy.dp import DpPlan
from cloakflow.tasks.steps import CACHE_EXPIRATION, gather, step_policy
from cloakflow.tasks.training.fit import TrainedModel, fit_and_encode, fit_and_encode_joint


@task(name="train-autoencoder", task_run_name="train[autoencoder:{name}]", persist_result=True,
      cache_expiration=CACHE_EXPIRATION,
      cache_policy=step_policy(autoencoder_module, heads_module, dp_sgd_module,
                               accounting_module,
                               exclude=("parent_run_id",)))
def train(name: str, x: np.ndarray, columns: list[str], config: AutoencoderConfig, seed: int,
          parent_run_id: str | None = None, dp: DpPlan | None = None,
          store: str | None = None) -> TrainedModel:
    """Prefect task: one autoencoder; the flow submits the group models in parallel.

    Cached on its inputs and the model code: a rerun after a crash reuses a finished model (and
    the MLflow child run that holds it) instead of training it again. ``store`` (the MLflow
    tracking URI) is part of the cache key: a model is reused only where its run can be found.
    DP runs never read the cache (the flow refreshes it): their randomness is secret, not a
    function of the inputs.
    """
    return fit_and_encode(name, x, columns, config, seed, parent_run_id, dp=dp,
                          stop=runners.Stop(parent_run_id))


@task(name="train-autoencoders-dp-joint", task_run_name="train[autoencoders:dp-joint]")
def train_joint(x: np.ndarray, members: dict[str, list[int] | None], columns: list[str],
                config: AutoencoderConfig, parent_run_id: str | None,
                dp: DpPlan, heads: dict[str, tuple] | None = None) -> dict[str, TrainedModel]:
    """Prefect task: every autoencoder as one joint DP-SGD mechanism (never cached)."""
    return fit_and_encode_joint(x, members, columns, config, parent_run_id, dp, heads,
                                stop=runners.Stop(parent_run_id))


def train_models(x: np.ndarray, columns: list[str], slices: dict[str, list[int]],
                 config: AutoencoderConfig, seed: int, parent: str, dp: DpPlan | None,
                 refresh: bool, heads: dict[str, tuple] | None = None,
                 ) -> tuple[dict[str, TrainedModel], list[str]]:
    """Submit the whole-table model and one model per feature group (in parallel, on the
    flow's task runner) and wait for them; the joint DP design is one task.

    ``heads``: model name (``whole`` and each group) -> its output heads, for the ``kinds``
    architecture (``TablePreprocessor.heads``).

    Returns:
        (model name -> TrainedModel, ``whole`` first; the names reused from the cache).
    """
    heads = heads or {}

    def cfg(name: str) -> AutoencoderConfig:  # heads shape only the kinds architecture
        return replace(config, heads=tuple(heads.get(name, ()))
                       if config.architecture == "kinds" else ())

    if dp is not None and dp.design == "joint":
        joint = train_joint.submit(x, {"whole": None, **slices}, columns, config, parent, dp,
                                   heads)
        return joint.result(), []
    # DP training never reads the cache: its randomness is secret, not a function of inputs
    step = train.with_options(refresh_cache=refresh or dp is not None)
    store = tracking.tracking_uri()
    futures = {"whole": step.submit("whole", x, columns, cfg("whole"), seed, parent, dp=dp,
                                    store=store)}
    futures.update({g: step.submit(g, x[:, s], [columns[i] for i in s], cfg(g), seed, parent,
                                   dp=dp, store=store) for g, s in slices.items()})
    models = gather(futures, parent)
    return models, [f"model:{k}" for k, f in futures.items() if f.state.name == "Cached"]
