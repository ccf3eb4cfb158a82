"""What one data holder does in a federated run, free of Flower and Prefect (the Flower app
template's ``task.py``; ``client_app.py`` and ``server_app.py`` wrap it in Flower's Message API).

A holder loads *its own* table through the profile (ingest, Great Expectations validation),
encodes it with the **shared schema** — the profile's public bounds, category lists, declared
kinds and ``nullable:`` list, so that every holder's one-hot blocks and scalings are the same
columns without anyone looking at anyone's rows — builds the run's models — the codes autoencoders
(``model = "codes"``: the whole-table model and one per feature group, the ``kinds``
architecture) or the VAE synthesizer (``model = "vae"``: the whole row, label included,
conditioned on the target, as ``cloakflow synthesize`` builds it) — trains them locally from
the global weights through the trainer seam (plain, or DP-SGD as one joint mechanism over all
its models; FedProx's proximal term when the server sends ``proximal-mu``), and hands back
weights and the weight its update carries in FedAvg.

Under DP (``--dp-epsilon E``) each holder runs the same plan (``dp_plan``: nothing in it
depends on a holder's rows): a Gaussian count of its rows and DP-SGD at a public sampling rate
over all rounds × local steps, composed (PLD, add/remove adjacency) to at most E on its rows.
The row count stays private: the expected batch is q × the DP count, FedAvg weighs holders
uniformly, by a size each declares public, or by the DP count, and nothing a holder sends the
server is a function of its exact row count. Its randomness comes from OS entropy, never from a
published seed.

Raises, from the loading steps: ``SchemaMismatch`` (a holder's table cannot be encoded with
the shared schema), ``DataValidationError`` (it breaks the expectation suite), and the ingest
errors for missing columns, wrong types or unreadable files.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from cloakflow.models.autoencoder import AutoencoderConfig, encode
from cloakflow.tasks.data.preprocess import PreprocessError, TablePreprocessor
from cloakflow.tasks.data.profile import DatasetProfile

ARCHITECTURE = "kinds"
WEIGHTINGS = ("examples", "uniform", "declared", "dp-count")


class SchemaMismatch(ValueError):
    """A holder's table does not fit the shared schema (the message names file, column, rule)."""

    exit_code = 2  # the command line's exit status
    headline = ("FEDERATION FAILED, nothing was published; every process of the run was "
                "stopped.")


@dataclass
class HolderData:
    """One holder's table, encoded with the shared schema."""

    source: str  # the file name
    frame: pl.DataFrame
    x: np.ndarray  # float32 (rows, encoded columns)
    pre: TablePreprocessor
    model: str = "codes"  # what the holder trains: codes autoencoders or the VAE
    source_rows: int | None = None  # the table's rows, its control rows included

    @property
    def rows(self) -> int:
        return int(self.x.shape[0])

    @property
    def schema(self) -> dict:
        """The encoding every holder must share: columns, kinds, widths, bounds."""
        return schema_of(self.pre)


def schema_of(pre: TablePreprocessor) -> dict:
    """The shared schema of a fitted preprocessor: per encoded column its kind, family, group,
    outputs and public state; nothing in it is read off the rows (``shared_preprocessor``)."""
    return {"columns": [{k: v for k, v in s.__dict__.items() if k != "dtype"}
                        for s in pre.specs]}


def fingerprint(schema: dict) -> str:
    """SHA-256 of a schema's canonical JSON: equal fingerprints, equal encodings."""
    return hashlib.sha256(json.dumps(schema, sort_keys=True, default=str).encode()).hexdigest()


def family(settings_or_model: dict | str):
    """The registered model family (``models.registry``) of a run's settings or a name.

    Raises:
        ValueError: an unknown model (the message lists the registered ones).
    """
    from cloakflow.models import registry

    name = settings_or_model if isinstance(settings_or_model, str) else \
        settings_or_model.get("model", "codes")
    return registry.get(name)


def preprocessor_options(model: str) -> dict:
    """The ``TablePreprocessor`` options of a model (its family's): the VAE models the whole
    row with a missing-value state per nullable column, as ``cloakflow synthesize`` does.

    Raises:
        ValueError: an unknown model.
    """
    return family(model).preprocessor_options()


def shared_preprocessor(profile: DatasetProfile, frame: pl.DataFrame,
                        source: str, model: str = "codes") -> TablePreprocessor:
    """The shared-schema preprocessor, fitted on a holder's rows but taking every statistic
    from the profile (public bounds: min/max or knots, categories; declared kinds; the
    ``nullable`` list).

    Raises:
        SchemaMismatch: a modelled column lacks public bounds or a declared kind (its encoding
            would depend on each holder's rows), or the holder's values fall outside them.
    """
    undeclared = [c for c in profile.features if c not in profile.columns]
    if undeclared:
        raise SchemaMismatch(
            f"{source}: federated training needs the kind of every feature declared under "
            f"`columns:` in the profile (rule: shared schema); {undeclared} would be inferred "
            "from each holder's rows, and holders could disagree")
    try:
        pre = TablePreprocessor(profile, public_bounds=True, numeric="quantile",
                                **preprocessor_options(model)).fit(frame, source)
    except PreprocessError as exc:
        raise SchemaMismatch(str(exc)) from exc
    missing = [s.name for s in pre.specs if s.missing_of is None and s.bounds != "public"]
    if missing:
        raise SchemaMismatch(
            f"{source}: federated training needs public bounds for every modelled column (rule: "
            f"shared schema; the VAE models the target too); {missing} have none, so each "
            "holder would scale or one-hot encode them from its own rows. Add them under "
            "`bounds:` in the profile (min and max for numbers, categories for categories; "
            "origin: public)")
    check_within_bounds(profile, frame, source)
    return pre


def check_within_bounds(profile: DatasetProfile, frame: pl.DataFrame, source: str) -> None:
    """Refuse values outside the public bounds (a central DP run clips them; a federation
    refuses them, since a holder whose data exceeds the shared range has a different table).

    Raises:
        SchemaMismatch: naming the file, the column, the bound and how many values break it.
    """
    from cloakflow.tasks.data import kinds

    for col in profile.features:
        b = profile.bounds.get(col)
        if b is None or b.categories is not None or col not in frame.columns:
            continue
        kind = profile.columns.get(col, "numeric")
        values = kinds.to_numbers(frame.get_column(col), kind)
        low, high = b.span(kind)  # in the kind's unit, as preprocessing reads them
        outside = int(np.sum((values < low) | (values > high)))
        if outside:
            raise SchemaMismatch(
                f"{source}: column {col!r}: {outside} values outside the shared public bounds "
                f"[{b.min}, {b.max}] (rule: shared schema); widen the bounds in the profile "
                "for every holder, or correct the rows")


def load_holder(profile: DatasetProfile, path: str | Path, control_fraction: float = 0.0,
                seed: int = 0, model: str = "codes") -> HolderData:
    """Ingest, validate and encode one holder's table with the shared schema; with
    ``control_fraction`` the holder keeps that stratified share of its rows out of training
    (split as ``cloakflow run`` splits with the same seed), the control rows its own release's
    attacks need.

    Raises:
        FileNotFoundError: no such file.
        SchemaMismatch: see ``shared_preprocessor``; unseen categories are refused by name.
        DataValidationError: the expectation suite fails.
        ingest errors (``IngestError``/``ValueError``): missing columns, wrong types.
    """
    from cloakflow.tasks.data.ingest import load_table
    from cloakflow.tasks.data.validate import DataValidationError, validate_table

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"holder table {path} does not exist")
    frame = load_table(str(path), profile)
    report = validate_table(frame, profile, path.name)
    if not report.success:
        raise DataValidationError(report)
    source_rows = frame.height
    if control_fraction > 0:
        from cloakflow.tasks.data.split import train_control

        train_idx, _ = train_control(frame, profile, control_fraction, seed)
        frame = frame[train_idx]
    pre = shared_preprocessor(profile, frame, path.name, model)
    try:
        x = pre.transform(frame, path.name)
    except PreprocessError as exc:  # an unseen category: the one-hot would differ
        raise SchemaMismatch(f"{exc} (rule: shared schema)") from exc
    return HolderData(path.name, frame, x.astype(np.float32), pre, model, source_rows)


# ---------------------------------------------------------------------------- models
def members(pre: TablePreprocessor) -> dict[str, list[int] | None]:
    """Codes model name -> the encoded columns it reads: ``whole`` (all) and each group."""
    return {"whole": None, **pre.group_slices()}


def loop_settings(settings: dict):
    """The local loop of a round (``trainer.TrainConfig``): ``local-epochs``, ``batch-size``,
    ``learning-rate``."""
    from cloakflow.models.training.trainer import TrainConfig

    return TrainConfig(epochs=int(settings["local-epochs"]),
                       batch_size=int(settings["batch-size"]),
                       learning_rate=float(settings["learning-rate"]))


def model_spec(pre: TablePreprocessor, settings: dict):
    """The run's model architecture over the shared schema (its family's ``spec``): the
    codes autoencoders in the ``kinds`` architecture, or the VAE conditioned on the target
    with ``latent`` (0: the rule)."""
    fam = family(settings)
    options = {"latent": int(settings.get("latent", 0) or 0)} if fam.models_target else \
        {"architecture": ARCHITECTURE}
    return fam.spec(pre, loop_settings(settings), **options)


def model_configs(pre: TablePreprocessor, settings: dict) -> dict[str, AutoencoderConfig]:
    """Each codes model's architecture (``kinds`` heads from the shared schema) and loop."""
    return family("codes").spec(pre, loop_settings(settings), architecture=ARCHITECTURE).configs


def vae_config(pre: TablePreprocessor, settings: dict):
    """The federated VAE's ``VaeConfig`` (``model_spec`` of a VAE run)."""
    return family("vae").spec(pre, loop_settings(settings),
                              latent=int(settings.get("latent", 0) or 0))


def model_names(pre: TablePreprocessor, settings: dict) -> list[str]:
    """The run's networks: ``["vae"]``, or the codes autoencoders (``members``)."""
    return family(settings).member_names(pre.profile)


def initial_weights(pre: TablePreprocessor, settings: dict, seed: int) -> dict[str, list]:
    """The global models' starting weights, from the public seed (no rows involved)."""
    return family(settings).initial_weights(model_spec(pre, settings), seed)


def to_arrays(weights: dict[str, list[np.ndarray]]) -> dict[str, np.ndarray]:
    """Flat ``"model/index" -> array`` (the order Flower's ArrayRecord keeps)."""
    return {f"{name}/{i}": np.asarray(a) for name, ws in weights.items()
            for i, a in enumerate(ws)}


def from_arrays(arrays: dict[str, np.ndarray]) -> dict[str, list[np.ndarray]]:
    out: dict[str, list[np.ndarray]] = {}
    for key, a in arrays.items():
        name, _, i = key.rpartition("/")
        out.setdefault(name, []).append((int(i), np.asarray(a)))
    return {n: [a for _, a in sorted(v, key=lambda t: t[0])] for n, v in out.items()}


# ---------------------------------------------------------------------------- DP
DEFAULT_DELTA = 1e-6  # public: a default derived from a holder's rows would reveal them
DEFAULT_SAMPLING_RATE = 0.02  # public q: the expected batch is q times the holder's rows
COUNT_SHARE = 0.05  # the DP row count alone costs about this share of E


@dataclass(frozen=True)
class FederatedDpPlan:
    """One holder's DP over the whole federation, fixed before any row is read and the same
    for every holder (nothing in it depends on a holder's rows): a Gaussian count of the rows
    (sigma ``count_sigma``, sensitivity 1) and DP-SGD at a public sampling rate over all
    rounds × local steps, composed by PLD under add/remove adjacency to at most ``epsilon``."""

    target_epsilon: float
    delta: float
    sgd: object  # accounting.DpBudget: sigma, q, steps over all rounds (its own epsilon)
    steps_per_round: int
    count_sigma: float
    count_epsilon: float  # the count alone at delta
    epsilon: float  # both composed
    clip_norm: float  # the joint clip over all the holder's models
    counted: str = "row count"  # or the VAE's "condition histogram" (its sum: the DP count)

    @property
    def rounds(self) -> int:
        return self.sgd.steps // self.steps_per_round

    def round_budget(self):
        """One round's DP-SGD steps (what ``local_train`` runs)."""
        from cloakflow.models.training.accounting import DpBudget

        b = self.sgd
        return DpBudget(float("nan"), self.delta, b.noise_multiplier, b.sampling_rate,
                        self.steps_per_round, self.steps_per_round * b.sampling_rate,
                        b.accountant, b.sampling, b.adjacency)

    def spent(self, rounds: int) -> float:
        """Epsilon at delta after the count and ``rounds`` rounds (PLD, add/remove)."""
        from cloakflow.models.training.accounting import epsilon, histogram_event

        if rounds <= 0:
            return self.count_epsilon
        b = self.sgd
        return epsilon(b.noise_multiplier, b.sampling_rate, self.steps_per_round * rounds,
                       self.delta, "pld", adjacency="add_remove",
                       extra_events=(histogram_event(self.count_sigma),)).epsilon

    def budget(self, models: list[str]):
        """The holder's ``tasks.privacy.budget.Budget``: DP-SGD over all models and rounds,
        then the Gaussian count (add/remove adjacency)."""
        from cloakflow.tasks.privacy.budget import Budget, Mechanism

        return Budget(self.target_epsilon, self.delta, "add_remove", (
            Mechanism.dp_sgd(models, self.sgd, self.clip_norm),
            Mechanism.gaussian((self.counted,), self.count_sigma)))

    def section(self, models: list[str]) -> dict:
        """The manifest's and the ledger's ``dp`` shape (``tasks.privacy.dp``): two mechanisms,
        DP-SGD over all models and rounds and the row count."""
        mechanisms = [m.entry(self.delta, "add_remove", digits=None)
                      for m in self.budget(models).mechanisms]
        return {"design": "joint", "adjacency": "add_remove", "accountant": "pld",
                "epsilon": self.epsilon, "delta": self.delta, "mechanisms": mechanisms}


def dp_plan(settings: dict, models: int) -> FederatedDpPlan:
    """A holder's DP for the whole federation (Abadi et al. 2016 DP-SGD, as
    ``models.training.dp_sgd``; the count as a Gaussian mechanism): ``num-server-rounds`` ×
    ceil(``local-epochs`` / q) Poisson-sampled steps at the public rate q
    (``dp-sampling-rate``, not batch / rows, which would reveal the rows), and one Gaussian
    count of the rows costing about ``COUNT_SHARE`` of E (the public divisor q × count of the
    noisy gradient sums, and the FedAvg weight under ``dp-count`` weighting); DP-SGD's sigma
    is solved so that both composed spend at most ``dp-epsilon`` at ``dp-delta`` (default
    ``DEFAULT_DELTA``) under add/remove adjacency: a holder's row count stays private.

    Raises:
        ValueError: no epsilon, a delta or sampling rate outside (0, 1), or no sigma reaches
            the target.
    """
    import math

    eps = float(settings.get("dp-epsilon", 0) or 0)
    if not (math.isfinite(eps) and eps > 0):
        raise ValueError("dp_plan needs dp-epsilon > 0")
    delta = float(settings.get("dp-delta", 0) or 0) or DEFAULT_DELTA
    q = float(settings.get("dp-sampling-rate", 0) or 0) or DEFAULT_SAMPLING_RATE
    if not (0 < delta < 1 and 0 < q <= 1):
        raise ValueError(f"dp-delta {delta} must lie in (0, 1) and dp-sampling-rate {q} in "
                         "(0, 1]")
    rounds, local = int(settings["num-server-rounds"]), int(settings["local-epochs"])
    per_round = max(1, math.ceil(local / q))
    count_sigma, sgd, total, count_alone = _solve(eps, delta, q, rounds * per_round)
    counted = family(settings).counted
    return FederatedDpPlan(eps, delta, sgd, per_round, count_sigma, count_alone, total,
                           float(settings["dp-clip"]) * math.sqrt(models), counted)


@functools.lru_cache(maxsize=16)
def _solve(eps: float, delta: float, q: float, steps: int):
    """(count sigma, DP-SGD budget, composed epsilon, the count's epsilon alone); cached,
    since PLD calibration takes seconds and every holder of a run solves the same plan."""
    from cloakflow.models.training import accounting
    from cloakflow.tasks.privacy.budget import solve

    budget = solve(eps, delta, "add_remove", sampling_rate=q, steps=steps, clip_norm=1.0,
                   trains=("models",), counts=((("row count",), COUNT_SHARE, 1.0),))
    sgd_m, count = budget.mechanisms
    sgd = accounting.epsilon(sgd_m.noise_multiplier, q, steps, delta, "pld",
                             adjacency="add_remove")
    return count.noise_multiplier, sgd, budget.epsilon, count.epsilon(delta, "add_remove")


def dp_counts(holder: HolderData, settings: dict, plan: FederatedDpPlan,
              rng: np.random.Generator | None = None) -> np.ndarray:
    """The holder's DP counts (Gaussian mechanism, sigma ``plan.count_sigma``, noise from OS
    entropy; ``rng`` in tests only), clipped at 0: ``[rows]`` for the codes models, the
    condition's category counts for the VAE. Their sum (at least 1) is the DP row count."""
    from cloakflow.models.training.dp_counts import noisy_counts

    counts = family(settings).counts(model_spec(holder.pre, settings), holder.pre, holder.x)
    return noisy_counts(counts, plan.count_sigma, rng)


# ---------------------------------------------------------------------------- local training
def local_train(holder: HolderData, weights: dict[str, list[np.ndarray]], settings: dict,
                plan: FederatedDpPlan | None = None, dp_rows: float | None = None,
                rng: np.random.Generator | None = None,
                seed: int = 0) -> tuple[dict[str, list[np.ndarray]], dict]:
    """Train every model from ``weights`` on the holder's rows for ``local-epochs``.

    Plain runs shuffle with ``seed`` (public). DP runs take the holder's ``plan`` (one round:
    ``plan.steps_per_round`` Poisson-sampled steps, the joint clip ``plan.clip_norm``) and
    ``dp_rows``, its DP row count (the sum of ``dp_counts``): the noisy gradient sums are
    divided by the public q × dp_rows, not by the exact rows. Secret randomness unless a test
    injects ``rng``. With ``proximal-mu`` > 0 (FedProx) every step's gradient gains
    mu * (w - weights). Returns (new weights, metrics: mean loss of the last epoch, seconds, steps).
    """
    from cloakflow.models import registry

    budget = clip = expected = None
    if plan is not None:
        if dp_rows is None:
            raise ValueError("DP local training needs the holder's DP row count (dp_rows)")
        budget, clip = plan.round_budget(), plan.clip_norm
        expected = plan.sgd.sampling_rate * dp_rows
    # FedProx: Flower's FedProx strategy sends proximal-mu in the train config
    mu = float(settings.get("proximal-mu", 0) or 0)
    fam, spec = family(settings), model_spec(holder.pre, settings)
    new, log = registry.fit(fam, spec, holder.x, weights, seed=seed, budget=budget,
                            clip_norm=clip, rng=rng, expected_batch=expected, proximal_mu=mu)
    losses = [v for k, v in log.history.items() if k.endswith(".private")]
    loss = sum(v[-1] for v in losses) if losses else float("nan")
    # training only: building the models is round overhead
    return new, {"train-loss": float(loss), "train-seconds": log.seconds,
                 "steps": int(log.private_steps)}


def holder_weight(rows: int, settings: dict, dp_rows: float | None = None) -> float:
    """The weight of a holder's update in FedAvg: its row count (``examples``, non-DP only),
    1 (``uniform``), the size it declared public (``declared``), or its DP row count
    (``dp-count``, DP only: ``dp_rows``)."""
    how = settings.get("weighting", "examples")
    dp = float(settings.get("dp-epsilon", 0) or 0) > 0
    if how == "dp-count":
        if not dp or dp_rows is None:
            raise ValueError("weighting 'dp-count' weighs holders by their DP row counts: it "
                             "needs --dp-epsilon")
        return float(dp_rows)
    if how == "examples":
        if dp:
            raise ValueError("under DP holders are weighed independently of their rows: weigh "
                             "uniformly or by a declared public size")
        return float(rows)
    if how == "uniform":
        return 1.0
    if how == "declared":
        declared = float(settings.get("declared-size", 0) or 0)
        if declared <= 0:
            raise ValueError("weighting 'declared' needs the holder's declared-size")
        return declared
    raise ValueError(f"unknown weighting {how!r}; choose one of {WEIGHTINGS}")


def codes_of(holder: HolderData, weights: dict[str, list[np.ndarray]],
             settings: dict) -> dict[str, np.ndarray]:
    """The holder's own rows encoded by each global model: name -> (rows, code size)."""
    from cloakflow.models.autoencoder import autoencoder_from_weights

    spec = family("codes").spec(holder.pre, loop_settings(settings), architecture=ARCHITECTURE)
    out = {}
    for name, cfg in spec.configs.items():
        _, encoder, _ = autoencoder_from_weights(spec.widths[name], cfg, weights[name])
        cols = spec.columns[name]
        out[name] = encode(encoder, holder.x if cols is None else holder.x[:, cols])
    return out
