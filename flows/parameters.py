"""The flows' parameter models: the one place their defaults, bounds and help texts live.

The Prefect UI renders them as a deployment's run form, the server validates them, and the
command line generates its options from them (``flows/cli.py``). Only pydantic is imported here,
so ``cloakflow --help`` and option errors come back before any heavy library loads.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, model_validator


class SourceFields(BaseModel):
    """The fields every flow shares: which table, described by which profile."""

    dataset: str = Field("bank-marketing", description="profile name in deployments/profiles/")
    input_path: str | None = Field(None, description="table to read instead of the profile's")
    profile_path: str | None = Field(None, description="profile YAML instead of the named one")


class ReleaseFields(SourceFields):
    """The fields every release kind's entry flow shares (mixed into its parameters): the
    table, the release folder and the gate."""

    out: str = Field("releases", description="folder that receives <dataset>/<run id>/")
    privacy_attacks: bool = Field(
        True, description="run the attacks; without them the policy cannot be checked and "
                          "the release is published only with accept_risk")
    accept_risk: str | None = Field(
        None, description="publish even if the privacy policy is crossed; the reason is "
                          "recorded in the manifest")


class HolderField(BaseModel):
    """A holder's own release from a federation's models (the kinds a federation feeds)."""

    holder: str | None = Field(None, description="with models_from: this table's holder name "
                                                 "in the federation")


class DpFields(BaseModel):
    """The DP fields every release kind's entry flow shares (its delta's default, and its own
    DP settings, stay with the kind)."""

    dp_epsilon: float | None = Field(
        None, gt=0, allow_inf_nan=False,
        description="differential privacy for the release: epsilon for everything that reads "
                    "the training rows, all its models and counts together (none = no DP); "
                    "needs public bounds in the profile")
    dp_clip: float | None = Field(
        None, gt=0, allow_inf_nan=False,
        description="DP-SGD's per-row gradient clip norm C (default 0.1, chosen on the public "
                    "bank table)")
    dp_epochs: int = Field(30, ge=1, description="DP-SGD epochs (fixed, no early stopping; "
                                                 "steps = epochs / q)")
    dp_report: Literal["private", "full"] = Field(
        "private", description="private = the release holds only DP-covered figures "
                               "(evaluation and attack results stay in MLflow); full = in the "
                               "manifest too, each marked not covered by epsilon")


class RunParameters(DpFields, HolderField, ReleaseFields):
    """Parameters of one anonymisation run (shown as a form in the Prefect UI)."""

    seed: int = Field(42, description="seeds the split, the models and the evaluation")
    epochs: int = Field(100, ge=1, description="most epochs per autoencoder (early stopping)")
    batch_size: int = Field(256, ge=1)
    validation: Literal["random", "tail"] = Field(
        "random", description="autoencoder validation rows: a seeded random 30%, or the last "
                              "30% as Keras's validation_split (the tutorial's)")
    architecture: Literal["tutorial", "kinds"] = Field(
        "kinds", description="autoencoder: kinds (quantile-scaled numerics, one code block, "
                             "head and loss per column) or the tutorial's (ReLU, one MSE, "
                             "code n/2)")
    folds: int = Field(10, ge=2, description="cross-validation folds")
    fold_scheme: Literal["stratified-shuffled", "tutorial"] = Field(
        "stratified-shuffled",
        description="tutorial = unshuffled folds (on a date-ordered table, a time split)")
    forest: Literal["lightgbm", "sklearn"] = Field(
        "lightgbm", description="evaluation forest engine: lightgbm (fast) or sklearn (the "
                                "tutorial's RandomForest); the same model family")
    control_fraction: float = Field(
        0.1, ge=0.0, le=0.5, description="rows held out of training and release (attack control)")
    importance_rows: int = Field(10_000, ge=0, description="rows scored in permutation importance")
    use_cache: bool = Field(
        True, description="reuse finished models and evaluations of an earlier identical run")
    noise_multiplier: float | None = Field(
        None, ge=0, description="code noise sd in units of the clip norm (default: profile's)")
    clip_norm: float | None = Field(
        None, gt=0, description="L2 bound per code vector (default: profile's; none = median)")
    dp_delta: float | None = Field(
        None, gt=0, lt=1, description="delta of the release (default: a power of ten <= "
                                      "1/(10 n))")
    dp_design: Literal["joint", "split"] = Field(
        "split", description="split = one DP-SGD mechanism per model, the budget split by PLD "
                             "composition (measured better); joint = all models one mechanism "
                             "(jointly clipped, one noise draw)")
    models_from: str | None = Field(
        None, description="a federation folder (cloakflow federate): encode with its global "
                          "models instead of training (a holder's own release)")

    @model_validator(mode="after")
    def _federated(self) -> RunParameters:
        _holder_release_rules(self, "encodes with a federation's models: nothing is trained "
                                    "here, so there is no DP-SGD to run (the federation's "
                                    "--dp-epsilon is what protects each holder)")
        if self.models_from is not None and self.architecture != "kinds":
            raise ValueError("a federation's models have the kinds architecture")
        return self


def _holder_release_rules(params, no_dp: str) -> None:
    """A holder's release (``models_from`` + ``holder``): both or neither, and no DP-SGD of its
    own (``no_dp`` says why).

    Raises:
        ValueError: the rule broken.
    """
    if params.holder is not None and params.models_from is None:
        raise ValueError("--holder names this table in a federation: give the federation's "
                         "folder with --models-from")
    if params.models_from is not None:
        if not params.holder:
            raise ValueError("models_from needs holder: this table's holder name in the "
                             "federation (its manifest lists them)")
        if params.dp_epsilon is not None:
            raise ValueError(f"models_from {no_dp}")


class SynthesizeParameters(DpFields, HolderField, ReleaseFields):
    """Parameters of one synthetic release (shown as a form in the Prefect UI)."""

    model: Literal["vae", "gan"] = Field(
        "vae", description="the generator: vae (a conditional tabular VAE) or gan (a "
                           "conditional tabular GAN)")
    rows: int | None = Field(
        None, ge=1, description="synthetic rows to publish (default: as many as the training "
                                "rows; under DP their DP count)")
    condition: str | None = Field(
        None, description="COLUMN=VALUE: condition the model on this categorical, boolean or "
                          "discrete numeric column and give every row this value (default: "
                          "conditioned on the target, labels drawn at the training rate or "
                          "its DP estimate)")
    seed: int = Field(42, description="seeds the split, non-DP training, sampling and the "
                                      "evaluation")
    epochs: int = Field(60, ge=1, description="training epochs of the VAE or the GAN's critic "
                                              "(fixed; no early stopping)")
    batch_size: int = Field(500, ge=1, description="rows per step (non-DP)")
    latent: int = Field(0, ge=0, description="latent dimensions (0: the rule: VAE one per "
                                             "column, 8 to 64; GAN two per column, 16 to 128)")
    bound_states: bool = Field(
        False, description="without DP: a numeric column with 5% or more of its rows at its "
                           "min or max models that mass as a category of its own (helps a "
                           "zero-inflated amount, may cost elsewhere: see the README)")
    control_fraction: float = Field(
        0.2, ge=0.05, le=0.5, description="rows held out of training: the evaluation's and "
                                          "the attacks' control rows (DP: each row on a "
                                          "secret coin)")
    dp_delta: float | None = Field(
        None, gt=0, lt=1, description="delta (default 1e-6, public: not derived from the row "
                                      "count)")
    dp_sampling_rate: float = Field(
        0.01, gt=0, le=1, description="DP-SGD Poisson sampling rate q (public, so that the "
                                      "row count is not published)")
    models_from: str | None = Field(
        None, description="a federation folder (cloakflow federate --model vae): sample from "
                          "its global VAE instead of training (a holder's own release)")

    @model_validator(mode="after")
    def _federated(self) -> SynthesizeParameters:
        _holder_release_rules(self, "samples from a federation's VAE: nothing is trained here "
                                    "(the federation's --dp-epsilon is what protects each "
                                    "holder, its DP label counts included)")
        return self


class DesensitizeParameters(ReleaseFields):
    """Parameters of one desensitized release (shown as a form in the Prefect UI)."""

    sensitive: list[str] | None = Field(
        None, description="A,B: the categorical or boolean columns whose signal is removed "
                          "(not published; default: the profile's privacy.sensitive)")
    distortion: float = Field(
        0.1, ge=0, le=1, description="distortion budget: the mean over a row's released "
                                     "cells of each cell's change (a category changed: 1; a "
                                     "number: its squared change in standard deviations of "
                                     "its normal score, over 4); a penalty, not a hard bound")
    seed: int = Field(42, description="seeds the split, the privatizer, its noise and the "
                                      "evaluation")
    epochs: int = Field(30, ge=1, description="training epochs (passes over the rows by both "
                                              "networks together; a fresh adversary every 5)")
    batch_size: int = Field(500, ge=1, description="rows per step")
    control_fraction: float = Field(
        0.2, ge=0.05, le=0.5, description="rows held out of training and release: the "
                                          "utility's test rows")


class MaskParameters(ReleaseFields):
    """Parameters of one masked release (shown as a form in the Prefect UI)."""

    columns: list[str] | None = Field(
        None, description="A,B: the columns whose cells are regenerated (default: the "
                          "profile's quasi_identifiers)")
    rows: Literal["unique", "all"] = Field(
        "unique", description="which rows: unique (those unique on the profile's "
                              "quasi-identifiers, the rows a linkage singles out) or all")
    folds: int = Field(3, ge=2, le=10, description="K: each row is imputed by a model "
                                                   "trained on the other K - 1 folds")
    seed: int = Field(42, description="seeds the split, the folds, the imputers, their draws "
                                      "and the evaluation")
    epochs: int = Field(30, ge=1, description="training epochs per fold (passes over the rows "
                                              "by both networks together)")
    batch_size: int = Field(500, ge=1, description="rows per step")
    control_fraction: float = Field(
        0.2, ge=0.05, le=0.5, description="rows held out of training and release: the "
                                          "utility's test rows")


class FederateParameters(SourceFields):
    """Parameters of one federated training run (shown as a form in the Prefect UI)."""

    input_path: str | None = Field(
        None, description="one table to partition into --clients holders (a demo; default: "
                          "the profile's table)")
    holders: list[str] | None = Field(
        None, description="FILE1,FILE2,...: each holder's own table (instead of a partition)")
    partition: str = Field(
        "random", description="how one table is split into holders: random (IID) or "
                              "by=COLUMN (sorted by the column: a skewed, non-IID split)")
    clients: int = Field(3, ge=2, le=16, description="holders when partitioning one table")
    out: str = Field("federated-runs", description="folder that receives <dataset>/<run id>/")
    rounds: int = Field(5, ge=1, description="FedAvg (or FedProx) rounds")
    local_epochs: int = Field(2, ge=1, description="epochs each holder trains per round")
    batch_size: int = Field(256, ge=1, description="rows per step without DP (under DP the "
                                                   "expected batch is q times the DP row count)")
    learning_rate: float = Field(1e-3, gt=0, description="Adam's learning rate, per holder")
    model: Literal["codes", "vae"] = Field(
        "codes", description="what the holders train: codes (the codes autoencoders; each "
                             "holder then publishes codes) or vae (the VAE synthesizer; each "
                             "holder then publishes synthetic rows)")
    latent: int = Field(0, ge=0, description="model vae: latent dimensions (0: its rule)")
    strategy: Literal["fedavg", "fedprox"] = Field(
        "fedavg", description="server strategy: fedavg, or fedprox (a proximal term keeps "
                              "skewed holders' local training near the global model)")
    proximal_mu: float | None = Field(
        None, ge=0, allow_inf_nan=False,
        description="FedProx's mu (with --strategy fedprox; default 0.1)")
    seed: int = Field(42, description="seeds the partition, the initial global weights and "
                                      "non-DP training")
    weighting: Literal["examples", "uniform", "declared", "dp-count"] | None = Field(
        None, description="FedAvg weights: examples (row counts; non-DP only), uniform "
                          "(default under DP), declared (--declared-sizes), dp-count (each "
                          "holder's DP row count; DP only)")
    declared_sizes: list[float] | None = Field(
        None, description="N1,N2,...: each holder's size declared public, in holder order "
                          "(for --weighting declared)")
    dp_epsilon: float | None = Field(
        None, gt=0, allow_inf_nan=False,
        description="DP-SGD on every holder: epsilon per holder over all its models and "
                    "rounds (none = no DP); needs public bounds (as every federation does)")
    dp_delta: float | None = Field(
        None, gt=0, lt=1, description="delta per holder (default 1e-6, public; keep it below "
                                      "1/(10 n) of the largest holder's rows)")
    dp_sampling_rate: float = Field(
        0.02, gt=0, le=1, description="DP: the public Poisson sampling rate q of every "
                                      "holder's DP-SGD (steps per round: local epochs / q)")
    dp_clip: float = Field(0.1, gt=0, allow_inf_nan=False,
                           description="per-model clip norm C (joint clip C*sqrt(models))")
    timeout: float = Field(1800.0, gt=0, description="seconds before the run is stopped")
    control_fraction: float = Field(
        0.1, ge=0.0, le=0.5, description="each holder's rows kept out of training: its own "
                                         "release's control rows (attacks)")
    release: bool = Field(
        True, description="then each holder publishes its own release through the "
                          "evaluation, attacks and gate: its rows encoded with the global "
                          "models (codes), or synthetic rows from the global VAE (vae)")
    accept_risk: str | None = Field(
        None, description="holders' releases: publish even if the policy is crossed (reason "
                          "recorded)")
    folds: int = Field(10, ge=2, description="holders' releases: cross-validation folds")
    importance_rows: int = Field(10_000, ge=0,
                                 description="holders' releases: rows in permutation importance")

    @property
    def mu(self) -> float:
        """FedProx's mu: ``proximal_mu`` or its default, 0.1."""
        return 0.1 if self.proximal_mu is None else self.proximal_mu

    @model_validator(mode="after")
    def _consistent(self) -> FederateParameters:
        if self.dp_epsilon is not None and self.weighting == "examples":
            raise ValueError("under DP holders are weighed independently of their exact rows: "
                             "weighting must be uniform, declared or dp-count")
        kind = release_kind(self.model)
        if self.release and self.control_fraction < kind.min_control_fraction:
            raise ValueError(f"a holder's {kind.name} release measures itself on control rows: "
                             f"--control-fraction must be at least {kind.min_control_fraction:g}"
                             f" with --model {self.model} (or --no-release)")
        if self.proximal_mu is not None and self.strategy != "fedprox":
            raise ValueError("--proximal-mu is FedProx's: add --strategy fedprox")
        if self.declared_sizes is not None and self.weighting != "declared":
            raise ValueError("--declared-sizes are FedAvg weights: add --weighting declared")
        if self.dp_epsilon is None and self.weighting == "dp-count":
            raise ValueError("weighting dp-count needs --dp-epsilon (without DP, weigh by "
                             "examples)")
        if self.holders and self.partition != "random":
            raise ValueError("partition splits one table for a demo; with holders each file "
                             "is a holder's table")
        if self.holders is not None and len(self.holders) < 2:
            raise ValueError("a federation needs at least 2 holder files")
        if self.weighting == "declared":
            count = len(self.holders) if self.holders else self.clients
            if not self.declared_sizes or len(self.declared_sizes) != count or \
                    min(self.declared_sizes) <= 0:
                raise ValueError(f"weighting declared needs {count} positive declared_sizes, "
                                 "one per holder")
        return self


class FrontierParameters(SourceFields):
    """Parameters of a frontier sweep (shown as a form in the Prefect UI)."""

    out: str = Field("frontier", description="folder that receives <dataset>/<run id>/")
    multipliers: list[float] = Field(
        [0.0, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0], min_length=1,
        description="code noise sd per coordinate, in units of the clip norm")
    clip_norm: float | None = Field(None, gt=0, description="none = median code norm")
    seed: int = 42
    epochs: int = Field(100, ge=1)
    batch_size: int = Field(256, ge=1)
    validation: Literal["random", "tail"] = "random"
    architecture: Literal["tutorial", "kinds"] = "kinds"
    folds: int = Field(5, ge=2)
    fold_scheme: Literal["stratified-shuffled", "tutorial"] = "stratified-shuffled"
    forest: Literal["lightgbm", "sklearn"] = "lightgbm"
    control_fraction: float = Field(0.1, ge=0.0, le=0.5)


def release_kind(model: str):
    """The release kind (``tasks.release.kinds``) a model's trained weights feed."""
    from cloakflow.tasks.release import kinds

    return kinds.for_model(model)
