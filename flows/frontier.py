"""The privacy-utility frontier: one set of autoencoders, several code-noise scales; for each,
the forest's ROC AUC on the noised codes and the p = 1% known-plaintext inversion.

The autoencoders come from the same cached training task as the main flow, so a frontier after
a run with the same settings trains nothing.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
from prefect import flow

from cloakflow.flows.parameters import FrontierParameters
from cloakflow.models.autoencoder import AutoencoderConfig
from cloakflow.tasks import steps, tracking
from cloakflow.tasks.data.profile import CodeNoise, load_profile
from cloakflow.tasks.data.steps import numeric_scaling, prepare
from cloakflow.tasks.evaluation.steps import evaluate_utility
from cloakflow.tasks.plots import figure
from cloakflow.tasks.privacy.attacks import (
    POLICY_FRACTION,
    REGRESSORS,
    blocks_of,
    known_plaintext_inversion,
    strongest,
)
from cloakflow.tasks.release.codes import code_tables
from cloakflow.tasks.training.fit import model_heads
from cloakflow.tasks.training.steps import train as train_task

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


@flow(name="privacy-frontier", task_runner=steps.task_runner(), log_prints=True)
def frontier(params: FrontierParameters | None = None) -> dict:
    """Sweep code-noise scales; plot ROC AUC against the p = 1% inversion accuracy."""
    params = params or FrontierParameters()
    profile = load_profile(params.profile_path or params.dataset)
    if profile.target.kind != "binary":
        from cloakflow.tasks.data.split import TargetError

        raise TargetError(f"frontier reads utility as the ROC AUC of a binary target; target "
                          f"{profile.target.column!r} is {profile.target.kind}")
    tracking.configure()
    parent = tracking.start_parent(profile.name, run_name=f"frontier-{profile.name}",
                                   tags={"cloakflow.dataset": profile.name,
                                         "cloakflow.kind": "frontier"})
    tracking.log_params(parent, params.model_dump())
    try:
        result = _sweep(params, profile, parent)
    except BaseException:
        tracking.end_run(parent, "FAILED")
        raise
    tracking.end_run(parent)
    return result


def _sweep(params: FrontierParameters, profile, parent: str) -> dict:
    timings: dict[str, float] = {}
    data = prepare(profile, params.input_path, params.control_fraction, params.seed, parent,
                   timings, folds=params.folds,
                   numeric=numeric_scaling(params.architecture))
    x, y, columns, slices = data.x, data.y, data.columns, data.pre.group_slices()
    config = AutoencoderConfig(epochs=params.epochs, batch_size=params.batch_size,
                               validation=params.validation, architecture=params.architecture)
    heads = model_heads(data.pre, params.architecture)
    eval_kw = dict(engine=params.forest, scheme=params.fold_scheme, folds=params.folds,
                   seed=params.seed)
    original = evaluate_utility.submit("ORIGINAL", x, y, **eval_kw)
    futures = {name: train_task.submit(name, x if name == "whole" else x[:, slices[name]],
                                       columns if name == "whole" else
                                       [columns[i] for i in slices[name]],
                                       replace(config, heads=heads.get(name, ())), params.seed,
                                       parent) for name in ["whole", *slices]}
    models = steps.gather(futures, parent)
    whole_model = models["whole"]
    group_models = {g: models[g] for g in slices}
    blocks = blocks_of(data.pre)
    sensitive = set(profile.privacy.sensitive)

    points = []
    for m in params.multipliers:
        t = time.perf_counter()
        noise = CodeNoise(multiplier=m, clip_norm=params.clip_norm)
        targets = code_tables(whole_model, group_models, slices, x.shape[1], noise,
                              params.seed)
        cv = {tg.name: evaluate_utility.submit(tg.name, tg.codes, y, **eval_kw) for tg in targets}
        for tg in targets:
            inv = inversion_point(tg.codes, x, blocks, sensitive, params.seed)
            mean = cv[tg.name].result()["mean"]
            points.append({"multiplier": m, "release": tg.name,
                           "clip_norm": {k: v["clip_norm"] for k, v in tg.noise.items()},
                           "roc_auc": mean["test_roc_auc"],
                           "balanced_accuracy": mean["test_balanced_accuracy"],
                           **{k: v for k, v in inv.items() if k != "per_attribute"},
                           "per_attribute": inv["per_attribute"]})
        print(f"noise {m:g}: " + "; ".join(
            f"{p['release']} ROC AUC {p['roc_auc']:.4f}, inversion mean accuracy "
            f"{p['mean_accuracy']:.3f} (baseline {p['mean_baseline']:.3f}), max gain "
            f"{p['max_gain']:.3f}" for p in points[-2:]) + f" ({time.perf_counter() - t:.1f}s)",
            flush=True)
    original_auc = original.result()["mean"]["test_roc_auc"]
    result = {"dataset": profile.name, "seed": params.seed, "folds": params.folds,
              "forest": params.forest, "original_roc_auc": original_auc,
              "policy_max_inversion_gain": profile.privacy.policy.max_inversion_gain,
              "points": points, "within_baseline": _within(points)}
    table = frontier_table(result)
    print(table, flush=True)
    out = Path(params.out) / profile.name / parent
    out.mkdir(parents=True, exist_ok=True)
    png = plot_frontier(result, str(out / "frontier.png"))
    (out / "frontier.md").write_text(table)
    (out / "frontier.json").write_text(json.dumps(result, indent=1))
    tracking.log_file(parent, png, "frontier")
    tracking.log_dict(parent, result, "frontier/frontier.json")
    tracking.log_text(parent, table, "frontier/frontier.md")
    steps.table("frontier", profile.name,
                    [{k: v for k, v in p.items() if k != "per_attribute"} for p in points],
                    "Privacy-utility frontier")
    steps.markdown("frontier-summary", profile.name, table, "Privacy-utility frontier")
    result["folder"] = str(out)
    return result


def _within(points: list[dict]) -> dict[str, dict | None]:
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
