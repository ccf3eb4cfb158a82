"""What a DP run spends and claims: one budget for the whole release, and the manifest's account.

``--dp-epsilon E`` is the total for the release: every model trained on the rows spends from one
stated (epsilon, delta). Two designs:

- ``joint``: all models (whole table and every group) are ONE DP-SGD mechanism. They
  take the same Poisson batch each step, each row's gradient over all their parameters is
  clipped jointly to C * sqrt(k) (k models; C the per-model clip norm, so each model keeps about
  C when the norms are alike), and one Gaussian draw covers every parameter: the release costs
  one mechanism's epsilon.
- ``split`` (the default: the higher median GROUP_ENCODED utility at epsilon 3 on the bank
  table, ``benchmarks/dp_designs.py``): each model is its own mechanism with independent secret
  streams; sigma is solved so that the k runs *composed* (PLD) spend at most E; each model's
  own share is stated.

Adjacency: a codes release has one row per training row, so it publishes the row count n. The
guarantee is therefore stated and accounted as replace-one with n public (dp-accounting's PLD
accountant; RDP does not support replace-one for Poisson sampling).

The guarantee covers the trained models. It does not cover the released codes (each is a
deterministic function of its own row), nor the figures computed on the private rows that the
run reports; ``DP_REPORT`` decides where those go, and the manifest lists each one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from cloakflow.models.training.accounting import (
    ADJACENCY_TEXT,
    DpBudget,
    epsilon,
)
from cloakflow.models.training.dp_sgd import DEFAULT_CLIP_NORM, DpSgdConfig, plan
from cloakflow.tasks import console
from cloakflow.tasks.privacy.budget import Budget, Mechanism, compose
from cloakflow.tasks.privacy.budget import statement as budget_statement
from cloakflow.tasks.release.codes import PSEUDONYMISATION_STATEMENT

Design = Literal["joint", "split"]
DpReport = Literal["private", "full"]
ADJACENCY = "replace_one"  # codes publish one row per training row: n is public
ACCOUNTANT = "pld"

CODES_NOT_COVERED = (
    "DP-SGD protects the trained models, not the released codes: the code of each training row "
    "is a deterministic function of that row, so what an attacker can infer from a released "
    "code about its own row is not bounded by epsilon (the privacy report measures it when the "
    "attacks run).")

DEFAULT_DP_EPOCHS = 30
LARGE_EPSILON = 10.0  # above this the membership bound says next to nothing


class DpPlanError(ValueError):
    """The DP settings cannot be met (e.g. no noise multiplier reaches the target epsilon)."""

    exit_code = 2  # the command line's exit status
    headline = "DP PLAN REJECTED, nothing was trained or published."


def hyperparameter_statement(per_model_clip: float, epochs: int) -> str:
    """What the manifest says about the clip norm and epochs: public defaults, or the owner's
    choice (whose tuning on the private rows nothing accounts for)."""
    defaults = (f"The defaults for the clip norm ({DEFAULT_CLIP_NORM} per model) and the DP "
                f"epochs ({DEFAULT_DP_EPOCHS}) were chosen on the public UCI Bank Marketing "
                "table, so they are public for every other table.")
    chosen = []
    if per_model_clip != DEFAULT_CLIP_NORM:
        chosen.append(f"clip norm {per_model_clip:g}")
    if epochs != DEFAULT_DP_EPOCHS:
        chosen.append(f"{epochs} epochs")
    used = (f" This run used {' and '.join(chosen)} instead of the defaults: if they were "
            "chosen by trying settings on this table, that look at the private rows is not "
            "accounted for by epsilon." if chosen else
            " This run used them; choosing them by trying settings on the private table would "
            "itself look at the private rows, which is not accounted here.")
    return defaults + used


@dataclass(frozen=True)
class DpPlan:
    """The DP-SGD settings of a run and what the release spends in total.

    ``mechanism`` is the joint mechanism's budget (``joint``) or each model's own (``split``:
    all models have the same settings, each with independent secret randomness).
    """

    design: str
    models: tuple[str, ...]
    target_epsilon: float
    mechanism: DpBudget
    clip_norm: float  # C of one mechanism (joint: over all models' parameters)
    per_model_clip: float
    total_epsilon: float  # all mechanisms composed, at mechanism.delta

    def mechanisms(self) -> list[tuple[tuple[str, ...], DpBudget]]:
        """(models it trains, budget) of every mechanism the release is made of."""
        if self.design == "joint":
            return [(self.models, self.mechanism)]
        return [((name,), self.mechanism) for name in self.models]

    def budget(self) -> Budget:
        """The release's ``tasks.privacy.budget.Budget`` (replace-one): its DP-SGD runs."""
        return Budget(self.target_epsilon, self.mechanism.delta, ADJACENCY, tuple(
            Mechanism.dp_sgd(names, m, self.clip_norm) for names, m in self.mechanisms()))


def plan_dp(target_epsilon: float, delta: float | None, clip_norm: float | None, epochs: int,
            rows: int, batch_size: int, models: list[str], design: Design = "split") -> DpPlan:
    """Solve sigma so that every model together spends at most ``target_epsilon``; print it.

    Raises:
        ValueError: unknown design, or no sigma reaches the target.
    """
    if design not in ("joint", "split"):
        raise DpPlanError(f"dp design must be 'joint' or 'split', not {design!r}")
    if not (math.isfinite(target_epsilon) and target_epsilon > 0):
        raise DpPlanError(f"--dp-epsilon must be a positive finite number, got {target_epsilon}")
    k = len(models)
    per_model_clip = clip_norm or DEFAULT_CLIP_NORM
    clip = per_model_clip * math.sqrt(k) if design == "joint" else per_model_clip
    config = DpSgdConfig(target_epsilon=target_epsilon, delta=delta, clip_norm=clip,
                         adjacency=ADJACENCY)
    try:
        budget = plan(rows, batch_size, epochs, config, runs=1 if design == "joint" else k)
    except ValueError as exc:
        raise DpPlanError(f"DP-SGD cannot spend epsilon {target_epsilon} over {epochs} epochs "
                          f"at batch {batch_size} on {rows} rows: {exc}") from exc
    total = _total(budget, 1 if design == "joint" else k)
    for _ in range(50):  # the k separate events compose a hair above the solver's single
        if total <= target_epsilon:  # k*steps event: raise sigma until the stated total holds
            break
        budget = epsilon(budget.noise_multiplier * 1.0002, budget.sampling_rate, budget.steps,
                         budget.delta, ACCOUNTANT, budget.sampling, ADJACENCY)
        total = _total(budget, 1 if design == "joint" else k)
    else:
        raise DpPlanError(f"planned release epsilon {total} exceeds the target "
                          f"{target_epsilon}")
    result = DpPlan(design, tuple(models), target_epsilon, budget, clip, per_model_clip, total)
    what = ("one joint mechanism over all " f"{k} models" if design == "joint" else
            f"{k} independent mechanisms, each epsilon {budget.epsilon:.3g} on its own")
    console.step(f"DP-SGD plan: release epsilon {total:.4g} <= {target_epsilon} at delta "
          f"{budget.delta:g} (replace-one, PLD), {what}: sigma {budget.noise_multiplier:.4f}, "
          f"q {budget.sampling_rate:.5f} (expected batch {batch_size}), {budget.steps} steps "
          f"({epochs} epochs), clip {clip:.4g}")
    if target_epsilon > LARGE_EPSILON:
        bound = membership_bound(total, budget.delta)
        console.warn(f"epsilon {target_epsilon:g} bounds little: any membership attack on "
                     f"the models may reach AUC {bound['auc_at_most']:.4f} and TPR "
                     f"{bound['tpr_at_1pct_fpr_at_most']:.3f} at 1% FPR")
    return result


def _total(mechanism: DpBudget, runs: int) -> float:
    """Epsilon of ``runs`` independent copies of ``mechanism``, composed as the manifest and the
    ledger recompute it (one event per mechanism)."""
    return compose([Mechanism.dp_sgd((), mechanism, 1.0)] * runs, mechanism.delta, ADJACENCY)


def model_dp(plan_: DpPlan, name: str) -> dict:
    """The manifest's ``dp`` entry of one model: the mechanism that trained it."""
    b = plan_.mechanism
    shared = plan_.design == "joint"
    which = ("one joint mechanism with " + ", ".join(plan_.models) if shared
             else "its own mechanism")
    statement = (
        f"Trained with DP-SGD ({which}: Poisson sampling q = {b.sampling_rate:.5g}, noise "
        f"multiplier {b.noise_multiplier:.4g}, clip norm {plan_.clip_norm:.4g}, {b.steps} "
        f"steps); that mechanism is ({b.epsilon:.3g}, {b.delta:g})-differentially private "
        f"with respect to {ADJACENCY_TEXT[b.adjacency]} ({b.accountant.upper()} accountant). "
        "The codes of its training rows are not.")
    return {"design": plan_.design, "mechanism_models": list(plan_.models) if shared else [name],
            "epsilon": round(b.epsilon, 6), "delta": b.delta,
            "noise_multiplier": b.noise_multiplier, "clip_norm": plan_.clip_norm,
            "sampling_rate": b.sampling_rate, "sampling": b.sampling, "steps": b.steps,
            "epochs": b.epochs, "accountant": b.accountant, "adjacency": b.adjacency,
            "statement": statement}


def private_row_figures(mode: DpReport, data_bounds: bool = True) -> list[dict]:
    """Every figure a DP codes run computes on private rows, where it goes, and whether the DP
    guarantee covers it (none of them is covered). ``data_bounds``: some columns were scaled
    with bounds measured on the data."""
    mlflow = "MLflow parent run only (owner's eyes)" if mode == "private" else \
        "manifest and MLflow, NOT covered by epsilon"
    figures = [
        {"figure": "utility table (cross-validated scores of ORIGINAL and of the codes)",
         "manifest_key": "utility", "mlflow": "utility/table.md, utility/results.json, metrics",
         "where": mlflow, "covered": False},
        {"figure": "privacy attack results and the gate's measured values, crossed limits, "
                   "verdict and accepted-risk reason",
         "manifest_key": "privacy.report, privacy.policy, privacy.verdict",
         "mlflow": "privacy/report.json, privacy/summary.md, privacy.* metrics",
         "where": mlflow, "covered": False},
        {"figure": "training losses and the share of clipped gradients per epoch",
         "manifest_key": "models.*.final_loss, models.*.dp.clipped_share_per_epoch",
         "mlflow": "child runs: loss history and metrics", "where": mlflow, "covered": False},
        {"figure": "training times", "manifest_key": "models.*.seconds*",
         "mlflow": "child runs' metrics, time.* metrics", "where": mlflow, "covered": False},
        {"figure": "SHA-256 of the source table", "manifest_key": "source.sha256",
         "mlflow": "param source_sha256", "where": mlflow, "covered": False},
        {"figure": "code noise clip norm when it is the median code norm (data statistic)",
         "manifest_key": "privacy.report.releases.*.noise", "mlflow": "privacy/report.json",
         "where": mlflow, "covered": False},
        {"figure": "the released codes and label column", "manifest_key": "files",
         "mlflow": "", "where": "release", "covered": False,
         "note": "each code is a deterministic function of its row; the label is copied"},
        {"figure": "row counts (training rows, control rows, rows per file)",
         "manifest_key": "rows, control_rows, files.*.rows", "mlflow": "params",
         "where": "release", "covered": True,
         "note": "public by the replace-one adjacency the guarantee is stated in"},
        {"figure": "the release's existence", "manifest_key": "", "mlflow": "",
         "where": "release", "covered": False,
         "note": "a published release tells that the gate passed or the owner accepted risk; "
                 "when attacks ran, the gate decided on results computed on private rows"},
    ]
    if data_bounds:
        figures.append(
            {"figure": "preprocessing bounds measured on the data (columns without public "
                       "bounds)", "manifest_key": "dp.preprocessing.measured_on_data",
             "mlflow": "preprocessing/state.json", "where": "MLflow (values); column names in "
             "the release", "covered": False})
    return figures


def dp_section(plan_: DpPlan, bounds_used: dict[str, list[str]], mode: DpReport,
               epochs: int = DEFAULT_DP_EPOCHS) -> dict:
    """The manifest's top-level ``dp`` section: the release total, its mechanisms,
    preprocessing, the membership bound and everything the guarantee does not cover."""
    b = plan_.mechanism
    k = len(plan_.models)
    data_cols = bounds_used.get("data", [])
    preprocessing = {
        "public_bounds": bounds_used.get("public", []),
        "public_quantile_knots": bounds_used.get("public_knots", []),
        "measured_on_data": data_cols,
        "statement": ("all scaling bounds and category sets come from the profile's public "
                      "bounds" if not data_cols else
                      f"columns {', '.join(data_cols)} were scaled with bounds, quantile "
                      "knots or category sets measured on the training rows: those statistics "
                      "are NOT covered by the DP guarantee (give public bounds in the "
                      "profile)")}
    how = (f"as one joint DP-SGD mechanism (the same Poisson batch for all {k} models each "
           f"step, each row's gradient over all their parameters clipped to "
           f"{plan_.clip_norm:.4g}, one Gaussian draw for all)" if plan_.design == "joint" else
           f"as {k} independent DP-SGD mechanisms (independent secret sampling and noise), "
           f"each ({b.epsilon:.3g}, {b.delta:g})-DP on its own, composed by the PLD accountant")
    where = "kept out of this release" if mode == "private" else "kept in this manifest"
    caveat = ("" if not data_cols else
              f"Caveat: columns {', '.join(data_cols)} were scaled with statistics measured on "
              "the training rows (no public bounds in the profile); those statistics are not "
              "covered, so the guarantee holds only conditional on them. ")
    hyperparameters = hyperparameter_statement(plan_.per_model_clip, epochs)
    statement = budget_statement(
        f"The {k} models ({', '.join(plan_.models)}), trained on the training rows {how}, are "
        "together", plan_.total_epsilon, b.delta, ADJACENCY_TEXT[ADJACENCY],
        covered="every DP-SGD step that read the training rows",
        notes=("The release has one row per training row, so its size is not hidden.",
               caveat, CODES_NOT_COVERED),
        not_covered="the figures computed on the private rows (utility, attack results, "
                    f"losses, the gate's decision), listed under dp.private_row_figures "
                    f"({where}).", hyperparameters=hyperparameters)
    return {
        "epsilon": round(plan_.total_epsilon, 6),
        "delta": b.delta,
        "target_epsilon": plan_.target_epsilon,
        "design": plan_.design,
        "adjacency": ADJACENCY,
        "accountant": ACCOUNTANT,
        "models": list(plan_.models),
        "mechanisms": [m.entry(b.delta, ADJACENCY) for m in plan_.budget().mechanisms],
        "per_model_clip_norm": plan_.per_model_clip,
        "membership_bound": membership_bound(plan_.total_epsilon, b.delta),
        "preprocessing": preprocessing,
        "codes_covered": False,
        "randomness": "batch sampling, noise and initialisation from OS entropy "
                      "(numpy SeedSequence), one independent stream per mechanism and purpose, "
                      "never recorded; the run's public seed does not drive them, so a DP run "
                      "is not reproducible",
        "report": mode,
        "private_row_figures": private_row_figures(mode, bool(data_cols)),
        "hyperparameters": hyperparameters,
        "statement": statement,
    }


def membership_bound(epsilon: float, delta: float) -> dict:
    """What (epsilon, delta)-DP implies for any membership attack against the models.

    Every attack's ROC curve lies under TPR <= min(e^eps FPR + delta, 1 - e^-eps (1 - delta -
    FPR)) (Kairouz et al. 2015); the AUC bound is the area under that curve (e^eps / (1 + e^eps)
    when delta = 0), integrated numerically here.
    """
    import numpy as np

    fpr = np.linspace(0.0, 1.0, 200_001)
    e = math.exp(min(epsilon, 700.0))
    tpr = np.minimum.reduce([e * fpr + delta, 1 - (1 - delta - fpr) / e, np.ones_like(fpr)])
    auc = float(np.sum((tpr[1:] + tpr[:-1]) / 2 * np.diff(fpr)))
    return {"tpr_at_1pct_fpr_at_most": round(min(1.0, e * 0.01 + delta), 6),
            "auc_at_most": round(auc, 6)}


def dp_statement(dp: dict) -> str:
    """The manifest's privacy statement for a DP run: what is proven, and what is not."""
    claimed = "No privacy property is claimed here beyond what the release's privacy " \
              "measurements state."
    base = PSEUDONYMISATION_STATEMENT.replace(
        claimed, "The one proven property is the models' differential privacy, stated next; "
                 "it does not extend to the codes, for which only the privacy measurements "
                 "speak.")
    return f"{base} {dp['statement']}"


_MODEL_PRIVATE_KEYS = ("final_loss", "best_val_loss", "seconds", "seconds_per_epoch")


def private_report(manifest: dict) -> dict:
    """The manifest of a DP release under ``--dp-report private``: every figure computed on
    private rows removed (they stay in the MLflow run); what remains is public settings, DP
    parameters and counts that the replace-one adjacency makes public."""
    out = dict(manifest)
    params = manifest["parameters"]
    if params.get("accept_risk"):  # whether risk had to be accepted depends on private results
        out["parameters"] = {**params, "accept_risk": "given; in the MLflow run only"}
    attacked = params.get("privacy_attacks", True)
    out["source"] = {k: v for k, v in manifest["source"].items() if k != "sha256"}
    out["utility"] = "in the MLflow run only (dp.report = private)"
    out["models"] = {
        name: {**{k: v for k, v in m.items() if k not in _MODEL_PRIVATE_KEYS},
               "dp": {k: v for k, v in m["dp"].items() if k != "clipped_share_per_epoch"}}
        for name, m in manifest["models"].items()}
    privacy = manifest["privacy"]
    out["privacy"] = {
        "statement": privacy["statement"],
        "models_in_release": privacy["models_in_release"],
        "control_split": privacy["control_split"],
        "gate": ("the release policy was checked on attack results computed on private "
                 "rows; its measured values and decision are in the MLflow run only"
                 if attacked else "no attacks were run (privacy_attacks false): the policy "
                 "was not checked, and the release was published under the owner's accepted "
                 "risk"),
    }
    return out


def release_budget(epsilon: float, delta: float | None, clip: float | None, epochs: int,
                   design: Design, report: DpReport, *, rows: int, batch_size: int,
                   models: list[str], bounds_used: dict[str, list[str]], profile,
                   parent: str, source_sha: str, source_rows: int) -> tuple[DpPlan, dict]:
    """Plan the release's DP budget over ``models`` (``plan_dp``), write its manifest section
    (``dp_section``) and spend it in the dataset's privacy ledger before any model trains.

    Raises:
        DpPlanError: the budget cannot be planned as asked.
        BudgetExhausted: the run would take the dataset past its lifetime cap.
    """
    from cloakflow.tasks.privacy.ledger import spend_for_run

    plan_ = plan_dp(epsilon, delta, clip, epochs, rows, batch_size, models, design)
    section = dp_section(plan_, bounds_used, report, epochs)
    spend_for_run(profile, parent, source_sha, source_rows, rows, section)
    return plan_, section
