"""The release manifest: a typed record written beside the Parquet files and read back (by
``cloakflow attack``, the benchmarks) through ``Manifest.read``.

Under ``--dp-report private`` some sections are replaced by a pointer to the MLflow run (their
figures were computed on private rows); such fields are simply not written, so the model keeps
them optional and round-trips exactly what was written (``exclude_unset``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from cloakflow.tasks.privacy.report import PrivacyReport


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Source(_Record):
    file: str
    sha256: str | None = None  # not written for a private DP release


class MlflowRef(_Record):
    tracking_uri: str
    run_id: str
    experiment: str


class Folds(_Record):
    scheme: str
    k: int
    forest: str
    note: str


class ControlSplit(_Record):
    rows: int
    fraction: float
    seed: int
    stratified_on: str
    grouped_on: str | None = None  # rows with equal modelled features kept on one side
    duplicates: dict[str, Any] | None = None  # tasks.data.split.Duplicates (not under DP)


GROUPED_ON = ("the modelled feature columns: rows with equal values are one group, on one side "
              "of the split (no control row copies a training row's features)")


class ModelEntry(_Record):
    """One model behind the release (figures on private rows absent under a private DP
    report)."""

    architecture: str = "tutorial"  # models.autoencoder: tutorial or kinds
    dead_outputs: int | None = None  # output units constant on the training rows (non-DP)
    inputs: int
    code_size: int
    epochs_run: int
    best_epoch: int
    best_val_loss: float | None = None
    final_loss: float | None = None
    seconds: float | None = None
    seconds_per_epoch: float | None = None
    attempts: int
    init_seed: int | None = None
    mlflow_run_id: str | None = None
    dp: dict[str, Any] | None = None


class ColumnEntry(_Record):
    name: str
    group: str
    file: str


class FileEntry(_Record):
    file: str
    rows: int
    columns: int


class PrivacySection(_Record):
    statement: str
    models_in_release: bool
    control_split: ControlSplit
    verdict: str | None = None
    policy: dict[str, Any] | None = None
    report: PrivacyReport | None = None
    gate: str | None = None  # private DP report: what the gate was, without its figures


class Manifest(_Record):
    """What a published release folder holds and how it was made."""

    dataset: str
    kind: str = "codes"
    source: Source
    profile: dict[str, Any]
    rows: int
    control_rows: int
    label: str
    seed: int
    parameters: dict[str, Any]
    folds: Folds
    utility: list[dict[str, Any]] | str  # str: "in the MLflow run only"
    models: dict[str, ModelEntry]
    row_order: str
    mlflow: MlflowRef
    prefect_flow_run_id: str
    code_version: str
    privacy: PrivacySection
    dp: dict[str, Any] | None = None
    federation: dict[str, Any] | None = None  # models from a federated run (cloakflow federate)
    reused_from_cache: list[str] = []
    columns: list[ColumnEntry] = []
    # source types converted on the way, column -> statement ("decimal(12,2) -> Float64 for the
    # models", "datetime[us, Europe/Paris] -> UTC"): ``ingest.conversions``
    conversions: dict[str, str] = {}
    files: dict[str, FileEntry] | None = None  # set by publish
    documents: list[str] = []  # set by publish: the folder's report, plots and README
    created_at: str | None = None  # set by publish

    def to_json(self) -> dict:
        """The JSON form, with exactly the fields that were set."""
        return self.model_dump(mode="json", exclude_unset=True)

    @classmethod
    def read(cls, path: str | Path) -> Manifest:
        """Read and validate ``manifest.json`` (or a release folder holding one).

        Raises:
            FileNotFoundError: no manifest there.
            pydantic.ValidationError: the file is not a cloakflow manifest.
        """
        path = Path(path)
        if path.is_dir():
            path = path / "manifest.json"
        return cls.model_validate(json.loads(path.read_text()))


ROW_ORDER = ("rows are in a secret random order (OS entropy, not derived from the seed); no "
             "source row index or source feature column is included")


def build_manifest(*, release, profile, params: dict[str, Any], source: Source,
                   parent: str, flow_run_id: str, models: dict[str, dict],
                   utility: list[dict[str, Any]], folds: Folds, control_rows: int,
                   report: PrivacyReport, reused: list[str], dp_plan=None,
                   dp_release: dict | None = None, federation: dict | None = None,
                   duplicates: dict | None = None) -> Manifest:
    """Assemble the manifest of ``release`` (a ``tasks.release.kinds.Release``).

    Args:
        models: model name -> its summary (``tasks.training.fit.TrainedModel.summary``).
        params: the run's parameters (the flow's ``RunParameters`` as a dict).
        dp_plan, dp_release: the DP plan and the manifest's DP section of a DP run; under
            ``dp_report = private`` every figure computed on private rows is left out
            (``tasks.privacy.dp.private_report``).
        duplicates: the table's duplicate counts (``Duplicates.to_dict``); left out of a DP
            run's manifest (they are counted on the private rows).

    ``conversions`` states how source types were converted (decimals read as Float64 by the
    models, zone-aware datetimes in UTC), read from the source file's schema; the codes hold
    no source values, so no released type is named.

    Raises:
        DataNotFoundError: the source file is gone since ingest.
    """
    import mlflow

    from cloakflow.tasks.data.ingest import stated_conversions
    from cloakflow.tasks.privacy.dp import dp_statement, model_dp, private_report
    from cloakflow.tasks.release.kinds import label_statement
    from cloakflow.tasks.release.publish import code_version

    seed = params["seed"]
    label = label_statement(profile.target, release.kind)
    out = {
        "dataset": profile.name, "kind": release.kind, "source": source.model_dump(),
        "profile": profile.public_dump(),
        "rows": int(len(release.tables[0].codes)), "control_rows": control_rows,
        "label": profile.target.column, "seed": seed, "parameters": params,
        "folds": folds.model_dump(), "utility": utility,
        "models": {name: dict(m) for name, m in models.items()},
        "row_order": ROW_ORDER,
        "mlflow": {"tracking_uri": mlflow.get_tracking_uri(), "run_id": parent,
                   "experiment": f"cloakflow/{profile.name}"},
        "prefect_flow_run_id": flow_run_id, "code_version": code_version(),
        "privacy": {"statement": f"{release.statement} {label}", "models_in_release": False,
                    "control_split": {"rows": control_rows,
                                      "fraction": params["control_fraction"], "seed": seed,
                                      "stratified_on": profile.target.column,
                                      "grouped_on": GROUPED_ON,
                                      **({"duplicates": duplicates}
                                         if duplicates and dp_plan is None else {})},
                    "verdict": report.policy.verdict,
                    "policy": report.policy.model_dump(mode="json"),
                    "report": report.model_dump(mode="json")},
        "dp": dp_release, "reused_from_cache": reused, "columns": release.column_entries(),
        "conversions": stated_conversions(profile, params.get("input_path")),
    }
    if federation is not None:
        out["federation"] = federation
    if dp_plan is not None:
        for name, m in out["models"].items():
            m["dp"] = {**model_dp(dp_plan, name), **{k: m["dp"][k] for k in (
                "steps_run", "clipped_share_per_epoch")}}
        out["privacy"]["statement"] = f"{dp_statement(dp_release)} {label}"
        if params.get("dp_report") == "private":
            out = private_report(out)
    return Manifest.model_validate(out)
