"""The release policy: the four measured quantities per released table, the limits they are
judged against, and the one gate decision (``policy_outcome``) the flow and ``cloakflow attack``
share."""

from __future__ import annotations

from cloakflow.tasks.data.profile import DatasetProfile, ReleasePolicy
from cloakflow.tasks.privacy.attacks import POLICY_FRACTION, REGRESSORS, strongest

NOT_ATTACKED = ("no privacy attacks were run (privacy_attacks=False): the policy cannot be "
                "checked")


def best_inversion(section: dict, fraction: float = POLICY_FRACTION) -> dict[str, dict]:
    """Per attribute, the stronger regressor's result at ``fraction``."""
    run = section["known_plaintext_inversion"][str(fraction)]
    return strongest({r: run[r] for r in REGRESSORS})


def measure_policy(releases: dict[str, dict], profile: DatasetProfile) -> dict[str, dict]:
    """The policy's four quantities, per release (the worst case over attributes and models)."""
    sensitive = set(profile.privacy.sensitive)
    out: dict[str, dict] = {}
    for name, sec in releases.items():
        best = best_inversion(sec)
        cats = [s["gain"] for a, s in best.items() if a in sensitive and s["kind"] ==
                "categorical"]
        nums = [s["r2"] for a, s in best.items() if a in sensitive and s["kind"] == "numeric"]
        reid = sec["reidentification"]
        out[name] = {
            "max_inversion_gain": max(cats, default=0.0),
            "max_inversion_r2": max(nums, default=0.0),
            "max_membership_auc": max((m["auc"] for m in sec["membership"].values()),
                                      default=0.5),
            "max_reidentification": reid["linked"],
        }
    return out


def judge(measured: dict[str, dict], policy: ReleasePolicy) -> list[str]:
    """Every limit a release crosses, as readable sentences (empty when the policy holds)."""
    crossed = []
    for name, values in measured.items():
        for key, value in values.items():
            limit = getattr(policy, key)
            if value > limit:
                crossed.append(f"{name}: {key} = {value:.4f} exceeds the limit {limit}")
    return crossed


class PolicyViolation(RuntimeError):
    """A release crossed the profile's privacy policy and was not published."""

    def __init__(self, crossed: list[str], summary: str):
        self.crossed, self.summary = crossed, summary
        super().__init__("the release crosses the privacy policy:\n  - " + "\n  - ".join(crossed))


def policy_outcome(releases: dict[str, dict], profile: DatasetProfile, attacked: bool,
                   accept_risk: str | None):
    """The gate: measure, judge, decide. Not attacked counts as crossed (a limit that measured
    nothing is never a pass); crossed is ``accepted`` with a reason on record, else
    ``blocked``."""
    from cloakflow.tasks.privacy.report import PolicyOutcome

    policy = profile.privacy.policy
    measured = measure_policy(releases, profile)
    crossed = judge(measured, policy) if attacked else [NOT_ATTACKED]
    verdict = "pass" if not crossed else ("accepted" if accept_risk else "blocked")
    return PolicyOutcome(limits=policy.model_dump(), measured=measured, crossed=crossed,
                         verdict=verdict, accepted_risk=accept_risk if crossed else None)
