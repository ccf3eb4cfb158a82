"""The privacy-utility frontier of the codes: per noise multiplier, each released table's
utility (cross-validated ROC AUC) against the p = 1% known-plaintext inversion, its table and
its plot. The flow is ``flows/frontier.py`` (``cloakflow frontier``)."""

from __future__ import annotations

import numpy as np

from cloakflow.tasks.plots import figure
from cloakflow.tasks.privacy.attacks import (
    POLICY_FRACTION,
    REGRESSORS,
    known_plaintext_inversion,
    strongest,
)

WITHIN = 0.02  # "inversion within 2 points of the baseline"


def inversion_point(codes: np.ndarray, x: np.ndarray, blocks, sensitive: set[str],
                    seed: int) -> dict:
    """The p = 1% inversion summarised for the frontier (best regressor per attribute)."""
    run = known_plaintext_inversion(codes, x, blocks, POLICY_FRACTION, seed, REGRESSORS)
    best = {a: s for a, s in strongest({r: run[r]["scores"] for r in REGRESSORS}).items()
            if s["kind"] == "categorical"}
    gains = {a: s["accuracy"] - s["baseline"] for a, s in best.items()}
    return {"mean_accuracy": float(np.mean([s["accuracy"] for s in best.values()])),
            "mean_baseline": float(np.mean([s["baseline"] for s in best.values()])),
            "max_gain": max(gains.values()),
            "max_gain_sensitive": max((g for a, g in gains.items() if a in sensitive),
                                      default=0.0),
            "per_attribute": best}


def frontier_point(multiplier: float, table, mean: dict, inversion: dict) -> dict:
    """One point of the frontier: a released table (``CodeTable``) at ``multiplier``, its
    cross-validated means and its ``inversion_point``."""
    return {"multiplier": multiplier, "release": table.name,
            "clip_norm": {k: v["clip_norm"] for k, v in table.noise.items()},
            "roc_auc": mean["test_roc_auc"],
            "balanced_accuracy": mean["test_balanced_accuracy"],
            **{k: v for k, v in inversion.items() if k != "per_attribute"},
            "per_attribute": inversion["per_attribute"]}


def within_baseline(points: list[dict]) -> dict[str, dict | None]:
    """Per release, the smallest noise whose inversion is within 2 points of the baseline on
    every categorical attribute, with its ROC AUC."""
    out: dict[str, dict | None] = {}
    for name in dict.fromkeys(p["release"] for p in points):
        ok = [p for p in points if p["release"] == name and p["max_gain"] <= WITHIN]
        first = min(ok, key=lambda p: p["multiplier"]) if ok else None
        out[name] = None if first is None else {"multiplier": first["multiplier"],
                                                "roc_auc": first["roc_auc"],
                                                "max_gain": first["max_gain"]}
    return out


def frontier_table(result: dict) -> str:
    lines = [f"Privacy-utility frontier, {result['dataset']} ({result['folds']}-fold CV, forest "
             f"{result['forest']}, seed {result['seed']}; ORIGINAL ROC AUC "
             f"{result['original_roc_auc']:.4f}). Inversion: p = 1% known-plaintext attacker, "
             "best of ridge/MLP per attribute, categorical attributes.", "",
             "| noise | release | ROC AUC | inversion mean accuracy | mean baseline | max gain "
             "| max gain (sensitive) |", "|---|---|---|---|---|---|---|"]
    for p in result["points"]:
        lines.append(f"| {p['multiplier']:g} | {p['release']} | {p['roc_auc']:.4f} | "
                     f"{p['mean_accuracy']:.3f} | {p['mean_baseline']:.3f} | "
                     f"{p['max_gain']:.3f} | {p['max_gain_sensitive']:.3f} |")
    lines.append("")
    for name, w in result["within_baseline"].items():
        lines.append(f"- {name}: " + (
            f"inversion within {WITHIN * 100:g} points of baseline on every categorical attribute "
            f"from noise {w['multiplier']:g} on, ROC AUC there {w['roc_auc']:.4f}" if w else
            f"inversion never came within {WITHIN * 100:g} points of baseline in this sweep"))
    return "\n".join(lines) + "\n"


def plot_frontier(result: dict, path: str) -> str:
    with figure(path, 1, 2, (12, 4.8)) as grid:
        _draw_frontier(result, grid[0])
    return path


def _draw_frontier(result: dict, axes) -> None:
    import matplotlib.pyplot as plt

    colors = {"ENCODED": "#1b9e77", "GROUP_ENCODED": "#d95f02"}
    for name in dict.fromkeys(p["release"] for p in result["points"]):
        pts = sorted((p for p in result["points"] if p["release"] == name),
                     key=lambda p: p["multiplier"])
        for ax, key in zip(axes, ("mean_accuracy", "max_gain"), strict=True):
            ax.plot([p[key] for p in pts], [p["roc_auc"] for p in pts], "o-",
                    color=colors.get(name), label=name)
            for p in pts:
                ax.annotate(f"{p['multiplier']:g}", (p[key], p["roc_auc"]), fontsize=7,
                            xytext=(3, 3), textcoords="offset points")
    base = np.mean([p["mean_baseline"] for p in result["points"]])
    axes[0].axvline(base, color="grey", ls="--", label="majority baseline")
    axes[0].set_xlabel("p = 1% inversion accuracy (mean over categorical attributes)")
    axes[1].axvline(WITHIN, color="grey", ls="--", label="2 points over baseline")
    axes[1].axvline(result["policy_max_inversion_gain"], color="red", ls=":",
                    label="policy limit (sensitive)")
    axes[1].set_xlabel("largest gain over baseline, any categorical attribute")
    for ax in axes:
        ax.axhline(result["original_roc_auc"], color="black", lw=0.8, label="ORIGINAL")
        ax.set_ylabel("ROC AUC (cross-validated)")
        ax.legend(fontsize=8)
    plt.gcf().suptitle(f"Privacy-utility frontier, {result['dataset']} (labels: noise "
                       "multiplier)")
