"""The one release pipeline every release kind runs: prepare -> budget -> train -> build ->
evaluate -> attack -> gate -> publish, logged to one MLflow parent run.

A kind (``tasks/release/kinds/``) supplies the stages; this module supplies what is the same
for all of them: the profile and the MLflow run, the attack worker pool, the one gate
(``tasks.privacy.policy.decide``: nothing is published past a limit unless the owner accepts
the risk on record) and the one publish path (the ``publish`` task: atomic, retried once on
I/O errors). The entry flows ``anonymize`` (``cloakflow run``) and ``synthesize``
(``cloakflow synthesize``) are thin flows over :func:`run_release`; ``federate`` runs them per
holder.
"""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from cloakflow.tasks import console, runners, steps, tracking
from cloakflow.tasks.data import steps as data_steps
from cloakflow.tasks.data.profile import load_profile
from cloakflow.tasks.evaluation.steps import Evaluations
from cloakflow.tasks.privacy import steps as privacy_steps
from cloakflow.tasks.privacy.policy import PolicyViolation, decide
from cloakflow.tasks.release import kinds
from cloakflow.tasks.release import steps as release_steps
from cloakflow.tasks.release.kinds import ReleaseRun
from cloakflow.tasks.training import steps as training_steps


class PrefectSteps:
    """What a kind's stages reach as ``run.steps``: the Prefect tasks and artifacts of the
    domains (``tasks/*/steps.py``), and :meth:`task` for a kind's own long steps."""

    prepare = staticmethod(data_steps.prepare)
    train_models = staticmethod(training_steps.train_models)
    evaluations = Evaluations
    attack = staticmethod(privacy_steps.attack)  # Prefect tasks: not bound as methods
    publish = staticmethod(release_steps.publish)
    table = staticmethod(steps.table)
    markdown = staticmethod(steps.markdown)

    def __init__(self):
        self._tasks: dict = {}

    def task(self, fn, name: str, run_name: str | None = None):
        """``fn`` as a Prefect task named ``name``, its runs ``run_name`` (what it does, e.g.
        ``train[vae]``; not cached: its inputs are private rows)."""
        if name not in self._tasks:
            self._tasks[name] = task(fn, name=name, task_run_name=run_name or name,
                                     cache_policy=NO_CACHE)
        return self._tasks[name]


def run_release(kind_name: str, params):
    """Build, measure, gate and publish one release of the kind ``kind_name`` with the entry
    flow's ``params``; returns the kind's outcome (the release folder, the MLflow run, ...).

    Returns:
        The kind's outcome; for a release the policy blocked (nothing is published), the
        ``Blocked`` state (``blocked``): the entry flow ends in it and its caller gets the
        ``PolicyViolation``.

    Raises:
        Exception: the stages' own errors (bad input, DP plan, federation).
    """
    from prefect.runtime import flow_run

    kind = kinds.get(kind_name)
    stages = kind.stages
    params = stages.resolve(params)
    profile = load_profile(params.profile_path or params.dataset)
    kinds.check_policy(profile, params.profile_path)  # every kind's limits, before any step
    kinds.check_options(params, profile, params.profile_path)  # its options, the same
    params = params.model_copy(update={"dataset": profile.name})  # --profile names it
    tracking.configure()
    run = ReleaseRun(kind, params, profile, str(flow_run.id or "none"), PrefectSteps(),
                     tracking.Timings())
    tags = {"prefect.flow_run_id": run.flow_run_id, "cloakflow.dataset": profile.name,
            "cloakflow.kind": kind.name}
    try:
        with tracking.parent_run(profile.name, f"{kind.run_name}-{profile.name}", tags,
                                 params.model_dump()) as run.parent, runners.attack_workers(
                enabled=stages.pooled(run)) as run.pool:
            stages.prepare(run)
            stages.budget(run)
            stages.train(run)
            stages.build(run)
            stages.evaluate(run)
            stages.attack(run)
            gate(run)
            publish(run)
            tracking.finish_parent(run.parent, run.folder, run.timings)
    except PolicyViolation as exc:
        return blocked(exc)
    get_run_logger().info("release folder: %s", run.folder)
    return stages.outcome(run)


def blocked(exc: PolicyViolation):
    """The flow run's final state for a release the policy refused: type FAILED, named
    ``Blocked`` (not a crash), the crossed limits as its message. Calling the flow still
    raises the ``PolicyViolation`` (the CLI's exit 3; a federation's holder is recorded as
    blocked)."""
    from prefect.states import Failed

    return Failed(name="Blocked", data=exc,
                  message="blocked by the privacy policy: " + "; ".join(exc.crossed))


def gate(run: ReleaseRun) -> None:
    """The one gate: the kind's measurements judged by the profile's policy, the report
    rendered with the outcome; a blocked release raises ``PolicyViolation``."""
    j = run.judged = run.kind.stages.judge(run)
    outcome = decide(j.measured, j.limits, run.params.privacy_attacks, run.params.accept_risk,
                     j.expected, j.utility, j.missing, covered=j.covered,
                     unmeasured=j.unmeasured)
    run.verdict = outcome.verdict
    console.step(outcome.headline())
    tracking.set_tags(run.parent, {"cloakflow.privacy_verdict": outcome.verdict})
    summary = run.kind.stages.render(run, outcome)
    if outcome.verdict == "blocked":
        tracking.log_metrics(run.parent, {f"time.{k}": v for k, v in run.timings.items()})
        raise PolicyViolation(outcome.crossed, summary, run.parent)


def publish(run: ReleaseRun) -> None:
    """The one publish path: the kind's package written atomically (retried once on I/O
    errors), its manifest logged to MLflow and a summary on the flow run's page."""
    with run.timings("publish"):
        package = run.kind.stages.package(run)
        run.folder = run.steps.publish(run.params.out, run.profile.name, run.parent,
                                       package.tables, package.manifest, package.documents,
                                       package.readme)
        tracking.log_dict(run.parent, package.manifest, "release/manifest.json")
        steps.markdown("release", run.profile.name, f"# Release `{run.folder}`\n\n"
                       + package.page, f"Published {run.kind.name} release")


__all__ = ["run_release", "PrefectSteps", "PolicyViolation"]
