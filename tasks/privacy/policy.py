"""The release policy: the four measured quantities per released table, the limits they are
judged against, and the one gate decision (``policy_outcome``) the flow and ``cloakflow attack``
share."""

from __future__ import annotations

from cloakflow.tasks.data.profile import DatasetProfile
from cloakflow.tasks.privacy.attacks import POLICY_FRACTION, REGRESSORS, strongest

NOT_ATTACKED = ("no privacy attacks were run (--skip-attacks, privacy_attacks=False): the "
                "policy cannot be checked")


def best_inversion(section: dict, fraction: float = POLICY_FRACTION) -> dict[str, dict]:
    """Per attribute, the stronger regressor's result at ``fraction``."""
    run = section["known_plaintext_inversion"][str(fraction)]
    return strongest({r: run[r] for r in REGRESSORS})


def protected_attributes(profile: DatasetProfile) -> list[str]:
    """The attributes the inversion limits protect: the profile's ``privacy.sensitive``, or
    every feature when none is declared (an undeclared attribute is not a safe one). A sensitive
    target is left out: a codes release publishes the label column beside the codes."""
    sensitive = [c for c in profile.privacy.sensitive if c != profile.target.column]
    return sensitive or list(profile.features)


def measure_policy(releases: dict[str, dict],
                   profile: DatasetProfile) -> tuple[dict[str, dict], dict[str, list[str]]]:
    """The policy's four quantities per released table (the worst case over attributes and
    models), and what each limit covered.

    Membership inference is read two-sided: a loss that separates members from non-members in
    either direction reveals membership, so the figure is max(AUC, 1 - AUC). A quantity with
    nothing to measure it on is None ("not measured"), never 0.

    Returns:
        (table -> limit -> value or None, limit -> the attributes or models it covered)
    """
    protected = set(protected_attributes(profile))
    out: dict[str, dict] = {}
    covered: dict[str, list[str]] = {}
    for name, sec in releases.items():
        best = best_inversion(sec)
        cats = {a: s["gain"] for a, s in best.items() if a in protected
                and s["kind"] == "categorical"}
        nums = {a: s["r2"] for a, s in best.items() if a in protected and s["kind"] == "numeric"}
        membership = {m: max(r["auc"], 1 - r["auc"]) for m, r in sec["membership"].items()}
        reid = sec["reidentification"]
        qis = reid.get("quasi_identifiers", [])
        out[name] = {
            "max_inversion_gain": max(cats.values()) if cats else None,
            "max_inversion_r2": max(nums.values()) if nums else None,
            "max_membership_auc": max(membership.values()) if membership else None,
            "max_reidentification": reid["linked"] if qis else None,
        }
        for key, names in (("max_inversion_gain", cats), ("max_inversion_r2", nums),
                           ("max_membership_auc", membership), ("max_reidentification", qis)):
            covered.setdefault(key, [])
            covered[key] += [n for n in names if n not in covered[key]]
    return out, covered


# what each limit would cover, to tell "nothing of its kind exists" from "not measured"
_KIND = {"max_inversion_gain": "categorical", "max_inversion_r2": "numeric"}


def attribute_kinds(pre) -> dict[str, str]:
    """Attribute -> ``numeric`` or ``categorical``, from a fitted ``TablePreprocessor``."""
    return {spec.name: spec.family for spec, _, _ in pre.column_blocks()}


def expected_coverage(profile: DatasetProfile, kinds: dict[str, str], models: list[str],
                      control_rows: int) -> dict[str, list[str]]:
    """Per limit, what it must cover on this table: protected attributes of its kind
    (``kinds``: attribute -> ``numeric``/``categorical``), the models (when there are control
    rows to compare with), the quasi-identifiers."""
    protected = protected_attributes(profile)
    return {"max_inversion_gain": [a for a in protected if kinds.get(a) == "categorical"],
            "max_inversion_r2": [a for a in protected if kinds.get(a) == "numeric"],
            "max_membership_auc": list(models) if control_rows else [],
            "max_reidentification": list(profile.quasi_identifiers)}


def judge(measured: dict[str, dict], limits, expected: dict[str, list[str]] | None = None,
          missing: str | None = None) -> list[str]:
    """Every limit a release crosses, as readable sentences (empty when the limits hold).

    ``limits``: limit name -> bound (a kind's limits, ``kinds.limits_of``).
    A limit that measured nothing counts as crossed when something it should cover exists
    (``expected``; None: everything should be measured); when nothing of its kind exists on
    the table it is not judged. ``missing``: why a value is absent, for the sentence (default:
    what it should have covered).
    """
    crossed = []
    for name, values in measured.items():
        for key, value in values.items():
            limit = limits[key]
            if limit is None:  # a limit the profile does not set (reported, not judged)
                continue
            if value is None:
                if expected is None or expected.get(key):
                    what = ", ".join((expected or {}).get(key, [])) or "its attributes"
                    crossed.append(f"{name}: {key} not measured ({missing})" if missing else
                                   f"{name}: {key} not measured although {what} should be "
                                   "covered")
            elif value > limit:
                crossed.append(f"{name}: {key} = {value:.4f} exceeds the limit {limit}")
    return crossed


def utility_crossed(limit: float | None, what: str, value: float | None) -> list[str]:
    """The kind's ``min_utility`` limit, judged on ``value`` (``what`` names the figure): a
    readable sentence when crossed or, with a limit set, not measured; empty otherwise."""
    if limit is None:
        return []
    if value is None:
        return [f"utility: {what} not measured, the limit min_utility {limit} cannot be checked"]
    return [f"utility: {what} = {value:.4f} is below the limit min_utility {limit}"] \
        if value < limit else []


def not_measured(measured: dict[str, dict], expected: dict[str, list[str]]) -> list[str]:
    """The limits that had nothing of their kind to measure on this table."""
    keys = sorted({k for values in measured.values() for k, v in values.items()
                   if v is None and not expected.get(k)})
    why = {"max_inversion_gain": "no protected categorical attribute",
           "max_inversion_r2": "no protected numeric attribute",
           "max_membership_auc": "no control rows to compare members with",
           "max_reidentification": "no quasi-identifiers declared"}
    return [f"{k}: not measured ({why[k]})" for k in keys]


class PolicyViolation(RuntimeError):
    """A release crossed the profile's privacy policy and was not published."""

    exit_code = 3  # the command line's exit status
    headline = "RELEASE BLOCKED by the privacy policy, nothing was published."

    def __init__(self, crossed: list[str], summary: str, mlflow_run_id: str | None = None):
        self.crossed, self.summary, self.mlflow_run_id = crossed, summary, mlflow_run_id
        where = (f"\nThe whole report is in MLflow run {mlflow_run_id} (`make ui`, or "
                 "--verbose to print it here)." if mlflow_run_id else "")
        super().__init__("the release crosses the privacy policy:\n  - " + "\n  - ".join(crossed)
                         + where)


def policy_outcome(releases: dict[str, dict], profile: DatasetProfile, attacked: bool,
                   accept_risk: str | None, expected: dict[str, list[str]] | None = None,
                   utility: tuple[str, float | None] | None = None):
    """The gate of a codes release: measure (``measure_policy``), then :func:`decide`. Not
    attacked counts as crossed, and so does a limit that measured nothing although something
    of its kind exists (``expected``, from ``expected_coverage``); crossed is ``accepted``
    with a reason on record, else ``blocked``. ``utility``: (what, value) of the release's
    headline utility, judged against ``min_utility`` (``utility_crossed``); None: not judged
    (an attack rerun)."""
    from cloakflow.tasks.release.kinds import limits_of

    measured, covered = measure_policy(releases, profile)
    return decide(measured, limits_of(profile, "codes").model_dump(), attacked, accept_risk,
                  expected, utility, covered=covered,
                  unmeasured=not_measured(measured, expected or {}))


def decide(measured: dict[str, dict], limits: dict[str, float | None], attacked: bool,
           accept_risk: str | None,
           expected: dict[str, list[str]] | None = None,
           utility: tuple[str, float | None] | None = None, missing: str | None = None,
           covered: dict[str, list[str]] | None = None, unmeasured: list[str] | None = None):
    """The one gate decision of every release kind: ``measured`` (table -> limit -> value)
    judged against ``limits`` (the kind's limits, ``kinds.limits_of``: :func:`judge`, with
    ``expected`` and ``missing``), not attacked counted as crossed, the headline ``utility``
    against the limits' ``min_utility``; crossed is ``accepted`` with ``accept_risk`` on
    record, else ``blocked``.

    Returns:
        ``report.PolicyOutcome`` (the limits that are set).
    """
    from cloakflow.tasks.privacy.report import PolicyOutcome

    crossed = judge(measured, limits, expected, missing) if attacked else [NOT_ATTACKED]
    if utility is not None:
        crossed += utility_crossed(limits.get("min_utility"), *utility)
    verdict = "pass" if not crossed else ("accepted" if accept_risk else "blocked")
    shown = {k: v for k, v in limits.items() if v is not None}
    return PolicyOutcome(limits=shown, measured=measured, crossed=crossed, verdict=verdict,
                         accepted_risk=accept_risk if crossed else None,
                         covered=covered or {}, not_measured=unmeasured or [])
