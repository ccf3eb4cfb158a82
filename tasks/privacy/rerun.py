"""``cloakflow attack RELEASE_DIR``: rerun the attacks on a published release (a plain
function, not a flow: it runs beside the data owner's MLflow store; ``flows/attack.py`` is its
command's entry).

Needs what the data owner holds: the source table (checked against the manifest's SHA-256) and
the run's models and preprocessing state in MLflow. The released rows are put back into training
order with the run's seed, and the same attacks as the flow's attack step run on them.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import polars as pl
from pydantic import ValidationError

from cloakflow.models.autoencoder import AutoencoderConfig
from cloakflow.tasks import runners, tracking
from cloakflow.tasks.data.ingest import read_table
from cloakflow.tasks.data.locate import locate_source, sha256_file
from cloakflow.tasks.data.preprocess import TablePreprocessor
from cloakflow.tasks.data.profile import DatasetProfile
from cloakflow.tasks.data.split import train_control
from cloakflow.tasks.privacy.attack import attack_release
from cloakflow.tasks.privacy.policy import attribute_kinds, expected_coverage, policy_outcome
from cloakflow.tasks.privacy.report import KNOWLEDGE, PrivacyReport, summary_markdown
from cloakflow.tasks.release.codes import CodePart, CodeTable
from cloakflow.tasks.release.kinds import label_statement
from cloakflow.tasks.release.manifest import Manifest


class ReleaseMismatch(ValueError):
    """The release, its manifest, the source table or the models do not belong together."""


def attack_published(release_dir: str | Path, input_path: str | None = None) -> PrivacyReport:
    """Rerun every attack on a published release; returns the privacy report, judged by the
    same gate as the flow (with the risk accepted at publication, if any).

    Raises:
        ReleaseMismatch: the folder, its manifest, the source table or the models in MLflow do
            not belong together.
        DataNotFoundError: the source table cannot be found.
    """
    release_dir = Path(release_dir)
    try:
        manifest = Manifest.read(release_dir)
    except FileNotFoundError as exc:
        raise ReleaseMismatch(f"{release_dir}: no manifest.json (not a cloakflow release)") \
            from exc
    except ValidationError as exc:
        raise ReleaseMismatch(f"{release_dir}/manifest.json is not a cloakflow manifest: "
                              f"{exc.error_count()} problems, first: "
                              f"{exc.errors()[0]['loc']} {exc.errors()[0]['msg']}") from exc
    profile = DatasetProfile.model_validate(manifest.profile)
    seed = manifest.seed

    if "MLFLOW_TRACKING_URI" not in os.environ:
        import mlflow

        from cloakflow.tasks.runtime import sqlite_path

        store = sqlite_path(manifest.mlflow.tracking_uri)  # relative: to this folder
        if store is not None and not store.is_file():
            raise ReleaseMismatch(
                f"{release_dir}: its MLflow store {manifest.mlflow.tracking_uri} (the run's "
                f"models) is not at {store}: run `cloakflow attack` from the folder the "
                "release was made in, or set MLFLOW_TRACKING_URI to its store")
        mlflow.set_tracking_uri(manifest.mlflow.tracking_uri)
    run_id = manifest.mlflow.run_id
    # a DP release under --dp-report private keeps the source hash and the report in MLflow
    expected_sha = manifest.source.sha256 or tracking.run_params(run_id).get("source_sha256")
    report = (manifest.privacy.report if manifest.privacy.report is not None else
              PrivacyReport.model_validate_json(tracking.load_text(run_id,
                                                                   "privacy/report.json")))

    path = locate_source(profile, input_path)
    if sha256_file(path) != expected_sha:
        raise ReleaseMismatch(f"{path}: SHA-256 differs from the manifest's source "
                              f"{manifest.source.file} ({expected_sha})")
    frame = read_table(path, profile)
    train_idx, control_idx = train_control(frame, profile,
                                           manifest.parameters["control_fraction"], seed)
    train_frame, control_frame = frame[train_idx], frame[control_idx]
    pre = TablePreprocessor.from_dict(json.loads(
        tracking.load_text(run_id, "preprocessing/state.json")))
    x = pre.transform(train_frame, path.name)
    x_control = pre.transform(control_frame, path.name, unseen="ignore")
    print(f"{path.name}: {len(x)} training rows, {len(x_control)} control rows; loading models "
          f"of MLflow run {run_id}", flush=True)

    order = _row_order(run_id, seed, len(x))
    slices = pre.group_slices()
    multiplier = float((report.noise or {}).get("multiplier", 0.0))  # the run's setting
    tables = []
    for name, file, models in (("ENCODED", "encoded", ["whole"]),
                               ("GROUP_ENCODED", "group_encoded", list(slices))):
        table = pl.read_parquet(release_dir / f"{file}.parquet")
        cols = [c.name for c in manifest.columns if c.file == file]
        if len(table) != len(x):
            raise ReleaseMismatch(f"{file}.parquet has {len(table)} rows, the source's training "
                                  f"split {len(x)}")
        codes = np.empty((len(x), len(cols)), dtype=np.float32)
        codes[order] = table.select(cols).to_numpy()
        parts, start = [], 0
        for m in models:
            entry = manifest.models[m]
            ae = _load_model(entry.mlflow_run_id, m)
            feats = list(range(x.shape[1])) if m == "whole" else slices[m]
            width = entry.code_size
            if not multiplier:
                enc = ae.get_layer("encoder")
                gap = float(np.abs(np.asarray(enc(x[:512, feats])) - codes[:512,
                                                                     start:start + width]).max())
                if gap > 1e-3:
                    raise ReleaseMismatch(f"{name}/{m}: the model's codes differ from the "
                                          f"released ones by {gap:.3g}: wrong model or source")
            parts.append(CodePart(m, _config(manifest, pre, m), ae.get_weights(), start,
                                  start + width, feats))
            start += width
        noise = report.releases.get(name, {}).get("noise") or {
            m: {"multiplier": multiplier} for m in models}
        tables.append(CodeTable(name, file, codes, cols, parts, noise))

    records = (train_frame.select(profile.features), control_frame.select(profile.features))
    with runners.attack_workers() as pool, ThreadPoolExecutor(len(tables)) as threads:
        jobs = {t.name: threads.submit(attack_release, t, x, x_control, *records, pre, profile,
                                       seed, pool=pool) for t in tables}
        releases = {name: job.result() for name, job in jobs.items()}
    return PrivacyReport(
        dataset=profile.name, release=str(release_dir), kind=manifest.kind,
        sensitive=profile.privacy.sensitive, identifiers=profile.identifiers,
        label=label_statement(profile.target, manifest.kind),
        known_fractions=profile.privacy.known_fractions,
        seed=seed, noise=report.noise, dp=_release_dp(report), attacker_knowledge=KNOWLEDGE,
        releases=releases, policy=policy_outcome(
            releases, profile, attacked=True, accept_risk=report.policy.accepted_risk,
            expected=expected_coverage(profile, attribute_kinds(pre), list(manifest.models),
                                       len(x_control))))


def _config(manifest: Manifest, pre: TablePreprocessor, model: str) -> AutoencoderConfig:
    """The autoencoder settings of the run's model ``model`` (widths come from the weights,
    the output heads from the preprocessing state)."""
    p = manifest.parameters
    return AutoencoderConfig(epochs=p["epochs"], batch_size=p["batch_size"],
                             validation=p.get("validation", "random"),
                             architecture=p.get("architecture", "tutorial"),
                             heads=pre.heads(None if model == "whole" else model)
                             if p.get("architecture") == "kinds" else ())


def _release_dp(report: PrivacyReport) -> dict | None:
    """The run's DP section for the summary (None for releases made before the release budget,
    whose per-model figures are not a release claim)."""
    dp = report.dp
    return dp if dp and "mechanisms" in dp else None


def _row_order(run_id: str, seed: int, rows: int) -> np.ndarray:
    """The release's secret row permutation, from the run's MLflow artifacts (the owner's);
    releases published before it was kept there used the seed's permutation."""
    from mlflow.exceptions import MlflowException

    try:
        order = np.asarray(json.loads(tracking.load_text(run_id, "release/row_order.json")))
    except (MlflowException, OSError):
        return np.random.default_rng(seed).permutation(rows)
    if len(order) != rows:
        raise ReleaseMismatch(f"the run's row order has {len(order)} rows, the source's "
                              f"training split {rows}")
    return order


def _load_model(run_id: str, name: str):
    from mlflow.exceptions import MlflowException

    try:
        return tracking.load_keras_model(run_id)
    except (MlflowException, LookupError) as exc:
        import mlflow

        raise ReleaseMismatch(f"model {name!r} (MLflow run {run_id}) is not in the tracking store "
                              f"{mlflow.get_tracking_uri()}: {exc}") from exc


__all__ = ["attack_published", "summary_markdown", "ReleaseMismatch"]
