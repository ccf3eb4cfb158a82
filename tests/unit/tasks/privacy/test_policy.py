"""One policy gate for the flow and for `cloakflow attack`: the same verdicts everywhere."""

from __future__ import annotations

from cloakflow.tasks.data.profile import DatasetProfile
from cloakflow.tasks.privacy.policy import NOT_ATTACKED, policy_outcome
from cloakflow.tasks.privacy.report import KNOWLEDGE, PrivacyReport
from tests.helpers import tiny_profile_dict


def _section(gain: float, auc: float, linked: float) -> dict:
    scores = {"owns": {"kind": "categorical", "accuracy": 0.7 + gain, "baseline": 0.7,
                       "gain": gain}}
    return {"known_plaintext_inversion": {"0.01": {"known_rows": 4, "linear": scores,
                                                   "mlp": scores}},
            "reidentification": {"linked": linked}, "membership": {"whole": {"auc": auc}}}


def _profile(**limits) -> DatasetProfile:
    d = tiny_profile_dict()
    d["privacy"]["policy"].update(limits)
    return DatasetProfile.model_validate(d)


def test_verdicts_pass_blocked_accepted_and_not_attacked():
    releases = {"ENCODED": _section(0.2, 0.55, 0.01)}
    loose = policy_outcome(releases, _profile(), attacked=True, accept_risk=None)
    assert loose.verdict == "pass" and loose.crossed == []
    assert loose.measured["ENCODED"]["max_inversion_gain"] == 0.2
    strict = _profile(max_inversion_gain=0.1)
    blocked = policy_outcome(releases, strict, attacked=True, accept_risk=None)
    assert blocked.verdict == "blocked"
    assert blocked.crossed == ["ENCODED: max_inversion_gain = 0.2000 exceeds the limit 0.1"]
    accepted = policy_outcome(releases, strict, attacked=True, accept_risk="public table")
    assert accepted.verdict == "accepted" and accepted.accepted_risk == "public table"
    # a limit that measured nothing is never a pass
    unchecked = policy_outcome({}, _profile(), attacked=False, accept_risk=None)
    assert unchecked.verdict == "blocked" and unchecked.crossed == [NOT_ATTACKED]


def test_report_round_trips_through_json_and_renders():
    profile = _profile(max_inversion_gain=0.1)
    releases = {"ENCODED": {**_section(0.2, 0.55, 0.01), "models": ["whole"], "noise": {}}}
    report = PrivacyReport(dataset="tiny", sensitive=["owns"], known_fractions=[0.01], seed=1,
                           attacker_knowledge=KNOWLEDGE, releases=releases,
                           policy=policy_outcome(releases, profile, True, "reason"))
    again = PrivacyReport.model_validate_json(report.model_dump_json())
    assert again == report and again.policy.verdict == "accepted"
