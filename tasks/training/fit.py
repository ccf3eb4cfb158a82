"""Train one autoencoder (whole table or one feature group), log it as an MLflow child run
(Prefect-free: the Prefect tasks are ``tasks.training.steps``)."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from cloakflow.models.autoencoder import (
    AutoencoderConfig,
    TrainResult,
    autoencoder_from_weights,
    encode,
    reconstruct,
    train_autoencoder,
    train_autoencoders_dp,
)
from cloakflow.models.heads import dead_outputs
from cloakflow.models.training.dp_sgd import epoch_ends
from cloakflow.tasks import console, runners, tracking
from cloakflow.tasks.privacy.dp import DpPlan


@dataclass
class TrainedModel:
    """What the flow keeps of a trained autoencoder: plain data (no Keras object), so it
    crosses thread, process and machine boundaries; ``models()`` rebuilds the Keras models.

    Attributes:
        name: ``whole`` or a feature-group name.
        columns: the preprocessed columns it encodes.
        config: architecture and training settings.
        weights: the autoencoder's weights (``get_weights()`` order).
        codes: its codes of the training rows, shape (rows, code size), float32.
        history: per-epoch losses.
        summary: the manifest's figures for the model (see ``summarise``).
        run_id: the MLflow child run holding the model.
    """

    name: str
    columns: list[str]
    config: AutoencoderConfig
    weights: list[np.ndarray]
    codes: np.ndarray
    history: dict[str, list[float]]
    summary: dict
    run_id: str | None

    def models(self):
        """(autoencoder, encoder, decoder) rebuilt from the config and weights."""
        return autoencoder_from_weights(len(self.columns), self.config, self.weights)


def summarise(result: TrainResult, inputs: int, code_size: int, run_id: str | None,
              architecture: str = "tutorial") -> dict:
    """The manifest's figures for one trained model (``inputs``: its input columns)."""
    val = result.best_val_loss
    out = {
        "architecture": architecture,
        "inputs": int(inputs),
        "code_size": int(code_size),
        "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch,
        "best_val_loss": None if val is None else round(val, 6),
        "final_loss": round(result.history["loss"][-1], 6),
        "seconds": round(result.total_seconds, 2),
        "seconds_per_epoch": round(result.seconds_per_epoch, 3),
        "attempts": result.attempts,
        "init_seed": result.seed,  # None under DP: secret
        "mlflow_run_id": run_id,
    }
    if result.dp is not None:
        out["dp"] = result.dp
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


def _finish(name: str, x: np.ndarray, columns: list[str], config: AutoencoderConfig,
            result: TrainResult, run_id: str | None) -> TrainedModel:
    """Encode ``x``, print a one-line summary, log curves, metrics and the model."""
    codes = encode(result.encoder, x)
    s = summarise(result, len(columns), codes.shape[1], run_id, config.architecture)
    if result.dp is None:  # outputs that never move on the training rows (a private figure)
        sample = x[:4096]
        s["dead_outputs"] = dead_outputs(reconstruct(result.autoencoder, sample), sample)
    trained = TrainedModel(name, columns, config, result.autoencoder.get_weights(), codes,
                           dict(result.history), s, run_id)
    if result.dp is None:
        console.step(f"  [{name}] stopped after {s['epochs_run']} epochs (best "
                     f"{s['best_epoch']}, val_loss {s['best_val_loss']:.5f}, "
                     f"{s['seconds_per_epoch']:.2f}s/epoch)")
    else:
        joint = len(result.dp["models_in_mechanism"]) > 1
        console.step(f"  [{name}] DP-SGD: {result.dp['steps_run']} steps ({s['epochs_run']} "
                     f"epochs), final loss {s['final_loss']:.5f}"
                     f"{' (summed over the joint mechanism)' * joint}, "
                     f"{s['seconds_per_epoch']:.2f}s/epoch")
    if run_id:
        tracking.log_history(run_id, result.history)
        tracking.log_metrics(run_id, {k: v for k, v in s.items() if isinstance(v, (int, float))
                                      and not isinstance(v, bool) and k != "mlflow_run_id"})
        tracking.log_keras_model(run_id, result.autoencoder, x[:5], name="autoencoder")
        tracking.end_run(run_id)
    return trained


def _progress(name: str, config: AutoencoderConfig, dp: DpPlan | None,
              log_every: int = console.EPOCH_EVERY,
              stop: runners.Stop | None = None):
    """The per-epoch callback: progress lines, and a stop when ``stop`` is requested (the
    process was interrupted, or another task of its run failed: ``tasks.steps.gather``)."""
    started = False
    stop = stop or runners.Stop()

    def progress(epoch: int, m: dict[str, float]) -> None:
        nonlocal started
        runners.check_interrupt(f"[{name}] epoch {epoch}")  # Ctrl-C / SIGTERM
        if stop.requested():
            raise runners.StopRequested(f"[{name}] stopped after epoch {epoch}: another task "
                                        "of this run failed")
        if epoch == 1 and started:
            print(f"  [{name}] no improvement after the first epoch: restarting from a derived "
                  "seed", flush=True)
        started = True
        if epoch == 1 or epoch % log_every == 0:  # every 10th on the quiet console
            if dp is None:
                console.epoch(epoch, f"  [{name}] epoch {epoch}/{config.epochs}: loss "
                                     f"{m['loss']:.5f} val_loss {m['val_loss']:.5f}")
            else:
                mech = dp.mechanism
                epochs = len(epoch_ends(mech.steps, mech.sampling_rate))
                console.epoch(epoch, f"  [{name}] DP-SGD epoch {epoch}/{epochs}: loss "
                                     f"{m['loss']:.5f}, {m['clipped']:.0%} of gradients "
                                     "clipped")

    return progress


def fit_and_encode(name: str, x: np.ndarray, columns: list[str], config: AutoencoderConfig,
                   seed: int, parent_run_id: str | None = None,
                   dp: DpPlan | None = None, stop: runners.Stop | None = None) -> TrainedModel:
    """Train one model on ``x`` (plain, or DP-SGD as its own mechanism when ``dp`` is given:
    the ``split`` design), encode ``x``, and log params, curves, metrics and the model.
    ``stop`` is checked after every epoch (None: ``runners.Stop(parent_run_id)``)."""
    run_id = _start_child(parent_run_id, name, x, columns, config,
                          seed if dp is None else None, dp)
    progress = _progress(name, config, dp, stop=stop or runners.Stop(parent_run_id))
    if dp is None:
        result = train_autoencoder(x, config, seed=seed, on_epoch=progress)
    else:  # its own secret streams: independent of every other model's
        result = train_autoencoders_dp(x, {name: None}, config, dp.mechanism, dp.clip_norm,
                                       on_epoch=progress)[name]
    return _finish(name, x, columns, config, result, run_id)


def fit_and_encode_joint(x: np.ndarray, members: dict[str, list[int] | None],
                         columns: list[str], config: AutoencoderConfig,
                         parent_run_id: str | None, dp: DpPlan,
                         heads: dict[str, tuple] | None = None,
                         stop: runners.Stop | None = None) -> dict[str, TrainedModel]:
    """Train every model in ``members`` (name -> column indices of ``x``, None = all) as one
    joint DP-SGD mechanism, encode, log each model to its own child run (``stop``: checked
    after every epoch; None: ``runners.Stop(parent_run_id)``)."""
    names = {n: columns if c is None else [columns[i] for i in c] for n, c in members.items()}
    views = {n: x if c is None else x[:, c] for n, c in members.items()}
    configs = {n: replace(config, heads=tuple((heads or {}).get(n, ()))) for n in members}
    run_ids = {n: _start_child(parent_run_id, n, views[n], names[n], configs[n], None, dp)
               for n in members}
    results = train_autoencoders_dp(x, members, config, dp.mechanism, dp.clip_norm,
                                    on_epoch=_progress("joint", config, dp, stop=stop or
                                                       runners.Stop(parent_run_id)),
                                    heads=heads)
    return {n: _finish(n, views[n], names[n], configs[n], results[n], run_ids[n])
            for n in members}


def model_heads(pre, architecture: str = "kinds") -> dict[str, tuple]:
    """Output heads of the whole-table model and of each group's, from a fitted
    ``TablePreprocessor`` (none for the tutorial's architecture, which has one output)."""
    if architecture != "kinds":
        return {}
    return {"whole": pre.heads(), **{g: pre.heads(g) for g in pre.profile.groups}}
