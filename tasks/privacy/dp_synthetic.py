"""What a DP synthetic release spends and claims: one (epsilon, delta) for everything that looks
at the private rows, end to end.

A synthetic release chooses its own row count, so the row count n can stay private: the
guarantee is stated for **adding or removing one training row** (dp-accounting's PLD
accountant, add/remove neighbouring relation). Nothing published is a function of the exact n:

1. **Preprocessing** reads no row: every modelled column takes its scaling, quantile knots,
   category or value list from the profile's public bounds (``TablePreprocessor`` with
   ``public_bounds``); a column without public bounds is refused before anything runs
   (``require_public_bounds``), and missing-value flags follow the profile's ``missing`` rule.
2. **One Gaussian histogram** (``models.training.dp_counts``) of the conditioning column's
   categories (sigma ``histogram_sigma``, sized to cost about ``HISTOGRAM_SHARE`` of E on its
   own). It gives the label distribution used to sample conditions and, summed, a DP estimate
   n~ of the row count: the default number of synthetic rows and the public divisor q * n~ of
   DP-SGD's noisy gradient sum.
3. **DP-SGD** on the VAE (Abadi et al. 2016): Poisson sampling at a public rate q
   (``dp_sampling_rate``, not b / n, which would publish n), per-row clipping to C, Gaussian
   noise sigma * C, a fixed number of steps epochs / q: no early stopping, validation or
   checkpoint choice on private rows.

The noise multipliers, q and the step count are all fixed before any row is read, so the two
mechanisms compose non-adaptively; sigma of DP-SGD is solved so that both composed spend at
most E at delta. delta is public (``DEFAULT_DELTA``, or the owner's): a default derived from n
would itself be a statistic of the rows.

Not covered: the evaluation of the release (fidelity, TSTR, attack results) computes on private
training and control rows; under ``dp_report = private`` those figures stay in the MLflow run,
and the release's existence tells that the gate passed or the owner accepted the risk. The
control split is a seeded random share of the source rows; the guarantee is for the training
rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from cloakflow.models.training import accounting
from cloakflow.models.training.accounting import ADJACENCY_TEXT, DpBudget
from cloakflow.models.training.dp_sgd import DEFAULT_CLIP_NORM
from cloakflow.tasks.privacy.dp import DpPlanError, hyperparameter_statement, membership_bound

ADJACENCY = "add_remove"
ACCOUNTANT = "pld"
HISTOGRAM_SHARE = 0.05  # the label histogram alone costs about this share of E
DEFAULT_DELTA = 1e-6  # public: below 1 / (10 n) for tables under 100,000 rows
DEFAULT_SAMPLING_RATE = 0.01
DEFAULT_DP_EPOCHS = 30

SYNTHETIC_STATEMENT = (
    "The rows of this release are synthetic: drawn from a generative model (a variational "
    "autoencoder) fitted to the training rows, not transformed copies of them. No row stands "
    "for a person; a synthetic row can still resemble a training row, which the release's "
    "privacy measurements (distance to closest record, exact copies, membership inference, "
    "anonymeter) report.")


@dataclass(frozen=True)
class SynthesisDpPlan:
    """The DP settings of a synthetic release, all fixed before any row is read."""

    target_epsilon: float
    delta: float
    sgd: DpBudget  # DP-SGD alone: sigma, q, steps (its epsilon at delta on its own)
    histogram_sigma: float
    histogram_epsilon: float  # the histogram alone at delta
    clip_norm: float
    epochs: int
    total_epsilon: float  # histogram and DP-SGD composed (PLD, add/remove)

    def mechanisms(self) -> list[dict]:
        """The ledger's and the manifest's list of mechanisms (the histogram as one Gaussian
        step: q = 1, one step, sensitivity 1 under add/remove)."""
        b = self.sgd
        return [
            {"models": ["vae"], "noise_multiplier": b.noise_multiplier,
             "sampling_rate": b.sampling_rate, "sampling": b.sampling, "steps": b.steps,
             "clip_norm": self.clip_norm, "epsilon": round(b.epsilon, 6), "delta": self.delta},
            {"models": ["condition histogram"], "noise_multiplier": self.histogram_sigma,
             "sampling_rate": 1.0, "sampling": "poisson", "steps": 1, "clip_norm": 1.0,
             "epsilon": round(self.histogram_epsilon, 6), "delta": self.delta},
        ]


def plan_synthesis_dp(epsilon: float, delta: float | None, clip_norm: float | None,
                      epochs: int, sampling_rate: float) -> SynthesisDpPlan:
    """Solve the histogram's and DP-SGD's noise so that together they spend at most
    ``epsilon`` at ``delta`` (add/remove, PLD); print the plan.

    Raises:
        DpPlanError: a bad epsilon, delta or sampling rate, or no sigma reaches the target.
    """
    if not (math.isfinite(epsilon) and epsilon > 0):
        raise DpPlanError(f"--dp-epsilon must be a positive finite number, got {epsilon}")
    delta = DEFAULT_DELTA if delta is None else delta
    if not 0 < delta < 1:
        raise DpPlanError(f"--dp-delta must be in (0, 1), got {delta}")
    if not 0 < sampling_rate <= 1:
        raise DpPlanError(f"--dp-sampling-rate must be in (0, 1], got {sampling_rate}")
    clip = clip_norm or DEFAULT_CLIP_NORM
    steps = max(1, math.ceil(epochs / sampling_rate))
    try:
        hist_sigma = accounting.histogram_noise_for(HISTOGRAM_SHARE * epsilon, delta,
                                                    adjacency=ADJACENCY)
        total = accounting.noise_multiplier_for(
            epsilon, delta, sampling_rate, steps, ACCOUNTANT, adjacency=ADJACENCY,
            extra_events=(accounting.histogram_event(hist_sigma),))
    except ValueError as exc:
        raise DpPlanError(f"cannot spend epsilon {epsilon} at delta {delta:g} over {epochs} "
                          f"epochs at sampling rate {sampling_rate}: {exc}") from exc
    sgd = accounting.epsilon(total.noise_multiplier, sampling_rate, steps, delta, ACCOUNTANT,
                             adjacency=ADJACENCY)
    hist_alone = _histogram_epsilon(hist_sigma, delta)
    plan = SynthesisDpPlan(epsilon, delta, sgd, hist_sigma, hist_alone, clip, epochs,
                           total.epsilon)
    print(f"DP plan: release epsilon {plan.total_epsilon:.4g} <= {epsilon} at delta {delta:g} "
          f"(add/remove one row, PLD): condition histogram sigma {hist_sigma:.2f} (epsilon "
          f"{hist_alone:.3g} alone), DP-SGD sigma {sgd.noise_multiplier:.4f}, q "
          f"{sampling_rate:g}, {steps} steps ({epochs} epochs), clip {clip:g}", flush=True)
    return plan


def _histogram_epsilon(sigma: float, delta: float) -> float:
    acc = accounting.make_accountant(ACCOUNTANT, ADJACENCY)
    acc.compose(accounting.histogram_event(sigma))
    return float(acc.get_epsilon(delta))


def require_public_bounds(pre_specs, source: str) -> None:
    """A DP synthetic release reads no statistic off the rows: every modelled column must
    take its scaling or categories from the profile's public bounds.

    Raises:
        DpPlanError: naming every column without public bounds and what to add.
    """
    missing = [s.name for s in pre_specs if s.bounds != "public"]
    if missing:
        raise DpPlanError(
            f"{source}: a DP synthetic release needs public bounds for every modelled column "
            f"(rule: public bounds); {missing} have none, so their scaling or categories "
            "would be statistics of the private rows. Add them under `bounds:` in the profile "
            "(min and max, optionally knots, for numbers; categories for categories; "
            "origin: public; the target needs its categories too), or leave those columns out of "
            "the profile's groups")


def dp_section(plan: SynthesisDpPlan, bounds_used: dict[str, list[str]], mode: str) -> dict:
    """The manifest's ``dp`` section of a synthetic release (also the ledger's entry)."""
    b = plan.sgd
    where = "kept out of this release (MLflow run only)" if mode == "private" else \
        "kept in this manifest, marked not covered"
    statement = (
        f"The synthetic rows are ({plan.total_epsilon:.3g}, {plan.delta:g})-differentially "
        f"private with respect to {ADJACENCY_TEXT[ADJACENCY]} of the training rows: every "
        "step that read them is covered - the conditioning column's Gaussian histogram "
        f"(sigma {plan.histogram_sigma:.3g}) and DP-SGD on the VAE (Poisson sampling q = "
        f"{b.sampling_rate:g}, noise multiplier {b.noise_multiplier:.4g}, clip norm "
        f"{plan.clip_norm:g}, {b.steps} steps), composed by dp-accounting's PLD accountant; "
        "the preprocessing used only the profile's public bounds. Sampling rows from the "
        "model is post-processing. Not covered: the release's evaluation (fidelity, TSTR and "
        f"attack results on private training and control rows; {where}) and the gate's "
        "decision that let it be published. "
        + hyperparameter_statement(plan.clip_norm, plan.epochs).replace(
            "DP epochs (30)", f"DP epochs ({DEFAULT_DP_EPOCHS})"))
    return {
        "epsilon": round(plan.total_epsilon, 6), "delta": plan.delta,
        "target_epsilon": plan.target_epsilon, "design": "synthesis",
        "adjacency": ADJACENCY, "accountant": ACCOUNTANT,
        "mechanisms": plan.mechanisms(),
        "split": {"condition_histogram": round(plan.histogram_epsilon, 6),
                  "dp_sgd": round(b.epsilon, 6),
                  "note": "each mechanism's epsilon alone at delta; composed they spend "
                          "'epsilon' (less than the sum)"},
        "membership_bound": membership_bound(plan.total_epsilon, plan.delta),
        "preprocessing": {"public_bounds": bounds_used.get("public", []),
                          "public_quantile_knots": bounds_used.get("public_knots", []),
                          "measured_on_data": bounds_used.get("data", []),
                          "statement": "every scaling bound, quantile knot, category and value "
                                       "list comes from the profile's public bounds"},
        "row_count": "private: the synthetic row count is chosen (default: the histogram's DP "
                     "count), and DP-SGD divides by q times that count, not by n",
        "randomness": "histogram noise, batch sampling, gradient noise, initialisation and the "
                      "VAE's reparameterisation noise from OS entropy, never recorded; the "
                      "public seed drives only the control split, the evaluation and the "
                      "sampling of rows from the trained model",
        "report": mode,
        "statement": statement,
    }
