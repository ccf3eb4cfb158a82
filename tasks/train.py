"""Train one autoencoder (whole table or one feature group), log it as an MLflow child run."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from prefect import task

from cloakflow.models import autoencoder as autoencoder_module
from cloakflow.models.autoencoder import (
    AutoencoderConfig,
    TrainResult,
    encode,
    train_autoencoder,
    train_autoencoders_dp,
)
from cloakflow.models.training import accounting as accounting_module
from cloakflow.models.training import dp_sgd as dp_sgd_module
from cloakflow.tasks import tracking
from cloakflow.tasks.caching import CACHE_EXPIRATION, step_policy
from cloakflow.tasks.dp import DpPlan


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
            "init_seed": r.seed,  # None under DP: secret
            "mlflow_run_id": self.run_id,
        }
        if r.dp is not None:
            out["dp"] = r.dp
        return out


def _start_child(parent_run_id: str | None, name: str, x: np.ndarray, columns: list[str],
                 config: AutoencoderConfig, seed: int | None, dp: DpPlan | None) -> str | None:
    """The model's MLflow child run with its parameters (no DP random seed: there is none to
    log, DP randomness is secret)."""
    if not parent_run_id:
        return None
    run_id = tracking.start_child(parent_run_id, f"autoencoder-{name}",
                                  tags={"cloakflow.model": name})
    hidden, code = config.sizes(x.shape[1])
    params = {**config.to_dict(), "inputs": x.shape[1], "hidden": hidden, "code": code,
              "rows": len(x), "columns": ",".join(columns)}
    if seed is not None:
        params["seed"] = seed
    tracking.log_params(run_id, params)
    if dp is not None:
        settings = {**dp.mechanism.to_dict(), "clip_norm": dp.clip_norm, "design": dp.design}
        tracking.log_params(run_id, {f"dp.{k}": v for k, v in settings.items()})
    return run_id


def _finish(name: str, x: np.ndarray, columns: list[str], result: TrainResult,
            run_id: str | None) -> TrainedModel:
    """Encode ``x``, print a one-line summary, log curves, metrics and the model."""
    trained = TrainedModel(name, columns, result, encode(result.encoder, x), run_id)
    s = trained.summary()
    if result.dp is None:
        print(f"  [{name}] stopped after {s['epochs_run']} epochs (best {s['best_epoch']}, "
              f"val_loss {s['best_val_loss']:.5f}, {s['seconds_per_epoch']:.2f}s/epoch)",
              flush=True)
    else:
        joint = len(result.dp["models_in_mechanism"]) > 1
        print(f"  [{name}] DP-SGD: {result.dp['steps_run']} steps ({s['epochs_run']} epochs), "
              f"final loss {s['final_loss']:.5f}{' (summed over the joint mechanism)' * joint}, "
              f"{s['seconds_per_epoch']:.2f}s/epoch", flush=True)
    if run_id:
        tracking.log_history(run_id, result.history)
        tracking.log_metrics(run_id, {k: v for k, v in s.items() if isinstance(v, (int, float))
                                      and not isinstance(v, bool) and k != "mlflow_run_id"})
        tracking.log_keras_model(run_id, result.autoencoder, x[:5], name="autoencoder")
        tracking.end_run(run_id)
    return trained


def _progress(name: str, config: AutoencoderConfig, dp: DpPlan | None, log_every: int = 10):
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
                mech = dp.mechanism
                epochs = math.ceil(mech.steps / max(round(1 / mech.sampling_rate), 1))
                print(f"  [{name}] DP-SGD epoch {epoch}/{epochs}: loss "
                      f"{m['loss']:.5f}, {m['clipped']:.0%} of gradients clipped", flush=True)

    return progress


def fit_and_encode(name: str, x: np.ndarray, columns: list[str], config: AutoencoderConfig,
                   seed: int, parent_run_id: str | None = None,
                   dp: DpPlan | None = None) -> TrainedModel:
    """Train one model on ``x`` (plain, or DP-SGD as its own mechanism when ``dp`` is given:
    the ``split`` design), encode ``x``, and log params, curves, metrics and the model."""
    run_id = _start_child(parent_run_id, name, x, columns, config,
                          seed if dp is None else None, dp)
    progress = _progress(name, config, dp)
    if dp is None:
        result = train_autoencoder(x, config, seed=seed, on_epoch=progress)
    else:  # its own secret streams: independent of every other model's
        result = train_autoencoders_dp(x, {name: None}, config, dp.mechanism, dp.clip_norm,
                                       on_epoch=progress)[name]
    return _finish(name, x, columns, result, run_id)


def fit_and_encode_joint(x: np.ndarray, members: dict[str, list[int] | None],
                         columns: list[str], config: AutoencoderConfig,
                         parent_run_id: str | None, dp: DpPlan) -> dict[str, TrainedModel]:
    """Train every model in ``members`` (name -> column indices of ``x``, None = all) as one
    joint DP-SGD mechanism, encode, log each model to its own child run."""
    names = {n: columns if c is None else [columns[i] for i in c] for n, c in members.items()}
    views = {n: x if c is None else x[:, c] for n, c in members.items()}
    run_ids = {n: _start_child(parent_run_id, n, views[n], names[n], config, None, dp)
               for n in members}
    results = train_autoencoders_dp(x, members, config, dp.mechanism, dp.clip_norm,
                                    on_epoch=_progress("joint", config, dp))
    return {n: _finish(n, views[n], names[n], results[n], run_ids[n]) for n in members}


@task(name="train-autoencoder", persist_result=True, cache_expiration=CACHE_EXPIRATION,
      cache_policy=step_policy(autoencoder_module, dp_sgd_module, accounting_module,
                               exclude=("parent_run_id",)))
def train(name: str, x: np.ndarray, columns: list[str], config: AutoencoderConfig, seed: int,
          parent_run_id: str | None = None, dp: DpPlan | None = None) -> TrainedModel:
    """Prefect task: one autoencoder; the flow submits the group models in parallel.

    Cached on its inputs and the model code: a rerun after a crash reuses a finished model (and
    the MLflow child run that holds it) instead of training it again. DP runs never read the
    cache (the flow refreshes it): their randomness is secret, not a function of the inputs.
    """
    return fit_and_encode(name, x, columns, config, seed, parent_run_id, dp=dp)


@task(name="train-autoencoders-dp-joint")
def train_joint(x: np.ndarray, members: dict[str, list[int] | None], columns: list[str],
                config: AutoencoderConfig, parent_run_id: str | None,
                dp: DpPlan) -> dict[str, TrainedModel]:
    """Prefect task: every autoencoder as one joint DP-SGD mechanism (never cached)."""
    return fit_and_encode_joint(x, members, columns, config, parent_run_id, dp)
