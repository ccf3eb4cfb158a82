"""The federated-training flow: holders' tables -> warm holder workers (ingest, GX validation,
shared-schema encoding) -> SuperLink and one SuperNode per holder on 127.0.0.1 -> the Flower
app (schema agreement, FedAvg or FedProx over ``rounds``) -> the global codes autoencoders or
VAE, per-round metrics streamed to MLflow and Prefect -> every process stopped -> a run folder
with the federation's manifest and global weights -> each holder's own codes or synthetic
release, through the release pipeline (the kind's entry flow).

Orchestration only: the holder logic is ``federated/task.py``, the Flower apps
``federated/client_app.py`` and ``federated/server_app.py``, the processes
``tasks/federation.py``, the rest of the run ``tasks/training/federated_run.py``.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import json
from pathlib import Path

from prefect import flow, get_run_logger
from pydantic import BaseModel

from cloakflow.flows.parameters import FederateParameters, release_kind
from cloakflow.tasks import steps, tracking
from cloakflow.tasks.data import steps as data_steps
from cloakflow.tasks.data.profile import DatasetProfile, load_profile
from cloakflow.tasks.federation import Federation, FederationFailed
from cloakflow.tasks.training import federated_run as fr
from cloakflow.tasks.training.federated_run import (  # noqa: F401 - the flow's public names
    PartitionError,
    check_caps,
    check_profile,
    holder_names,
    partition,
)


class FederationOutcome(BaseModel):
    """What a federate run returns: its folder, MLflow run and per-round figures."""

    folder: str
    mlflow_run_id: str
    rounds: list[dict]
    holders: list[dict]
    releases: list[dict] = []


@flow(name="federate", log_prints=True)
def federate(params: FederateParameters | None = None) -> FederationOutcome:
    """Train the codes autoencoders (or, with ``model="vae"``, the VAE synthesizer) across
    data holders with Flower (FedAvg or FedProx), without pooling rows; with ``dp_epsilon``
    each holder's rows are protected by its own DP-SGD and its row count stays private. Then
    each holder publishes its own codes or synthetic release (unless ``release`` is off).

    Raises:
        FederationFailed: a bad profile, holder table or process (the message names it).
        DpPlanError: no DP plan spends ``dp_epsilon`` with these settings.
        BudgetExhausted: a holder's ledger would pass the profile's ``dp_cap``.
    """
    from prefect.runtime import flow_run

    params = params or FederateParameters()
    profile = load_profile(params.profile_path or params.dataset)
    check_profile(profile, params.model)
    dp = params.dp_epsilon is not None
    weighting = params.weighting or ("uniform" if dp else "examples")
    tracking.configure()
    flow_run_id = str(flow_run.id or "none")
    with tracking.parent_run(profile.name, f"federate-{profile.name}", {
            "prefect.flow_run_id": flow_run_id, "cloakflow.dataset": profile.name,
            "cloakflow.kind": "federated"}, params.model_dump()) as parent:
        folder = Path(params.out) / profile.name / parent
        files = fr.holder_files(params, profile, folder / "holders", data_steps.locate,
                                data_steps.ingest)
        config = fr.settings(params, weighting, parent)
        if dp:  # the plan (same for every holder) and each holder's cap, before any process
            check_caps(profile, list(files), config)
        log = fr.RoundLog(parent, params.rounds)
        out, reports = _train(params, profile, files, folder, config, log, weighting)
        if dp:  # what the holders kept from the server, reported by them (not covered)
            log.merge(reports)
        manifest = fr.federation_manifest(
            params, profile, json.loads((out / "result.json").read_text()), log.rounds,
            reports, weighting, parent, flow_run_id, files)
        fr.write_folder(folder, out, parent, manifest)
        releases = _holder_releases(params, profile, files, folder) if params.release else []
        fr.record_releases(folder, parent, manifest, releases)
        steps.markdown("federation", profile.name, fr.summary_markdown(
            profile.name, manifest, [r["overhead_seconds"] for r in log.rounds]),
            "Federated training")
        tracking.finish_parent(parent, str(folder), {})
    get_run_logger().info("federation folder: %s", folder)
    return FederationOutcome(folder=str(folder), mlflow_run_id=parent, rounds=log.rounds,
                             holders=manifest["holders"], releases=releases)


def _train(params: FederateParameters, profile: DatasetProfile, files: dict[str, str],
           folder: Path, config: dict, log: fr.RoundLog, weighting: str):
    """The holders' workers, the SuperLink and SuperNodes, the Flower run; returns (its output
    folder, each holder's report). Every process is stopped on the way out."""
    print(f"federation of {len(files)} holders: {', '.join(files)}; {params.rounds} rounds "
          f"x {params.local_epochs} local epochs" + (f", DP epsilon {params.dp_epsilon} "
                                                      "per holder" if params.dp_epsilon
                                                      is not None else ""), flush=True)
    declared = dict(zip(files, params.declared_sizes, strict=True)) \
        if weighting == "declared" else None
    with Federation(folder / "processes", params.profile_path or profile.name, files,
                    declared=declared, control_fraction=params.control_fraction,
                    seed=params.seed, model=params.model) as fed:
        fed.start_workers()
        print("holders loaded their tables; starting the SuperLink and SuperNodes",
              flush=True)
        fed.start_flower()
        out = fed.run(config, on_round=log, timeout=params.timeout)
        return out, [fed.ask_worker(h, {"op": "report", "config": config}) for h in files]


def _holder_releases(params: FederateParameters, profile: DatasetProfile,
                     files: dict[str, str], folder: Path) -> list[dict]:
    """Each holder publishes its own release of the kind the model feeds
    (``tasks.release.kinds``) with the global models, through that kind's entry flow with
    ``models_from`` (as a holder would run ``cloakflow run --models-from`` for codes, or
    ``cloakflow synthesize --models-from`` for synthetic rows): evaluation, attacks and gate
    included. A release the gate blocks is recorded as blocked; the others still run."""
    kind = release_kind(params.model)
    entry = _resolve(kind.flow)
    out = []
    for holder, path in files.items():
        print(f"holder {holder}: its own {kind.holder_release}", flush=True)
        out.append(_holder_release(params, entry, _holder_parameters(
            kind, params, profile, path, folder, holder), holder))
    return out


def _holder_release(params: FederateParameters, entry, holder_params, holder: str) -> dict:
    """One holder's release: its verdict and folder, or why nothing was published for it."""
    from cloakflow.tasks.privacy.policy import PolicyViolation

    try:
        outcome = entry(holder_params)
    except PolicyViolation as exc:
        print(f"holder {holder}: release blocked by the privacy policy ({exc.crossed}); "
              "nothing published for it (--accept-risk publishes it anyway)", flush=True)
        # under DP the crossed limits stay in MLflow
        return {"holder": holder, "verdict": "blocked", "release": None, **(
            {"crossed": list(exc.crossed)} if params.dp_epsilon is None else {})}
    except Exception as exc:  # one holder's failure must not stop the others' releases
        print(f"holder {holder}: release failed, nothing published for it: "
              f"{type(exc).__name__}: {exc}", flush=True)
        return {"holder": holder, "verdict": "failed", "release": None,
                "error": f"{type(exc).__name__}: {exc}"}
    verdict = getattr(outcome, "verdict", None) or json.loads(
        (Path(outcome.release) / "manifest.json").read_text())["privacy"]["verdict"]
    return {"holder": holder, "verdict": verdict, "release": outcome.release,
            "mlflow_run_id": outcome.mlflow_run_id}


def _resolve(path: str):
    """The object at ``"module:attribute"``."""
    import importlib

    module, _, attribute = path.partition(":")
    return getattr(importlib.import_module(module), attribute)


def _holder_parameters(kind, params: FederateParameters, profile: DatasetProfile, path: str,
                       folder: Path, holder: str):
    """The entry flow's parameters of a holder's release with the global models: the shared
    fields, and those of the federation's fields the kind's parameters have (folds, ...)."""
    cls = _resolve(kind.parameters)
    shared = {"dataset": profile.name, "profile_path": params.profile_path,
              "input_path": path, "models_from": str(folder), "holder": holder,
              "seed": params.seed, "control_fraction": params.control_fraction,
              "out": params.out, "accept_risk": params.accept_risk}
    extra = {k: getattr(params, k) for k in ("folds", "importance_rows")
             if k in cls.model_fields}
    return cls(**shared, **extra)


__all__ = ["federate", "FederateParameters", "FederationOutcome", "FederationFailed",
           "partition"]
