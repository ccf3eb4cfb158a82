"""Validate a table against a Great Expectations suite and report failures readably.

The suite is a GX 1.x JSON file in ``expectations/`` named by the profile. A profile without one
gets a suite built from its declared columns (presence, types, not-null, target labels, rows).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from cloakflow.tasks import console
from cloakflow.tasks.data import kinds
from cloakflow.tasks.data.profile import DatasetProfile, near_names

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

NUMERIC_TYPES = ["int8", "int16", "int32", "int64", "Int64", "float32", "float64", "Float64"]
_UNITS = ("s", "ms", "us", "ns")
# pandas types a declared kind may arrive as (GX reads the frame through pandas)
KIND_TYPES = {
    "numeric": NUMERIC_TYPES,
    "boolean": ["bool", "boolean"],
    "date": [f"datetime64[{u}]" for u in _UNITS],
    "datetime": [f"datetime64[{u}]" for u in _UNITS],  # zoned ones reach GX as UTC
}


@dataclass
class Failure:
    """One failed expectation, in words a data owner can act on."""

    expectation: str
    column: str | None
    kwargs: dict[str, Any]
    unexpected_count: int | None = None
    unexpected_percent: float | None = None
    examples: list[Any] = field(default_factory=list)
    observed: Any = None
    error: str | None = None

    def line(self) -> str:
        """One readable line for this failure."""
        where = f"column {self.column!r}" if self.column else "table"
        rule = self.expectation
        args = {k: v for k, v in self.kwargs.items() if k not in {"column", "batch_id"}}
        if "value_set" in args and len(args["value_set"]) > 8:
            args["value_set"] = [*args["value_set"][:8], "..."]
        text = f"{where}: {rule}({', '.join(f'{k}={v!r}' for k, v in args.items())}) failed"
        if self.unexpected_count is not None:
            text += f": {self.unexpected_count} rows ({self.unexpected_percent:.2f}%)"
        if self.examples:
            text += f", e.g. {self.examples[:5]!r}"
        if self.observed is not None:
            text += f"; observed {self.observed!r}"
        if self.error:
            text += f"; {self.error}"
        return text


@dataclass
class ValidationReport:
    """The outcome of validating one file against one suite."""

    source: str
    suite: str
    evaluated: int
    passed: int
    failures: list[Failure]

    @property
    def success(self) -> bool:
        return not self.failures

    def text(self) -> str:
        """Human-readable report naming the file, each failed rule and its column."""
        head = (f"validation of {self.source} against suite {self.suite!r}: "
                f"{self.passed}/{self.evaluated} expectations passed")
        return "\n".join([head, *(f"  - {f.line()}" for f in self.failures)])

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "suite": self.suite,
            "success": self.success,
            "evaluated": self.evaluated,
            "passed": self.passed,
            "failures": [f.__dict__ for f in self.failures],
        }


class DataValidationError(ValueError):
    """The table broke its expectation suite; carries the report."""

    exit_code = 2  # the command line's exit status
    headline = "INPUT REJECTED, nothing was published."

    def __init__(self, report: ValidationReport):
        super().__init__(report.text())
        self.report = report


def default_suite(profile: DatasetProfile) -> dict[str, Any]:
    """A suite (GX JSON form) built from the profile's declared columns."""
    exps: list[dict[str, Any]] = [
        {"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 2}},
    ]
    for col in [*profile.features, profile.target.column]:
        exps.append({"type": "expect_column_to_exist", "kwargs": {"column": col}})
        if profile.missing == "error" or col == profile.target.column:
            exps.append({"type": "expect_column_values_to_not_be_null", "kwargs": {"column": col}})
        types = KIND_TYPES.get(profile.columns.get(col, ""))
        if types:
            exps.append({"type": "expect_column_values_to_be_in_type_list",
                         "kwargs": {"column": col, "type_list": types}})
    return {"name": f"{profile.name}.default", "expectations": exps, "meta": {}}


def load_suite(profile: DatasetProfile) -> dict[str, Any]:
    """The profile's suite as a JSON dict: its file if named, else the default suite."""
    path = profile.suite_path()
    if path is None:
        return default_suite(profile)
    return json.loads(Path(path).read_text())


def _result_failure(res: dict[str, Any]) -> Failure:
    cfg = res["expectation_config"]
    result = res.get("result") or {}
    exc = res.get("exception_info") or {}
    error = None
    if exc.get("raised_exception"):
        error = exc.get("exception_message")
    else:  # GX nests per-metric exception info one level down
        for info in exc.values():
            if isinstance(info, dict) and info.get("raised_exception"):
                error = info.get("exception_message")
                break
    return Failure(
        expectation=cfg["type"],
        column=cfg["kwargs"].get("column"),
        kwargs=dict(cfg["kwargs"]),
        unexpected_count=result.get("unexpected_count"),
        unexpected_percent=result.get("unexpected_percent"),
        examples=list(result.get("partial_unexpected_list") or [])[:10],
        observed=result.get("observed_value"),
        error=error,
    )


def validate_frame(frame: pl.DataFrame, suite: dict[str, Any], source: str) -> ValidationReport:
    """Run a GX suite over a polars frame (converted to pandas, which GX reads).

    Args:
        frame: the ingested table.
        suite: a suite in GX's JSON form (``name``, ``expectations``, ``meta``).
        source: the file name used in the report.
    """
    import great_expectations as gx

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = {"globally": False}
    batch_def = (
        context.data_sources.add_pandas("cloakflow")
        .add_dataframe_asset("table")
        .add_batch_definition_whole_dataframe("whole")
    )
    gx_suite = context.suites.add(
        gx.ExpectationSuite(
            name=suite["name"], expectations=suite["expectations"], meta=suite.get("meta", {})
        )
    )
    # GX types zoned datetimes value by value and fails them: it sees them as naive UTC
    zoned = [n for n, t in frame.schema.items() if isinstance(t, pl.Datetime) and t.time_zone]
    frame = frame.with_columns(pl.col(zoned).dt.convert_time_zone("UTC")
                               .dt.replace_time_zone(None))
    # decimals as the models read them (Float64): a pandas copy holds Python Decimal objects,
    # which the numeric kind's type check refuses
    frame = kinds.model_types(frame)
    batch = batch_def.get_batch(batch_parameters={"dataframe": frame.to_pandas()})
    result = batch.validate(gx_suite, result_format="SUMMARY").to_json_dict()
    failures = [_result_failure(r) for r in result["results"] if not r["success"]]
    # a missing column fails every expectation on it: keep only the "does not exist" line
    missing = {f.column for f in failures if f.expectation == "expect_column_to_exist"}
    failures = [f for f in failures
                if f.expectation == "expect_column_to_exist" or f.column not in missing]
    for f in failures:  # a typo in the profile or a renamed column: name the near ones
        if f.expectation == "expect_column_to_exist" and f.column and not f.error:
            near = near_names(f.column, frame.columns, n=2)
            shown = ", ".join(map(repr, frame.columns[:12])) + (
                ", ..." if frame.width > 12 else "")
            f.error = (f"the table has {', '.join(map(repr, near))}: a typo?" if near else
                       f"the table's columns are {shown}; fix the file, or take the column out "
                       "of the profile (its groups, columns and bounds)")
        elif (f.expectation == "expect_column_values_to_be_in_type_list" and f.column in
              frame.columns and not f.examples and frame.schema[f.column] == pl.String):
            f.examples, f.error = _offending_text(frame.get_column(f.column))
    return ValidationReport(source=source, suite=suite["name"],
                            evaluated=len(result["results"]),
                            passed=sum(r["success"] for r in result["results"]),
                            failures=failures)


def _offending_text(values: pl.Series) -> tuple[list[str], str]:
    """A text column where numbers were expected: up to five distinct values that are not
    numbers, and what to do about them."""
    text = values.drop_nulls().str.strip_chars()
    bad = text.filter(text.cast(pl.Float64, strict=False).is_null()).unique(maintain_order=True)
    shown = bad.head(5).to_list()
    return shown, (f"{bad.len()} distinct values are not numbers; if they mean missing, list "
                   "them under `null_values:` in the profile (read as nulls), else declare the "
                   "column's kind under `columns:`")


def validate_table(frame: pl.DataFrame, profile: DatasetProfile,
                   source: str) -> ValidationReport:
    """Validate against the profile's suite and print the report (the validation step; the
    flow decides what a failure stops; its Prefect task is ``tasks.data.steps.validate``)."""
    report = validate_frame(frame, load_suite(profile), source)
    console.step(report.text())
    return report
