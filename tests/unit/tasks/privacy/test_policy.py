"""One policy gate for the flow and for `cloakflow attack`: the same verdicts everywhere, limits
that say what they covered, a limit that measured nothing never a pass, and membership read
two-sided."""

from __future__ import annotations

from cloakflow.tasks.data.profile import DatasetProfile
from cloakflow.tasks.privacy.policy import NOT_ATTACKED, expected_coverage, policy_outcome
from cloakflow.tasks.privacy.report import KNOWLEDGE, PrivacyReport
from tests.helpers import tiny_profile_dict

KINDS = {"age": "numeric", "income": "numeric", "city": "categorical", "owns": "categorical"}


def _section(gain: float, auc: float, linked: float, r2: float = 0.1,
             city_gain: float = 0.0) -> dict:
    scores = {"owns": {"kind": "categorical", "accuracy": 0.7 + gain, "baseline": 0.7,
                       "gain": gain},
              "city": {"kind": "categorical", "accuracy": 0.3 + city_gain, "baseline": 0.3,
                       "gain": city_gain},
              "income": {"kind": "numeric", "r2": r2},
              "age": {"kind": "numeric", "r2": r2}}
    return {"known_plaintext_inversion": {"0.01": {"known_rows": 4, "linear": scores,
                                                   "mlp": scores}},
            "reidentification": {"linked": linked, "quasi_identifiers": ["age", "city"]},
            "membership": {"whole": {"auc": auc}}}


def _profile(sensitive=("owns",), **limits) -> DatasetProfile:
    d = tiny_profile_dict()
    d["privacy"]["policy"].update(limits)
    d["privacy"]["sensitive"] = list(sensitive)
    return DatasetProfile.model_validate(d)


def _expected(profile, control_rows=50):
    return expected_coverage(profile, KINDS, ["whole"], control_rows)


def test_verdicts_pass_blocked_accepted_and_not_attacked():
    releases = {"ENCODED": _section(0.2, 0.55, 0.01)}
    loose = _profile()
    passed = policy_outcome(releases, loose, True, None, _expected(loose))
    assert passed.verdict == "pass" and passed.crossed == []
    assert passed.measured["ENCODED"]["max_inversion_gain"] == 0.2
    # the numeric limit had no sensitive numeric to cover: not measured, said so, not judged
    assert passed.measured["ENCODED"]["max_inversion_r2"] is None
    assert passed.covered["max_inversion_gain"] == ["owns"]
    assert passed.not_measured == ["max_inversion_r2: not measured (no protected numeric "
                                   "attribute)"]
    strict = _profile(max_inversion_gain=0.1)
    blocked = policy_outcome(releases, strict, True, None, _expected(strict))
    assert blocked.verdict == "blocked"
    assert blocked.crossed == ["ENCODED: max_inversion_gain = 0.2000 exceeds the limit 0.1"]
    accepted = policy_outcome(releases, strict, True, "public table", _expected(strict))
    assert accepted.verdict == "accepted" and accepted.accepted_risk == "public table"
    # a limit that measured nothing is never a pass
    unchecked = policy_outcome({}, _profile(), attacked=False, accept_risk=None)
    assert unchecked.verdict == "blocked" and unchecked.crossed == [NOT_ATTACKED]


def test_membership_far_below_chance_crosses_the_limit():
    profile = _profile(max_membership_auc=0.6)
    outcome = policy_outcome({"ENCODED": _section(0.0, 0.02, 0.0)}, profile, True, None,
                             _expected(profile))
    assert outcome.measured["ENCODED"]["max_membership_auc"] == 0.98
    assert outcome.verdict == "blocked"
    assert outcome.crossed == ["ENCODED: max_membership_auc = 0.9800 exceeds the limit 0.6"]


def test_undeclared_sensitive_attributes_are_all_covered():
    # no privacy.sensitive: a leak of any feature counts, categorical and numeric alike
    profile = _profile(sensitive=(), max_inversion_gain=0.05, max_inversion_r2=0.25)
    releases = {"ENCODED": _section(0.0, 0.5, 0.0, r2=0.9, city_gain=0.3)}
    outcome = policy_outcome(releases, profile, True, None, _expected(profile))
    assert sorted(outcome.covered["max_inversion_gain"]) == ["city", "owns"]
    assert sorted(outcome.covered["max_inversion_r2"]) == ["age", "income"]
    assert outcome.verdict == "blocked" and len(outcome.crossed) == 2


def test_no_control_rows_means_membership_not_measured_not_passed():
    profile = _profile()
    section = {**_section(0.0, 0.5, 0.0), "membership": {}}
    # models exist but no control rows: an empty measurement is crossed, never 0.5
    crossed = policy_outcome({"ENCODED": section}, profile, True, None,
                             expected_coverage(profile, KINDS, ["whole"], control_rows=50))
    assert crossed.verdict == "blocked"
    assert crossed.crossed == ["ENCODED: max_membership_auc not measured although whole "
                               "should be covered"]


def test_report_round_trips_through_json():
    profile = _profile(max_inversion_gain=0.1)
    releases = {"ENCODED": {**_section(0.2, 0.55, 0.01), "models": ["whole"], "noise": {}}}
    report = PrivacyReport(dataset="tiny", sensitive=["owns"], identifiers=["customer_id"],
                           known_fractions=[0.01], seed=1,
                           attacker_knowledge=KNOWLEDGE, releases=releases,
                           policy=policy_outcome(releases, profile, True, "reason",
                                                 _expected(profile)))
    again = PrivacyReport.model_validate_json(report.model_dump_json())
    assert again == report and again.policy.verdict == "accepted"
    assert again.identifiers == ["customer_id"]
    assert again.policy.measured["ENCODED"]["max_inversion_r2"] is None


def test_min_utility_is_judged_on_the_kind_headline_and_not_measured_is_crossed():
    from cloakflow.tasks.data.profile import DatasetProfile
    from cloakflow.tasks.privacy.policy import utility_crossed
    from cloakflow.tasks.release.kinds import limits_of
    from cloakflow.tasks.release.synthetic import judge
    from tests.helpers import tiny_profile_dict

    d = tiny_profile_dict()
    codes = limits_of(DatasetProfile.model_validate(d), "codes")
    assert codes.min_utility is None and utility_crossed(codes.min_utility, "x", 0.1) == []
    d["privacy"]["policy"]["min_utility"] = 0.7
    profile = DatasetProfile.model_validate(d)
    limit = limits_of(profile, "codes").min_utility
    assert limit == limits_of(profile, "synthetic").min_utility == 0.7  # flat: every kind
    assert utility_crossed(limit, "GROUP_ENCODED test_r2", 0.65) == [
        "utility: GROUP_ENCODED test_r2 = 0.6500 is below the limit min_utility 0.7"]
    assert utility_crossed(limit, "GROUP_ENCODED test_r2", 0.71) == []
    assert "not measured" in utility_crossed(limit, "TSTR", None)[0]
    weak = {"tstr": {"metric": "roc_auc_ovr", "forest": {"tstr": 0.55, "trtr": 0.9}}}
    gate = judge(weak, profile, attacked=False, accept_risk=None)
    assert gate["verdict"] == "blocked" and gate["limits"]["min_utility"] == 0.7
    assert "utility: TSTR forest roc_auc_ovr = 0.5500 is below the limit min_utility 0.7" \
        in gate["crossed"]


def test_one_decision_for_every_kind_reads_limits_missing_values_and_utility():
    from cloakflow.tasks.privacy.policy import decide

    measured = {"rows": {"max_a": 0.2, "max_b": None}}
    limits = {"max_a": 0.1, "max_b": 0.5, "min_utility": 0.7}
    out = decide(measured, limits, True, None, expected=None,
                 utility=("TSTR", 0.65), missing="too few control rows")
    assert out.verdict == "blocked" and out.crossed == [
        "rows: max_a = 0.2000 exceeds the limit 0.1",
        "rows: max_b not measured (too few control rows)",
        "utility: TSTR = 0.6500 is below the limit min_utility 0.7"]
    assert out.limits == {"max_a": 0.1, "max_b": 0.5, "min_utility": 0.7}
    # a limit with nothing of its kind to cover is not judged; a crossed one can be accepted
    quiet = decide(measured, limits, True, "owner's reason", expected={"max_b": []},
                   utility=("TSTR", 0.9))
    assert quiet.crossed == ["rows: max_a = 0.2000 exceeds the limit 0.1"]
    assert quiet.verdict == "accepted" and quiet.accepted_risk == "owner's reason"
    unattacked = decide({}, limits, False, None, utility=("TSTR", 0.9))
    assert unattacked.crossed == [NOT_ATTACKED] and unattacked.verdict == "blocked"
    clean = decide({"rows": {"max_a": 0.05}}, limits, True, "unused", None,
                   ("TSTR", 0.9))
    assert clean.verdict == "pass" and clean.accepted_risk is None


def test_limits_per_kind_sections_win_over_flat_and_bad_ones_are_named():
    import pytest

    from cloakflow.tasks.data.profile import ProfileError
    from cloakflow.tasks.release.kinds import limits_of

    d = tiny_profile_dict()
    d["privacy"]["policy"] = {"max_membership_auc": 0.7,  # flat: codes and synthetic have it
                              "codes": {"max_inversion_gain": 0.2},
                              "synthetic": {"max_membership_auc": 0.55}}
    profile = DatasetProfile.model_validate(d)
    codes, synthetic = limits_of(profile, "codes"), limits_of(profile, "synthetic")
    assert (codes.max_inversion_gain, codes.max_membership_auc) == (0.2, 0.7)
    assert synthetic.max_membership_auc == 0.55 and synthetic.max_dcr_share == 0.6  # default
    for policy, message in (({"gan": {"max_dcr_share": 0.6}}, r"\['gan'\] are not release kinds"),
                            ({"max_dcr_shares": 0.6}, r"no release kind has the limits"),
                            ({"codes": {"max_inversion_gain": 2}},
                             r"privacy.policy.codes.max_inversion_gain: .*less than or equal")):
        d["privacy"]["policy"] = policy
        with pytest.raises(ProfileError, match=message):
            limits_of(DatasetProfile.model_validate(d), "codes")
    d["privacy"]["policy"] = {"codes": {"max_linkage_risk": 0.1}}
    with pytest.raises(ProfileError, match=r"kind 'codes' has no limit 'max_linkage_risk'; "
                                           r"its limits: \['max_inversion_gain'"):
        limits_of(DatasetProfile.model_validate(d), "codes")
    # every kind's section is checked before a run of any kind: a broken synthetic limit
    # stops a codes run too, naming the profile's file
    from cloakflow.tasks.release.kinds import check_policy

    d["privacy"]["policy"] = {"synthetic": {"max_dcr_share": 5}}
    profile = DatasetProfile.model_validate(d)
    assert limits_of(profile, "codes").max_inversion_gain == 0.05
    with pytest.raises(ProfileError, match=r"^tiny.yaml: .*synthetic.max_dcr_share"):
        check_policy(profile, "tiny.yaml")
    d["privacy"]["policy"] = {"codes": "strict"}
    with pytest.raises(ValueError, match="a release kind's section a mapping"):
        DatasetProfile.model_validate(d)
