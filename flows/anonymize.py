"""The main flow: ingest -> validate -> split -> preprocess -> autoencoders -> code release ->
utility -> privacy attacks and policy gate -> publish, every step logged to one MLflow parent run.

Orchestration only: each step is a task or plain function in ``tasks/``, the models live in
``models/``.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from prefect import flow, get_run_logger
from pydantic import BaseModel

from cloakflow.flows.parameters import RunParameters
from cloakflow.models.autoencoder import AutoencoderConfig
from cloakflow.tasks import runners, steps, tracking
from cloakflow.tasks.data.profile import CodeNoise, DatasetProfile, load_profile
from cloakflow.tasks.data.steps import numeric_scaling, prepare
from cloakflow.tasks.evaluation.learners import HEADLINE
from cloakflow.tasks.evaluation.steps import Evaluations
from cloakflow.tasks.evaluation.utility import log_utility, source_blocks
from cloakflow.tasks.privacy.dp import release_budget
from cloakflow.tasks.privacy.policy import attribute_kinds, expected_coverage
from cloakflow.tasks.privacy.steps import attack, gate_release
from cloakflow.tasks.release.codes import code_tables
from cloakflow.tasks.release.kinds import Release
from cloakflow.tasks.release.manifest import Folds, Source, build_manifest
from cloakflow.tasks.release.steps import publish_release
from cloakflow.tasks.training.federation import models_from_federation
from cloakflow.tasks.training.fit import model_heads
from cloakflow.tasks.training.steps import train_models


class FlowOutcome(BaseModel):
    """What a run returns: the release folder and the utility table."""

    release: str
    mlflow_run_id: str
    table_markdown: str
    privacy_summary: str = ""


@flow(name="anonymize", task_runner=steps.task_runner(), log_prints=True)
def anonymize(params: RunParameters | None = None) -> FlowOutcome:
    """Encode a sensitive table with autoencoders, measure utility, attack the release, gate
    it on the profile's policy and publish it."""
    from prefect.runtime import flow_run

    params = params or RunParameters()
    if params.models_from is not None:  # a holder's release: the federation's split
        from cloakflow.tasks.training.federation import adopt_federation_split

        params = adopt_federation_split(params)
    profile = load_profile(params.profile_path or params.dataset)
    params = params.model_copy(update={"dataset": profile.name})  # --profile names the dataset
    tracking.configure()
    flow_run_id, timings = str(flow_run.id or "none"), tracking.Timings()
    with tracking.parent_run(profile.name, f"anonymize-{profile.name}", {
            "prefect.flow_run_id": flow_run_id, "cloakflow.dataset": profile.name},
            params.model_dump()) as parent, runners.attack_workers(
            enabled=params.privacy_attacks) as pool:
        private = params.dp_epsilon is not None
        federated = params.models_from is not None  # a holder's release: the shared schema
        data = prepare(profile, params.input_path, params.control_fraction, params.seed,
                       parent, timings, public_bounds=private or federated, folds=params.folds,
                       numeric=numeric_scaling(params.architecture))
        x, slices = data.x, data.pre.group_slices()
        dp, dp_release = _dp_budget(params, profile, data, parent) if private else (None, None)
        evaluate = Evaluations(data.y, engine=params.forest, scheme=params.fold_scheme,
                               folds=params.folds, seed=params.seed,
                               importance_rows=params.importance_rows,
                               refresh=not params.use_cache, kind=profile.target.kind,
                               class_names=_class_names(data, profile))
        # needs no model: runs while the models train; importance per source column
        evaluate("ORIGINAL", x, data.columns, blocks=source_blocks(data.pre))
        federation = None
        with timings("train_encode"):
            if federated:  # nothing trains here: the federation's global models encode x
                models, federation = models_from_federation(
                    params.models_from, params.holder, data.pre, x, data.columns, slices,
                    params.seed, params.control_fraction, source_sha=data.source_sha)
                reused = []
                print(f"encoded with the global models of federation {params.models_from} "
                      f"({federation['rounds']} rounds, holders "
                      f"{', '.join(federation['holders'])})", flush=True)
            else:
                models, reused = train_models(x, data.columns, slices, AutoencoderConfig(
                    epochs=params.epochs, batch_size=params.batch_size,
                    validation=params.validation, architecture=params.architecture),
                    params.seed, parent, dp, not params.use_cache,
                    heads=model_heads(data.pre, params.architecture))
            # code noise is secret (seed None: OS entropy): noise from the seed could be undone
            release = Release("codes", code_tables(models["whole"], {
                g: models[g] for g in slices}, slices, x.shape[1], _noise(params, profile),
                None), profile.target.column)
        with timings("evaluate"):
            for table in release.tables:
                evaluate(table.name, table.codes, table.columns,
                         importance=table.name == "GROUP_ENCODED")
            cv, importances, cached = evaluate.results()
        note = (f"target {profile.target.column!r} ({profile.target.kind}), {params.folds}-fold "
                f"{params.fold_scheme} cross-validation (seed {params.seed}), forest engine "
                f"{params.forest}, {len(data.y)} training rows"
                + (f"; {data.utility_warning}" if data.utility_warning else "")
                + (f"; one-vs-rest: {profile.target.positive!r} against every other value of "
                   f"{profile.target.column!r}" if profile.target.one_vs_rest else ""))
        rows, table_md = log_utility(parent, cv, importances, note, timings, reused + cached)
        steps.table("utility", profile.name, rows, f"Utility of the release: {note}")
        # after the evaluations, not beside them (on two cores both got slower); each table's
        # attack maths runs in its own worker process
        with timings("attacks"):
            futures = {t.name: attack.submit(t, x, data.x_control, data.records(), data.records(
                control=True), data.pre, profile, params.seed, pool) for t in release.tables
                if params.privacy_attacks}
            releases = {k: f.result() for k, f in futures.items()}
        headline = f"test_{HEADLINE[profile.target.kind]}"
        report, summary = gate_release(parent, release.kind, releases, profile, seed=params.seed,
                               noise=_noise(params, profile).model_dump(), dp=dp_release,
                               attacked=params.privacy_attacks, accept_risk=params.accept_risk,
                               timings=timings, expected=expected_coverage(
                                   profile, attribute_kinds(data.pre), list(models),
                                   len(data.x_control)), utility=(
                                   f"GROUP_ENCODED {headline}",
                                   cv["GROUP_ENCODED"]["mean"].get(headline)))
        with timings("publish"):
            manifest = build_manifest(
                release=release, profile=profile, params=params.model_dump(),
                source=Source(file=data.source_name, sha256=data.source_sha), parent=parent,
                flow_run_id=flow_run_id, models={k: m.summary for k, m in models.items()},
                utility=rows, folds=Folds(scheme=params.fold_scheme, k=params.folds,
                                          forest=params.forest, note=note),
                control_rows=len(data.x_control), report=report, reused=sorted(reused + cached),
                dp_plan=dp, dp_release=dp_release, federation=federation,
                duplicates=data.duplicates.to_dict())
            folder = publish_release(params.out, release, data.train_frame.get_column(
                profile.target.column), manifest, parent, note, report.policy.verdict)
        tracking.finish_parent(parent, folder, timings)
    get_run_logger().info("release folder: %s", folder)
    return FlowOutcome(release=folder, mlflow_run_id=parent, table_markdown=table_md,
                       privacy_summary=summary)


def _dp_budget(params: RunParameters, profile: DatasetProfile, data, parent: str):
    """The release's DP plan and manifest section, spent in the ledger before training."""
    return release_budget(
        params.dp_epsilon, params.dp_delta, params.dp_clip, params.dp_epochs, params.dp_design,
        params.dp_report, rows=len(data.x), batch_size=params.batch_size,
        models=["whole", *data.pre.group_slices()], bounds_used=data.pre.bounds_used(),
        profile=profile, parent=parent, source_sha=data.source_sha,
        source_rows=data.source_rows)


def _noise(params: RunParameters, profile: DatasetProfile) -> CodeNoise:
    """The profile's code noise, with the run's overrides."""
    update = {k: v for k, v in (("multiplier", params.noise_multiplier),
                                ("clip_norm", params.clip_norm)) if v is not None}
    return profile.privacy.noise.model_copy(update=update)


def _class_names(data, profile) -> list[str] | None:
    """A multiclass target's class names in the order of ``data.y``'s indices (assigned over
    the whole table, training and control rows: ``split.target_labels``); None otherwise."""
    if profile.target.kind != "multiclass":
        return None
    from cloakflow.tasks.data.split import class_names

    return class_names(data.train_frame.vstack(data.control_frame)
                       .get_column(profile.target.column))


__all__ = ["anonymize", "RunParameters", "FlowOutcome"]
