"""The privacy gate of a release: the report of every attack, judged by the profile's policy,
logged, and the release refused when a limit is crossed without the owner's accepted risk."""

from __future__ import annotations

from collections.abc import Callable

from cloakflow.tasks import tracking
from cloakflow.tasks.data.profile import DatasetProfile
from cloakflow.tasks.privacy.policy import PolicyViolation, policy_outcome
from cloakflow.tasks.privacy.report import KNOWLEDGE, PrivacyReport, log_report
from cloakflow.tasks.release.kinds import label_statement


def gate(parent: str, kind: str, releases: dict[str, dict], profile: DatasetProfile, *,
         seed: int, noise: dict, dp: dict | None, attacked: bool, accept_risk: str | None,
         timings: dict[str, float],
         expected: dict[str, list[str]] | None = None,
         utility: tuple[str, float | None] | None = None,
         show: Callable[[str], None] | None = None) -> tuple[PrivacyReport, str]:
    """Build and log the privacy report of a release; returns (report, markdown summary).

    Args:
        releases: released table name -> its attack section (empty when not attacked).
        noise: the code-noise setting; dp: the release's DP section, if any.
        expected: per limit, what it must cover on this table
            (``policy.expected_coverage``); a limit that measured none of it is crossed.
        utility: (what, value) of the release's headline utility, judged against the
            profile's ``min_utility``.
        show: called with the markdown summary once it is logged, blocked or not (the flow
            run's page: ``tasks.privacy.steps.gate_release``).

    Raises:
        PolicyViolation: a limit is crossed (or nothing was attacked) and no risk was
            accepted; nothing may be published.
    """
    report = PrivacyReport(
        dataset=profile.name, kind=kind, sensitive=profile.privacy.sensitive,
        identifiers=profile.identifiers, label=label_statement(profile.target, kind),
        known_fractions=profile.privacy.known_fractions, seed=seed, noise=noise, dp=dp,
        attacker_knowledge=KNOWLEDGE, releases=releases,
        policy=policy_outcome(releases, profile, attacked, accept_risk, expected, utility))
    summary = log_report(parent, report)
    if show is not None:
        show(summary)
    if report.policy.verdict == "blocked":
        tracking.log_metrics(parent, {f"time.{k}": v for k, v in timings.items()})
        raise PolicyViolation(report.policy.crossed, summary)
    return report, summary
