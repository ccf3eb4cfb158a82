"""One-hot + min-max preprocessing, fitted on training rows only, reversible, serialisable.

Public ``fit`` / ``transform`` / ``reverse_transform`` wrap the per-column work; the fitted state
is a plain dict (``to_dict`` / ``from_dict``) saved with the run. That state holds category sets
and min/max of the source table: it is as sensitive as the models and never enters a release.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import polars as pl

from cloakflow.tasks.data.profile import DatasetProfile

# a categorical column with at least this share of distinct values is an identifier
IDENTIFIER_SHARE = 0.9
IDENTIFIER_MIN_ROWS = 20


class PreprocessError(ValueError):
    """A value breaks the profile's rule for nulls or unseen categories."""


@dataclass
class ColumnSpec:
    """Fitted state of one source column."""

    name: str
    group: str
    kind: Literal["numeric", "categorical"]
    minimum: float = 0.0
    maximum: float = 1.0
    fill: Any = None
    categories: list[str] = field(default_factory=list)
    bounds: Literal["data", "public"] = "data"  # where minimum/maximum or categories came from

    @property
    def outputs(self) -> list[str]:
        if self.kind == "numeric":
            return [self.name]
        return [f"{self.name}_{c}" for c in self.categories]


class TablePreprocessor:
    """Min-max scales numeric columns and one-hot encodes categorical ones, group by group.

    Args:
        profile: the dataset profile (groups, column kinds, missing/unseen rules).
    """

    def __init__(self, profile: DatasetProfile, public_bounds: bool = False):
        self.profile = profile
        self.public_bounds = public_bounds
        self.specs: list[ColumnSpec] = []

    # ------------------------------------------------------------------ fitting
    def fit(self, frame: pl.DataFrame, source: str = "<table>") -> TablePreprocessor:
        """Learn min/max, fill values and category sets from training rows.

        With ``public_bounds``, a column that has bounds in the profile takes them instead (fill
        value: the midpoint, or the first listed category): nothing about it is measured.
        """
        self.specs = []
        for col, group in self.profile.group_of.items():
            series = frame.get_column(col)
            kind = self.profile.columns.get(col) or (
                "numeric" if series.dtype.is_numeric() else "categorical"
            )
            self._check_nulls(series, source)
            public = self.profile.bounds.get(col) if self.public_bounds else None
            if public is not None:
                if public.categories is None:
                    spec = ColumnSpec(col, group, "numeric", minimum=public.min,
                                      maximum=public.max, fill=(public.min + public.max) / 2,
                                      bounds="public")
                else:
                    spec = ColumnSpec(col, group, "categorical", categories=public.categories,
                                      fill=public.categories[0], bounds="public")
            elif kind == "numeric":
                values = self._as_float(series, source)
                spec = ColumnSpec(col, group, "numeric",
                                  minimum=float(values.min()), maximum=float(values.max()),
                                  fill=float(np.median(values)))
            else:
                values = series.cast(pl.String).drop_nulls()
                counts = values.value_counts(sort=True)
                self._check_not_identifier(col, counts.height, len(values), source)
                spec = ColumnSpec(col, group, "categorical",
                                  categories=sorted(counts.get_column(col).to_list()),
                                  fill=counts.get_column(col)[0])
            self.specs.append(spec)
        return self

    @staticmethod
    def _check_not_identifier(col: str, distinct: int, rows: int, source: str) -> None:
        """A categorical column with (nearly) one value per row is an identifier: one-hot
        encoded it is a row index in disguise, and it would be released in the codes.

        Raises:
            PreprocessError: naming the column, the counts and the profile keys that decide.
        """
        if rows >= IDENTIFIER_MIN_ROWS and distinct >= IDENTIFIER_SHARE * rows:
            raise PreprocessError(
                f"{source}: column {col!r}: {distinct} distinct values in {rows} rows (nearly one "
                "per row): an identifier, not a feature. List it under `identifiers:` in the "
                "profile (kept out of the features and the release) or under `drop:`, and "
                "remove it from its group and from quasi_identifiers")

    # ------------------------------------------------------------------ forward
    def transform(self, frame: pl.DataFrame, source: str = "<table>",
                  unseen: Literal["error", "ignore"] | None = None) -> np.ndarray:
        """Encode a frame into a float32 matrix with columns ``self.output_columns``.

        Args:
            frame: rows to encode.
            source: file name used in error messages.
            unseen: overrides the profile's unseen-category rule (the attack step encodes
                held-out control rows with ``"ignore"``: a category seen only there is no
                input error).

        Raises:
            PreprocessError: a null where the profile says ``missing: error``, or an unseen
                category where it says ``unseen: error``; the message names file and column.
        """
        self._require_fitted()
        rule = unseen or self.profile.unseen
        blocks = [self._transform_column(frame.get_column(s.name), s, source, rule)
                  for s in self.specs]
        return np.hstack(blocks).astype(np.float32, copy=False)

    def _transform_column(self, series: pl.Series, spec: ColumnSpec, source: str,
                          rule: str) -> np.ndarray:
        series = self._check_nulls(series, source, spec)
        if spec.kind == "numeric":
            values = self._as_float(series, source)
            span = spec.maximum - spec.minimum or 1.0
            scaled = (values - spec.minimum) / span
            if spec.bounds == "public":  # public bounds are a promise: clip what lies outside
                scaled = np.clip(scaled, 0.0, 1.0)
            return scaled.reshape(-1, 1)
        values = series.cast(pl.String).to_numpy()
        index = {c: i for i, c in enumerate(spec.categories)}
        codes = np.fromiter((index.get(v, -1) for v in values), dtype=np.int64, count=len(values))
        unseen = codes < 0
        if unseen.any() and rule == "error":
            examples = sorted(set(values[unseen].tolist()))[:5]
            raise PreprocessError(
                f"{source}: column {spec.name!r}: {int(unseen.sum())} rows have categories not "
                f"seen in training (rule unseen=error), e.g. {examples}"
            )
        out = np.zeros((len(values), len(spec.categories)), dtype=np.float32)
        rows = np.flatnonzero(~unseen)
        out[rows, codes[rows]] = 1.0
        return out

    # ------------------------------------------------------------------ reverse
    def reverse_transform(self, matrix: np.ndarray) -> pl.DataFrame:
        """Map a (possibly reconstructed) matrix back to source columns.

        Numeric columns are unscaled; a categorical block becomes its argmax category.
        """
        self._require_fitted()
        data: dict[str, Any] = {}
        start = 0
        for spec in self.specs:
            width = len(spec.outputs)
            block = matrix[:, start:start + width]
            if spec.kind == "numeric":
                data[spec.name] = block[:, 0] * (spec.maximum - spec.minimum) + spec.minimum
            else:
                data[spec.name] = np.asarray(spec.categories, dtype=object)[block.argmax(axis=1)]
            start += width
        return pl.DataFrame(data)

    # ------------------------------------------------------------------ helpers
    def bounds_used(self) -> dict[str, list[str]]:
        """Columns whose scaling/categories came from the profile's public bounds or the data."""
        out: dict[str, list[str]] = {"public": [], "data": []}
        for spec in self.specs:
            out[spec.bounds].append(spec.name)
        return out

    @property
    def output_columns(self) -> list[str]:
        return [c for s in self.specs for c in s.outputs]

    def column_blocks(self) -> list[tuple[ColumnSpec, int, int]]:
        """Each source column with the [start, stop) range of its output columns."""
        out, start = [], 0
        for spec in self.specs:
            out.append((spec, start, start + len(spec.outputs)))
            start += len(spec.outputs)
        return out

    def group_slices(self) -> dict[str, list[int]]:
        """Output column indices of each feature group."""
        out: dict[str, list[int]] = {g: [] for g in self.profile.groups}
        i = 0
        for spec in self.specs:
            for _ in spec.outputs:
                out[spec.group].append(i)
                i += 1
        return out

    def _check_nulls(self, series: pl.Series, source: str,
                     spec: ColumnSpec | None = None) -> pl.Series:
        """Apply the profile's missing rule; ``spec`` (fitted state) supplies the fill value."""
        nulls = series.null_count()
        if series.dtype.is_float():
            nulls += int(series.is_nan().sum() or 0)
        if not nulls:
            return series
        if self.profile.missing == "error":
            raise PreprocessError(
                f"{source}: column {series.name!r}: {nulls} null values (rule missing=error; set "
                "missing: impute in the profile to fill them from training rows)"
            )
        if spec is None:  # fitting: statistics are taken over the non-null values
            return series
        if series.dtype.is_float():
            series = series.fill_nan(None)
        if spec.kind == "numeric":
            return series.cast(pl.Float64).fill_null(spec.fill)
        return series.cast(pl.String).fill_null(spec.fill)

    @staticmethod
    def _as_float(series: pl.Series, source: str) -> np.ndarray:
        try:
            return series.cast(pl.Float64, strict=True).drop_nulls().to_numpy()
        except pl.exceptions.PolarsError as exc:
            raise PreprocessError(
                f"{source}: column {series.name!r} is declared numeric but holds non-numeric "
                f"values ({series.dtype})"
            ) from exc

    def _require_fitted(self) -> None:
        if not self.specs:
            raise RuntimeError("TablePreprocessor is not fitted")

    # ------------------------------------------------------------------ persistence
    def to_dict(self) -> dict[str, Any]:
        return {"profile": self.profile.model_dump(mode="json"),
                "columns": [s.__dict__ for s in self.specs]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, default=str)

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> TablePreprocessor:
        pre = cls(DatasetProfile.model_validate(state["profile"]))
        pre.specs = [ColumnSpec(**s) for s in state["columns"]]
        return pre
