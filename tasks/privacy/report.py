"""The privacy report of a release: a typed record (written to MLflow as JSON, read back by
``cloakflow attack`` and the benchmarks through ``PrivacyReport``), its one-page markdown
summary and its plot. Each number sits under the attack and attacker knowledge that produced it.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from cloakflow.tasks.plots import figure
from cloakflow.tasks.privacy.attacks.inversion import MLP_MAX_ITER
from cloakflow.tasks.privacy.policy import best_inversion
from cloakflow.tasks.release.report import Section, policy_section, render

Verdict = Literal["pass", "accepted", "blocked"]

KNOWLEDGE = {
    "known_plaintext_inversion": "holds the whole release plus a random share p of the training "
                                 "rows matched to their codes; fits codes -> scaled features "
                                 "(ridge regression, and an MLP with one hidden layer of 128) and "
                                 "reconstructs every other row",
    "leaked_decoder": "holds the whole release and the trained decoder(s)",
    "reidentification": "knows a target's true quasi-identifiers and holds the p = 1% inversion "
                        "of the whole release; links the target to the nearest reconstructed "
                        "row on the quasi-identifiers",
    "membership": "holds the trained autoencoder and a candidate row; says 'member' when the "
                  "row's reconstruction loss is below a threshold (training rows vs held-out "
                  "control rows)",
    "dcr": "decoded released rows (leaked decoder, snapped to valid source values) and control "
           "rows, each against its closest training row, in the preprocessed space (scaled "
           "numerics, one-hot categories), over all rows",
    "anonymeter": "anonymeter's singling-out, linkability and inference evaluators with the "
                  "leaked-decoder view as the released records, training rows as originals and "
                  "the held-out control rows as control",
}


class PolicyOutcome(BaseModel):
    """The gate's decision: the limits, the measured values, what was crossed and the verdict
    (``pass``: nothing crossed; ``accepted``: crossed or unchecked, published under the owner's
    recorded reason; ``blocked``: crossed or unchecked, not published)."""

    model_config = ConfigDict(extra="forbid")

    limits: dict[str, float]
    measured: dict[str, dict[str, float | None]]  # None: not measured
    crossed: list[str]
    verdict: Verdict
    accepted_risk: str | None = None
    covered: dict[str, list[str]] = Field(default_factory=dict)  # limit -> attributes/models
    not_measured: list[str] = Field(default_factory=list)

    def headline(self) -> str:
        """The verdict in one line (the quiet console's): how many limits were crossed, and
        whether the release is published."""
        n = len(self.crossed)
        crossed = f"{n} limit{'s' * (n != 1)} of the privacy policy crossed"
        if self.verdict == "pass":
            return "verdict: pass: every limit of the privacy policy holds"
        if self.verdict == "accepted":
            return (f"verdict: accepted: {crossed}, published with the risk accepted on record "
                    f"(\"{self.accepted_risk}\")")
        return f"verdict: blocked: {crossed}, nothing published"


class PrivacyReport(BaseModel):
    """Every attack result of a release and the policy outcome.

    ``releases`` maps a released table (``ENCODED``, ``GROUP_ENCODED``) to its attack section
    (``tasks.privacy.attack.attack_release``); ``dp`` is the release's DP section, if any.
    """

    model_config = ConfigDict(extra="forbid")

    dataset: str
    release: str | None = None  # the folder, when re-attacked after publishing
    kind: str = "codes"
    sensitive: list[str]
    identifiers: list[str] = Field(default_factory=list)  # kept out of features and release
    label: str = ""  # what the release says of its label column (kinds.label_statement)
    known_fractions: list[float]
    seed: int
    noise: dict[str, Any] | None = None
    dp: dict[str, Any] | None = None
    attacker_knowledge: dict[str, str] = Field(default_factory=lambda: dict(KNOWLEDGE))
    releases: dict[str, dict[str, Any]]
    policy: PolicyOutcome

    def to_json(self) -> dict:
        return self.model_dump(mode="json", exclude_unset=False)


def summary_markdown(report: PrivacyReport) -> str:
    """The one-page summary: every figure beside its attack and attacker knowledge (rendered
    by the one report renderer, ``tasks.release.report``)."""
    p = report.policy
    intro = []
    if report.label:
        intro += [report.label, ""]
    if report.identifiers:
        intro += ["Identifier columns, kept out of the features and the release: "
                  + ", ".join(report.identifiers) + ".", ""]
    intro += _dp_lines(report.dp)
    sections = [_release_section(name, sec, report.known_fractions)
                for name, sec in report.releases.items()]
    sections.append(Section("Attacker knowledge",
                            [f"- **{k}**: {v}" for k, v in KNOWLEDGE.items()]))
    return render(f"Privacy report: {report.dataset}", intro, policy_section(
        p.verdict, p.crossed, p.measured, p.limits, p.accepted_risk, p.covered,
        p.not_measured), sections, [
        "These are measurements of the attacks above, not a proof of anonymity. The codes "
        "are a deterministic function of each row unless noise is added."])


def _dp_lines(dp: dict | None) -> list[str]:
    """What a DP codes release's guarantee covers and does not, for the report's intro."""
    if not dp:
        return []
    bound = dp["membership_bound"]
    return [f"Differential privacy: all {len(dp['models'])} models trained with DP-SGD "
            f"({dp['design']} design) are together epsilon {dp['epsilon']:.3g}, delta "
            f"{dp['delta']:g} with respect to replacing one row (n public; PLD accountant). "
            f"This caps any membership attack on the models at AUC <= "
            f"{bound['auc_at_most']:.3f} and TPR <= {bound['tpr_at_1pct_fpr_at_most']:.3f}"
            " at 1% FPR (measured below). It does not bound the inversion of released codes: "
            "those are deterministic functions of their rows. This report is computed on "
            "private rows and is not covered by epsilon.", "",
            f"Preprocessing: {dp['preprocessing']['statement']}.", ""]


def _release_section(name: str, sec: dict, fractions) -> Section:
    """One released table's attacks: inversion, re-identification, membership, DCR,
    anonymeter."""
    noise = ", ".join(f"{m}: {n['multiplier']}x clip {n.get('clip_norm')}"
                      for m, n in sec["noise"].items() if n["multiplier"]) or "none"
    lines = _inversion_lines(sec, fractions)
    lines += _reidentification_lines(sec["reidentification"])
    if sec["membership"]:
        lines += ["Membership inference (reconstruction-loss threshold, training vs control "
                  "rows; judged two-sided, max(AUC, 1 - AUC)): " + "; ".join(
                      f"{m} AUC {v['auc']:.3f}, TPR@1%FPR {v['tpr_at_1pct_fpr']:.3f}"
                      + (f" (reversed {v['tpr_at_1pct_fpr_reversed']:.3f})"
                         if "tpr_at_1pct_fpr_reversed" in v else "")
                      for m, v in sec["membership"].items()) + ".", ""]
    lines += [_dcr_line(sec["dcr"]), ""]
    if sec["anonymeter"]:
        lines += [_anonymeter_line(sec["anonymeter"])]
    return Section(f"{name} (models: {', '.join(sec['models'])}; code noise: {noise})", lines)


def _inversion_lines(sec: dict, fractions) -> list[str]:
    """The inversion tables: categorical accuracy and numeric R² per known fraction."""
    lines = ["Inversion, categorical attributes: accuracy (best of ridge/MLP) vs majority "
             "baseline. Known-plaintext attacker holds p of the rows; leaked decoder attacker "
             "holds the decoder.", "",
             "| attribute | baseline | " + " | ".join(f"p = {p:g}" for p in fractions)
             + " | leaked decoder |", "|---|---|" + "---|" * (len(fractions) + 1)]
    best = {p: best_inversion(sec, p) for p in fractions}
    leaked = sec["leaked_decoder"]
    lines += [f"| {attr} | {s['baseline']:.3f} | "
              + " | ".join(f"{best[p][attr]['accuracy']:.3f}" for p in fractions)
              + f" | {s['accuracy']:.3f} |" for attr, s in leaked.items()
              if s["kind"] == "categorical"]
    lines += ["", "Numeric attributes: R^2 (MAE in original units).", "",
              "| attribute | " + " | ".join(f"p = {p:g}" for p in fractions)
              + " | leaked decoder |", "|---|" + "---|" * (len(fractions) + 1)]
    lines += [f"| {attr} | " + " | ".join(
        f"{best[p][attr]['r2']:.3f} ({best[p][attr]['mae']:.3g})" for p in fractions)
        + f" | {s['r2']:.3f} ({s['mae']:.3g}) |" for attr, s in leaked.items()
        if s["kind"] == "numeric"]
    capped = [f"p = {p:g}" for p in fractions
              if "mlp" in sec["known_plaintext_inversion"][str(p)].get("capped", [])]
    if capped:
        lines += ["", f"The MLP attacker stopped at its {MLP_MAX_ITER}-iteration cap before "
                  f"converging at {', '.join(capped)}: a longer-trained attacker may "
                  "reconstruct more than these figures show."]
    return lines + [""]


def _reidentification_lines(reid: dict) -> list[str]:
    return [f"Re-identification (quasi-identifiers {', '.join(reid['quasi_identifiers'])}; "
            f"{reid['unique_on_quasi_identifiers']:.1%} of training rows are unique on them): "
            f"{reid['linked']:.2%} of targets linked to their own row after the p = 1% "
            f"inversion ({reid['regressor']}; random guess {reid['baseline']:.4%}).", ""]


def _dcr_line(d: dict) -> str:
    dcr = (f"Distance to closest training record: decoded release median "
           f"{d['release_to_train']['median']:.3f}, 5th pct {d['release_to_train']['p5']:.3f}"
           f" ({d['release_to_train']['exact_match_share']:.1%} exact copies)")
    if "control_to_train" in d:
        dcr += (f"; control rows median {d['control_to_train']['median']:.3f}, 5th pct "
                f"{d['control_to_train']['p5']:.3f}")
    return dcr + "."


def _anonymeter_line(a: dict) -> str:
    so = a["singling_out"]
    parts = [f"singling out {so['risk']:.3f} [{so['ci'][0]:.3f}, {so['ci'][1]:.3f}]"
             + (f" ({so['note']})" if so.get("note") else "")]
    if "linkability" in a:
        parts.append(f"linkability {a['linkability']['risk']:.3f} "
                     f"[{a['linkability']['ci'][0]:.3f}, {a['linkability']['ci'][1]:.3f}]")
    parts += [f"inference of {k} {v['risk']:.3f} [{v['ci'][0]:.3f}, {v['ci'][1]:.3f}]"
              + (f" ({v['note']})" if v.get("note") else "") for k, v in a["inference"].items()]
    if a.get("linkability", {}).get("note"):
        parts[1] += f" ({a['linkability']['note']})"
    return (f"anonymeter risks on the leaked-decoder view ({a['attacks']} attacks each, 95% "
            "CI): " + "; ".join(parts) + "." + (f" {a['attacks_note']}." if a.get("attacks_note")
                                                 else ""))


def plot_attacks(report: PrivacyReport, path: str) -> str:
    """Per release, one row: categorical inversion accuracy against the majority baseline,
    and numeric inversion R² (0: no better than guessing the median), each at p = 1% and with
    the leaked decoder; a panel only for the kinds of attribute the table has."""
    names = list(report.releases)
    kinds = [k for k in ("categorical", "numeric")
             if any(s["kind"] == k for sec in report.releases.values()
                    for s in sec["leaked_decoder"].values())]
    with figure(path, len(names), len(kinds), (11 * len(kinds), 3.6 * len(names))) as axes:
        for row, name in enumerate(names):
            for col, kind in enumerate(kinds):
                _plot_section(axes[row, col], name, report.releases[name], kind,
                              set(report.sensitive))
    return path


def _plot_section(ax, name: str, sec: dict, kind: str, sensitive: set[str]) -> None:
    dec = {a: s for a, s in sec["leaked_decoder"].items() if s["kind"] == kind}
    best = best_inversion(sec)
    attrs = list(dec)
    pos = np.arange(len(attrs))
    key = "accuracy" if kind == "categorical" else "r2"
    if kind == "categorical":
        ax.bar(pos - 0.27, [dec[a]["baseline"] for a in attrs], 0.27,
               label="majority baseline", color="#bbbbbb")
    ax.bar(pos, [best[a][key] for a in attrs], 0.27, label="known plaintext, p = 1%",
           color="#d95f02")
    ax.bar(pos + 0.27, [dec[a][key] for a in attrs], 0.27, label="leaked decoder",
           color="#7570b3")
    ax.set_xticks(pos, [a + (" *" if a in sensitive else "") for a in attrs],
                  rotation=30 if len(attrs) > 8 else 0, ha="right" if len(attrs) > 8 else "center")
    low = min([0.0] + [best[a][key] for a in attrs] + [dec[a][key] for a in attrs])
    ax.set_ylim(max(low, -1.0), 1.25)  # headroom for the legend; R² below -1 is cut
    ax.set_yticks(np.linspace(0, 1, 6))
    ax.axhline(0, color="black", linewidth=0.6)
    ax.set_ylabel("attribute accuracy" if kind == "categorical" else "R² (0 = median guess)")
    what = "accuracy" if kind == "categorical" else "R²"
    ax.set_title(f"{name}: inversion {what}, {kind} attributes (* = sensitive)")
    ax.legend(loc="upper center", ncol=3, fontsize=8)


def log_report(parent: str, report: PrivacyReport) -> str:
    """Print the one-page summary and log the report (JSON, markdown, plot, per-release
    policy metrics, verdict tag) to the MLflow run; returns the summary."""
    from cloakflow.tasks import tracking

    summary = summary_markdown(report)
    print(summary, flush=True)
    tracking.log_dict(parent, report.model_dump(mode="json"), "privacy/report.json")
    tracking.log_text(parent, summary, "privacy/summary.md")
    tracking.log_metrics(parent, {f"privacy.{r}.{k}": v for r, m in
                                  report.policy.measured.items() for k, v in m.items()
                                  if v is not None})
    tracking.set_tags(parent, {"cloakflow.privacy_verdict": report.policy.verdict})
    if report.releases:
        with tracking.scratch_dir() as tmp:
            tracking.log_file(parent, plot_attacks(report, str(tmp / "inversion.png")),
                              "privacy")
    return summary
