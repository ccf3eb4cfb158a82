"""The main flow: ingest -> validate -> split -> preprocess -> autoencoders -> encode -> utility
-> privacy attacks and policy -> publish, with every step logged to one MLflow parent run.

Thin orchestration only: the work lives in ``tasks/`` and the models in ``models/``.
"""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import Executor
from typing import Literal

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import polars as pl
from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import BaseModel, Field

from cloakflow.flows.steps import encoded_target, group_target, prepare
from cloakflow.models.autoencoder import AutoencoderConfig
from cloakflow.tasks import tracking
from cloakflow.tasks.data.profile import CodeNoise, DatasetProfile, load_profile
from cloakflow.tasks.evaluation.utility import evaluate_utility as evaluate_task
from cloakflow.tasks.evaluation.utility import (
    format_table,
    plot_importance,
    utility_table,
)
from cloakflow.tasks.evaluation.utility import importance as importance_task
from cloakflow.tasks.privacy import ledger
from cloakflow.tasks.privacy.attack import (
    KNOWLEDGE,
    PolicyViolation,
    judge,
    measure_policy,
    plot_attacks,
    summary_markdown,
)
from cloakflow.tasks.privacy.attack import attack as attack_task
from cloakflow.tasks.privacy.attacks import attack_pool
from cloakflow.tasks.privacy.dp import (
    DpPlan,
    dp_section,
    dp_statement,
    model_dp,
    plan_dp,
    private_report,
)
from cloakflow.tasks.release.publish import PSEUDONYMISATION_STATEMENT, code_version, publish
from cloakflow.tasks.train import TrainedModel
from cloakflow.tasks.train import train as train_task
from cloakflow.tasks.train import train_joint as train_joint_task


class RunParameters(BaseModel):
    """Parameters of one anonymisation run (shown as a form in the Prefect UI)."""

    dataset: str = Field("bank-marketing", description="profile name in deployments/profiles/")
    input_path: str | None = Field(None, description="table to read instead of the profile's")
    profile_path: str | None = Field(None, description="profile YAML instead of the named one")
    out: str = Field("releases", description="folder that receives <dataset>/<run id>/")
    seed: int = Field(42, description="seeds the split, the models and the evaluation")
    epochs: int = Field(100, ge=1, description="most epochs per autoencoder (early stopping)")
    batch_size: int = Field(256, ge=1)
    validation: Literal["random", "tail"] = Field(
        "random", description="autoencoder validation rows: a seeded random 30%, or the last "
                              "30% as Keras's validation_split (the tutorial's)")
    folds: int = Field(10, ge=2, description="cross-validation folds")
    fold_scheme: Literal["stratified-shuffled", "tutorial"] = Field(
        "stratified-shuffled",
        description="tutorial = unshuffled folds (on a date-ordered table, a time split)")
    forest: Literal["lightgbm", "sklearn"] = Field(
        "lightgbm", description="evaluation forest engine (same model family; see README)")
    control_fraction: float = Field(
        0.1, ge=0.0, le=0.5, description="rows held out of training and release (attack control)")
    importance_rows: int = Field(10_000, ge=0, description="rows scored in permutation importance")
    use_cache: bool = Field(
        True, description="reuse finished models and evaluations of an earlier identical run")
    noise_multiplier: float | None = Field(
        None, ge=0, description="code noise sd in units of the clip norm (default: profile's)")
    clip_norm: float | None = Field(
        None, gt=0, description="L2 bound per code vector (default: profile's; none = median)")
    privacy_attacks: bool = Field(
        True, description="run the attack step; without it the policy cannot be checked and "
                          "the release is published only with accept_risk")
    accept_risk: str | None = Field(
        None, description="publish even if the privacy policy is crossed; the reason is "
                          "recorded in the manifest")
    dp_epsilon: float | None = Field(
        None, gt=0, allow_inf_nan=False,
        description="train every autoencoder with DP-SGD; epsilon is the total for the release, "
                    "all models together (none = no DP)")
    dp_delta: float | None = Field(
        None, gt=0, lt=1, description="delta of the release (default: a power of ten <= "
                                      "1/(10 n))")
    dp_clip: float | None = Field(
        None, gt=0, allow_inf_nan=False,
        description="per-model per-example gradient clip norm C (default 0.1, chosen on the "
                    "public bank table)")
    dp_epochs: int = Field(
        30, ge=1, description="DP-SGD epochs (fixed: no early stopping under DP)")
    dp_design: Literal["joint", "split"] = Field(
        "split", description="split = one DP-SGD mechanism per model, the budget split by PLD "
                             "composition (measured better); joint = all models one mechanism "
                             "(jointly clipped, one noise draw)")
    dp_report: Literal["private", "full"] = Field(
        "private", description="private = the release holds only DP-covered figures (utility "
                              "and attack results stay in MLflow); full = everything in the "
                              "manifest, each private-row figure marked not covered")


class FlowOutcome(BaseModel):
    """What a run returns: the release folder and the utility table."""

    release: str
    mlflow_run_id: str
    table_markdown: str
    privacy_summary: str = ""


def _timed(timings: dict[str, float], name: str, start: float) -> None:
    timings[name] = round(time.perf_counter() - start, 2)


@flow(name="anonymize", task_runner=ThreadPoolTaskRunner(max_workers=8), log_prints=True)
def anonymize(params: RunParameters | None = None) -> FlowOutcome:
    """Encode a sensitive table with autoencoders, measure utility, publish the release."""
    from prefect.runtime import flow_run

    params = params or RunParameters()
    logger = get_run_logger()
    profile = load_profile(params.profile_path or params.dataset)
    if params.dataset != profile.name:  # --profile names the dataset; keep one name everywhere
        params = params.model_copy(update={"dataset": profile.name})
    tracking.configure()
    flow_run_id = str(flow_run.id) if flow_run.id else "none"
    parent = tracking.start_parent(profile.name, run_name=f"anonymize-{profile.name}", tags={
        "prefect.flow_run_id": flow_run_id, "cloakflow.dataset": profile.name})
    tracking.log_params(parent, params.model_dump())
    # worker processes for the attack maths, started now so their imports overlap training
    pool = attack_pool() if params.privacy_attacks else None
    try:
        outcome = _run(params, profile, parent, flow_run_id, pool)
    except BaseException as exc:
        tracking.set_tags(parent, {"cloakflow.status": "failed",
                                   "cloakflow.error": f"{type(exc).__name__}: {exc}"[:4000]})
        tracking.end_run(parent, "FAILED")
        raise
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    tracking.set_tags(parent, {"cloakflow.status": "published", "cloakflow.release":
                               outcome.release})
    tracking.end_run(parent)
    logger.info("release folder: %s", outcome.release)
    return outcome


def _run(params: RunParameters, profile: DatasetProfile, parent: str, flow_run_id: str,
         pool: Executor | None) -> FlowOutcome:
    timings: dict[str, float] = {}
    private = params.dp_epsilon is not None
    data = prepare(profile, params.input_path, params.control_fraction, params.seed, parent,
                   timings, public_bounds=private)
    x, y, columns, slices = data.x, data.y, data.columns, data.pre.group_slices()
    noise = _noise_setting(params, profile)
    dp = dp_release = None
    if private:
        dp = plan_dp(params.dp_epsilon, params.dp_delta, params.dp_clip, params.dp_epochs,
                     len(x), params.batch_size, ["whole", *slices], params.dp_design)
        dp_release = dp_section(dp, data.pre.bounds_used(), params.dp_report,
                                params.dp_epochs)
        _spend(profile, parent, data, dp_release)

    # ORIGINAL's evaluations need no model: they run while the autoencoders train.
    t = time.perf_counter()
    eval_kw = dict(engine=params.forest, scheme=params.fold_scheme, folds=params.folds,
                   seed=params.seed)
    imp_kw = dict(engine=params.forest, seed=params.seed, rows=params.importance_rows)
    refresh = not params.use_cache
    evaluate_utility = evaluate_task.with_options(refresh_cache=refresh)
    importance = importance_task.with_options(refresh_cache=refresh)
    # DP training never reads the cache: its randomness is secret, not a function of inputs
    train = train_task.with_options(refresh_cache=refresh or private)
    cv_futures = {"ORIGINAL": evaluate_utility.submit("ORIGINAL", x, y, **eval_kw)}
    imp_futures = {"ORIGINAL": importance.submit("ORIGINAL", x, y, columns, **imp_kw)}
    config = AutoencoderConfig(epochs=params.epochs, batch_size=params.batch_size,
                               validation=params.validation)
    model_result, futures = _submit_training(train, x, columns, slices, config, params.seed,
                                             parent, dp)
    whole_model: TrainedModel = model_result("whole")
    # release noise is secret (None: OS entropy): noise regenerated from the seed could be
    # subtracted again
    targets = [encoded_target(whole_model, noise, None)]
    encoded = targets[0].codes
    encoded_names = [f"latent_{i}" for i in range(encoded.shape[1])]
    cv_futures["ENCODED"] = evaluate_utility.submit("ENCODED", encoded, y, **eval_kw)
    group_models: dict[str, TrainedModel] = {g: model_result(g) for g in slices}
    _timed(timings, "train_encode", t)

    t = time.perf_counter()
    targets.append(group_target(group_models, slices, noise, None))
    group_encoded = targets[1].codes
    group_names = [f"{g}_{i}" for g, m in group_models.items() for i in range(m.codes.shape[1])]
    cv_futures["GROUP_ENCODED"] = evaluate_utility.submit("GROUP_ENCODED", group_encoded, y,
                                                          **eval_kw)
    imp_futures["GROUP_ENCODED"] = importance.submit("GROUP_ENCODED", group_encoded, y,
                                                     group_names, **imp_kw)
    cv = {k: f.result() for k, f in cv_futures.items()}
    importances = {k: f.result() for k, f in imp_futures.items()}
    _timed(timings, "evaluate", t)
    reused = sorted(
        [f"model:{k}" for k, f in futures.items() if f.state.name == "Cached"]
        + [f"utility:{k}" for k, f in cv_futures.items() if f.state.name == "Cached"]
        + [f"importance:{k}" for k, f in imp_futures.items() if f.state.name == "Cached"])
    if reused:
        print(f"reused from the cache of an earlier identical run: {', '.join(reused)}",
              flush=True)
        tracking.set_tags(parent, {"cloakflow.reused_from_cache": ",".join(reused)})

    means = {k: v["mean"] for k, v in cv.items()}
    rows = utility_table(means)
    table_md = format_table(rows)
    fold_note = (f"{params.folds}-fold {params.fold_scheme} cross-validation (seed {params.seed}), "
                 f"forest engine {params.forest}, {len(y)} training rows")
    print(f"utility ({fold_note}):\n{table_md}", flush=True)
    _log_utility(parent, means, cv, importances, table_md, fold_note, timings)
    create_table_artifact(table=rows, key=f"utility-{_artifact_key(profile.name)}",
                          description=f"Utility of the release: {fold_note}")

    # The attacks run after the evaluations, not beside them (attacks and forests competing
    # for two cores made both slower), each release in its own worker process.
    t = time.perf_counter()
    attack_args = (x, data.x_control, data.records(), data.records(control=True), data.pre,
                   profile, params.seed)
    attack_futures = {tg.name: attack_task.submit(tg, *attack_args, executor=pool)
                      for tg in targets if params.privacy_attacks}
    models = {"whole": whole_model, **group_models}
    privacy = _privacy_report(profile, {k: f.result() for k, f in attack_futures.items()},
                              params, noise, dp_release)
    _timed(timings, "attacks", t)
    summary = _log_privacy(parent, privacy, profile)
    if privacy["policy"]["verdict"] == "blocked":
        tracking.log_metrics(parent, {f"time.{k}": v for k, v in timings.items()})
        raise PolicyViolation(privacy["policy"]["crossed"], summary)

    t = time.perf_counter()
    manifest = _manifest(params, profile, data.source_name, data.source_sha, parent, flow_run_id,
                         models, rows, fold_note, len(data.x_control), privacy)
    manifest["dp"] = dp_release
    if dp is not None:
        for name in models:
            manifest["models"][name]["dp"] = {**model_dp(dp, name), **{
                k: manifest["models"][name]["dp"][k] for k in ("steps_run",
                                                               "clipped_share_per_epoch")}}
        manifest["privacy"]["statement"] = dp_statement(dp_release)
        if params.dp_report == "private":
            manifest = private_report(manifest)
    manifest["reused_from_cache"] = reused
    manifest["columns"] = ([{"name": c, "group": "whole", "file": "encoded"}
                            for c in encoded_names]
                           + [{"name": c, "group": c.rsplit("_", 1)[0], "file": "group_encoded"}
                              for c in group_names]
                           + [{"name": profile.target.column, "group": "label", "file": "both"}])
    order = np.random.default_rng().permutation(len(y))  # secret: OS entropy, not the seed
    # the owner's copy (beside the models, which are secret too): `cloakflow attack` aligns
    # released rows with source rows through it
    tracking.log_text(parent, json.dumps(order.tolist()), "release/row_order.json")
    label = data.train_frame.get_column(profile.target.column)[order]
    tables = {
        "encoded": pl.DataFrame(encoded[order], schema=encoded_names).with_columns(label),
        "group_encoded": pl.DataFrame(group_encoded[order], schema=group_names)
        .with_columns(label),
    }
    release = publish(params.out, profile.name, parent, tables, manifest)
    _timed(timings, "publish", t)
    tracking.log_dict(parent, manifest, "release/manifest.json")
    tracking.log_metrics(parent, {f"time.{k}": v for k, v in timings.items()})
    create_markdown_artifact(
        key=f"release-{_artifact_key(profile.name)}",
        markdown=f"# Release `{release}`\n\n{fold_note}\n\n{table_md}\n\n"
                 f"Privacy verdict: **{privacy['policy']['verdict']}**.\n\n"
                 f"MLflow run `{parent}`.\n\n> {PSEUDONYMISATION_STATEMENT}\n",
        description="Published release")
    return FlowOutcome(release=release, mlflow_run_id=parent, table_markdown=table_md,
                       privacy_summary=summary)


def _submit_training(train, x: np.ndarray, columns: list[str], slices: dict[str, list[int]],
                     config: AutoencoderConfig, seed: int, parent: str, dp: DpPlan | None):
    """Submit the whole-table and group models; returns (name -> TrainedModel getter, the
    per-model futures whose cache state is reported). The joint DP design is one task."""
    if dp is not None and dp.design == "joint":
        joint = train_joint_task.submit(x, {"whole": None, **slices}, columns, config, parent,
                                        dp)
        return (lambda name: joint.result()[name]), {}
    futures = {"whole": train.submit("whole", x, columns, config, seed, parent, dp=dp)}
    futures.update({g: train.submit(g, x[:, s], [columns[i] for i in s], config, seed, parent,
                                    dp=dp) for g, s in slices.items()})
    return (lambda name: futures[name].result()), futures


def _spend(profile: DatasetProfile, parent: str, data, dp_release: dict) -> None:
    """Refuse a run past the dataset's lifetime DP cap; otherwise record it in the privacy
    ledger before any model sees the rows (a crash after this still counts as spent)."""
    cap = profile.privacy.dp_cap
    entry = ledger.make_entry(profile.name, parent, data.source_sha, data.source_rows,
                              len(data.x), dp_release)
    after, path = ledger.spend(dp_release, cap.model_dump() if cap else None, entry, parent)
    at = "the cap's delta" if cap else "the sum of the runs' deltas"
    print(f"privacy ledger {path}: this run spends epsilon {dp_release['epsilon']:.4g} at delta "
          f"{dp_release['delta']:g}; all {after.runs} run(s) on this dataset composed: epsilon "
          f"{after.epsilon:.4g} at delta {after.delta:.3g} ({at})", flush=True)


def _noise_setting(params: RunParameters, profile: DatasetProfile) -> CodeNoise:
    """The profile's code noise, with the run's overrides."""
    noise = profile.privacy.noise
    update = {k: v for k, v in (("multiplier", params.noise_multiplier),
                                ("clip_norm", params.clip_norm)) if v is not None}
    return noise.model_copy(update=update) if update else noise


def _privacy_report(profile: DatasetProfile, releases: dict[str, dict], params: RunParameters,
                    noise: CodeNoise, dp: dict | None = None) -> dict:
    policy = profile.privacy.policy
    measured = measure_policy(releases, profile)
    crossed = judge(measured, policy)
    if not params.privacy_attacks:
        crossed = ["no privacy attacks were run (privacy_attacks=False): the policy cannot be "
                   "checked"]
    verdict = "pass" if not crossed else ("accepted" if params.accept_risk else "blocked")
    return {"dataset": profile.name, "sensitive": profile.privacy.sensitive,
            "known_fractions": profile.privacy.known_fractions, "seed": params.seed,
            "noise": noise.model_dump(), "dp": dp, "attacker_knowledge": KNOWLEDGE,
            "releases": releases,
            "policy": {"limits": policy.model_dump(), "measured": measured, "crossed": crossed,
                       "verdict": verdict, "accepted_risk": params.accept_risk if crossed
                       else None}}


def _log_privacy(parent: str, privacy: dict, profile: DatasetProfile) -> str:
    summary = summary_markdown(privacy)
    print(summary, flush=True)
    tracking.log_dict(parent, privacy, "privacy/report.json")
    tracking.log_text(parent, summary, "privacy/summary.md")
    tracking.log_metrics(parent, {f"privacy.{r}.{k}": v for r, m in
                                  privacy["policy"]["measured"].items() for k, v in m.items()})
    tracking.set_tags(parent, {"cloakflow.privacy_verdict": privacy["policy"]["verdict"]})
    if privacy["releases"]:
        with tracking.scratch_dir() as tmp:
            tracking.log_file(parent, plot_attacks(privacy, str(tmp / "inversion.png")),
                              "privacy")
    create_markdown_artifact(key=f"privacy-{_artifact_key(profile.name)}", markdown=summary,
                             description="Privacy report of the release")
    return summary


def _artifact_key(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower())


def _log_utility(parent: str, means: dict, cv: dict, importances: dict, table_md: str,
                 fold_note: str, timings: dict) -> None:
    tracking.log_metrics(parent, {f"{ds}.{k}": v for ds, m in means.items() for k, v in m.items()})
    tracking.log_text(parent, f"{fold_note}\n\n{table_md}\n", "utility/table.md")
    tracking.log_dict(parent, {"note": fold_note, "cv": cv, "importance": importances,
                               "timings": timings}, "utility/results.json")
    with tracking.scratch_dir() as tmp:
        for name, result in importances.items():
            png = plot_importance(result, f"Permutation importance, {name} (top 10)",
                                  str(tmp / f"importance_{name}.png"))
            tracking.log_file(parent, png, "utility")


def _manifest(params: RunParameters, profile: DatasetProfile, source_name: str, source_sha: str,
              parent: str, flow_run_id: str, models: dict[str, TrainedModel], rows: list,
              fold_note: str, control_rows: int, privacy: dict) -> dict:
    import mlflow

    return {
        "dataset": profile.name,
        "source": {"file": source_name, "sha256": source_sha},
        "profile": profile.model_dump(mode="json"),
        "rows": int(len(next(iter(models.values())).codes)),
        "control_rows": control_rows,
        "label": profile.target.column,
        "seed": params.seed,
        "parameters": params.model_dump(),
        "folds": {"scheme": params.fold_scheme, "k": params.folds, "forest": params.forest,
                  "note": fold_note},
        "utility": rows,
        "models": {name: m.summary() for name, m in models.items()},
        "row_order": "rows are in a secret random order (OS entropy, not derived from the "
                     "seed); no source row index or source feature column is included",
        "mlflow": {"tracking_uri": mlflow.get_tracking_uri(), "run_id": parent,
                   "experiment": f"cloakflow/{profile.name}"},
        "prefect_flow_run_id": flow_run_id,
        "code_version": code_version(),
        "privacy": {"statement": PSEUDONYMISATION_STATEMENT,
                    "models_in_release": False,
                    "control_split": {"rows": control_rows, "fraction": params.control_fraction,
                                      "seed": params.seed, "stratified_on": profile.target.column},
                    "verdict": privacy["policy"]["verdict"],
                    "policy": privacy["policy"],
                    "report": privacy},
    }


__all__ = ["anonymize", "RunParameters", "FlowOutcome"]
