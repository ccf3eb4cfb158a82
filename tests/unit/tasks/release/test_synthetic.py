import numpy as np
import polars as pl

from cloakflow.tasks.data.profile import DatasetProfile
from cloakflow.tasks.release.synthetic import (
    Conditioning,
    associations,
    draw_conditions,
    judge,
    parse_condition,
    report_markdown,
)
from tests.helpers import tiny_profile_dict


def _evaluation(share=0.5, copies=0.02, control_copies=0.015, auc=0.45, tpr=0.01):
    return {"privacy": {
        "distance": {"dcr_share": share, "exact_copies": copies,
                     "exact_copies_control": control_copies},
        "membership": {"auc": auc, "tpr_at_1pct_fpr": tpr}}}


def test_the_gate_judges_synthetic_limits_two_sided_and_over_the_control_rate():
    profile = DatasetProfile.model_validate(tiny_profile_dict(privacy={
        "sensitive": ["owns"], "policy": {"max_dcr_share": 0.6, "max_membership_auc": 0.6,
                                          "max_exact_copy_excess": 0.01,
                                          "max_membership_tpr": 0.05}}))
    ok = judge(_evaluation(), profile, attacked=True, accept_risk=None)
    assert ok["verdict"] == "pass" and ok["crossed"] == []
    assert ok["measured"]["max_membership_auc"] == 0.55  # max(AUC, 1 - AUC)
    assert abs(ok["measured"]["max_exact_copy_excess"] - 0.005) < 1e-12
    bad = judge(_evaluation(share=0.7, auc=0.3, tpr=0.2), profile, True, None)
    assert bad["verdict"] == "blocked" and len(bad["crossed"]) == 3
    accepted = judge(_evaluation(share=0.7), profile, True, "owner's reason")
    assert accepted["verdict"] == "accepted" and accepted["accepted_risk"] == "owner's reason"
    unmeasured = judge({"privacy": {"distance": _evaluation()["privacy"]["distance"]}},
                       profile, True, None)
    assert any("not measured" in c for c in unmeasured["crossed"])
    assert judge({}, profile, attacked=False, accept_risk=None)["verdict"] == "blocked"


def test_detection_is_reported_unjudged_until_the_profile_sets_a_limit():
    told_apart = {**_evaluation(), "detection": {"auc": 0.9}}
    unset = DatasetProfile.model_validate(tiny_profile_dict())
    out = judge(told_apart, unset, attacked=True, accept_risk=None)
    assert out["measured"]["max_detection_auc"] == 0.9 and out["verdict"] == "pass"
    assert "max_detection_auc" not in out["limits"]
    limited = DatasetProfile.model_validate(tiny_profile_dict(privacy={
        "policy": {"synthetic": {"max_detection_auc": 0.75}}}))
    out = judge(told_apart, limited, attacked=True, accept_risk=None)
    assert out["verdict"] == "blocked"
    assert out["crossed"] == ["synthetic: max_detection_auc = 0.9000 exceeds the limit 0.75"]
    assert judge({**_evaluation(), "detection": {"auc": 0.6}}, limited, True,
                 None)["verdict"] == "pass"


def test_conditions_are_fixed_or_drawn_from_the_shares(tiny_frame):
    from cloakflow.tasks.data.preprocess import TablePreprocessor

    profile = DatasetProfile.model_validate(tiny_profile_dict())
    pre = TablePreprocessor(profile, with_target=True).fit(tiny_frame)
    target = parse_condition(None, pre, "tiny.csv")
    assert target.column == "label" and target.fixed is None
    fixed = parse_condition("city = east", pre, "tiny.csv")
    assert fixed.value == "east"
    rng = np.random.default_rng(0)
    assert set(draw_conditions(50, fixed, np.array([1.0]), rng)) == {fixed.fixed}
    drawn = draw_conditions(20_000, target, np.array([0.8, 0.2]), rng)
    assert abs(drawn.mean() - 0.2) < 0.01


def test_associations_are_cramers_v_of_the_discretised_columns():
    from cloakflow.tasks.evaluation.fidelity import Discretiser

    rng = np.random.default_rng(0)
    a = rng.choice(["x", "y", "z"], 3000)
    frame = pl.DataFrame({"a": a, "copy": a, "noise": rng.choice(["p", "q"], 3000)})
    v = associations(frame, Discretiser.fit(frame))
    assert v.shape == (3, 3) and np.allclose(np.diag(v), 1)
    assert v[0, 1] > 0.99 and v[0, 2] < 0.05


def test_the_report_shows_quality_notes_and_small_sample_warnings(tiny_frame):
    from cloakflow.tasks.evaluation.fidelity import fidelity_report

    profile = DatasetProfile.model_validate(tiny_profile_dict())
    train, control = tiny_frame[:300], tiny_frame[300:]
    evaluation = {
        "compared_with": "all training and control rows",
        "small_sample": "only 100 control rows (fewer than 200): read them as rough",
        "fidelity": fidelity_report(train, control, control),
        "tstr": {"skipped": "test"},
        "privacy": {**_evaluation()["privacy"],
                    "distance": {"dcr_share": 0.5, "dcr_ratio": 1.2, "exact_copies": 0.0,
                                 "exact_copies_control": 0.0, "nndr_median": 0.9},
                    "anonymeter": {"singling_out": {"risk": 0.06, "note": "22 of 300 queries "
                                                    "built: inconclusive"}, "inference": {}}}}
    evaluation["privacy"]["membership"].update(strongest="distance", members=10, non_members=10)
    gate = judge(evaluation, profile, attacked=True, accept_risk=None)
    text = report_markdown("tiny", evaluation, gate, rows=100, model="vae", dp=None,
                           condition=Conditioning("label", 0, ("no", "yes")))
    assert "| SDMetrics-style quality |" in text and "column pair trends" in text
    assert "**Unreliable figures:** only 100 control rows" in text
    assert "singling out: 22 of 300 queries built: inconclusive" in text
    assert "no inference attack" in text
    assert f"| max_dcr_share | {0.5:.4f} |" in text


def test_a_release_that_kept_little_of_the_labels_signal_says_so():
    from cloakflow.tasks.release.synthetic import weak_signal

    assert weak_signal({"metric": "roc_auc", "forest": {"tstr": 0.78, "trtr": 0.79}}) is None
    text = weak_signal({"metric": "r2", "forest": {"tstr": 0.02, "trtr": 0.79}})
    assert text.startswith("TSTR 0.020 keeps 3% of what training on the real rows gains")
    assert weak_signal({"metric": "roc_auc", "forest": {"tstr": 0.55, "trtr": 0.52}}) is None


def test_a_few_numbers_are_plotted_in_their_order_without_a_spurious_decimal(tmp_path):
    import polars as pl

    from cloakflow.tasks.release.synthetic import _in_order, _label, plot_columns

    ordered = _in_order(["3.0", "(null)", "1.0", "10.0", "2.5"])
    assert ordered == ["1.0", "2.5", "3.0", "10.0", "(null)"]
    assert [_label(v, True) for v in ordered] == ["1", "2.5", "3", "10", "(null)"]
    assert _label("a long category name", False) == "a long cat"
    frame = pl.DataFrame({"days_late": [0, 1, 2, 2, 7, None], "carrier": list("aabbcc")})
    assert plot_columns(frame, frame, str(tmp_path / "columns.png")).endswith("columns.png")
