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

from prefect import flow

from cloakflow.flows.parameters import FrontierParameters
from cloakflow.models.autoencoder import AutoencoderConfig
from cloakflow.tasks import steps, tracking
from cloakflow.tasks.data.profile import CodeNoise, load_profile
from cloakflow.tasks.data.steps import numeric_scaling, prepare
from cloakflow.tasks.evaluation.steps import evaluate_utility
from cloakflow.tasks.privacy import frontier as fr
from cloakflow.tasks.privacy.attacks import blocks_of
from cloakflow.tasks.release.codes import code_tables
from cloakflow.tasks.release.kinds import limits_of
from cloakflow.tasks.training.fit import model_heads
from cloakflow.tasks.training.steps import train as train_task


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
    """Train once, then per noise multiplier: codes, their utility and the inversion."""
    data = prepare(profile, params.input_path, params.control_fraction, params.seed, parent,
                   {}, folds=params.folds, numeric=numeric_scaling(params.architecture))
    eval_kw = dict(engine=params.forest, scheme=params.fold_scheme, folds=params.folds,
                   seed=params.seed)
    original = evaluate_utility.submit("ORIGINAL", data.x, data.y, **eval_kw)
    models = _train(params, data, parent)
    points = []
    for m in params.multipliers:
        points += _points(params, profile, data, models, m, eval_kw)
    result = {"dataset": profile.name, "seed": params.seed, "folds": params.folds,
              "forest": params.forest,
              "original_roc_auc": original.result()["mean"]["test_roc_auc"],
              "policy_max_inversion_gain": limits_of(profile, "codes").max_inversion_gain,
              "points": points, "within_baseline": fr.within_baseline(points)}
    result["folder"] = _publish(params, profile, parent, result)
    return result


def _train(params: FrontierParameters, data, parent: str) -> dict:
    """The whole-table and group autoencoders, trained in parallel."""
    x, columns, slices = data.x, data.columns, data.pre.group_slices()
    config = AutoencoderConfig(epochs=params.epochs, batch_size=params.batch_size,
                               validation=params.validation, architecture=params.architecture)
    heads = model_heads(data.pre, params.architecture)
    futures = {name: train_task.submit(name, x if name == "whole" else x[:, slices[name]],
                                       columns if name == "whole" else
                                       [columns[i] for i in slices[name]],
                                       replace(config, heads=heads.get(name, ())), params.seed,
                                       parent) for name in ["whole", *slices]}
    return steps.gather(futures, parent)


def _points(params: FrontierParameters, profile, data, models: dict, m: float,
            eval_kw: dict) -> list[dict]:
    """The frontier's points at noise multiplier ``m``: one per released table."""
    t, slices, x = time.perf_counter(), data.pre.group_slices(), data.x
    noise = CodeNoise(multiplier=m, clip_norm=params.clip_norm)
    targets = code_tables(models["whole"], {g: models[g] for g in slices}, slices, x.shape[1],
                          noise, params.seed)
    cv = {tg.name: evaluate_utility.submit(tg.name, tg.codes, data.y, **eval_kw)
          for tg in targets}
    points = [fr.frontier_point(m, tg, cv[tg.name].result()["mean"], fr.inversion_point(
        tg.codes, x, blocks_of(data.pre), set(profile.privacy.sensitive), params.seed))
        for tg in targets]
    print(f"noise {m:g}: " + "; ".join(
        f"{p['release']} ROC AUC {p['roc_auc']:.4f}, inversion mean accuracy "
        f"{p['mean_accuracy']:.3f} (baseline {p['mean_baseline']:.3f}), max gain "
        f"{p['max_gain']:.3f}" for p in points) + f" ({time.perf_counter() - t:.1f}s)",
        flush=True)
    return points


def _publish(params: FrontierParameters, profile, parent: str, result: dict) -> str:
    """The frontier's table, plot and JSON to its folder, MLflow and the flow run's page."""
    table = fr.frontier_table(result)
    print(table, flush=True)
    out = Path(params.out) / profile.name / parent
    out.mkdir(parents=True, exist_ok=True)
    png = fr.plot_frontier(result, str(out / "frontier.png"))
    (out / "frontier.md").write_text(table)
    (out / "frontier.json").write_text(json.dumps(result, indent=1))
    tracking.log_file(parent, png, "frontier")
    tracking.log_dict(parent, result, "frontier/frontier.json")
    tracking.log_text(parent, table, "frontier/frontier.md")
    steps.table("frontier", profile.name, [{k: v for k, v in p.items() if k != "per_attribute"}
                                           for p in result["points"]],
                "Privacy-utility frontier")
    steps.markdown("frontier-summary", profile.name, table, "Privacy-utility frontier")
    return str(out)
