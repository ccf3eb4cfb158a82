"""Train one autoencoder (whole table or one feature group), log it as an MLflow child run."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from prefect import task

from cloakflow.models import autoencoder as autoencoder_module
from cloakflow.models import heads as heads_module
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
from cloakflow.models.training import accounting as accounting_module
from cloakflow.models.training import dp_sgd as dp_sgd_module
from cloakflow.models.training.dp_sgd import epoch_ends
from cloakflow.tasks import runners, tracking
from cloakflow.tasks.caching import CACHE_EXPIRATION, step_policy
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


def _progress(name: str, config: AutoencoderConfig, dp: DpPlan | None, log_every: int = 10,
              run: str | None = None):
    """The per-epoch callback: progress lines, and a stop when another task of the run
    ``run`` failed (``runners.gather``)."""
    started = False

    def progress(epoch: int, m: dict[str, float]) -> None:
        nonlocal started
        runners.check_interrupt(f"[{name}] epoch {epoch}")  # Ctrl-C / SIGTERM
        if runners.stop_requested(run):
            raise runners.StopRequested(f"[{name}] stopped after epoch {epoch}: another task "
                                        "of this run failed")
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
                epochs = len(epoch_ends(mech.steps, mech.sampling_rate))
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
    progress = _progress(name, config, dp, run=parent_run_id)
    if dp is None:
        result = train_autoencoder(x, config, seed=seed, on_epoch=progress)
    else:  # its own secret streams: independent of every other model's
        result = train_autoencoders_dp(x, {name: None}, config, dp.mechanism, dp.clip_norm,
                                       on_epoch=progress)[name]
    return _finish(name, x, columns, config, result, run_id)


def fit_and_encode_joint(x: np.ndarray, members: dict[str, list[int] | None],
                         columns: list[str], config: AutoencoderConfig,
                         parent_run_id: str | None, dp: DpPlan,
                         heads: dict[str, tuple] | None = None) -> dict[str, TrainedModel]:
    """Train every model in ``members`` (name -> column indices of ``x``, None = all) as one
    joint DP-SGD mechanism, encode, log each model to its own child run."""
    names = {n: columns if c is None else [columns[i] for i in c] for n, c in members.items()}
    views = {n: x if c is None else x[:, c] for n, c in members.items()}
    configs = {n: replace(config, heads=tuple((heads or {}).get(n, ()))) for n in members}
    run_ids = {n: _start_child(parent_run_id, n, views[n], names[n], configs[n], None, dp)
               for n in members}
    results = train_autoencoders_dp(x, members, config, dp.mechanism, dp.clip_norm,
                                    on_epoch=_progress("joint", config, dp), heads=heads)
    return {n: _finish(n, views[n], names[n], configs[n], results[n], run_ids[n])
            for n in members}


@task(name="train-autoencoder", persist_result=True, cache_expiration=CACHE_EXPIRATION,
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
    return fit_and_encode(name, x, columns, config, seed, parent_run_id, dp=dp)


@task(name="train-autoencoders-dp-joint")
def train_joint(x: np.ndarray, members: dict[str, list[int] | None], columns: list[str],
                config: AutoencoderConfig, parent_run_id: str | None,
                dp: DpPlan, heads: dict[str, tuple] | None = None) -> dict[str, TrainedModel]:
    """Prefect task: every autoencoder as one joint DP-SGD mechanism (never cached)."""
    return fit_and_encode_joint(x, members, columns, config, parent_run_id, dp, heads)


def model_heads(pre, architecture: str = "kinds") -> dict[str, tuple]:
    """Output heads of the whole-table model and of each group's, from a fitted
    ``TablePreprocessor`` (none for the tutorial's architecture, which has one output)."""
    if architecture != "kinds":
        return {}
    return {"whole": pre.heads(), **{g: pre.heads(g) for g in pre.profile.groups}}


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
    models = runners.gather(futures, parent)
    return models, [f"model:{k}" for k, f in futures.items() if f.state.name == "Cached"]


class FederationMismatch(ValueError):
    """A federation's global models do not fit this table or run (the message says why)."""


def federation_for(folder: str, holder: str | None, pre, seed: int | None = None,
                   control_fraction: float | None = None, model: str = "codes",
                   source_sha: str | None = None,
                   ) -> tuple[dict, dict | None, dict[str, list[np.ndarray]]]:
    """Read a federated run's folder (``cloakflow federate``'s ``manifest.json`` and
    ``global.npz``) for a holder about to use its global models, and check that it may.

    Returns:
        (the federation's manifest, this holder's entry in it or None, the global weights:
        model name -> arrays).

    Raises:
        FederationMismatch: no such federation or holder, models of another kind, a seed or
            control fraction that differs from the federation's (the release's control rows
            would include rows the models trained on), or this table's shared-schema encoding
            differs from the federation's (its fingerprint), or (``source_sha``) the table is
            not the one the holder trained on: its SHA-256 differs from the federation's record
            (the manifest's without DP; under DP, where the manifest publishes no hash, the
            holder's own privacy ledger entry for the run, when it is on this machine).
    """
    import json
    from pathlib import Path

    from cloakflow.federated import task as fed

    root = Path(folder)
    if not (root / "manifest.json").is_file() or not (root / "global.npz").is_file():
        raise FederationMismatch(f"{folder}: not a federation folder (no manifest.json and "
                                 "global.npz; give the folder `cloakflow federate` printed)")
    manifest = json.loads((root / "manifest.json").read_text())
    trained = manifest.get("model", "codes")
    if trained != model:
        use = "cloakflow synthesize" if trained == "vae" else "cloakflow run"
        raise FederationMismatch(f"{folder}: this federation trained {trained!r} models, not "
                                 f"{model!r}; use them with `{use} --models-from`")
    names = [h["holder"] for h in manifest["holders"]]
    if holder is not None and holder not in names:
        raise FederationMismatch(f"{folder}: no holder {holder!r} in this federation "
                                 f"(holders: {', '.join(names)})")
    # the release's control rows must be the rows the holder kept out of federated training
    wanted = {"seed": manifest["settings"].get("seed"),
              "control_fraction": manifest.get("control_fraction")}
    given = {"seed": seed, "control_fraction": control_fraction}
    differ = [k for k in wanted if given[k] is not None and wanted[k] is not None
              and float(given[k]) != float(wanted[k])]
    if differ:
        mine_ = ", ".join(f"{k} {given[k]}" for k in differ)
        theirs = ", ".join(f"{k} {wanted[k]}" for k in differ)
        raise FederationMismatch(
            f"{folder}: this run's {mine_} differ from the federation's ({theirs}): the "
            "release's control rows would include rows the models trained on; rerun with the "
            "federation's --seed and --control-fraction")
    mine = fed.fingerprint(fed.schema_of(pre))
    if mine != manifest["schema_fingerprint"]:
        raise FederationMismatch(
            f"{folder}: this table's shared-schema encoding differs from the federation's "
            "(rule: shared schema): use the profile the federation used, with the same "
            "public bounds")
    entry = next((h for h in manifest["holders"] if h["holder"] == holder), None)
    if source_sha is not None and entry is not None:
        recorded = entry.get("source_sha256") or _ledger_sha(manifest, holder)
        if recorded is not None and recorded != source_sha:
            raise FederationMismatch(
                f"{folder}: this table is not the one holder {holder!r} trained on (its "
                "SHA-256 differs from the federation's record): give that holder's own table, "
                "or the name of the holder whose table this is")
    return manifest, entry, fed.from_arrays(dict(np.load(root / "global.npz")))


def _ledger_sha(manifest: dict, holder: str) -> str | None:
    """The source SHA-256 a DP holder's worker recorded in its own ledger for this run."""
    from cloakflow.tasks.privacy import ledger

    for e in ledger.entries(f"{manifest['dataset']}@{holder}", include_mlflow=False):
        if e.get("run_id") == manifest.get("mlflow_run_id"):
            return e.get("source_sha256")
    return None


def adopt_federation_split(params):
    """``params`` (``RunParameters`` or ``SynthesizeParameters`` with ``models_from``) with the
    federation's ``seed`` and ``control_fraction`` wherever the user set none: a holder's
    release must hold out the rows its worker held out of federated training. A value the
    user did set is kept (``federation_for`` refuses it if it differs). An unreadable
    federation folder is left to ``federation_for`` to report."""
    import json
    from pathlib import Path

    try:
        manifest = json.loads((Path(params.models_from) / "manifest.json").read_text())
    except (OSError, ValueError):
        return params
    update = {}
    if "seed" not in params.model_fields_set and "seed" in manifest.get("settings", {}):
        update["seed"] = int(manifest["settings"]["seed"])
    if "control_fraction" not in params.model_fields_set and \
            manifest.get("control_fraction") is not None:
        update["control_fraction"] = float(manifest["control_fraction"])
    return params.model_copy(update=update) if update else params


def federation_section(folder: str, manifest: dict, entry: dict | None) -> dict:
    """A release manifest's ``federation`` section: the run, its rounds and holders, this
    holder's DP section and the federation's DP statement."""
    return {"folder": str(folder), "mlflow_run_id": manifest["mlflow_run_id"],
            "strategy": manifest["strategy"], "rounds": manifest["rounds"],
            "holders": [h["holder"] for h in manifest["holders"]],
            "this_holder": entry["holder"] if entry else None,
            "dp": entry.get("dp") if entry else None,
            "statement": manifest.get("dp_statement")}


def models_from_federation(folder: str, holder: str | None, pre, x: np.ndarray,
                           columns: list[str], slices: dict[str, list[int]],
                           seed: int | None = None, control_fraction: float | None = None,
                           source_sha: str | None = None,
                           ) -> tuple[dict[str, TrainedModel], dict]:
    """The global codes models of a federated run as this run's trained models, each
    encoding ``x``: a holder encodes its own rows with them instead of training.

    Returns:
        (model name -> TrainedModel, ``whole`` first; the manifest's ``federation`` section:
        the run, rounds, holders, and this holder's DP section if the federation was DP).

    Raises:
        FederationMismatch: see ``federation_for``.
    """
    from cloakflow.federated import task as fed

    manifest, entry, weights = federation_for(folder, holder, pre, seed, control_fraction,
                                              source_sha=source_sha)
    settings = manifest["settings"]
    configs = fed.model_configs(pre, settings)
    epochs = int(settings["num-server-rounds"]) * int(settings["local-epochs"])
    models = {}
    for name in ["whole", *slices]:
        cols = None if name == "whole" else slices[name]
        width = x.shape[1] if cols is None else len(cols)
        _, encoder, _ = autoencoder_from_weights(width, configs[name], weights[name])
        codes = encode(encoder, x if cols is None else x[:, cols])
        summary = {"architecture": fed.ARCHITECTURE, "inputs": width,
                   "code_size": int(codes.shape[1]), "epochs_run": epochs,
                   "best_epoch": epochs, "attempts": 1, "init_seed": None,
                   "mlflow_run_id": None}
        if entry and entry.get("dp"):
            summary["dp"] = entry["dp"]
        models[name] = TrainedModel(name, columns if cols is None else
                                    [columns[i] for i in cols], configs[name], weights[name],
                                    codes, {}, summary, None)
    return models, federation_section(folder, manifest, entry)


def vae_from_federation(folder: str, holder: str | None, pre, seed: int | None = None,
                        control_fraction: float | None = None, source_sha: str | None = None):
    """The global VAE of a federated run (``cloakflow federate --model vae``), built for this
    table's shared-schema encoding, for a holder to synthesise from instead of training.

    Returns:
        (the ``models.vae.Vae``, the release's ``federation`` section, this holder's entry in
        the federation's manifest: its DP section and DP condition counts under DP).

    Raises:
        FederationMismatch: see ``federation_for``.
    """
    from cloakflow.federated import task as fed
    from cloakflow.models.vae import build_vae

    manifest, entry, weights = federation_for(folder, holder, pre, seed, control_fraction,
                                              model="vae", source_sha=source_sha)
    vae = build_vae(fed.vae_config(pre, manifest["settings"]), seed=0)
    fed.set_vae_weights(vae, weights["vae"])
    return vae, federation_section(folder, manifest, entry), entry
