"""The data steps every flow starts with, as Prefect tasks: locate -> ingest -> validate ->
split -> preprocess (``prepare``), logged to the flow's MLflow run. The work is done by the
Prefect-free modules of ``tasks.data``; this module only wraps it (retries, task names)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
from prefect import task

from cloakflow.tasks import console, tracking
from cloakflow.tasks.data.ingest import file_format, load_table
from cloakflow.tasks.data.locate import locate_source, sha256_file
from cloakflow.tasks.data.preprocess import TablePreprocessor, numeric_scaling  # noqa: F401
from cloakflow.tasks.data.profile import DatasetProfile
from cloakflow.tasks.data.split import (
    Duplicates,
    check_target,
    count_duplicates,
    feature_groups,
    split_reported,
    strata,
    target_labels,
)
from cloakflow.tasks.data.validate import DataValidationError, validate_table
from cloakflow.tasks.retry import retry_on_io

ingest = task(name="ingest", task_run_name="ingest[{profile.name}]", retries=2,
              retry_delay_seconds=2, retry_condition_fn=retry_on_io)(load_table)
split = task(name="split", task_run_name="split[train/control]")(split_reported)
validate = task(name="validate", task_run_name="validate[{profile.name}]")(validate_table)


@task(name="locate", task_run_name="locate[{profile.name}]", retries=2, retry_delay_seconds=5,
      retry_condition_fn=retry_on_io)
def locate(profile: DatasetProfile, input_path: str | None = None) -> str:
    """Prefect task: resolve the dataset file (retried, since it may download)."""
    return str(locate_source(profile, input_path))


@dataclass
class Prepared:
    """A validated, split and preprocessed table."""

    source_name: str
    source_sha: str
    source_rows: int
    train_frame: pl.DataFrame
    control_frame: pl.DataFrame
    y: np.ndarray
    x: np.ndarray
    x_control: np.ndarray
    pre: TablePreprocessor
    utility_warning: str | None = None
    duplicates: Duplicates | None = None
    source_format: str | None = None  # what the file was read as, by its bytes

    @property
    def columns(self) -> list[str]:
        return self.pre.output_columns

    def records(self, control: bool = False) -> pl.DataFrame:
        """Feature columns of the training (or control) rows, as source values."""
        frame = self.control_frame if control else self.train_frame
        return frame.select(self.pre.profile.features)


def prepare(profile: DatasetProfile, input_path: str | None, control_fraction: float, seed: int,
            parent: str, timings: dict[str, float], public_bounds: bool = False,
            folds: int | None = None, numeric: str = "minmax",
            options: dict | None = None, secret_split: bool = False) -> Prepared:
    """locate -> ingest -> validate -> split -> preprocess, logging to the parent MLflow run.

    ``public_bounds`` (DP runs): scale and one-hot encode with the profile's public bounds
    where it has them, instead of statistics of the training rows.

    ``numeric``: the numeric scaling (``minmax`` or ``quantile``, see ``TablePreprocessor``);
    ``options``: further ``TablePreprocessor`` arguments (a synthesizer's ``with_target``,
    ``missing_state``, ``discrete_levels``); ``secret_split``: a DP synthetic release's
    control split, per-row coins from OS entropy (``split.split_rows``), not the seed.

    ``folds``: the cross-validation the run will do; the target is checked against it (and the
    control split) before anything trains.

    Raises:
        DataValidationError: the table breaks its expectation suite (nothing is trained).
        TargetError: the target cannot support the control split or the folds.
    """
    t = time.perf_counter()
    path = locate(profile, input_path)
    name = Path(path).name
    source_sha = sha256_file(Path(path))
    frame = ingest(path, profile)
    tracking.log_params(parent, {"source_file": name, "source_sha256": source_sha,
                                 "source_rows": frame.height})
    timings["ingest"] = round(time.perf_counter() - t, 2)

    t = time.perf_counter()
    report = validate(frame, profile, name)
    tracking.log_dict(parent, report.to_dict(), "validation/report.json")
    timings["validate"] = round(time.perf_counter() - t, 2)
    if not report.success:
        raise DataValidationError(report)

    t = time.perf_counter()
    y_all = target_labels(frame, profile)  # 0/1, a class index, or a number (target.kind)
    warning = check_target(frame, profile, y_all, control_fraction, folds, name)
    groups = feature_groups(frame, profile.features)
    duplicates = count_duplicates(frame, profile.features, profile.target.column, groups)
    console.step(f"{name}: {duplicates.describe()}")
    tracking.log_dict(parent, duplicates.to_dict(), "data/duplicates.json")
    train_idx, control_idx = split(strata(y_all, profile.target.kind), control_fraction,
                                   None if secret_split else seed, groups)
    train_frame, control_frame = frame[train_idx], frame[control_idx]
    pre = TablePreprocessor(profile, public_bounds=public_bounds,
                            numeric=numeric, **(options or {})).fit(train_frame, name)
    for line in pre.warnings:  # e.g. a categorical column with very many categories
        console.warn(line)
    x = pre.transform(train_frame, name)
    # control rows are never trained on; a category seen only there encodes as zeros
    x_control = pre.transform(control_frame, name, unseen="ignore")
    tracking.log_text(parent, pre.to_json(), "preprocessing/state.json")
    kinds = {s.name: {"kind": "numeric" if s.discrete else s.kind,
                      "declared": s.name in profile.columns,
                      **({"modelled": f"as {len(s.categories)} values"} if s.discrete else {})}
             for s in pre.specs}
    tracking.log_dict(parent, kinds, "preprocessing/kinds.json")
    print("column kinds: " + ", ".join(
        f"{c} {k['kind']}" + (f" (discrete, {k['modelled']})" if "modelled" in k else "")
        + ("" if k["declared"] else " (inferred)") for c, k in kinds.items()), flush=True)
    slices = pre.group_slices()
    console.step(f"preprocessed: {x.shape[0]} rows x {x.shape[1]} columns "
          f"({', '.join(f'{g}: {len(s)}' for g, s in slices.items())}); "
          f"{len(control_idx)} control rows")
    timings["split_preprocess"] = round(time.perf_counter() - t, 2)
    return Prepared(name, source_sha, frame.height, train_frame, control_frame,
                    y_all[train_idx], x, x_control, pre, warning, duplicates,
                    file_format(path, profile))

