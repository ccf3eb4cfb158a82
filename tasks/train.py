"""Train one autoencoder (whole table or one feature group), log it as an MLflow child run."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from prefect import task

from cloakflow.models import accounting as accounting_module
from cloakflow.models import autoencoder as autoencoder_module
from cloakflow.models import dp_sgd as dp_sgd_module
from cloakflow.models.accounting import DpBudget
from cloakflow.models.autoencoder import (
    AutoencoderConfig,
    TrainResult,
    encode,
    train_autoencoder,
    train_autoencoder_dp,
)
from cloakflow.tasks import tracking
from cloakflow.tasks.caching import CACHE_EXPIRATION, step_policy


@dataclass(frozen=True)
class DpTraining:
    """DP-SGD settings of a run: the planned budget (shared by every model) and the clip norm."""

    budget: DpBudget
    clip_norm: float


@dataclass
class TrainedModel:
    """What the flow keeps of a trained autoencoder."""

    name: str
    columns: list[str]
    result: TrainResult
    codes: np.ndarray
    run_id: str | None

    def summary(self) -> dict:
        r = self.result
        val = r.best_val_loss
        out = {
            "inputs": len(self.columns),
            "code_size": int(self.codes.shape[1]),
            "epochs_run": r.epochs_run,
            "best_epoch": r.best_epoch,
            "best_val_loss": None if val is None else round(val, 6),
            "final_loss": round(r.history["loss"][-1], 6),
            "seconds": round(r.total_seconds, 2),
            "seconds_per_epoch": round(r.seconds_per_epoch, 3),
            "attempts": r.attempts,
            "init_seed": r.seed,
            "mlflow_run_id": self.run_id,
        }
        if r.dp is not None:
            out["dp"] = r.dp
        return out


def fit_and_encode(name: str, x: np.ndarray, columns: list[str], config: AutoencoderConfig,
                   seed: int, parent_run_id: str | None = None,
                   log_every: int = 10, dp: DpTraining | None = None) -> TrainedModel:
    """Train on ``x`` (with DP-SGD when ``dp`` is given), encode ``x``, and log params, curves,
    metrics and the model to MLflow."""
    run_id = None
    if parent_run_id:
        run_id = tracking.start_child(parent_run_id, f"autoencoder-{name}",
                                      tags={"cloakflow.model": name})
        hidden, code = config.sizes(x.shape[1])
        tracking.log_params(run_id, {**config.to_dict(), "seed": seed, "inputs": x.shape[1],
                                     "hidden": hidden, "code": code, "rows": len(x),
                                     "columns": ",".join(columns)})
        if dp is not None:
            settings = {**dp.budget.to_dict(), "clip_norm": dp.clip_norm}
            tracking.log_params(run_id, {f"dp.{k}": v for k, v in settings.items()})

    started = False

    def progress(epoch: int, m: dict[str, float]) -> None:
        nonlocal started
        if epoch == 1 and started:
            print(f"  [{name}] no improvement after the first epoch: restarting from a derived "
                  "seed", flush=True)
        started = True
        if epoch == 1 or epoch % log_every == 0:
            if dp is None:
                print(f"  [{name}] epoch {epoch}/{config.epochs}: loss {m['loss']:.5f} "
                      f"val_loss {m['val_loss']:.5f}", flush=True)
            else:
                print(f"  [{name}] DP-SGD epoch {epoch}/{math.ceil(dp.budget.epochs)}: loss "
                      f"{m['loss']:.5f}, {m['clipped']:.0%} of gradients clipped", flush=True)

    if dp is None:
        result = train_autoencoder(x, config, seed=seed, on_epoch=progress)
    else:
        result = train_autoencoder_dp(x, config, dp.budget, dp.clip_norm, seed=seed,
                                      on_epoch=progress)
    codes = encode(result.encoder, x)
    trained = TrainedModel(name, columns, result, codes, run_id)
    s = trained.summary()
    if dp is None:
        print(f"  [{name}] stopped after {s['epochs_run']} epochs (best {s['best_epoch']}, "
              f"val_loss {s['best_val_loss']:.5f}, {s['seconds_per_epoch']:.2f}s/epoch)",
              flush=True)
    else:
        print(f"  [{name}] DP-SGD: {dp.budget.steps} steps ({s['epochs_run']} epochs), "
              f"final loss {s['final_loss']:.5f}, {s['seconds_per_epoch']:.2f}s/epoch",
              flush=True)
    if run_id:
        tracking.log_history(run_id, result.history)
        tracking.log_metrics(run_id, {k: v for k, v in s.items() if isinstance(v, (int, float))
                                      and not isinstance(v, bool) and k != "mlflow_run_id"})
        tracking.log_keras_model(run_id, result.autoencoder, x[:5], name="autoencoder")
        tracking.end_run(run_id)
    return trained


@task(name="train-autoencoder", persist_result=True, cache_expiration=CACHE_EXPIRATION,
      cache_policy=step_policy(autoencoder_module, dp_sgd_module, accounting_module,
                               exclude=("parent_run_id",)))
def train(name: str, x: np.ndarray, columns: list[str], config: AutoencoderConfig, seed: int,
          parent_run_id: str | None = None, dp: DpTraining | None = None) -> TrainedModel:
    """Prefect task: one autoencoder; the flow submits the group models in parallel.

    Cached on its inputs and the model code: a rerun after a crash reuses a finished model (and
    the MLflow child run that holds it) instead of training it again.
    """
    return fit_and_encode(name, x, columns, config, seed, parent_run_id, dp=dp)
