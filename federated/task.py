"""What one data holder does in a federated run, free of Flower and Prefect (the Flower app
template's ``task.py``; ``client_app.py`` and ``server_app.py`` wrap it in Flower's Message API).

A holder loads *its own* table through the profile (ingest, Great Expectations validation),
encodes it with the **shared schema** — the profile's public bounds, category lists, declared
kinds and ``nullable:`` list, so that every holder's one-hot blocks and scalings are the same
columns without anyone looking at anyone's rows — builds the codes autoencoders (the whole-table
model and one per feature group, the ``kinds`` architecture), trains them locally from the
global weights through the trainer seam (plain, or DP-SGD as one joint mechanism over all its
models), and hands back weights and the weight its update carries in FedAvg.

Under DP (``--dp-epsilon E``) each holder plans its own DP-SGD so that all rounds × local steps
composed (PLD, replace-one adjacency, the holder's row count public to itself) spend at most E
on its rows; its randomness comes from OS entropy, never from a published seed. FedAvg then
weighs holders uniformly (or by a size each declares), not by their row counts (which the
replace-one accounting nonetheless treats as public: q = batch / n reveals n).

Raises, from the loading steps: ``SchemaMismatch`` (a holder's table cannot be encoded with
the shared schema), ``DataValidationError`` (it breaks the expectation suite), and the ingest
errors for missing columns, wrong types or unreadable files.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import polars as pl

from cloakflow.models.autoencoder import AutoencoderConfig, build_autoencoder, encode
from cloakflow.tasks.data.preprocess import PreprocessError, TablePreprocessor
from cloakflow.tasks.data.profile import DatasetProfile

ARCHITECTURE = "kinds"
WEIGHTINGS = ("examples", "uniform", "declared")


class SchemaMismatch(ValueError):
    """A holder's table does not fit the shared schema (the message names file, column, rule)."""


@dataclass
class HolderData:
    """One holder's table, encoded with the shared schema."""

    source: str  # the file name
    frame: pl.DataFrame
    x: np.ndarray  # float32 (rows, encoded columns)
    pre: TablePreprocessor

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


def shared_preprocessor(profile: DatasetProfile, frame: pl.DataFrame,
                        source: str) -> TablePreprocessor:
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
        pre = TablePreprocessor(profile, public_bounds=True, numeric="quantile").fit(
            frame, source)
    except PreprocessError as exc:
        raise SchemaMismatch(str(exc)) from exc
    missing = [s.name for s in pre.specs if s.missing_of is None and s.bounds != "public"]
    if missing:
        raise SchemaMismatch(
            f"{source}: federated training needs public bounds for every feature (rule: shared "
            f"schema); {missing} have none, so each holder would scale or one-hot encode them "
            "from its own rows. Add them under `bounds:` in the profile (min and max for "
            "numbers, categories for categories; origin: public)")
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
                seed: int = 0) -> HolderData:
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
    from cloakflow.tasks.data.ingest import ingest
    from cloakflow.tasks.data.validate import DataValidationError, validate

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"holder table {path} does not exist")
    frame = ingest.fn(str(path), profile)
    report = validate.fn(frame, profile, path.name)
    if not report.success:
        raise DataValidationError(report)
    if control_fraction > 0:
        from cloakflow.tasks.data.split import positive_labels, split_rows

        train_idx, _ = split_rows(positive_labels(frame, profile), control_fraction, seed)
        frame = frame[train_idx]
    pre = shared_preprocessor(profile, frame, path.name)
    try:
        x = pre.transform(frame, path.name)
    except PreprocessError as exc:  # an unseen category: the one-hot would differ
        raise SchemaMismatch(f"{exc} (rule: shared schema)") from exc
    return HolderData(path.name, frame, x.astype(np.float32), pre)


# ---------------------------------------------------------------------------- models
def members(pre: TablePreprocessor) -> dict[str, list[int] | None]:
    """Model name -> the encoded columns it reads: ``whole`` (all) and each feature group."""
    return {"whole": None, **pre.group_slices()}


def model_configs(pre: TablePreprocessor, settings: dict) -> dict[str, AutoencoderConfig]:
    """Each model's architecture (``kinds`` heads from the shared schema) and loop settings."""
    base = AutoencoderConfig(architecture=ARCHITECTURE, batch_size=int(settings["batch-size"]),
                             learning_rate=float(settings["learning-rate"]),
                             epochs=int(settings["local-epochs"]))
    heads = {"whole": pre.heads(), **{g: pre.heads(g) for g in pre.profile.groups}}
    return {name: replace(base, heads=tuple(heads[name])) for name in members(pre)}


def widths(pre: TablePreprocessor) -> dict[str, int]:
    total = len(pre.output_columns)
    return {name: total if cols is None else len(cols) for name, cols in members(pre).items()}


def initial_weights(pre: TablePreprocessor, settings: dict, seed: int) -> dict[str, list]:
    """The global models' starting weights, from the public seed (no rows involved)."""
    configs, w = model_configs(pre, settings), widths(pre)
    return {name: build_autoencoder(w[name], cfg, seed + i)[0].get_weights()
            for i, (name, cfg) in enumerate(configs.items())}


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
def dp_plan(rows: int, settings: dict):
    """A holder's DP-SGD over the whole federation: sigma solved so that ``rounds`` ×
    ``local-epochs`` of Poisson-sampled steps at q = batch / rows, composed (PLD, replace-one),
    spend at most ``dp-epsilon`` at ``dp-delta`` (default: the power of ten at or below
    1/(10 rows)). Returns (the whole run's budget, one round's budget).

    Raises:
        ValueError: no epsilon in the settings, or a batch larger than the holder's rows.
    """
    from cloakflow.models.training.accounting import default_delta, epsilon
    from cloakflow.models.training.dp_sgd import DpSgdConfig, plan

    eps = float(settings.get("dp-epsilon", 0) or 0)
    if eps <= 0:
        raise ValueError("dp_plan needs dp-epsilon > 0")
    batch = int(settings["batch-size"])
    if batch > rows:
        raise ValueError(f"batch size {batch} exceeds the holder's {rows} rows")
    delta = float(settings.get("dp-delta", 0) or 0) or default_delta(rows)
    rounds, local = int(settings["num-server-rounds"]), int(settings["local-epochs"])
    config = DpSgdConfig(target_epsilon=eps, delta=delta, accountant="pld",
                         adjacency="replace_one")
    total = plan(rows, batch, rounds * local, config)
    per_round = max(total.steps // rounds, 1)
    one = epsilon(total.noise_multiplier, total.sampling_rate, per_round, delta,
                  accountant="pld", adjacency="replace_one")
    return total, one


# ---------------------------------------------------------------------------- local training
def local_train(holder: HolderData, weights: dict[str, list[np.ndarray]], settings: dict,
                round_budget=None, rng: np.random.Generator | None = None,
                seed: int = 0) -> tuple[dict[str, list[np.ndarray]], dict]:
    """Train every model from ``weights`` on the holder's rows for ``local-epochs``.

    Plain runs shuffle with ``seed`` (public); DP runs take ``round_budget`` (``dp_plan``'s
    second value) and the joint clip ``dp-clip`` × √(models), with secret randomness unless a
    test injects ``rng``. Returns (new weights, metrics: mean loss of the last epoch, seconds,
    rows used).
    """
    from cloakflow.models.training.trainer import TrainConfig, train

    configs, w, cols = model_configs(holder.pre, settings), widths(holder.pre), members(holder.pre)
    models = []
    for name, cfg in configs.items():
        ae = build_autoencoder(w[name], cfg, seed=0)[0]
        ae.set_weights(weights[name])
        models.append(ae)
    config = TrainConfig(epochs=int(settings["local-epochs"]),
                         batch_size=int(settings["batch-size"]),
                         learning_rate=float(settings["learning-rate"]))
    start = time.perf_counter()
    clip = None
    if round_budget is not None:
        clip = float(settings["dp-clip"]) * float(np.sqrt(len(models)))
    log = train(models, holder.x, config, budget=round_budget, clip_norm=clip,
                columns=list(cols.values()), seed=seed, rng=rng)
    seconds = time.perf_counter() - start
    loss = log.history.get("loss", [float("nan")])[-1]
    new = {name: m.get_weights() for name, m in zip(configs, models, strict=True)}
    return new, {"train-loss": float(loss), "train-seconds": seconds,
                 "steps": int(log.steps_run)}


def holder_weight(rows: int, settings: dict) -> float:
    """The weight of a holder's update in FedAvg: its row count (``examples``, non-DP only),
    1 (``uniform``), or the size it declared public (``declared``)."""
    how = settings.get("weighting", "examples")
    dp = float(settings.get("dp-epsilon", 0) or 0) > 0
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

    configs, w, cols = model_configs(holder.pre, settings), widths(holder.pre), members(holder.pre)
    out = {}
    for name, cfg in configs.items():
        _, encoder, _ = autoencoder_from_weights(w[name], cfg, weights[name])
        x = holder.x if cols[name] is None else holder.x[:, cols[name]]
        out[name] = encode(encoder, x)
    return out
