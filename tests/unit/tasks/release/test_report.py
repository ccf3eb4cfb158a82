"""The one report renderer (``tasks.release.report``): every kind's report starts with its
title and intro, then the same verdict section, then the kind's sections."""

from __future__ import annotations

from cloakflow.tasks.release.report import Section, policy_section, render


def test_the_verdict_section_tables_each_limit_per_released_table():
    section = policy_section(
        "accepted", ["ENCODED: max_inversion_gain = 0.3000 exceeds the limit 0.05"],
        {"ENCODED": {"max_inversion_gain": 0.3, "max_membership_auc": None},
         "GROUP_ENCODED": {"max_inversion_gain": 0.01, "max_membership_auc": 0.52}},
        {"max_inversion_gain": 0.05, "max_membership_auc": 0.6}, accepted_risk="public table",
        covered={"max_inversion_gain": ["owns"]}, not_measured=["max_inversion_r2: none"])
    text = render("Privacy report: tiny", ["intro line", ""], section,
                  [Section("ENCODED", ["attack figures"])], ["closing line"])
    lines = text.splitlines()
    assert lines[:4] == ["# Privacy report: tiny", "", "intro line", ""]
    assert lines[4:8] == ["## Verdict", "",
                          '**Policy verdict: accepted** (risk accepted on record: "public '
                          'table")', ""]
    assert "| limit | ENCODED | GROUP_ENCODED | allowed |" in lines
    assert "| max_inversion_gain | 0.3000 | 0.0100 | 0.05 |" in lines
    assert "| max_membership_auc | — | 0.5200 | 0.6 |" in lines  # — : not measured
    assert "Limits and what they covered: max_inversion_gain <= 0.05 over owns." in lines
    assert "Not measured: max_inversion_r2: none." in lines
    assert lines.index("## ENCODED") > lines.index("## Verdict")
    assert text.endswith("closing line\n")


def test_a_clean_release_says_every_limit_holds():
    section = policy_section("pass", [], {"synthetic": {"max_dcr_share": 0.51}},
                             {"max_dcr_share": 0.6})
    assert section.lines[:3] == ["**Policy verdict: pass**", "", "- every limit holds"]
