"""The codes release's privacy report (``tasks.privacy.report``): every attack figure beside its
baseline, rendered by the one report renderer with the same verdict section as every kind."""

from __future__ import annotations

from cloakflow.tasks.data.profile import DatasetProfile
from cloakflow.tasks.privacy.policy import expected_coverage, policy_outcome
from cloakflow.tasks.privacy.report import KNOWLEDGE, PrivacyReport, summary_markdown
from tests.helpers import tiny_profile_dict


def _section() -> dict:
    cat = {"kind": "categorical", "accuracy": 0.9, "baseline": 0.7, "gain": 0.2}
    num = {"kind": "numeric", "r2": 0.8, "mae": 3.0}
    scores = {"owns": cat, "city": {**cat, "accuracy": 0.4, "baseline": 0.3, "gain": 0.1},
              "income": num, "age": num}
    run = {"known_rows": 4, "linear": scores, "mlp": scores}
    dist = {"median": 0.1, "p5": 0.01, "exact_match_share": 0.0}
    return {"models": ["whole"], "noise": {"whole": {"multiplier": 0.0}},
            "known_plaintext_inversion": {"0.001": run, "0.01": run, "0.1": run},
            "leaked_decoder": scores,
            "reidentification": {"linked": 0.02, "quasi_identifiers": ["age", "city"],
                                 "unique_on_quasi_identifiers": 0.5, "regressor": "linear",
                                 "baseline": 0.001},
            "membership": {"whole": {"auc": 0.55, "tpr_at_1pct_fpr": 0.02}},
            "dcr": {"release_to_train": dist, "control_to_train": dist},
            "anonymeter": {"attacks": 30, "singling_out": {"risk": 0.0, "ci": [0.0, 0.1]},
                           "inference": {"owns": {"risk": 0.1, "ci": [0.0, 0.2],
                                                  "note": "no better than the baseline"}},
                           "attacks_note": "30 attacks per evaluator: capped"}}


def test_the_codes_report_puts_the_verdict_first_and_every_attack_after_it():
    d = tiny_profile_dict()
    d["privacy"]["policy"] = {"codes": {"max_inversion_gain": 0.05}}
    profile = DatasetProfile.model_validate(d)
    kinds = {"age": "numeric", "income": "numeric", "city": "categorical", "owns": "categorical"}
    releases = {"ENCODED": _section()}
    report = PrivacyReport(
        dataset="tiny", sensitive=["owns"], identifiers=["customer_id"], known_fractions=[
            0.001, 0.01, 0.1], seed=1, attacker_knowledge=KNOWLEDGE, releases=releases,
        policy=policy_outcome(releases, profile, True, "a reason",
                              expected_coverage(profile, kinds, ["whole"], 50)))
    text = summary_markdown(report)
    lines = text.splitlines()
    assert lines[0] == "# Privacy report: tiny"
    assert lines.index("## Verdict") < lines.index(
        "## ENCODED (models: whole; code noise: none)") < lines.index("## Attacker knowledge")
    assert '**Policy verdict: accepted** (risk accepted on record: "a reason")' in lines
    assert "- ENCODED: max_inversion_gain = 0.2000 exceeds the limit 0.05" in lines
    assert "| max_inversion_gain | 0.2000 | 0.05 |" in lines
    assert "| owns | 0.700 | 0.900 | 0.900 | 0.900 | 0.900 |" in lines  # baseline, p, leaked
    assert "inference of owns 0.100 [0.000, 0.200] (no better than the baseline)" in text
    assert "30 attacks per evaluator: capped." in text
    assert "customer_id" in text and text.endswith("unless noise is added.\n")
