"""What a federated training run (``flows/federate.py``) does apart from orchestration: the
holders' tables (given, or one table partitioned), the profile and DP checks made before any
process starts, the Flower run's settings, the per-round log, the federation's manifest and
its summary. Prefect-free: the flow passes in its steps.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl

from cloakflow.models import registry
from cloakflow.tasks import console, tracking
from cloakflow.tasks.data.profile import DatasetProfile
from cloakflow.tasks.federation import FederationFailed
from cloakflow.tasks.release import kinds
from cloakflow.tasks.release.manifest import SCHEMA_VERSION, FederationManifest


class PartitionError(FederationFailed):
    """One table cannot be partitioned as asked (the message says why)."""


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


def holder_files(params, profile: DatasetProfile, folder: Path, locate=None,
                 ingest=None) -> dict[str, str]:
    """Holder name -> table path: the given files (``params.holders``), or the partitions of
    one table written under ``folder`` (``locate`` and ``ingest``: the orchestrator's steps,
    by default the plain ``locate_source`` and ``load_table``).

    Raises:
        FederationFailed: a holder table is missing or listed twice.
        PartitionError: the table cannot be split as asked.
    """
    if params.holders:
        missing = [h for h in params.holders if not Path(h).is_file()]
        if missing:
            raise FederationFailed(f"holder tables not found: {', '.join(missing)}")
        paths = [Path(h).resolve() for h in params.holders]
        if len(set(paths)) != len(paths):
            raise FederationFailed("the same table is listed twice in --holders: each holder "
                                   "is one table")
        names = holder_names(paths)
        console.step("holders (named by their file names, or by their folders where two files "
                     "share a name; the names key each holder's privacy ledger): "
                     + ", ".join(f"{n} = {h}" for n, h in zip(names, params.holders,
                                                               strict=True)))
        return dict(zip(names, params.holders, strict=True))
    from cloakflow.tasks.data.ingest import file_format, load_table
    from cloakflow.tasks.data.locate import locate_source

    path = str((locate or locate_source)(profile, params.input_path))
    frame = (ingest or load_table)(path, profile)  # typed: the by=COLUMN order is the values' order
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
    console.step(f"partitioned {Path(path).name} ({frame.height} rows) into {params.clients} "
                 f"holders ({params.partition}): {', '.join(str(len(p)) for p in parts)} rows")
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


def settings(params, weighting: str, parent: str) -> dict:
    """The Flower run's settings (``run_config``) of ``params`` (``FederateParameters``)."""
    from cloakflow.federated.task import DEFAULT_DELTA

    dp = params.dp_epsilon is not None
    return {"model": params.model, "latent": params.latent,
            "num-server-rounds": params.rounds, "local-epochs": params.local_epochs,
            "strategy": params.strategy,
            "proximal-mu": params.mu if params.strategy == "fedprox" else 0.0,
            "batch-size": params.batch_size, "learning-rate": params.learning_rate,
            "seed": params.seed, "dp-epsilon": params.dp_epsilon or 0.0,
            "dp-delta": params.dp_delta or (DEFAULT_DELTA if dp else 0.0),
            "dp-clip": params.dp_clip, "dp-sampling-rate": params.dp_sampling_rate,
            "weighting": weighting, "declared-size": 0.0, "run-name": parent,
            "timeout": float(params.timeout)}


class RoundLog:
    """The per-round figures as they arrive (``Federation.run``'s ``on_round``): printed,
    logged to the MLflow run, kept in ``rounds``. Under DP the holders keep losses and
    timings until the end (``merge``)."""

    def __init__(self, parent: str, total: int):
        self.parent, self.total, self.rounds = parent, total, []

    def __call__(self, line: dict) -> None:
        self.rounds.append(line)
        if line["overhead_seconds"] is None:  # DP: holders keep losses and timings
            console.step(f"round {line['round']}/{self.total}: {line['wall_seconds']:.1f} s")
            tracking.log_metrics(self.parent, {"round.wall_seconds": line["wall_seconds"]},
                                 step=line["round"])
            return
        losses = [h["train-loss"] for h in line["holders"]]
        console.step(f"round {line['round']}/{self.total}: {line['wall_seconds']:.1f} s "
                     f"(slowest holder's training {line['slowest_training_seconds']:.1f} s, "
                     f"overhead {line['overhead_seconds']:.1f} s); holders' loss "
                     + ", ".join(f"{v:.3f}" for v in losses))
        log_round(self.parent, line)

    def merge(self, reports: list[dict]) -> None:
        """Under DP: what the holders kept from the server, reported by them after the run
        (not covered), merged into the rounds and logged."""
        from cloakflow.tasks.federation import merge_private_rounds

        self.rounds[:] = merge_private_rounds(self.rounds, reports)
        for line in self.rounds:
            if line["overhead_seconds"] is not None:
                log_round(self.parent, line)


def log_round(parent: str, line: dict) -> None:
    """One round's figures to the MLflow run (step = round)."""
    tracking.log_metrics(parent, {
        "round.wall_seconds": line["wall_seconds"],
        "round.overhead_seconds": line["overhead_seconds"],
        "round.train_loss_mean": float(np.mean([h["train-loss"] for h in line["holders"]]))},
        step=line["round"])


def federation_manifest(params, profile, result, rounds, reports, weighting, parent,
                        flow_run_id, files: dict[str, str]) -> dict:
    """The federation's ``manifest.json``: its settings, schema fingerprint, holders (row
    counts and hashes without DP; DP figures and ledgers with it), the DP statement and the
    rounds' timings."""
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
        from cloakflow.tasks.privacy.budget import statement as budget_statement

        counted = f" and a {family.counted}" if family.counted != "row count" else ""
        statement = budget_statement(
            "Each holder trained with DP-SGD on its own rows: the global model, and what the "
            "server received from that holder (its clipped, noised local updates over all "
            "rounds, its DP figures" + (", its DP row count" if weighting == "dp-count" else "")
            + "; its losses and timings stay with the holder), are", None, None,
            "adding or removing one of that holder's rows, with the holder's (epsilon, delta) "
            "below", covered="DP-SGD over all its models and rounds, a Gaussian count of its "
                             f"rows{counted}",
            composed="composed by dp-accounting's PLD accountant (add/remove adjacency)",
            notes=("The exact row counts stay private: DP-SGD samples at a public rate and "
                   "divides by q times the DP count; holders are weighed " + how
                   + " in FedAvg.", "The guarantee is for the holder's training rows: its "
                   "control rows are split off by the public seed. "
                   + kinds.for_model(params.model).holder_note),
            not_covered="when each reply arrives, which the server sees (a holder's training "
                        "time grows with its expected batch), and the per-round losses and "
                        "timings here, reported by the holders after the run and computed on "
                        "private rows.")
    out = {"schema_version": SCHEMA_VERSION, "kind": "federated-model", "dataset": profile.name,
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
    FederationManifest.model_validate(out)  # the typed layout, or a ValidationError
    return out


def summary_markdown(dataset: str, manifest: dict, overhead: list[float]) -> str:
    """The flow run page's summary of a federation: rounds, timings, releases, DP."""
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


def write_folder(folder: Path, out: Path, parent: str, manifest: dict) -> None:
    """The run folder: the manifest, the global weights and the rounds' log (from the Flower
    run's output ``out``), the manifest and weights logged to the MLflow run too."""
    import json

    weights = folder / "global.npz"
    weights.write_bytes((out / "global.npz").read_bytes())
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=1, default=str))
    (folder / "rounds.jsonl").write_text((out / "rounds.jsonl").read_text())
    tracking.log_dict(parent, manifest, "federation/manifest.json")
    tracking.log_file(parent, weights, "federation")


def record_releases(folder: Path, parent: str, manifest: dict, releases: list[dict]) -> None:
    """The holders' releases (verdict and folder each) in ``releases.json``, the MLflow run
    and the manifest's in-memory copy (for the summary)."""
    import json

    if releases:
        (folder / "releases.json").write_text(json.dumps(releases, indent=1))
        tracking.log_dict(parent, releases, "federation/releases.json")
    manifest["releases"] = releases
