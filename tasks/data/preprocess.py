"""One-hot + min-max preprocessing, fitted on training rows only, reversible, serialisable.

Each column is encoded by its kind (``kinds.py``): numeric, date and datetime columns are
min-max scaled numbers (dates in days, datetimes in seconds), categorical and boolean columns are
one-hot encoded; ``reverse_transform`` gives decoded rows back in the source types.

Public ``fit`` / ``transform`` / ``reverse_transform`` wrap the per-column work; the fitted state
is a plain dict (``to_dict`` / ``from_dict``) saved with the run. That state holds category sets
and min/max of the source table: it is as sensitive as the models and never enters a release.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import polars as pl

from cloakflow.tasks.data import kinds
from cloakflow.tasks.data.profile import DatasetProfile

# a categorical column with at least this share of distinct values is an identifier
IDENTIFIER_SHARE = 0.9
IDENTIFIER_MIN_ROWS = 20
# above this many categories a categorical column gets a cardinality warning (``cloakflow
# profile``'s draft and ``TablePreprocessor.warnings``): each category is one model input
MAX_CATEGORIES = 50
# an integer column whose name reads as a key (customer_id, AccountNo, record_nr, ...)
ID_NAME = (r"(^|[_\W])(id|Id|ID|key|Key|KEY|no|No|NO|nr|Nr|NR|num|Num|NUM|number|Number|"
           r"NUMBER|code|Code|CODE)$|[a-z](Id|ID|No|Nr|Key)$")


QUANTILE_KNOTS = 1000
# ``value_support``: a column of at most QUANTILE_KNOTS distinct values whose values held by
# SUPPORT_MIN_ROWS rows or more cover SUPPORT_SHARE of its rows decodes to those values
SUPPORT_MIN_ROWS = 5
SUPPORT_SHARE = 0.99
# a numeric column with at most this many distinct values, each seen on average in at least
# DISCRETE_MIN_ROWS training rows, is a discrete numeric (``discrete_levels``)
DISCRETE_LEVELS = 32
DISCRETE_MIN_ROWS = 50
# a numeric column with at least this share of its rows exactly at its min (or max) gets a
# bound state (``bound_state``): a zero balance, a capped value, a code at the end of a range
BOUND_STATE_SHARE = 0.05


def integer_key_reasons(series: pl.Series, distinct_rows: int | None = None) -> list[str]:
    """Why an integer column reads as a key, or ``[]``: one distinct value per row (from
    ``IDENTIFIER_MIN_ROWS`` rows; per distinct row of the table when ``distinct_rows`` is
    given, so that a key repeated only because its whole row is a duplicate still reads as a
    key) and a key-like name (``customer_id``, ``AccountNo``) or a dense run of numbers (range
    under twice the rows); values sorted down the file are named as a further sign, never
    alone (a table may be sorted by a measure)."""
    import re

    values = series.drop_nulls()
    rows = min(len(values), distinct_rows or len(values))
    if not series.dtype.is_integer() or rows < IDENTIFIER_MIN_ROWS or values.n_unique() != rows:
        return []
    reasons = []
    if re.search(ID_NAME, series.name):
        reasons.append("its name reads as a key")
    if float(values.max()) - float(values.min()) + 1 <= 2 * rows:
        reasons.append(f"its values are a dense run ({values.min()}..{values.max()})")
    if reasons and (values.is_sorted() or values.is_sorted(descending=True)):
        reasons.append("its values are sorted down the file")
    return reasons


TARGET_GROUP = "target"  # the target's group when a synthesizer models it (with_target)


def _null_mask(series: pl.Series) -> np.ndarray:
    """True where a value is null (or NaN in a float column), shape (rows,)."""
    mask = series.is_null()
    if series.dtype.is_float():
        mask = mask | series.is_nan().fill_null(False)
    return mask.to_numpy()


def _quantile_knots(values: np.ndarray) -> list[float]:
    """Quantiles of a column's training values at evenly spaced levels (scikit-learn's
    ``QuantileTransformer``, every row used)."""
    from sklearn.preprocessing import QuantileTransformer

    qt = QuantileTransformer(n_quantiles=min(QUANTILE_KNOTS, len(values)),
                             subsample=None).fit(values.reshape(-1, 1))
    return [float(v) for v in qt.quantiles_[:, 0]]


def _support(values: np.ndarray) -> list[float]:
    """The values a mostly discrete column takes (``value_support``): its distinct values
    held by at least ``SUPPORT_MIN_ROWS`` rows, when it has at most ``QUANTILE_KNOTS``
    distinct values and those cover ``SUPPORT_SHARE`` of its rows; else []."""
    distinct, counts = np.unique(values, return_counts=True)
    if not 0 < len(distinct) <= QUANTILE_KNOTS:
        return []
    kept = counts >= SUPPORT_MIN_ROWS
    return [float(v) for v in distinct[kept]] if counts[kept].sum() >= SUPPORT_SHARE * \
        counts.sum() else []


def _nearest(values: np.ndarray, support: np.ndarray) -> np.ndarray:
    """Each value replaced by the nearest of the sorted ``support``."""
    i = np.clip(np.searchsorted(support, values), 1, len(support) - 1)
    low, high = support[i - 1], support[i]
    return np.where(values - low <= high - values, low, high)


def _to_quantile(values: np.ndarray, knots: np.ndarray) -> np.ndarray:
    """Values to [0, 1] through the knots' piecewise-linear CDF; ties (a value repeated over
    several knots) map to the middle of their levels, as scikit-learn's transform does by
    interpolating both ways and averaging."""
    down, up = _quantile_span(values, knots)
    return 0.5 * (up + down)


def _quantile_span(values: np.ndarray, knots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(lowest, highest) level of each value through the knots' piecewise-linear CDF: equal,
    except for a value tied over several knots (a point mass), which holds all their levels."""
    levels = np.linspace(0, 1, len(knots))
    up = np.interp(values, knots, levels)
    down = -np.interp(-values, -knots[::-1], -levels[::-1])
    return down, up


def on_grid(values: np.ndarray, origin: float, step: float) -> np.ndarray:
    """``values`` moved to the nearest point of the grid origin + k * step, rounded to the
    step's decimals (and two more) so that a 0.1 grid gives -3.4, not -3.4000000000000004."""
    decimals = max(0, math.ceil(-math.log10(step))) + 2
    return np.round(origin + np.round((np.asarray(values, np.float64) - origin) / step) * step,
                    decimals)


def _whole_numbers(dtype: pl.DataType) -> bool:
    """Integers, or decimals of scale 0 (``decimal(10,0)`` account numbers)."""
    return dtype.is_integer() or (isinstance(dtype, pl.Decimal) and not dtype.scale)


class PreprocessError(ValueError):
    """A value breaks the profile's rule for nulls or unseen categories."""

    exit_code = 2  # the command line's exit status
    headline = "INPUT REJECTED, nothing was published."


@dataclass
class ColumnSpec:
    """Fitted state of one source column."""

    name: str
    group: str
    kind: kinds.ColumnKind
    minimum: float = 0.0  # numeric family: in the kind's unit (dates days, datetimes seconds)
    maximum: float = 1.0
    fill: Any = None
    categories: list[str] = field(default_factory=list)
    # where minimum/maximum or categories came from; "dp": public bounds with quantile knots
    # measured by a DP mechanism (a synthetic release's DP plan)
    bounds: Literal["data", "public", "dp"] = "data"
    dtype: str | None = None  # the source column's polars type (kinds.dtype_name)
    transform: Literal["minmax", "quantile"] = "minmax"  # numeric family
    knots: list[float] = field(default_factory=list)  # quantile: source-unit quantiles
    missing_of: str | None = None  # a companion block: the column whose state it marks
    companion: Literal["missing", "bound"] = "missing"  # nulls, or values at a bound
    step: float | None = None  # a public resolution (``PublicBounds.grid_step``): decoded
    # values lie on the grid minimum + k * step
    discrete: bool = False  # a numeric column modelled as categories of its values
    values: list[float] = field(default_factory=list)  # discrete from DP bins: each category's
    # number (a kept bin's centre); a value maps to the nearest
    support: list[float] = field(default_factory=list)  # ``value_support``: decoded values
    # snap to the nearest of these training values

    @property
    def family(self) -> str:
        """``numeric`` (scaled, regression attacks) or ``categorical`` (one-hot,
        classification attacks)."""
        return kinds.FAMILY[self.kind]

    @property
    def source_dtype(self) -> str:
        """The source type to decode into, as ``kinds.dtype_name`` writes it (``Int64``,
        ``Decimal[12,2]``, ``Datetime[us,UTC]``); states saved before types were kept: the
        family's plain type."""
        return self.dtype or ("Float64" if self.family == "numeric" else "String")

    @property
    def outputs(self) -> list[str]:
        if self.missing_of is not None:
            return [f"{self.missing_of}:{self.companion}_{c}" for c in self.categories]
        if self.family == "numeric":
            return [self.name]
        return [f"{self.name}_{c}" for c in self.categories]


class TablePreprocessor:
    """Min-max scales numeric columns and one-hot encodes categorical ones, group by group.

    Args:
        profile: the dataset profile (groups, column kinds, missing/unseen rules).
        public_bounds: DP runs: scale with the profile's public bounds where it has them.
        numeric: ``minmax`` (the tutorial's scaling) or ``quantile``: each numeric-family
            column mapped through its empirical CDF on the training rows (up to
            ``QUANTILE_KNOTS`` quantiles fitted with scikit-learn's ``QuantileTransformer``,
            interpolated as it does) to [0, 1], so a skewed or heavy-tailed column is spread
            evenly instead of squeezed near 0. With ``public_bounds``, a column with public
            bounds takes its public ``knots`` (the profile's published quantiles) or, without
            them, stays min-max over its bounds, and a column without public bounds is min-max
            scaled on the rows: knots fitted on the rows would be up to 1,000 statistics of
            them.
        with_target: also encode the target column (group ``TARGET_GROUP``), as a synthesizer
            that models whole rows needs.
        missing_state: a column with nulls in the training rows gets a companion flag
            ``<column>:missing`` (a boolean block right after it; the value itself is filled
            as ``missing: impute`` does), and ``reverse_transform`` writes a null wherever the
            flag is set: missing values are modelled as their own state, not imputed away.
            The profile's ``missing: error`` still refuses nulls. With ``public_bounds``
            which columns get a flag is not read off the rows: those the profile lists as
            ``nullable`` do. The target never gets one.
        discrete_levels: a numeric column (kind ``numeric``, not dates) with at most this many
            distinct training values, each seen on average in ``DISCRETE_MIN_ROWS`` rows or
            more, is encoded as a one-hot block over its values (``ColumnSpec.discrete``) and
            decoded back to numbers of its source type: a rate published per quarter, a code
            like 999, a small count keep their exact values and their point masses, which a
            density over a continuous scale smears. 0 (the default, as the codes use) turns
            this off. With ``public_bounds`` the value list is data, so the rule is not
            applied; there a numeric column whose public bounds list ``categories`` (the
            values it can take, known without the data) is discrete over them.
        dp_knots: with ``public_bounds`` and quantile scaling, quantile knots measured by a
            DP mechanism (``tasks.privacy.dp_synthetic.dp_quantile_knots``) for columns whose
            public bounds have min and max but no knots (``ColumnSpec.bounds == "dp"``).
        dp_values: likewise, a discrete numeric's values measured by a DP mechanism (the
            centres of the histogram bins that stood above the noise): the column becomes a
            one-hot block over them, a value mapping to the nearest one.
        bound_state: a quantile-scaled numeric column (kind ``numeric``) with at least
            ``BOUND_STATE_SHARE`` of its training rows exactly at its min or max (a zero
            balance, a capped amount, a code like 999 at the end of its range) gets a companion
            block ``<column>:bound`` (inside / min / max, right after it): the point mass is
            modelled as a category, the quantile knots are fitted on the values inside, and
            ``reverse_transform`` writes the bound wherever the state says so. A density over
            knots smears such a mass, or a synthesizer under-draws the rest (measured: a
            capital gain that is 0 in 90% of rows came back 0 in 98%, with states in 96%).
            Not with ``public_bounds``: which bounds hold a mass would be read off the rows
            (and a DP VAE drew such a state badly: 25% where the rows hold 90%, one run).
        value_support: a quantile-scaled numeric column of few distinct values (at most
            ``QUANTILE_KNOTS``; those held by ``SUPPORT_MIN_ROWS`` rows or more covering
            ``SUPPORT_SHARE`` of its rows: a rate published to three decimals, a count)
            decodes to the nearest of those values (``ColumnSpec.support``) instead of a
            number between two knots that no row holds (a classifier told such synthetic
            rows from real ones by these values alone). Not with ``public_bounds``: the
            value list is data.
    """

    def __init__(self, profile: DatasetProfile, public_bounds: bool = False,
                 numeric: Literal["minmax", "quantile"] = "minmax",
                 with_target: bool = False, missing_state: bool = False,
                 discrete_levels: int = 0, dp_knots: dict[str, list[float]] | None = None,
                 dp_values: dict[str, list[float]] | None = None, bound_state: bool = False,
                 value_support: bool = False):
        self.profile = profile
        self.value_support = value_support
        self.dp_knots = dp_knots or {}
        self.dp_values = dp_values or {}
        self.bound_state = bound_state
        self.discrete_levels = discrete_levels
        self.public_bounds = public_bounds
        self.numeric = numeric
        self.with_target = with_target
        self.missing_state = missing_state
        self.specs: list[ColumnSpec] = []
        self.warnings: list[str] = []  # set by ``fit``: see there

    def modelled(self) -> dict[str, str]:
        """Source column -> group of every column encoded: the feature groups' columns and,
        with ``with_target``, the target in a group of its own, ``TARGET_GROUP`` (a
        synthesizer models the whole row, label included)."""
        out = dict(self.profile.group_of)
        if self.with_target:
            out[self.profile.target.column] = TARGET_GROUP
        return out

    # ------------------------------------------------------------------ fitting
    def fit(self, frame: pl.DataFrame, source: str = "<table>") -> TablePreprocessor:
        """Learn min/max, fill values and category sets from training rows.

        With ``public_bounds``, a column that has bounds in the profile takes them instead (fill
        value: the midpoint, or the first listed category): nothing about it is measured.

        ``warnings`` then lists, one readable line each, the categorical columns with more than
        ``MAX_CATEGORIES`` categories (the warning ``cloakflow profile`` gives): each category
        is one model input, and training, the evaluation and the attacks grow with the inputs.

        Raises:
            PreprocessError: with ``public_bounds``, bounds marked ``origin: data`` (measured on
                the table) are refused rather than used as public.
        """
        self.specs, self.warnings = [], []
        measured = [c for c, b in self.profile.bounds.items() if b.origin == "data"]
        if self.public_bounds and measured:
            raise PreprocessError(
                f"{source}: the profile's bounds of {measured} are marked origin: data "
                "(measured on the table, e.g. by `cloakflow profile`): they are statistics of "
                "the private rows, and a DP run cannot use them as public bounds. Replace them "
                "with bounds known without the data (a code book, a domain range) and set "
                "origin: public, or remove them (`cloakflow run` then scales the column on "
                "the training rows and lists it as not covered by epsilon; a DP "
                "`cloakflow synthesize` needs public bounds for every column)")
        # identifiers are judged per distinct row: a key repeats only with its whole row
        distinct_rows = frame.unique().height
        for col, group in self.modelled().items():
            series = frame.get_column(col)
            try:
                kind = kinds.kind_of(series, self.profile.columns.get(col))
            except kinds.KindError as exc:
                raise PreprocessError(f"{source}: {exc}") from exc
            self._check_nulls(series, source)
            dtype = kinds.dtype_name(series.dtype)
            public = self.profile.bounds.get(col) if self.public_bounds else None
            family = kinds.FAMILY[kind]
            if self.public_bounds:  # a DP fit: the source type is the declared kind's,
                # not one read off the rows; whole numbers when the bounds say so, or when a
                # Parquet file's schema stores the column as integers (not inferred from values)
                whole = public is not None and family == "numeric" and (
                    public.integer or (self.profile.format == "parquet"
                                       and series.dtype.is_integer()))
                dtype = "Int64" if whole and kind == "numeric" else \
                    kinds.PUBLIC_DTYPE.get(kind, dtype)
            if kind == "boolean":  # its domain is public by nature; DP: a public fill
                spec = ColumnSpec(col, group, kind, categories=["false", "true"],
                                  fill="false" if self.public_bounds else self._mode(series),
                                  bounds="public", dtype=dtype)
            elif public is not None and family == "numeric" and public.categories:
                spec = ColumnSpec(col, group, "categorical", categories=public.categories,
                                  fill=public.categories[0], bounds="public", dtype=dtype,
                                  discrete=True)
            elif public is not None and family == "numeric" and col in self.dp_values:
                values = sorted(self.dp_values[col])
                spec = ColumnSpec(col, group, "categorical", categories=[
                    f"{v:.12g}" for v in values], fill=f"{values[len(values) // 2]:.12g}",
                    bounds="dp", dtype=dtype, discrete=True, values=values)
            elif public is not None and family == "numeric":
                if isinstance(public.min, dt.date) and kind == "numeric":
                    raise PreprocessError(f"{source}: column {col!r}: its bounds are dates but "
                                          "the column is numeric; give numbers")
                low, high = public.span(kind)
                spec = ColumnSpec(col, group, kind, minimum=low, maximum=high,
                                  fill=(low + high) / 2, bounds="public", dtype=dtype,
                                  step=public.grid_step() if kind == "numeric" else None)
                if self.numeric == "quantile" and public.knots:
                    spec.transform, spec.knots = "quantile", public.knot_values(kind)
                elif self.numeric == "quantile" and col in self.dp_knots:
                    spec.transform, spec.knots = "quantile", list(self.dp_knots[col])
                    spec.bounds = "dp"
                if spec.transform == "quantile":  # the public (or DP) median
                    spec.fill = float(np.interp(0.5, np.linspace(0, 1, len(spec.knots)),
                                                spec.knots))
            elif public is not None:
                spec = ColumnSpec(col, group, kind, categories=public.categories,
                                  fill=public.categories[0], bounds="public", dtype=dtype)
            elif family == "numeric" and self._is_discrete(series, kind):
                labels = kinds.category_text(series).drop_nulls()
                counts = labels.value_counts(sort=True)
                spec = ColumnSpec(col, group, "categorical", fill=counts.get_column(col)[0],
                                  categories=sorted(counts.get_column(col).to_list(),
                                                    key=float), dtype=dtype, discrete=True)
            elif family == "numeric":
                values = self._numbers(series, kind, source)
                values = values[~np.isnan(values)]
                if kind == "numeric" and _whole_numbers(series.dtype):
                    self._check_not_integer_key(series, source, distinct_rows)
                spec = ColumnSpec(col, group, kind,
                                  minimum=float(values.min()), maximum=float(values.max()),
                                  fill=float(np.median(values)), dtype=dtype)
                # a DP run measuring a column (no public bounds) takes min/max, never up to
                # 1,000 quantiles of the private rows
                if self.numeric == "quantile" and not self.public_bounds:
                    states = self._bound_states(values, kind)
                    inside = values
                    if states:
                        at = ((values == spec.minimum) & ("min" in states)) | (
                            (values == spec.maximum) & ("max" in states))
                        inside = values[~at] if (~at).any() else values
                        spec.fill = float(np.median(inside))
                    spec.transform, spec.knots = "quantile", _quantile_knots(inside)
                    if self.value_support and kind == "numeric":
                        spec.support = _support(inside)
            else:
                values = kinds.category_text(series).drop_nulls()
                counts = values.value_counts(sort=True)
                self._check_not_identifier(col, counts.height, len(values), source,
                                           distinct_rows)
                labels = counts.get_column(col).to_list()
                order = (lambda v: float(v)) if series.dtype.is_numeric() else None
                spec = ColumnSpec(col, group, kind, categories=sorted(labels, key=order),
                                  fill=counts.get_column(col)[0], dtype=dtype)
            self.specs.append(spec)
            states = self._spec_bound_states(spec, series, kind, source)
            if states:
                self.specs.append(ColumnSpec(
                    f"{col}:bound", group, "categorical", categories=states, fill="inside",
                    minimum=spec.minimum, maximum=spec.maximum,
                    bounds="data", dtype="String",
                    missing_of=col, companion="bound"))
            if spec.family == "categorical" and len(spec.categories) > MAX_CATEGORIES:
                self.warnings.append(
                    f"{source}: column {col!r}: {len(spec.categories)} categories in the "
                    f"training rows (or its public bounds), one-hot "
                    f"encoded into as many model inputs (more than {MAX_CATEGORIES}): training, "
                    "the evaluation and the attacks slow down with them; consider grouping rare "
                    "categories or dropping the column (`drop:` in the profile)")
            # whether a column has a missing flag: in a DP run decided by the profile alone
            # (its public `nullable` list), else read off the rows; never the target
            flagged = col != self.profile.target.column and (
                col in self.profile.nullable if self.public_bounds
                else bool(_null_mask(series).any()))
            if self.missing_state and flagged:
                self.specs.append(ColumnSpec(f"{col}:missing", group, "boolean",
                                             categories=["false", "true"], fill="false",
                                             bounds="public" if self.public_bounds else "data",
                                             dtype="Boolean", missing_of=col))
        return self

    def _bound_states(self, values: np.ndarray, kind: str) -> list[str]:
        """The bound states of a column measured on the rows (non-DP): the bounds holding at
        least ``BOUND_STATE_SHARE`` of its values, after ``inside``; [] when none does."""
        if not self.bound_state or kind != "numeric" or not len(values):
            return []
        states = [b for b, v in (("min", values.min()), ("max", values.max()))
                  if (values == v).mean() >= BOUND_STATE_SHARE]
        return ["inside", *states] if states else []

    def _spec_bound_states(self, spec: ColumnSpec, series: pl.Series, kind: str,
                           source: str) -> list[str]:
        """The states of ``spec``'s companion bound block, measured (``_bound_states``) for a
        quantile-scaled numeric column of a fit without public bounds."""
        if spec.family != "numeric" or spec.discrete or spec.values or kind != "numeric":
            return []
        if self.public_bounds or spec.transform != "quantile":
            return []
        values = self._numbers(series, kind, source)
        return self._bound_states(values[~np.isnan(values)], kind)

    def _companion_states(self, spec: ColumnSpec) -> list[str]:
        """The states of the bound block that follows ``spec``, or []."""
        return next((s.categories for s in self.specs if s.missing_of == spec.name
                     and s.companion == "bound"), [])

    def _is_discrete(self, series: pl.Series, kind: str) -> bool:
        """Whether a numeric column without public bounds is a discrete numeric
        (``discrete_levels``); never in a DP run, where the value list would be data."""
        if not self.discrete_levels or self.public_bounds or kind != "numeric":
            return False
        present = series.drop_nulls()
        if series.dtype.is_float():
            present = present.filter(present.is_finite())
        levels = present.n_unique()
        return 0 < levels <= self.discrete_levels and len(present) >= DISCRETE_MIN_ROWS * levels

    @staticmethod
    def _mode(series: pl.Series) -> str:
        values = kinds.category_text(series).drop_nulls()
        return values.value_counts(sort=True).get_column(series.name)[0] if len(values) \
            else "false"

    @staticmethod
    def _check_not_integer_key(series: pl.Series, source: str,
                               distinct_rows: int | None = None) -> None:
        """An integer column that reads as a key (``integer_key_reasons``) is an identifier
        stored as a number; declaring it numeric does not make it a feature.

        Raises:
            PreprocessError: naming the column, what was seen and the profile keys.
        """
        if isinstance(series.dtype, pl.Decimal):  # decimal(p,0): whole numbers
            series = series.cast(pl.Int128, strict=False)
        reasons = integer_key_reasons(series, distinct_rows)
        if reasons:
            distinct, rows = series.drop_nulls().n_unique(), series.drop_nulls().len()
            raise PreprocessError(
                f"{source}: column {series.name!r}: {distinct} distinct integers in {rows} rows"
                + (f" ({distinct} distinct rows)" if distinct < rows else "") + " and "
                f"{' and '.join(reasons)}: an identifier stored as a number, not a feature. "
                "List it under `identifiers:` in the profile (kept out of the features and the "
                "release) or under `drop:`, and remove it from its group")

    @staticmethod
    def _check_not_identifier(col: str, distinct: int, rows: int, source: str,
                              distinct_rows: int | None = None) -> None:
        """A categorical column with (nearly) one value per row is an identifier: one-hot
        encoded it is a row index in disguise, and it would be released in the codes. Rows
        are counted once per distinct row (``distinct_rows``): a key repeated only with its
        whole row is still a key.

        Raises:
            PreprocessError: naming the column, the counts and the profile keys that decide.
        """
        per = min(rows, distinct_rows or rows)
        if per >= IDENTIFIER_MIN_ROWS and distinct >= IDENTIFIER_SHARE * per:
            raise PreprocessError(
                f"{source}: column {col!r}: {distinct} distinct values in {rows} rows"
                + (f" ({per} distinct rows)" if per < rows else "") + " (nearly one "
                "per row): an identifier, not a feature. List it under `identifiers:` in the "
                "profile (kept out of the features and the release) or under `drop:`, and "
                "remove it from its group and from quasi_identifiers")

    # ------------------------------------------------------------------ forward
    def transform(self, frame: pl.DataFrame, source: str = "<table>",
                  unseen: Literal["error", "ignore"] | None = None,
                  spread: np.random.Generator | None = None) -> np.ndarray:
        """Encode a frame into a float32 matrix with columns ``self.output_columns``.

        Args:
            frame: rows to encode.
            source: file name used in error messages.
            unseen: overrides the profile's unseen-category rule (the attack step encodes
                held-out control rows with ``"ignore"``: a category seen only there is no
                input error).
            spread: a generative model's training rows: a quantile-scaled value that holds a
                stretch of levels is drawn uniformly over it instead of taking its middle (the
                randomised probability integral transform), with this generator. Such a
                stretch is a value tied over several knots (a point mass: a zero balance, a
                capped amount, an integer's repeats) or, on a public grid (``step``), the
                value's grid cell; ``reverse_transform`` maps every level of it back to the
                value. Without it a point mass reaches the model as one number, which a
                Gaussian head fits with a vanishing sigma: the model spends its code on
                recognising the mass, and its draws land on it far more often than the rows
                do (measured: a capital gain 0 in 90% of rows came back 0 in 98%; spread,
                90%). A value at a bound with a state of its own (``bound_state``), which
                decoding ignores, is drawn over all levels.

        Raises:
            PreprocessError: a null where the profile says ``missing: error``, or an unseen
                category where it says ``unseen: error``; the message names file and column.
        """
        self._require_fitted()
        rule = unseen or self.profile.unseen
        blocks = [self._transform_column(frame.get_column(s.missing_of or s.name), s, source,
                                         rule, spread)
                  for s in self.specs]
        return np.hstack(blocks).astype(np.float32, copy=False)

    def _transform_column(self, series: pl.Series, spec: ColumnSpec, source: str,
                          rule: str, spread: np.random.Generator | None = None) -> np.ndarray:
        if spec.missing_of is not None and spec.companion == "bound":  # inside / min / max
            values = self._numbers(series, "numeric", source)
            state = np.where(values == spec.minimum, "min", np.where(
                values == spec.maximum, "max", "inside"))
            state = np.where(np.isin(state, spec.categories), state, "inside")
            return (state[:, None] == np.asarray(spec.categories)[None, :]).astype(np.float32)
        if spec.missing_of is not None:  # one-hot [present, missing]
            missing = _null_mask(series)
            return np.column_stack([~missing, missing]).astype(np.float32)
        series = self._check_nulls(series, source, spec)
        if spec.values:  # discrete over DP values: the nearest one
            numbers = self._numbers(series, "numeric", source)
            grid = np.asarray(spec.values)
            numbers = np.where(np.isnan(numbers), float(spec.fill), numbers)
            mid = (grid[1:] + grid[:-1]) / 2
            out = np.zeros((len(numbers), len(grid)), dtype=np.float32)
            out[np.arange(len(numbers)), np.searchsorted(mid, numbers)] = 1.0
            return out
        if spec.family == "numeric":
            values = self._numbers(series, spec.kind, source)
            values = np.where(np.isnan(values), spec.fill, values)  # nulls: missing=impute
            states = self._companion_states(spec)
            at = np.zeros(len(values), dtype=bool)
            if states:  # a value at a bound with a state of its own: the model sees the fill
                at = ((values == spec.minimum) & ("min" in states)) | (
                    (values == spec.maximum) & ("max" in states))
                values = np.where(at, spec.fill, values)
            if spec.transform == "quantile":
                knots = np.asarray(spec.knots)
                if spread is None:
                    return _to_quantile(values, knots).reshape(-1, 1)
                low, high = _quantile_span(values, knots)
                if spec.step:  # a public grid: the value's cell, which decoding snaps back
                    half = spec.step / 2
                    low = np.minimum(low, _quantile_span(
                        np.maximum(values - half, spec.minimum), knots)[1])
                    high = np.maximum(high, _quantile_span(
                        np.minimum(values + half, spec.maximum), knots)[0])
                low, high = np.where(at, 0.0, low), np.where(at, 1.0, high)
                return (low + spread.random(len(values)) * (high - low)).reshape(-1, 1)
            span = spec.maximum - spec.minimum or 1.0
            scaled = (values - spec.minimum) / span
            if spec.bounds == "public":  # public bounds are a promise: clip what lies outside
                scaled = np.clip(scaled, 0.0, 1.0)
            return scaled.reshape(-1, 1)
        values = kinds.category_text(series).fill_null(spec.fill).to_numpy()
        index = {c: i for i, c in enumerate(spec.categories)}
        codes = np.fromiter((index.get(v, -1) for v in values), dtype=np.int64, count=len(values))
        unseen = codes < 0
        if unseen.any() and rule == "error":
            examples = sorted(set(values[unseen].tolist()))[:5]
            if spec.bounds == "public":
                raise PreprocessError(
                    f"{source}: column {spec.name!r}: {int(unseen.sum())} rows have categories "
                    f"outside the profile's public bounds (rule: public bounds, bounds."
                    f"{spec.name}.categories), e.g. {examples}; add them to the list if they "
                    "are valid values")
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

        Numeric, date and datetime columns are unscaled, a one-hot block becomes its argmax
        category; each column comes back in its source type (``ColumnSpec.source_dtype``:
        integers rounded, decimals rounded to their scale and clipped to their precision,
        booleans boolean, dates dates, datetimes in their unit and zone, integer-coded
        categories integers), so decoded rows have the schema of the fitted rows. A column
        scaled over public bounds comes back within them (a DP fit's whole-number columns,
        ``PublicBounds.integer`` or integer-typed in a Parquet schema, as Int64).
        """
        self._require_fitted()
        columns, missing, at_bound = [], {}, {}
        for spec, start, stop in self.column_blocks():
            block = matrix[:, start:stop]
            if spec.missing_of is not None and spec.companion == "bound":
                at_bound[spec.missing_of] = (np.asarray(spec.categories)[block.argmax(axis=1)],
                                             spec)
                continue
            if spec.missing_of is not None:
                missing[spec.missing_of] = block.argmax(axis=1) == 1
                continue
            if spec.family == "numeric":
                values = block[:, 0].astype(np.float64)
                if spec.transform == "quantile":
                    knots = np.asarray(spec.knots)
                    values = np.interp(values, np.linspace(0, 1, len(knots)), knots)
                    if spec.support:  # a mostly discrete column: the values rows hold
                        values = _nearest(values, np.asarray(spec.support))
                else:
                    values = values * (spec.maximum - spec.minimum) + spec.minimum
                    if spec.bounds != "data":  # public bounds hold every released value
                        values = np.clip(values, spec.minimum, spec.maximum)
                if spec.step:  # a public resolution: the values lie on its grid
                    values = np.clip(on_grid(values, spec.minimum, spec.step), spec.minimum,
                                     spec.maximum)
                columns.append(kinds.from_numbers(spec.name, values, spec.kind,
                                                  spec.source_dtype))
            elif spec.values:  # discrete over DP values: back to numbers
                columns.append(kinds.from_numbers(spec.name, np.asarray(spec.values)[
                    block.argmax(axis=1)], "numeric", spec.source_dtype))
            else:
                labels = np.asarray(spec.categories, dtype=object)[block.argmax(axis=1)]
                columns.append(kinds.from_categories(spec.name, labels, spec.kind,
                                                     spec.source_dtype))
        frame = pl.DataFrame(columns)
        for name, (state, spec) in at_bound.items():  # a bound state: the bound itself
            numbers = kinds.to_numbers(frame.get_column(name), "numeric")
            numbers = np.where(state == "min", spec.minimum, np.where(
                state == "max", spec.maximum, numbers))
            frame = frame.with_columns(kinds.from_numbers(
                name, numbers, "numeric", kinds.dtype_name(frame.schema[name])))
        if missing:  # a missing-value flag set: the value is null
            frame = frame.with_columns(
                pl.when(pl.Series(mask)).then(None).otherwise(pl.col(name)).alias(name)
                for name, mask in missing.items())
        return frame

    # ------------------------------------------------------------------ helpers
    def bounds_used(self) -> dict[str, list[str]]:
        """Columns whose scaling/categories came from the profile's public bounds or the data;
        ``public_knots``: those of the public ones scaled through the profile's public knots;
        ``dp_knots`` / ``dp_values``: those scaled through knots, or made discrete over values,
        measured by a DP mechanism."""
        out: dict[str, list[str]] = {"public": [], "data": [], "public_knots": [],
                                     "dp_knots": [], "dp_values": []}
        for spec in self.specs:
            if spec.bounds == "dp":  # public min/max, knots or values from a DP mechanism
                out["public"].append(spec.name)
                out["dp_values" if spec.values else "dp_knots"].append(spec.name)
                continue
            out[spec.bounds].append(spec.name)
            if spec.bounds == "public" and spec.transform == "quantile":
                out["public_knots"].append(spec.name)
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

    def heads(self, group: str | None = None) -> tuple[tuple[str, int], ...]:
        """Output heads ``((family, width), ...)`` of every column, or of one group's columns,
        in matrix order (``models.heads``: one per source column)."""
        return tuple((s.family, len(s.outputs)) for s in self.specs
                     if group is None or s.group == group)

    def group_slices(self) -> dict[str, list[int]]:
        """Output column indices of each feature group."""
        out: dict[str, list[int]] = {g: [] for g in dict.fromkeys(self.modelled().values())}
        i = 0
        for spec in self.specs:
            for _ in spec.outputs:
                out[spec.group].append(i)
                i += 1
        return out

    def _check_nulls(self, series: pl.Series, source: str,
                     spec: ColumnSpec | None = None) -> pl.Series:
        """Apply the profile's missing rule; ``spec`` (fitted state) supplies the fill value."""
        nulls = int(_null_mask(series).sum())
        if not nulls:
            return series
        if self.profile.missing == "error":
            raise PreprocessError(
                f"{source}: column {series.name!r}: {nulls} null values (rule missing=error; set "
                "missing: impute in the profile to fill them from training rows)"
            )
        # fitting takes statistics over the non-null values; transforming fills them (numbers
        # in _transform_column, categories with the fitted mode)
        return series.fill_nan(None) if series.dtype.is_float() else series

    @staticmethod
    def _numbers(series: pl.Series, kind: str, source: str) -> np.ndarray:
        """A numeric-family column as float64 in its kind's unit, nulls as NaN."""
        try:
            return kinds.to_numbers(series, kind)
        except kinds.KindError as exc:
            raise PreprocessError(f"{source}: {exc}") from exc

    def _require_fitted(self) -> None:
        if not self.specs:
            raise RuntimeError("TablePreprocessor is not fitted")

    # ------------------------------------------------------------------ persistence
    def to_dict(self) -> dict[str, Any]:
        return {"profile": self.profile.model_dump(mode="json"),
                "with_target": self.with_target, "missing_state": self.missing_state,
                "discrete_levels": self.discrete_levels, "bound_state": self.bound_state,
                "value_support": self.value_support, "columns": [s.__dict__ for s in self.specs]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, default=str)

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> TablePreprocessor:
        pre = cls(DatasetProfile.model_validate(state["profile"]),
                  with_target=state.get("with_target", False),
                  missing_state=state.get("missing_state", False),
                  discrete_levels=state.get("discrete_levels", 0),
                  bound_state=state.get("bound_state", False),
                  value_support=state.get("value_support", False))
        pre.specs = [ColumnSpec(**s) for s in state["columns"]]
        return pre


def numeric_scaling(architecture: str) -> str:
    """Quantile scaling for the ``kinds`` architecture, min-max for the tutorial's. In a DP run
    (``public_bounds``) a column with public bounds is scaled from the profile's public
    ``knots`` or, without them, min-max over its bounds (``TablePreprocessor``)."""
    return "quantile" if architecture == "kinds" else "minmax"
