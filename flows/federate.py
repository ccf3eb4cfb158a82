"""The federated-training flow: holders' tables -> warm holder workers (ingest, GX validation,
shared-schema encoding) -> SuperLink and one SuperNode per holder on 127.0.0.1 -> the Flower
app (schema agreement, FedAvg or FedProx over ``rounds``) -> the global codes autoencoders or
VAE, per-round metrics streamed to MLflow and Prefect -> every process stopped -> a run folder
with the federation's manifest and global weights -> each holder's own codes or synthetic
release.

Orchestration only: the holder logic is ``federated/task.py``, the Flower apps
``federated/client_app.py`` and ``federated/server_app.py``, the processes
``tasks/federation.py``.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import io
import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl
from prefect import flow, get_run_logger
from pydantic import BaseModel

from cloakflow.federated.task import DEFAULT_DELTA
from cloakflow.flows.parameters import FederateParameters, release_kind
from cloakflow.models import registry
from cloakflow.tasks import steps, tracking
from cloakflow.tasks.data.profile import DatasetProfile, load_profile
from cloakflow.tasks.federation import Federation, FederationFailed, merge_private_rounds
from cloakflow.tasks.release.manifest import SCHEMA_VERSION


class PartitionError(FederationFailed):
    """One table cannot be partitioned as asked (the message says why)."""


class FederationOutcome(BaseModel):
    """What a federate run returns: its folder, MLflow run and per-round figures."""

    folder: str
    mlflow_run_id: str
    rounds: list[dict]
    holders: list[dict]
    releases: list[dict] = []


def partition(frame: pl.DataFrame, clients: int, how: str, seed: int,
              source: str = "<table>") -> list[np.ndarray]:
    """Split one table's rows into ``clients`` holders (a demo's stand-in for tables that live
    on separate machines); returns each holder's row indices.

    ``random``: rows dealt at random (seeded), an IID split. ``by=COLUMN``: rows sorted by the
    column's value (categories by name, numbers ascending, seeded ties) and cut into equal
    parts, so each holder sees a different range or set of values: a skewed, non-IID split.

    Raises:
        PartitionError: fewer than 2 clients, more clients than rows, or an unknown column.
    """
    if clients < 2:
        raise PartitionError("a federation needs at least 2 holders (--clients)")
    if frame.height < clients:
        raise PartitionError(f"{source}: {frame.height} rows cannot be split into {clients} "
                             "holders")
    order = np.random.default_rng(seed).permutation(frame.height)
    if how.startswith("by="):
        column = how[3:]
        if column not in frame.columns:
            raise PartitionError(f"{source}: --partition {how}: no column {column!r} (columns: "
                                 f"{', '.join(frame.columns)})")
        keyed = pl.DataFrame({"key": frame.get_column(column)[order],
                              "at": np.arange(frame.height)})
        # stable: ties keep the seeded order
        order = order[keyed.sort(["key", "at"], nulls_last=True).get_column("at").to_numpy()]
    elif how != "random":
        raise PartitionError(f"--partition must be 'random' or 'by=COLUMN', not {how!r}")
    cuts = np.linspace(0, frame.height, clients + 1).round().astype(int)
    return [np.sort(order[a:b]) for a, b in zip(cuts[:-1], cuts[1:], strict=True)]


def _holder_files(params: FederateParameters, profile: DatasetProfile,
                  folder: Path) -> dict[str, str]:
    """Holder name -> table path: the given files, or the partitions of one table."""
    if params.holders:
        missing = [h for h in params.holders if not Path(h).is_file()]
        if missing:
            raise FederationFailed(f"holder tables not found: {', '.join(missing)}")
        paths = [Path(h).resolve() for h in params.holders]
        if len(set(paths)) != len(paths):
            raise FederationFailed("the same table is listed twice in --holders: each holder "
                                   "is one table")
        names = holder_names(paths)
        print("holders (named by their file names, or by their folders where two files share "
              "a name; the names key each holder's privacy ledger): "
              + ", ".join(f"{n} = {h}" for n, h in zip(names, params.holders, strict=True)),
              flush=True)
        return dict(zip(names, params.holders, strict=True))
    from cloakflow.tasks.data.ingest import file_format
    from cloakflow.tasks.data.steps import ingest, locate

    path = locate(profile, params.input_path)
    frame = ingest(path, profile)  # typed: the by=COLUMN order is the values' order
    parts = partition(frame, params.clients, params.partition, params.seed, Path(path).name)
    # each holder's file is the source's own rows, in the profile's format, so that it reads
    # exactly as the source does (text as written: dates in their formats, codes as codes)
    fmt = file_format(path, profile)
    if fmt == "csv":  # as text, in the file's own encoding
        text = Path(path).read_bytes().decode(profile.encoding)
        raw = pl.read_csv(io.BytesIO(text.encode("utf-8")), separator=profile.separator,
                          infer_schema=False)
    else:
        raw = pl.read_parquet(path)
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for i, rows in enumerate(parts, start=1):
        file = folder / f"holder{i}.{fmt}"
        if fmt == "csv":
            file.write_bytes(raw[rows].write_csv(separator=profile.separator)
                             .encode(profile.encoding))
        else:
            raw[rows].write_parquet(file)
        files[f"holder{i}"] = str(file)
    print(f"partitioned {Path(path).name} ({frame.height} rows) into {params.clients} holders "
          f"({params.partition}): {', '.join(str(len(p)) for p in parts)} rows", flush=True)
    return files


def holder_names(paths: list[Path]) -> list[str]:
    """Each holder's name: its file's stem (``site1.csv`` -> ``site1``), or, for files that
    share a stem, their folders' names (``hospA/data.csv`` -> ``hospA``).

    Raises:
        FederationFailed: two holders would still share a name.
    """
    stems = [p.stem for p in paths]
    names = [p.parent.name if stems.count(p.stem) > 1 else p.stem for p in paths]
    if len(set(names)) != len(names):
        raise FederationFailed(
            "two holder tables share a file name and a folder name (or a file is named like "
            "another holder's folder), so they cannot be told apart (a holder's name keys its "
            "privacy ledger): rename one of them")
    return names


def check_profile(profile: DatasetProfile, model: str) -> None:
    """What a federation needs of the profile, checked before any process starts: a declared
    kind for every feature and public bounds (``origin: public``) for every modelled column,
    the target too for the VAE (the holders' workers check their rows against them).

    Raises:
        FederationFailed: naming the profile, the columns and the rule.
    """
    target = registry.get(model).models_target
    columns = list(profile.features) + ([profile.target.column] if target else [])
    undeclared = [c for c in profile.features if c not in profile.columns]
    unbounded = [c for c in columns if c not in profile.bounds and
                 profile.columns.get(c) != "boolean"]
    measured = [c for c in columns if c in profile.bounds and
                profile.bounds[c].origin == "data"]
    problems = []
    if undeclared:
        problems.append(f"declare the kind of {undeclared} under `columns:` (each holder "
                        "would infer it from its own rows)")
    if unbounded:
        problems.append(f"give public bounds for {unbounded} under `bounds:` (min and max, or "
                        "categories" + (f"; model {model!r} models the target too" if target
                                        else "") + ")")
    if measured:
        problems.append(f"the bounds of {measured} are marked `origin: data` (read off one "
                        "table, e.g. by `cloakflow profile`): replace them with ranges and "
                        "category lists that hold for every holder's table, and mark them "
                        "`origin: public`")
    if problems:
        raise FederationFailed(f"profile {profile.name!r}: a federation needs one shared "
                               "encoding (rule: shared schema): " + "; ".join(problems))


def check_caps(profile: DatasetProfile, holders: list[str], run_config: dict) -> None:
    """Plan the holders' DP (one plan for all) and refuse a DP federation that would take a
    holder past the profile's lifetime cap, before any process starts (the holders' workers
    check it again on their own ledgers).

    Raises:
        DpPlanError: no plan spends the settings' epsilon (e.g. it needs too small a sigma).
        BudgetExhausted: naming the holder's ledger (``<profile>@<holder>``).
    """
    from cloakflow.federated import task
    from cloakflow.tasks.privacy import ledger
    from cloakflow.tasks.privacy.dp import DpPlanError

    models = task.family(run_config).member_names(profile)
    try:
        section = task.dp_plan(run_config, len(models)).section(models)
    except ValueError as exc:
        raise DpPlanError(f"--dp-epsilon {run_config['dp-epsilon']} over "
                          f"{run_config['num-server-rounds']} rounds: {exc}") from exc
    cap = profile.privacy.dp_cap
    if cap is None:
        return
    for holder in holders:
        ledger.check_cap(f"{profile.name}@{holder}", section, cap.model_dump(),
                         include_mlflow=False)


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
        files = _holder_files(params, profile, folder / "holders")
        run_config = {"model": params.model, "latent": params.latent,
                      "num-server-rounds": params.rounds, "local-epochs": params.local_epochs,
                      "strategy": params.strategy,
                      "proximal-mu": params.mu if params.strategy == "fedprox" else 0.0,
                      "batch-size": params.batch_size, "learning-rate": params.learning_rate,
                      "seed": params.seed, "dp-epsilon": params.dp_epsilon or 0.0,
                      "dp-delta": params.dp_delta or (DEFAULT_DELTA if dp else 0.0),
                      "dp-clip": params.dp_clip,
                      "dp-sampling-rate": params.dp_sampling_rate,
                      "weighting": weighting, "declared-size": 0.0, "run-name": parent,
                      "timeout": float(params.timeout)}
        if dp:  # the plan (same for every holder) and each holder's cap, before any process
            check_caps(profile, list(files), run_config)
        rounds: list[dict] = []

        def on_round(line: dict) -> None:
            rounds.append(line)
            if line["overhead_seconds"] is None:  # DP: holders keep losses and timings
                print(f"round {line['round']}/{params.rounds}: {line['wall_seconds']:.1f} s",
                      flush=True)
                tracking.log_metrics(parent, {"round.wall_seconds": line["wall_seconds"]},
                                     step=line["round"])
                return
            losses = [h["train-loss"] for h in line["holders"]]
            print(f"round {line['round']}/{params.rounds}: {line['wall_seconds']:.1f} s "
                  f"(slowest holder's training {line['slowest_training_seconds']:.1f} s, "
                  f"overhead {line['overhead_seconds']:.1f} s); holders' loss "
                  + ", ".join(f"{v:.3f}" for v in losses), flush=True)
            _log_round(parent, line)

        print(f"federation of {len(files)} holders: {', '.join(files)}; {params.rounds} rounds "
              f"x {params.local_epochs} local epochs" + (f", DP epsilon {params.dp_epsilon} "
                                                          "per holder" if dp else ""), flush=True)
        declared = dict(zip(files, params.declared_sizes, strict=True)) \
            if weighting == "declared" else None
        with Federation(folder / "processes", params.profile_path or profile.name,
                        files, declared=declared, control_fraction=params.control_fraction,
                        seed=params.seed, model=params.model) as fed:
            fed.start_workers()
            print("holders loaded their tables; starting the SuperLink and SuperNodes",
                  flush=True)
            fed.start_flower()
            out = fed.run(run_config, on_round=on_round, timeout=params.timeout)
            reports = [fed.ask_worker(h, {"op": "report", "config": run_config})
                       for h in files]
        if dp:  # what the holders kept from the server, reported by them (not covered)
            rounds[:] = merge_private_rounds(rounds, reports)
            for line in rounds:
                if line["overhead_seconds"] is not None:
                    _log_round(parent, line)
        result = json.loads((out / "result.json").read_text())
        weights_file = folder / "global.npz"
        weights_file.write_bytes((out / "global.npz").read_bytes())
        manifest = _manifest(params, profile, result, rounds, reports, weighting, parent,
                             flow_run_id, files)
        (folder / "manifest.json").write_text(json.dumps(manifest, indent=1, default=str))
        (folder / "rounds.jsonl").write_text((out / "rounds.jsonl").read_text())
        tracking.log_dict(parent, manifest, "federation/manifest.json")
        tracking.log_file(parent, weights_file, "federation")
        overhead = [r["overhead_seconds"] for r in rounds]
        releases = _holder_releases(params, profile, files, folder) if params.release else []
        if releases:
            (folder / "releases.json").write_text(json.dumps(releases, indent=1))
            tracking.log_dict(parent, releases, "federation/releases.json")
        manifest["releases"] = releases
        summary = _summary(profile.name, manifest, overhead)
        steps.markdown("federation", profile.name, summary, "Federated training")
        tracking.finish_parent(parent, str(folder), {})
    get_run_logger().info("federation folder: %s", folder)
    return FederationOutcome(folder=str(folder), mlflow_run_id=parent, rounds=rounds,
                             holders=manifest["holders"], releases=releases)


def _log_round(parent: str, line: dict) -> None:
    """One round's figures to the MLflow run (step = round)."""
    tracking.log_metrics(parent, {
        "round.wall_seconds": line["wall_seconds"],
        "round.overhead_seconds": line["overhead_seconds"],
        "round.train_loss_mean": float(np.mean([h["train-loss"] for h in line["holders"]]))},
        step=line["round"])


def _holder_releases(params: FederateParameters, profile: DatasetProfile,
                     files: dict[str, str], folder: Path) -> list[dict]:
    """Each holder publishes its own release of the kind the model feeds
    (``tasks.release.kinds``) with the global models, through that kind's entry flow with
    ``models_from`` (as a holder would run ``cloakflow run --models-from`` for codes, or
    ``cloakflow synthesize --models-from`` for synthetic rows): evaluation, attacks and gate
    included. A release the gate blocks is recorded as blocked; the others still run."""
    from cloakflow.tasks.privacy.policy import PolicyViolation

    kind = release_kind(params.model)
    entry = _resolve(kind.flow)
    out = []
    for holder, path in files.items():
        print(f"holder {holder}: its own {kind.holder_release}", flush=True)
        try:
            outcome = entry(_holder_parameters(kind, params, profile, path, folder, holder))
            verdict = getattr(outcome, "verdict", None) or json.loads(
                (Path(outcome.release) / "manifest.json").read_text())["privacy"]["verdict"]
            out.append({"holder": holder, "verdict": verdict, "release": outcome.release,
                        "mlflow_run_id": outcome.mlflow_run_id})
        except PolicyViolation as exc:
            print(f"holder {holder}: release blocked by the privacy policy ({exc.crossed}); "
                  "nothing published for it (--accept-risk publishes it anyway)", flush=True)
            blocked = {"holder": holder, "verdict": "blocked", "release": None}
            if params.dp_epsilon is None:  # under DP the crossed limits stay in MLflow
                blocked["crossed"] = list(exc.crossed)
            out.append(blocked)
        except Exception as exc:  # one holder's failure must not stop the others' releases
            print(f"holder {holder}: release failed, nothing published for it: "
                  f"{type(exc).__name__}: {exc}", flush=True)
            out.append({"holder": holder, "verdict": "failed", "release": None,
                        "error": f"{type(exc).__name__}: {exc}"})
    return out


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


def _manifest(params, profile, result, rounds, reports, weighting, parent, flow_run_id,
              files: dict[str, str]) -> dict:
    family = registry.get(params.model)
    holders = []
    for r in reports:
        entry = {"holder": r["holder"], "file": str(files[r["holder"]]), "dp": r["dp"],
                 "ledger": r["ledger"] or None}
        if r["rows"] is not None:  # without DP: the row count and the table's hash
            entry["rows"] = r["rows"]
        if r.get("source_sha256"):
            entry["source_sha256"] = r["source_sha256"]
        if r.get("dp_rows") is not None:  # DP outputs: covered by the holder's epsilon
            entry["dp_rows"] = r["dp_rows"]
            if family.counted != "row count":  # e.g. a label histogram
                entry["dp_counts"] = r["dp_counts"]
        holders.append(entry)
    statement = None
    if params.dp_epsilon is not None:
        how = {"uniform": "uniformly", "declared": "by the sizes they declared public",
               "dp-count": "by their DP row counts"}[weighting]
        statement = (
            "Each holder trained with DP-SGD on its own rows: the global model, and what the "
            "server received from that holder (its clipped, noised local updates over all "
            "rounds, its DP figures" + (", its DP row count" if weighting == "dp-count" else "")
            + "; its losses and timings stay with the holder), are (epsilon, delta)-"
            "differentially private with respect to adding or "
            "removing one of that holder's rows, with the holder's (epsilon, delta) below, "
            "composed over all its models and rounds and a Gaussian count of its rows ("
            + (f"a {family.counted}, " if family.counted != "row count" else "")
            + "PLD, add/remove adjacency). The exact row counts stay private: DP-SGD samples at a "
            "public rate and divides by q times the DP count; holders are weighed " + how
            + " in FedAvg. When each reply arrives is seen by the server and not covered (a "
            "holder's training time grows with its expected batch). The per-round losses and "
            "timings here, reported by the holders after the run, are computed on private rows "
            "and are not covered. " + (
                "The guarantee is for the holder's training rows: its control rows are split "
                "off by the public seed. " + release_kind(params.model).holder_note))
    return {"schema_version": SCHEMA_VERSION, "kind": "federated-model", "dataset": profile.name,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "mlflow_run_id": parent, "prefect_flow_run_id": flow_run_id,
            "strategy": ("FedAvg (Flower)" if params.strategy == "fedavg" else
                         f"FedProx (Flower), mu {params.mu:g}"),
            "weighting": weighting,
            "engine": "Flower deployment engine: SuperLink + one SuperNode per holder on "
                      "127.0.0.1, one warm worker per holder",
            "settings": result["settings"], "schema_fingerprint": result["fingerprint"],
            "control_fraction": params.control_fraction,
            "rounds": result["rounds"], "holders": holders,
            "model": params.model,
            "models": registry.get(params.model).member_names(profile),
            "dp_statement": statement,
            "round_seconds": [{k: r[k] for k in ("round", "wall_seconds",
                                                 "slowest_training_seconds",
                                                 "overhead_seconds")} for r in rounds]}


def _summary(dataset: str, manifest: dict, overhead: list[float]) -> str:
    lines = [f"# Federated training of `{dataset}`", "",
             f"{len(manifest['holders'])} holders, {manifest['rounds']} rounds of "
             f"{manifest['strategy']} "
             f"({manifest['weighting']} weights).", "",
             "| round | wall s | slowest training s | overhead s |", "|---|---|---|---|"]
    lines += [f"| {r['round']} | {r['wall_seconds']:.1f} | {r['slowest_training_seconds']:.1f} "
              f"| {r['overhead_seconds']:.1f} |" for r in manifest["round_seconds"]]
    if overhead:
        lines += ["", f"Median round overhead: {float(np.median(overhead)):.1f} s."]
    for r in manifest.get("releases", []):
        lines.append(f"- `{r['holder']}`'s release: {r['verdict']}"
                     + (f" ({r['release']})" if r.get("release") else ""))
    for h in manifest["holders"]:
        if h["dp"]:
            lines.append(f"- `{h['holder']}`: epsilon {h['dp']['epsilon']:.4g}, delta "
                         f"{h['dp']['delta']:g} (its ledger: {h['ledger']['file']})")
    return "\n".join(lines) + "\n"


__all__ = ["federate", "FederateParameters", "FederationOutcome", "FederationFailed",
           "partition"]
