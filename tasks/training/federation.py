"""A federation's global models (``cloakflow federate``) reused by a holder's release: the
federation's manifest read and checked against this run, its split adopted, its weights built
into this run's models (Prefect-free)."""

from __future__ import annotations

import numpy as np

from cloakflow.models.autoencoder import autoencoder_from_weights, encode
from cloakflow.tasks.training.fit import TrainedModel


class FederationMismatch(ValueError):
    """A federation's global models do not fit this table or run (the message says why)."""

    exit_code = 2  # the command line's exit status
    headline = "INPUT REJECTED, nothing was published."


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
    from cloakflow.tasks.release.manifest import check_schema_version

    root = Path(folder)
    if not (root / "manifest.json").is_file() or not (root / "global.npz").is_file():
        raise FederationMismatch(f"{folder}: not a federation folder (no manifest.json and "
                                 "global.npz; give the folder `cloakflow federate` printed)")
    manifest = json.loads((root / "manifest.json").read_text())
    try:
        check_schema_version(manifest, str(root / "manifest.json"))
    except ValueError as exc:
        raise FederationMismatch(str(exc)) from exc
    trained = manifest.get("model", "codes")
    if trained != model:
        use = fed.family(trained).command
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
    vae = build_vae(fed.model_spec(pre, manifest["settings"]), seed=0)
    fed.family("vae").set_weights({"vae": vae.model}, {"vae": weights["vae"]})
    return vae, federation_section(folder, manifest, entry), entry
