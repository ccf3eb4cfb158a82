"""The ``desensitized`` release kind: real rows with the sensitive columns removed and their
signal taken out of the other columns by an adversarially trained privatizer
(``models.privatizer``), one released row per training row.

Its stages (``DesensitizedStages``) run in the one pipeline (``flows/release.py``): prepare
the table (the synthesizers' encoding: target, missing states, discrete levels, decoded
values snapped to training values), resolve the columns' roles (``--sensitive``), train the
privatizer against its adversary, privatize the training rows, measure utility kept and the
distance moved, attack them with fresh attackers and re-identification, judge, publish
``desensitized.parquet`` (rows in a secret order). Never DP: the rows derive from real rows.
"""

from __future__ import annotations

import json

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from cloakflow.tasks import console, tracking
from cloakflow.tasks.release import desensitized as des
from cloakflow.tasks.release.kinds import (
    Judged,
    Package,
    ReleaseKind,
    ReleaseRun,
    gate_record,
    log_report,
    min_utility,
    secret_order,
)


class DesensitizedLimits(BaseModel):
    """The policy limits of a desensitized release (``privacy.policy.desensitized`` in the
    profile), each compared with a measurement on the released rows."""

    model_config = ConfigDict(extra="forbid")

    max_inference_advantage: float = Field(
        0.02, ge=0, le=0.5, description="largest two-sided ROC AUC minus 0.5 of a fresh "
                                        "attacker inferring a sensitive column from the "
                                        "release (any attacker, any known share)")
    max_gain_over_imputation: float = Field(
        0.01, ge=-0.5, le=0.5, description="the strongest fresh attacker's AUC on the release "
                                           "minus the strongest on the real non-sensitive "
                                           "columns (0: leaks no more than dropping the "
                                           "sensitive columns; 0.01: the measurement's noise "
                                           "on a few thousand rows)")
    max_reidentification: float | None = Field(
        None, ge=0, le=1, description="largest share of targets linked to their own released "
                                      "row by their quasi-identifiers; null: reported, not "
                                      "judged")
    min_utility: float | None = min_utility("the forest trained on the release")


class DesensitizeOutcome(BaseModel):
    """What a desensitize run returns: the release folder and the report."""

    release: str
    mlflow_run_id: str
    report_markdown: str
    verdict: str


def train_privatizer(x: np.ndarray, config, seed: int, parent: str):
    """Train the privatizer against its adversary, printing each epoch and logging both
    losses to the MLflow run; returns its weights, log and health
    (``models.privatizer.PrivatizerWeights``)."""
    from cloakflow.models.privatizer import train_privatizer as fit

    def on_epoch(epoch: int, m: dict) -> None:
        console.epoch(epoch, f"privatizer epoch {epoch}/{config.epochs}: adversary "
                             f"{m['adversary']:.3f} nats, privatizer {m['privatizer']:.3f}"
                      + (f", fresh adversary {m['fresh_adversary']:.3f}"
                         if "fresh_adversary" in m else ""), last=config.epochs)
        tracking.log_metrics(parent, {f"privatizer.{k}_loss": v for k, v in m.items()
                                      if np.isfinite(v)}, step=epoch)

    return fit(x, config, seed=seed, on_epoch=on_epoch)


class DesensitizedStages:
    """The pipeline stages of a desensitized release (``tasks.release.kinds.Stages``)."""

    def resolve(self, params):
        return params

    def check(self, params, profile, where: str) -> None:
        """``--sensitive`` against the profile, before anything runs (``where``: the
        profile's file or name)."""
        des.check_sensitive(profile, params.sensitive, where)

    def pooled(self, run: ReleaseRun) -> bool:
        return False

    def prepare(self, run: ReleaseRun) -> None:
        """The table with the synthesizers' encoding, and the columns' roles."""
        from cloakflow.tasks.data.preprocess import DISCRETE_LEVELS

        p = run.params
        data = run.data = run.steps.prepare(
            run.profile, p.input_path, p.control_fraction, p.seed, run.parent, run.timings,
            numeric="quantile", options={"with_target": True, "missing_state": True,
                                         "discrete_levels": DISCRETE_LEVELS,
                                         "value_support": True})
        roles = run.state["roles"] = des.roles(data.pre, p.sensitive, data.source_name)
        console.step(f"desensitizing {', '.join(roles.sensitive_names)}: "
                     f"{len(roles.released)} columns regenerated, "
                     f"{data.pre.profile.target.column!r} kept in clear")

    def budget(self, run: ReleaseRun) -> None:
        run.budget = None  # never DP

    def train(self, run: ReleaseRun) -> None:
        from cloakflow.models.privatizer import PrivatizerConfig

        p, data, roles = run.params, run.data, run.state["roles"]
        x = data.x
        shares = tuple(tuple(float(v) for v in x[:, a:b].sum(axis=0) + 1e-9)
                       for a, b in (roles.blocks[i] for i in roles.sensitive))
        config = run.state["config"] = PrivatizerConfig(
            heads=data.pre.heads(), sensitive=roles.sensitive, kept=roles.kept, shares=shares,
            distortion=p.distortion, epochs=p.epochs, batch_size=p.batch_size,
            column_names=tuple(s.name for s in data.pre.specs))
        with run.timings("train"):
            run.models = run.steps.task(train_privatizer, "train-privatizer",
                                        "train[privatizer]")(x, config, p.seed,
                                                             run.parent).result()

    def build(self, run: ReleaseRun) -> None:
        """Privatize every training row; the published values encoded back for the
        measurements."""
        data, st = run.data, run.state
        with run.timings("privatize"):
            rows, st["distortion"] = run.models.privatizer.release(
                data.x, np.random.default_rng([run.params.seed, 1]))
            run.release = des.released_frame(data.pre, rows, data.train_frame, st["roles"])
            full = run.release.with_columns(data.train_frame.select(
                list(st["roles"].sensitive_names)))
            st["x_released"] = data.pre.transform(full, "desensitized rows", unseen="ignore")
        console.step(f"privatized {run.release.height} rows (mean distortion "
                     f"{float(np.mean(st['distortion'])):.3f}, budget {run.params.distortion:g})")

    def _warn(self, run: ReleaseRun) -> None:
        for line in des.warnings(run.evaluation, run.params.distortion):
            console.warn(line)

    def evaluate(self, run: ReleaseRun) -> None:
        data, st = run.data, run.state
        with run.timings("evaluate"):
            evaluate = run.steps.task(des.evaluate, "evaluate-desensitized",
                                      "evaluate[desensitized]")
            run.evaluation = evaluate(
                data.pre, run.profile, st["roles"], x_train=data.x, x_released=st["x_released"],
                x_control=data.x_control, train=data.train_frame, released=run.release,
                distortion=st["distortion"], seed=run.params.seed,
                attacks=run.params.privacy_attacks)
        self._warn(run)

    def attack(self, run: ReleaseRun) -> None:
        """The fresh attackers ran with the evaluation (one task: they read the same rows)."""
        run.attacks = {k: run.evaluation[k] for k in ("inference", "reidentification",
                                                      "linkage") if k in run.evaluation}

    def judge(self, run: ReleaseRun) -> Judged:
        return des.judged(run.evaluation, run.profile, run.state["roles"].sensitive_names)

    def render(self, run: ReleaseRun, outcome) -> str:
        st = run.state
        gate = st["gate"] = gate_record(outcome, "desensitized")
        report = st["report"] = des.report_markdown(
            run.profile.name, run.evaluation, gate, rows=run.release.height,
            sensitive=st["roles"].sensitive_names, distortion=run.params.distortion)
        log_report(run, report, gate, des.report_metrics(run.evaluation, gate),
                   "desensitized-report", "Desensitized release report")
        return report

    def package(self, run: ReleaseRun) -> Package:
        """The privatizer's configuration to MLflow, the manifest, the report, the README;
        rows in a secret order."""
        p, st, data = run.params, run.state, run.data
        tracking.log_text(run.parent, json.dumps(st["config"].to_dict(), default=str),
                          "model/privatizer_config.json")
        frame = run.release[secret_order(run, run.release.height)]
        manifest = des.manifest(profile=run.profile, params=p.model_dump(), data=data,
                                parent=run.parent, flow_run_id=run.flow_run_id, frame=frame,
                                config=st["config"], result=run.models,
                                evaluation=run.evaluation, gate=st["gate"],
                                sensitive=st["roles"].sensitive_names)
        from cloakflow.tasks.release.publish import folder_readme

        readme = folder_readme(
            f"Desensitized release `{run.parent}` of `{run.profile.name}`",
            {"desensitized": frame},
            {"report.md": "the data owner's report: utility kept, fresh attackers, distance "
                          "moved, re-identification, verdict"},
            manifest["privacy"]["statement"], st["gate"]["verdict"], None,
            {"crossed": st["gate"]["crossed"], "accepted_risk": st["gate"]["accepted_risk"]},
            f"Rows: {frame.height} real training rows, each privatized; the sensitive columns "
            f"{', '.join(st['roles'].sensitive_names)} are not published.")
        return Package({"desensitized": frame}, manifest, {"report.md": st["report"]}, readme,
                       st["report"])

    def outcome(self, run: ReleaseRun) -> DesensitizeOutcome:
        return DesensitizeOutcome(release=run.folder, mlflow_run_id=run.parent,
                                  report_markdown=run.state["report"], verdict=run.verdict)


DESENSITIZED = ReleaseKind(
    name="desensitized", command="cloakflow desensitize",
    flow="cloakflow.flows.desensitize:desensitize",
    parameters="cloakflow.flows.parameters:DesensitizeParameters",
    evaluations=("utility_kept", "distance_moved"),
    attacks=("attribute_inference", "reidentification", "linkage"),
    statement=des.STATEMENT, label_in_clear=True, min_control_fraction=0.05,
    stages=DesensitizedStages(), run_name="desensitize", limits=DesensitizedLimits)
