"""The attack step: run every attack on a release, judge it against the profile's policy, and
write the privacy report (JSON, one-page markdown, PNG).

``attack_release`` is a plain function (the ``cloakflow attack`` command calls it too);
``attack`` is its Prefect task. Each number in the report sits under the attack and the attacker
knowledge that produced it.
"""

from __future__ import annotations

import time
from concurrent.futures import Executor
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import polars as pl
from prefect import task
from prefect.cache_policies import NO_CACHE

from cloakflow.tasks.data.preprocess import TablePreprocessor
from cloakflow.tasks.data.profile import DatasetProfile, ReleasePolicy
from cloakflow.tasks.privacy.attacks import (
    POLICY_FRACTION,
    REGRESSORS,
    predict_chunked,
    reconstruction_losses,
    run_attacks,
    strongest,
)

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
           "rows, each against its closest training row, in the preprocessed space (min-max "
           "numerics, one-hot categories), over all rows",
    "anonymeter": "anonymeter's singling-out, linkability and inference evaluators with the "
                  "leaked-decoder view as the released records, training rows as originals and "
                  "the held-out control rows as control",
}


@dataclass
class ReleaseUnderAttack:
    """One released table and the models behind it (the attack step's secrets).

    Attributes:
        name: ``ENCODED`` or ``GROUP_ENCODED``.
        codes: released codes in training-row order (after any noise).
        parts: per model: (name, autoencoder, decoder, code column slice, feature columns).
        noise: the noise setting applied to each model's codes.
    """

    name: str
    codes: np.ndarray
    parts: list[tuple[str, Any, Any, slice, list[int]]]
    noise: dict[str, dict] = field(default_factory=dict)


def _call(model):
    return lambda a: np.asarray(model(a, training=False))


def decode_release(target: ReleaseUnderAttack, n_features: int) -> np.ndarray:
    """What the leaked-decoder attacker reconstructs from the released codes."""
    out = np.zeros((len(target.codes), n_features), dtype=np.float32)
    for _, _, decoder, code_cols, feature_cols in target.parts:
        out[:, feature_cols] = predict_chunked(_call(decoder), target.codes[:, code_cols])
    return out


def model_views(target: ReleaseUnderAttack, x: np.ndarray,
                x_control: np.ndarray) -> tuple[np.ndarray, dict]:
    """The parts of the attacks that need the Keras models: the leaked-decoder view of the
    release and every row's reconstruction loss under each autoencoder."""
    decoded = decode_release(target, x.shape[1])
    losses = {name: (reconstruction_losses(_call(ae), x[:, cols]),
                     reconstruction_losses(_call(ae), x_control[:, cols]))
              for name, ae, _, _, cols in target.parts} if len(x_control) else {}
    return decoded, losses


def attack_release(target: ReleaseUnderAttack, x: np.ndarray, x_control: np.ndarray,
                   train_records: pl.DataFrame, control_records: pl.DataFrame,
                   pre: TablePreprocessor, profile: DatasetProfile, seed: int,
                   executor: Executor | None = None) -> dict:
    """Run every attack on one release; returns the JSON-ready report section.

    The model calls run here; the rest (pure numpy, scikit-learn, anonymeter) runs in
    ``executor`` when given: a process pool lets two releases be attacked truly in parallel
    (in threads they serialise on the interpreter lock).
    """
    t = time.perf_counter()
    decoded, losses = model_views(target, x, x_control)
    seconds = time.perf_counter() - t
    job = partial(run_attacks, target.codes, decoded, losses, x, x_control, train_records,
                  control_records, pre, profile, seed)
    report = executor.submit(job).result() if executor is not None else job()
    report["seconds"]["model_calls"] = round(seconds, 2)
    return {"models": [p[0] for p in target.parts], "noise": target.noise, **report}


@task(name="privacy-attacks", cache_policy=NO_CACHE)
def attack(target: ReleaseUnderAttack, x: np.ndarray, x_control: np.ndarray,
           train_records: pl.DataFrame, control_records: pl.DataFrame,
           pre: TablePreprocessor, profile: DatasetProfile, seed: int,
           executor: Executor | None = None) -> dict:
    """Prefect task: every attack on one release (see :func:`attack_release`)."""
    report = attack_release(target, x, x_control, train_records, control_records, pre, profile,
                            seed, executor)
    print(f"  [{target.name}] attacks done in {sum(report['seconds'].values()):.1f}s: "
          + ", ".join(f"{k} {v:.1f}s" for k, v in report["seconds"].items()), flush=True)
    return report


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


# --------------------------------------------------------------------------- report
def summary_markdown(report: dict) -> str:
    """The one-page summary: every figure beside its attack and attacker knowledge."""
    lines = [f"# Privacy report: {report['dataset']}", "",
             f"Verdict: **{report['policy']['verdict']}**. "
             + ("Limits crossed: " + "; ".join(report["policy"]["crossed"]) + "."
                if report["policy"]["crossed"] else "No limit was crossed."), ""]
    if report["policy"].get("accepted_risk"):
        lines += [f"Risk accepted on record: \"{report['policy']['accepted_risk']}\"", ""]
    dp = report.get("dp")
    if dp:
        bound = dp["membership_bound"]
        lines += [f"Differential privacy: all {len(dp['models'])} models trained with DP-SGD "
                  f"({dp['design']} design) are together epsilon {dp['epsilon']:.3g}, delta "
                  f"{dp['delta']:g} with respect to replacing one row (n public; PLD "
                  f"accountant). This caps any membership attack on the models at AUC <= "
                  f"{bound['auc_at_most']:.3f} and TPR <= "
                  f"{bound['tpr_at_1pct_fpr_at_most']:.3f}"
                  " at 1% FPR (measured below). It does not bound the inversion of released "
                  "codes: those are deterministic functions of their rows. This report is "
                  "computed on private rows and is not covered by epsilon.", "",
                  f"Preprocessing: {dp['preprocessing']['statement']}.", ""]
    fractions = report["known_fractions"]
    for name, sec in report["releases"].items():
        noise = ", ".join(f"{m}: {n['multiplier']}x clip {n.get('clip_norm')}"
                          for m, n in sec["noise"].items() if n["multiplier"]) or "none"
        lines += [f"## {name} (models: {', '.join(sec['models'])}; code noise: {noise})", "",
                  "Inversion, categorical attributes: accuracy (best of ridge/MLP) vs majority "
                  "baseline. Known-plaintext attacker holds p of the rows; leaked decoder "
                  "attacker holds the decoder.", "",
                  "| attribute | baseline | " + " | ".join(f"p = {p:g}" for p in fractions)
                  + " | leaked decoder |", "|---|---|" + "---|" * (len(fractions) + 1)]
        best = {p: best_inversion(sec, p) for p in fractions}
        for attr, s in sec["leaked_decoder"].items():
            if s["kind"] != "categorical":
                continue
            lines.append(f"| {attr} | {s['baseline']:.3f} | "
                         + " | ".join(f"{best[p][attr]['accuracy']:.3f}" for p in fractions)
                         + f" | {s['accuracy']:.3f} |")
        lines += ["", "Numeric attributes: R^2 (MAE in original units).", "",
                  "| attribute | " + " | ".join(f"p = {p:g}" for p in fractions)
                  + " | leaked decoder |", "|---|" + "---|" * (len(fractions) + 1)]
        for attr, s in sec["leaked_decoder"].items():
            if s["kind"] != "numeric":
                continue
            lines.append(f"| {attr} | " + " | ".join(
                f"{best[p][attr]['r2']:.3f} ({best[p][attr]['mae']:.3g})" for p in fractions)
                + f" | {s['r2']:.3f} ({s['mae']:.3g}) |")
        reid = sec["reidentification"]
        lines += ["", f"Re-identification (quasi-identifiers {', '.join(reid['quasi_identifiers'])}"
                      f"; {reid['unique_on_quasi_identifiers']:.1%} of training rows are unique "
                      f"on them): {reid['linked']:.2%} of targets linked to their own row "
                      f"after the p = 1% inversion ({reid['regressor']}; random guess "
                      f"{reid['baseline']:.4%}).", ""]
        if sec["membership"]:
            lines += ["Membership inference (reconstruction-loss threshold, training vs control "
                      "rows): " + "; ".join(f"{m} AUC {v['auc']:.3f}, TPR@1%FPR "
                                            f"{v['tpr_at_1pct_fpr']:.3f}"
                                            for m, v in sec["membership"].items()) + ".", ""]
        d = sec["dcr"]
        dcr = (f"Distance to closest training record: decoded release median "
               f"{d['release_to_train']['median']:.3f}, 5th pct {d['release_to_train']['p5']:.3f}"
               f" ({d['release_to_train']['exact_match_share']:.1%} exact copies)")
        if "control_to_train" in d:
            dcr += (f"; control rows median {d['control_to_train']['median']:.3f}, 5th pct "
                    f"{d['control_to_train']['p5']:.3f}")
        lines += [dcr + ".", ""]
        a = sec["anonymeter"]
        if a:
            parts = [f"singling out {a['singling_out']['risk']:.3f} "
                     f"[{a['singling_out']['ci'][0]:.3f}, {a['singling_out']['ci'][1]:.3f}]"]
            if "linkability" in a:
                parts.append(f"linkability {a['linkability']['risk']:.3f} "
                             f"[{a['linkability']['ci'][0]:.3f}, {a['linkability']['ci'][1]:.3f}]")
            parts += [f"inference of {k} {v['risk']:.3f} [{v['ci'][0]:.3f}, {v['ci'][1]:.3f}]"
                      for k, v in a["inference"].items()]
            lines += [f"anonymeter risks on the leaked-decoder view ({a['attacks']} attacks "
                      "each, 95% CI): " + "; ".join(parts) + ".", ""]
    lines += ["## Attacker knowledge", ""] + [f"- **{k}**: {v}" for k, v in KNOWLEDGE.items()]
    lines += ["", "These are measurements of the attacks above, not a proof of anonymity. The "
                  "codes are a deterministic function of each row unless noise is added."]
    return "\n".join(lines) + "\n"


def plot_attacks(report: dict, path: str) -> str:
    """Per release: categorical inversion accuracy (p = 1%, leaked decoder) vs baseline."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(report["releases"])
    fig, axes = plt.subplots(len(names), 1, figsize=(11, 3.6 * len(names)), squeeze=False)
    for ax, name in zip(axes[:, 0], names, strict=True):
        sec = report["releases"][name]
        dec = {a: s for a, s in sec["leaked_decoder"].items() if s["kind"] == "categorical"}
        best = best_inversion(sec)
        attrs = list(dec)
        pos = np.arange(len(attrs))
        ax.bar(pos - 0.27, [dec[a]["baseline"] for a in attrs], 0.27, label="majority baseline",
               color="#bbbbbb")
        ax.bar(pos, [best[a]["accuracy"] for a in attrs], 0.27,
               label="known plaintext, p = 1%", color="#d95f02")
        ax.bar(pos + 0.27, [dec[a]["accuracy"] for a in attrs], 0.27,
               label="leaked decoder", color="#7570b3")
        sens = set(report["sensitive"])
        ax.set_xticks(pos, [a + (" *" if a in sens else "") for a in attrs])
        ax.set_ylim(0, 1.25)  # headroom for the legend above the bars
        ax.set_yticks(np.linspace(0, 1, 6))
        ax.set_ylabel("attribute accuracy")
        ax.set_title(f"{name}: inversion accuracy per attribute (* = sensitive)")
        ax.legend(loc="upper center", ncol=3, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
