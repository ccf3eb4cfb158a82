"""The ``codes`` release kind: the latent codes of the autoencoders, one table for the whole
table's model and one for the group models, a pseudonymisation (``tasks.release.codes``).

Its stages (``CodesStages``) run in the one pipeline (``flows/release.py``): prepare the table,
plan the DP budget, train the autoencoders (or take a federation's global models), encode,
cross-validate the utility of every view, attack each released table, judge, publish.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from cloakflow.tasks.release.codes import PSEUDONYMISATION_STATEMENT
from cloakflow.tasks.release.kinds import (
    Judged,
    Package,
    Release,
    ReleaseKind,
    ReleaseRun,
    limits_of,
    min_utility,
    secret_order,
    warn_unused_under_dp,
)


class CodesLimits(BaseModel):
    """The policy limits of a codes release (``privacy.policy.codes`` in the profile), each
    compared with a measured attack result (``tasks/privacy/attacks/``; the attacker knowledge
    behind each is stated in the privacy report)."""

    model_config = ConfigDict(extra="forbid")

    max_inversion_gain: float = Field(
        0.05, ge=0, le=1,
        description="largest accuracy gain over the majority-class baseline of the p = 1% "
                    "known-plaintext inversion, on any sensitive categorical attribute")
    max_inversion_r2: float = Field(
        0.25, le=1, description="largest R^2 of the p = 1% inversion on any sensitive numeric "
                                "attribute")
    max_membership_auc: float = Field(
        0.6, ge=0.5, le=1, description="largest membership-inference AUC against any model")
    max_reidentification: float = Field(
        0.01, ge=0, le=1, description="largest share of target rows linked to their own "
                                      "released row after the p = 1% inversion")
    min_utility: float | None = min_utility("GROUP_ENCODED's cross-validation")


class FlowOutcome(BaseModel):
    """What a codes run returns: the release folder and the utility table."""

    release: str
    mlflow_run_id: str
    table_markdown: str
    privacy_summary: str = ""


class CodesStages:
    """The pipeline stages of a codes release (``tasks.release.kinds.Stages``)."""

    def resolve(self, params):
        """A holder's release with a federation's models (``models_from``) takes the
        federation's split."""
        if params.models_from is None:
            return params
        from cloakflow.tasks.training.federation import adopt_federation_split

        return adopt_federation_split(params)

    def pooled(self, run: ReleaseRun) -> bool:
        return run.params.privacy_attacks  # each table's attack maths in its own process

    def prepare(self, run: ReleaseRun) -> None:
        """locate -> ingest -> validate -> split -> preprocess; a DP run or a federation's
        holder scales with the profile's public bounds."""
        from cloakflow.tasks.data.preprocess import numeric_scaling

        p = run.params
        run.data = run.steps.prepare(
            run.profile, p.input_path, p.control_fraction, p.seed, run.parent, run.timings,
            public_bounds=p.dp_epsilon is not None or p.models_from is not None,
            folds=p.folds, numeric=numeric_scaling(p.architecture))

    def budget(self, run: ReleaseRun) -> None:
        """The DP plan and the manifest's DP section (spent in the ledger before training);
        (None, None) without DP."""
        from cloakflow.tasks.privacy.dp import release_budget

        p, data = run.params, run.data
        warn_unused_under_dp(p, {"epochs": f"DP-SGD trains --dp-epochs {p.dp_epochs} epochs"})
        run.budget = (None, None) if p.dp_epsilon is None else release_budget(
            p.dp_epsilon, p.dp_delta, p.dp_clip, p.dp_epochs, p.dp_design, p.dp_report,
            rows=len(data.x), batch_size=p.batch_size,
            models=["whole", *data.pre.group_slices()], bounds_used=data.pre.bounds_used(),
            profile=run.profile, parent=run.parent, source_sha=data.source_sha,
            source_rows=data.source_rows)

    def train(self, run: ReleaseRun) -> None:
        """The original table's utility (needs no model: it runs while the models train),
        then the autoencoders, or a federation's global models."""
        from cloakflow.tasks.evaluation.utility import source_blocks

        p, data = run.params, run.data
        evaluate = run.state["evaluate"] = run.steps.evaluations(
            data.y, engine=p.forest, scheme=p.fold_scheme, folds=p.folds, seed=p.seed,
            importance_rows=p.importance_rows, refresh=not p.use_cache,
            kind=run.profile.target.kind, class_names=_class_names(run))
        evaluate("ORIGINAL", data.x, data.columns, blocks=source_blocks(data.pre))
        with run.timings("train_encode"):
            run.models, run.state["reused"], run.state["federation"] = (
                _federation_models(run) if p.models_from is not None else
                (*_trained(run), None))

    def build(self, run: ReleaseRun) -> None:
        """The released tables; code noise is secret (seed None: OS entropy), since noise
        drawn from the published seed could be undone."""
        from cloakflow.tasks.release.codes import code_tables

        slices, models = run.data.pre.group_slices(), run.models
        run.release = Release("codes", code_tables(
            models["whole"], {g: models[g] for g in slices}, slices, run.data.x.shape[1],
            code_noise(run), None), run.profile.target.column)

    def evaluate(self, run: ReleaseRun) -> None:
        """Cross-validated utility of every view, logged as a table to MLflow and Prefect."""
        from cloakflow.tasks.evaluation.utility import log_utility

        evaluate = run.state["evaluate"]
        with run.timings("evaluate"):
            for table in run.release.tables:
                evaluate(table.name, table.codes, table.columns,
                         importance=table.name == "GROUP_ENCODED")
            cv, importances, cached = evaluate.results()
        note = utility_note(run)
        rows, table_md = log_utility(run.parent, cv, importances, note, run.timings,
                                     run.state["reused"] + cached)
        run.steps.table("utility", run.profile.name, rows, f"Utility of the release: {note}")
        run.evaluation = {"cv": cv, "rows": rows, "markdown": table_md, "note": note,
                          "cached": cached}

    def attack(self, run: ReleaseRun) -> None:
        """Every attack on each released table, each in its own worker process; after the
        evaluations, not beside them (on two cores both got slower)."""
        data, p = run.data, run.params
        with run.timings("attacks"):
            futures = {t.name: run.steps.attack.submit(
                t, data.x, data.x_control, data.records(), data.records(control=True),
                data.pre, run.profile, p.seed, run.pool) for t in run.release.tables
                if p.privacy_attacks}
            run.attacks = {k: f.result() for k, f in futures.items()}

    def judge(self, run: ReleaseRun) -> Judged:
        """The four policy quantities per table (``policy.measure_policy``), what each must
        cover here, and GROUP_ENCODED's cross-validated headline score."""
        from cloakflow.tasks.evaluation.learners import HEADLINE
        from cloakflow.tasks.privacy import policy as pol

        profile, data = run.profile, run.data
        measured, covered = pol.measure_policy(run.attacks, profile)
        expected = pol.expected_coverage(profile, pol.attribute_kinds(data.pre),
                                         list(run.models), len(data.x_control))
        headline = f"test_{HEADLINE[profile.target.kind]}"
        return Judged(measured, limits_of(profile, "codes").model_dump(), expected,
                      (f"GROUP_ENCODED {headline}",
                       run.evaluation["cv"]["GROUP_ENCODED"]["mean"].get(headline)),
                      covered=covered, unmeasured=pol.not_measured(measured, expected))

    def render(self, run: ReleaseRun, outcome) -> str:
        """The privacy report, logged to MLflow and shown on the flow run's page."""
        from cloakflow.tasks.privacy.report import KNOWLEDGE, PrivacyReport, log_report
        from cloakflow.tasks.release.kinds import label_statement

        profile, p = run.profile, run.params
        run.report = PrivacyReport(
            dataset=profile.name, kind="codes", sensitive=profile.privacy.sensitive,
            identifiers=profile.identifiers, label=label_statement(profile.target, "codes"),
            known_fractions=profile.privacy.known_fractions, seed=p.seed,
            noise=code_noise(run).model_dump(), dp=run.budget[1],
            attacker_knowledge=KNOWLEDGE, releases=run.attacks, policy=outcome)
        summary = run.state["summary"] = log_report(run.parent, run.report)
        run.steps.markdown("privacy", profile.name, summary, "Privacy report of the release")
        return summary

    def package(self, run: ReleaseRun) -> Package:
        """The manifest, the tables with their rows in a secret random order (OS entropy; the
        permutation is kept in the MLflow run, the owner's copy, so ``cloakflow attack`` can
        align released rows with source rows), the report documents and README."""
        from cloakflow.tasks.release.publish import codes_documents

        manifest = _manifest(run)
        labels = run.data.train_frame.get_column(run.profile.target.column)
        order = secret_order(run, len(labels))
        frames = run.release.frames(labels, order)
        documents, readme = codes_documents(frames, manifest)
        page = (f"{run.evaluation['note']}\n\nPrivacy verdict: **{run.verdict}**.\n\n"
                f"MLflow run `{run.parent}`.\n\n> {run.release.statement}\n")
        return Package(frames, manifest.to_json(), documents, readme, page)

    def outcome(self, run: ReleaseRun) -> FlowOutcome:
        return FlowOutcome(release=run.folder, mlflow_run_id=run.parent,
                           table_markdown=run.evaluation["markdown"],
                           privacy_summary=run.state["summary"])


def _trained(run: ReleaseRun):
    """(models, the steps reused from the cache): the whole-table and group autoencoders."""
    from cloakflow.models.autoencoder import AutoencoderConfig
    from cloakflow.tasks.training.fit import model_heads

    p, data = run.params, run.data
    return run.steps.train_models(
        data.x, data.columns, data.pre.group_slices(), AutoencoderConfig(
            epochs=p.epochs, batch_size=p.batch_size, validation=p.validation,
            architecture=p.architecture), p.seed, run.parent, run.budget[0],
        not p.use_cache, heads=model_heads(data.pre, p.architecture))


def _federation_models(run: ReleaseRun):
    """(models, [], the federation's section): nothing trains, the federation's global models
    encode the holder's rows."""
    from cloakflow.tasks.training.federation import models_from_federation

    p, data = run.params, run.data
    models, federation = models_from_federation(
        p.models_from, p.holder, data.pre, data.x, data.columns, data.pre.group_slices(),
        p.seed, p.control_fraction, source_sha=data.source_sha)
    print(f"encoded with the global models of federation {p.models_from} "
          f"({federation['rounds']} rounds, holders {', '.join(federation['holders'])})",
          flush=True)
    return models, [], federation


def _manifest(run: ReleaseRun):
    """The typed codes manifest (``tasks.release.manifest.build_manifest``)."""
    from cloakflow.tasks.release.manifest import Folds, Source, build_manifest

    p, data, ev = run.params, run.data, run.evaluation
    dp, dp_release = run.budget
    return build_manifest(
        release=run.release, profile=run.profile, params=p.model_dump(),
        source=Source(file=data.source_name, sha256=data.source_sha,
                      format=data.source_format), parent=run.parent,
        flow_run_id=run.flow_run_id, models={k: m.summary for k, m in run.models.items()},
        utility=ev["rows"], folds=Folds(scheme=p.fold_scheme, k=p.folds, forest=p.forest,
                                        note=ev["note"]),
        control_rows=len(data.x_control), report=run.report,
        reused=sorted(run.state["reused"] + ev["cached"]), dp_plan=dp, dp_release=dp_release,
        federation=run.state["federation"], duplicates=data.duplicates.to_dict())


def code_noise(run: ReleaseRun):
    """The profile's code noise, with the run's overrides."""
    p = run.params
    update = {k: v for k, v in (("multiplier", p.noise_multiplier),
                                ("clip_norm", p.clip_norm)) if v is not None}
    return run.profile.privacy.noise.model_copy(update=update)


def utility_note(run: ReleaseRun) -> str:
    """How the utility table was measured: target, folds, engine, rows, warnings."""
    p, target, data = run.params, run.profile.target, run.data
    return (f"target {target.column!r} ({target.kind}), {p.folds}-fold {p.fold_scheme} "
            f"cross-validation (seed {p.seed}), forest engine {p.forest}, {len(data.y)} "
            "training rows" + (f"; {data.utility_warning}" if data.utility_warning else "")
            + (f"; one-vs-rest: {target.positive!r} against every other value of "
               f"{target.column!r}" if target.one_vs_rest else ""))


def _class_names(run: ReleaseRun) -> list[str] | None:
    """A multiclass target's class names in the order of ``data.y``'s indices (assigned over
    the whole table, training and control rows: ``split.target_labels``); None otherwise."""
    if run.profile.target.kind != "multiclass":
        return None
    from cloakflow.tasks.data.split import class_names

    data = run.data
    return class_names(data.train_frame.vstack(data.control_frame)
                       .get_column(run.profile.target.column))


CODES = ReleaseKind(
    name="codes", command="cloakflow run", flow="cloakflow.flows.anonymize:anonymize",
    parameters="cloakflow.flows.parameters:RunParameters",
    evaluations=("utility", "importance"),
    attacks=("known_plaintext_inversion", "leaked_decoder", "reidentification", "membership",
             "dcr", "anonymeter"),
    statement=PSEUDONYMISATION_STATEMENT, label_in_clear=True,
    holder_release="codes release with the global models",
    holder_note="A holder's own codes release publishes one row per training and control row, "
                "so its row count is public there.",
    stages=CodesStages(), run_name="anonymize", limits=CodesLimits)
