"""Train one autoencoder (whole table or one feature group), log it as an MLflow child run."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from prefect import task

from cloakflow.models import autoencoder as autoencoder_module
from cloakflow.models.autoencoder import AutoencoderConfig, TrainResult, encode, train_autoencoder
from cloakflow.tasks import tracking
from cloakflow.tasks.caching import CACHE_EXPIRATION, step_policy


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
        return {
            "inputs": len(self.columns),
            "code_size": int(self.codes.shape[1]),
            "epochs_run": r.epochs_run,
            "best_epoch": r.best_epoch,
            "best_val_loss": round(r.best_val_loss, 6),
            "seconds": round(r.total_seconds, 2),
            "seconds_per_epoch": round(r.seconds_per_epoch, 3),
            "attempts": r.attempts,
            "init_seed": r.seed,
            "mlflow_run_id": self.run_id,
        }


def fit_and_encode(name: str, x: np.ndarray, columns: list[str], config: AutoencoderConfig,
                   seed: int, parent_run_id: str | None = None,
                   log_every: int = 10) -> TrainedModel:
    """Train on ``x``, encode ``x``, and log params, curves, metrics and the model to MLflow."""
    run_id = None
    if parent_run_id:
        run_id = tracking.start_child(parent_run_id, f"autoencoder-{name}",
                                      tags={"cloakflow.model": name})
        hidden, code = config.sizes(x.shape[1])
        tracking.log_params(run_id, {**config.to_dict(), "seed": seed, "inputs": x.shape[1],
                                     "hidden": hidden, "code": code, "rows": len(x),
                                     "columns": ",".join(columns)})

    started = False

    def progress(epoch: int, m: dict[str, float]) -> None:
        nonlocal started
        if epoch == 1 and started:
            print(f"  [{name}] no improvement after the first epoch: restarting from a derived "
                  "seed", flush=True)
        started = True
        if epoch == 1 or epoch % log_every == 0:
            print(f"  [{name}] epoch {epoch}/{config.epochs}: loss {m['loss']:.5f} "
                  f"val_loss {m['val_loss']:.5f}", flush=True)

    result = train_autoencoder(x, config, seed=seed, on_epoch=progress)
    codes = encode(result.encoder, x)
    trained = TrainedModel(name, columns, result, codes, run_id)
    s = trained.summary()
    print(f"  [{name}] stopped after {s['epochs_run']} epochs (best {s['best_epoch']}, "
          f"val_loss {s['best_val_loss']:.5f}, {s['seconds_per_epoch']:.2f}s/epoch)", flush=True)
    if run_id:
        tracking.log_history(run_id, result.history)
        tracking.log_metrics(run_id, {k: v for k, v in s.items()
                                      if isinstance(v, (int, float)) and k != "mlflow_run_id"})
        tracking.log_keras_model(run_id, result.autoencoder, x[:5], name="autoencoder")
        tracking.end_run(run_id)
    return trained


@task(name="train-autoencoder", persist_result=True, cache_expiration=CACHE_EXPIRATION,
      cache_policy=step_policy(autoencoder_module, exclude=("parent_run_id",)))
def train(name: str, x: np.ndarray, columns: list[str], config: AutoencoderConfig, seed: int,
          parent_run_id: str | None = None) -> TrainedModel:
    """Prefect task: one autoencoder; the flow submits the group models in parallel.

    Cached on its inputs and the model code: a rerun after a crash reuses a finished model (and
    the MLflow child run that holds it) instead of training it again.
    """
    return fit_and_encode(name, x, columns, config, seed, parent_run_id)
