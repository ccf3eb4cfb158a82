"""What a DP-SGD run claims, model by model and for the release: plan, statements, composition.

The guarantee is stated exactly as far as it goes. DP-SGD makes each model's weights
(epsilon, delta)-differentially private with respect to adding or removing one training row.
It does not make the released codes of the training rows private: each is the deterministic
output of a DP model applied to that very row. Preprocessing bounds taken from the data are not
covered either; those from the profile's public bounds are.
"""

from __future__ import annotations

import math

from cloakflow.models.accounting import best_of, epsilon
from cloakflow.models.dp_sgd import DEFAULT_CLIP_NORM, DpSgdConfig, plan
from cloakflow.tasks.publish import PSEUDONYMISATION_STATEMENT
from cloakflow.tasks.train import DpTraining

CODES_NOT_COVERED = (
    "DP-SGD protects the trained models, not the released codes: the code of each training row "
    "is a deterministic function of that row, so what an attacker can infer from a released "
    "code about its own row is not bounded by epsilon (the privacy report measures it).")


def dp_training(target_epsilon: float, delta: float | None, clip_norm: float | None,
                epochs: int, rows: int, batch_size: int) -> DpTraining:
    """Solve sigma for ``target_epsilon`` over ``epochs`` Poisson epochs; print the plan."""
    config = DpSgdConfig(target_epsilon=target_epsilon, delta=delta,
                         clip_norm=clip_norm or DEFAULT_CLIP_NORM)
    budget = plan(rows, batch_size, epochs, config)
    print(f"DP-SGD plan: epsilon {target_epsilon} at delta {budget.delta:g} per model over "
          f"{epochs} epochs: sigma {budget.noise_multiplier:.4f}, q {budget.sampling_rate:.5f} "
          f"(expected batch {batch_size}), {budget.steps} steps, clip {config.clip_norm}",
          flush=True)
    return DpTraining(budget, config.clip_norm)


def model_dp(training: DpTraining, target_epsilon: float) -> dict:
    """The manifest's ``dp`` entry of one model (the tighter of RDP and PLD is the claim)."""
    b = training.budget
    bounds = {a: epsilon(b.noise_multiplier, b.sampling_rate, b.steps, b.delta, a)
              for a in ("rdp", "pld")}
    spent = min(bounds.values(), key=lambda x: x.epsilon)  # as best_of, without recomputing
    others = {a: round(x.epsilon, 6) for a, x in bounds.items()}
    statement = (f"The weights of this model are ({spent.epsilon:.3g}, {b.delta:g})-"
                 f"differentially private with respect to adding or removing one training row "
                 f"(DP-SGD: Poisson sampling q = {b.sampling_rate:.5g}, noise multiplier "
                 f"{b.noise_multiplier:.4g}, clip norm {training.clip_norm:g}, {b.steps} steps, "
                 f"{spent.accountant.upper()} accountant); the codes of its training rows are "
                 f"not.")
    return {"epsilon": round(spent.epsilon, 6), "delta": b.delta, "target_epsilon": target_epsilon,
            "noise_multiplier": b.noise_multiplier, "clip_norm": training.clip_norm,
            "sampling_rate": b.sampling_rate, "sampling": b.sampling, "steps": b.steps,
            "epochs": b.epochs, "accountant": spent.accountant, "epsilon_by_accountant": others,
            "adjacency": "add or remove one row", "statement": statement}


def release_dp(training: DpTraining, per_model: dict, model_names: list[str],
               bounds_used: dict[str, list[str]]) -> dict:
    """The manifest's top-level ``dp`` section (``per_model``: from ``model_dp``): composition
    over the models, preprocessing."""
    b = training.budget
    k = len(model_names)
    together = best_of(b.noise_multiplier, b.sampling_rate, b.steps * k, b.delta)
    data_cols = bounds_used.get("data", [])
    preprocessing = {
        "public_bounds": bounds_used.get("public", []),
        "measured_on_data": data_cols,
        "statement": ("all scaling bounds and category sets come from the profile's public "
                      "bounds" if not data_cols else
                      f"columns {', '.join(data_cols)} were scaled with bounds or category sets "
                      "measured on the training rows: those statistics are NOT covered by the "
                      "DP guarantee (give public bounds in the profile)")}
    statement = (
        f"Each of the {k} models ({', '.join(model_names)}) was trained with DP-SGD on all "
        f"training rows and is ({per_model['epsilon']:.3g}, {b.delta:g})-DP on its own; "
        f"because every model sees every row, their budgets add up: all {k} together are "
        f"({together.epsilon:.3g}, {b.delta:g})-DP by the {together.accountant.upper()} "
        f"accountant's composition (basic composition would give {k * per_model['epsilon']:.3g} "
        f"at delta {k * b.delta:g}). {CODES_NOT_COVERED}")
    return {"per_model_target_epsilon": per_model["target_epsilon"],
            "per_model_epsilon": per_model["epsilon"],
            "delta": b.delta,
            "models": model_names,
            "composed": {"epsilon": round(together.epsilon, 6), "delta": b.delta,
                         "accountant": together.accountant, "steps": b.steps * k,
                         "basic_composition_epsilon": round(k * per_model["epsilon"], 6),
                         "basic_composition_delta": k * b.delta},
            "per_model_membership_bound": membership_bound(per_model["epsilon"], b.delta),
            "composed_membership_bound": membership_bound(together.epsilon, b.delta),
            "preprocessing": preprocessing,
            "codes_covered": False,
            "noise_source": "numpy PCG64 (seeded, reproducible; not a cryptographically "
                            "secure generator)",
            "statement": statement}


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


def dp_statement(release: dict) -> str:
    """The manifest's privacy statement for a DP run: what is proven, and what is not."""
    claimed = "No privacy property is claimed here beyond what the release's privacy " \
              "measurements state."
    base = PSEUDONYMISATION_STATEMENT.replace(
        claimed, "The one proven property is the models' differential privacy, stated next; "
                 "it does not extend to the codes, for which only the privacy measurements "
                 "speak.")
    return f"{base} {release['statement']}"
