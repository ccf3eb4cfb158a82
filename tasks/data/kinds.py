"""Column kinds: what a source column is, how it becomes model input and how it comes back.

Five kinds, declared under ``columns:`` in the profile or inferred from the column's polars type:

========== ======================== ======================= ================================
kind       inferred from            model input             decoded back to
========== ======================== ======================= ================================
numeric    integer, float, decimal  min-max scaled number   the source type (integers rounded)
categorical text, categorical, enum one-hot over categories the source type (an integer-coded
           (integers when declared)                         categorical comes back integer)
boolean    boolean                  one-hot over false/true boolean
date       date                     days since 1970-01-01,  date
                                    min-max scaled
datetime   datetime                 seconds since the       datetime (same unit and zone)
                                    epoch, min-max scaled
========== ======================== ======================= ================================

The attacks and the policy see two *families*: ``numeric`` (numeric, date, datetime: regression,
R^2) and ``categorical`` (categorical, boolean: classification, accuracy gain over the majority).

Text columns declared ``boolean``, ``date`` or ``datetime`` are parsed at ingest (``coerce``);
a value that does not parse is refused by name. Column types no kind covers (time of day,
durations, lists, binary) are refused with the column and its type named.
"""

from __future__ import annotations

import re
from typing import Literal

import numpy as np
import polars as pl

ColumnKind = Literal["numeric", "categorical", "boolean", "date", "datetime"]
KINDS: tuple[str, ...] = ("numeric", "categorical", "boolean", "date", "datetime")
FAMILY: dict[str, str] = {"numeric": "numeric", "date": "numeric", "datetime": "numeric",
                          "categorical": "categorical", "boolean": "categorical"}

BOOLEAN_TEXT = {"true": True, "false": False, "t": True, "f": False, "yes": True, "no": False,
                "y": True, "n": False, "1": True, "0": False}
# dates written as text in a form polars' CSV reader does not parse by itself (day/month order,
# slashes, dots); ISO 8601 text is parsed at read time
_DATE_LIKE = r"^\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}([ T]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?)?$"
DATE_TEXT_SHARE = 0.9


class KindError(ValueError):
    """A column's values cannot be read as its declared kind, or no kind covers its type."""


def infer_kind(dtype: pl.DataType) -> ColumnKind | None:
    """The kind a column of this polars type gets when the profile does not declare one.

    Returns:
        The kind, or ``None`` when no kind covers the type (time of day, duration, list, ...).
    """
    if dtype == pl.Boolean:
        return "boolean"
    if dtype == pl.Date:
        return "date"
    if isinstance(dtype, pl.Datetime):
        return "datetime"
    if dtype.is_numeric():
        return "numeric"
    if dtype in (pl.String, pl.Categorical) or isinstance(dtype, pl.Enum):
        return "categorical"
    return None


def kind_of(series: pl.Series, declared: str | None) -> ColumnKind:
    """The declared kind, else the inferred one.

    Raises:
        KindError: nothing is declared and no kind covers the column's type.
    """
    if declared is not None:
        return declared  # type: ignore[return-value]
    kind = infer_kind(series.dtype)
    if kind is None:
        raise KindError(f"column {series.name!r}: type {series.dtype} is not a column kind "
                        f"cloakflow encodes ({', '.join(KINDS)}); convert it, declare its kind "
                        "under `columns:` or list it under `drop:`")
    return kind


def coerce(series: pl.Series, kind: str | None, where: str,
           date_format: str | None = None) -> pl.Series:
    """Bring a column to the type its declared kind needs (text booleans and dates parsed).

    Args:
        series: the column as read.
        kind: the declared kind, or ``None`` (inferred kinds need no conversion).
        where: file name for error messages.
        date_format: strftime format of a date/datetime column written as text
            (``date_formats:`` in the profile); without it ISO 8601 is read, or the one
            day/month order that reads every value (``date_text_format``).

    Raises:
        KindError: values that do not read as the kind, or a type no kind covers; the message
            names the file, the column, examples and the profile key that decides.
    """
    name, dtype = series.name, series.dtype
    if kind is None:
        kind_of(series, None)
        return series
    if kind == "boolean" and dtype != pl.Boolean:
        text = category_text(series).str.strip_chars().str.to_lowercase()
        bad = text.drop_nulls().filter(~text.drop_nulls().is_in(list(BOOLEAN_TEXT)))
        if len(bad):
            raise KindError(
                f"{where}, column {name!r}: declared boolean (`columns:`) but {len(bad)} values "
                f"are not true/false, yes/no or 1/0, e.g. {sorted(set(bad.to_list()))[:5]}")
        return text.replace_strict(BOOLEAN_TEXT, default=None, return_dtype=pl.Boolean)
    if kind in ("date", "datetime") and dtype == pl.String:
        fmt = date_format or date_text_format(series, kind, where)
        return parse_dates(series, kind, fmt, where)
    if kind == "date" and isinstance(dtype, pl.Datetime):
        return series.dt.date()
    if kind == "datetime" and dtype == pl.Date:
        return series.cast(pl.Datetime("us"))
    if kind in ("date", "datetime") and not (dtype == pl.Date or isinstance(dtype, pl.Datetime)):
        raise KindError(f"{where}, column {name!r}: declared {kind} (`columns:`) but holds "
                        f"{dtype} values")
    if kind == "numeric" and dtype == pl.Boolean:
        return series.cast(pl.Int8)
    if kind == "numeric" and not dtype.is_numeric() and dtype != pl.String:
        raise KindError(f"{where}, column {name!r}: declared numeric (`columns:`) but holds "
                        f"{dtype} values; declare its own kind ({', '.join(KINDS)})")
    return series


ISO_DATE = r"^\d{4}-\d{2}-\d{2}$"
ISO_DATETIME = r"^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?$"
_TIMES = ["", " %H:%M", " %H:%M:%S"]


def parse_dates(series: pl.Series, kind: str, fmt: str | None, where: str) -> pl.Series:
    """Parse text dates with ``fmt`` (None: ISO 8601); every non-null value must parse.

    Raises:
        KindError: naming the values that do not read.
    """
    text = series.str.strip_chars()
    try:
        if kind == "date" and fmt is None and text.str.contains(ISO_DATETIME).any():
            parsed = text.str.to_datetime(strict=False, time_unit="us").dt.date()
        elif kind == "date":
            parsed = text.str.to_date(fmt, strict=False)
        else:
            parsed = text.str.to_datetime(fmt, strict=False, time_unit="us")
    except pl.exceptions.PolarsError:
        parsed = pl.Series(series.name, [None] * len(series), dtype=pl.Date)
    failed = text.is_not_null() & parsed.is_null()
    if failed.any():
        examples = sorted(set(text.filter(failed).to_list()))[:5]
        raise KindError(
            f"{where}, column {series.name!r}: {int(failed.sum())} of "
            f"{int(text.is_not_null().sum())} values do not read as {kind}s in the format "
            f"{fmt or 'ISO 8601'!r}, e.g. {examples}; give the column's format under "
            "`date_formats:` (e.g. '%m/%d/%Y') or write ISO 8601 (2024-03-31)")
    return parsed


def date_text_formats(series: pl.Series, kind: str, where: str) -> list[str] | None:
    """The formats a text date column may be in: None for ISO 8601 (or no value), else the
    day/month orders (day first or month first, separators / - .) that read every value.

    Raises:
        KindError: two-digit years (``%Y`` would read "24" as the year 24).
    """
    values = series.drop_nulls().str.strip_chars()
    if not len(values):
        return None  # empty: check_columns names it
    iso = values.str.contains(ISO_DATE) | values.str.contains(ISO_DATETIME)
    if float(iso.mean() or 0.0) >= 0.5:  # ISO but for some bad values: parse_dates names them
        return None
    if not values.str.contains(r"(^|\D)\d{4}(\D|$)").all():
        raise KindError(
            f"{where}, column {series.name!r}: dates written as text with two-digit years "
            f"(e.g. {values.head(1).to_list()}): give the format under `date_formats:` "
            "(e.g. '%d/%m/%y', read as 1969-2068) or write four-digit years")
    fits = []
    for order in ("%d{s}%m{s}%Y", "%m{s}%d{s}%Y"):
        for sep in "/-.":
            for t in _TIMES if kind == "datetime" else [""]:
                fmt = order.format(s=sep) + t
                read = (values.str.to_date(fmt, strict=False) if kind == "date"
                        else values.str.to_datetime(fmt, strict=False, time_unit="us"))
                if read.null_count() == 0:
                    fits.append(fmt)
    return fits


def date_text_format(series: pl.Series, kind: str, where: str) -> str | None:
    """The format of a text date column: None for ISO 8601, else the single day/month order
    that reads every value (``date_text_formats``).

    Raises:
        KindError: both orders read every value (every day is 12 or less: ambiguous), neither
            does, or the years have two digits; the message says what to write under
            ``date_formats:``.
    """
    fits = date_text_formats(series, kind, where)
    if fits is None:
        return None
    example = series.drop_nulls().str.strip_chars().head(1).to_list()
    if len(fits) == 1:
        return fits[0]
    if len(fits) > 1:
        raise KindError(
            f"{where}, column {series.name!r}: dates written as text (e.g. {example}) read "
            f"both day first and month first (every day is 12 or less): ambiguous. Give the "
            f"format under `date_formats:`, e.g. {{{series.name}: '{fits[0]}'}} or "
            f"'{fits[1]}'")
    raise KindError(
        f"{where}, column {series.name!r}: dates written as text (e.g. {example}) in no "
        "format cloakflow recognises (ISO 8601, or day/month/year or month/day/year); give "
        "the format under `date_formats:` (strftime, e.g. '%d %b %Y')")


def looks_like_date_text(series: pl.Series) -> str | None:
    """An example value if a text column holds dates written as text, else ``None``."""
    if series.dtype != pl.String:
        return None
    values = series.drop_nulls()
    if not len(values):
        return None
    hits = values.str.contains(_DATE_LIKE)
    if float(hits.mean() or 0.0) >= DATE_TEXT_SHARE:
        return values.filter(hits).head(1).to_list()[0]
    return None


def parse_iso_text(frame: pl.DataFrame, skip: set[str]) -> pl.DataFrame:
    """Text columns whose every value is an ISO 8601 date (or datetime) parsed as such; other
    date text stays text (``check_columns`` refuses it unless its kind is declared)."""
    out = []
    for name, dtype in frame.schema.items():
        if dtype != pl.String or name in skip:
            continue
        values = frame.get_column(name).drop_nulls().str.strip_chars()
        if not len(values):
            continue
        if values.str.contains(ISO_DATE).all():
            parsed = frame.get_column(name).str.strip_chars().str.to_date(strict=False)
        elif values.str.contains(ISO_DATETIME).all():
            parsed = frame.get_column(name).str.strip_chars().str.to_datetime(
                strict=False, time_unit="us")
        else:
            continue
        if parsed.null_count() == frame.get_column(name).null_count():
            out.append(parsed)
    return frame.with_columns(out) if out else frame


# ---------------------------------------------------------------- numbers for the models
def to_numbers(series: pl.Series, kind: str) -> np.ndarray:
    """A numeric-family column as float64 (dates in days, datetimes in seconds since the epoch);
    nulls become NaN.

    Raises:
        KindError: a column declared numeric holds values that are not numbers.
    """
    if kind == "date":
        out = series.cast(pl.Date).cast(pl.Int32).cast(pl.Float64)
    elif kind == "datetime":
        out = series.dt.epoch("us").cast(pl.Float64) / 1e6
    else:
        try:
            out = series.cast(pl.Float64, strict=True)
        except pl.exceptions.PolarsError as exc:
            raise KindError(f"column {series.name!r} is declared numeric but holds non-numeric "
                            f"values ({series.dtype})") from exc
    return out.fill_null(np.nan).to_numpy().astype(np.float64)


def from_numbers(name: str, values: np.ndarray, kind: str, dtype: str) -> pl.Series:
    """Inverse of ``to_numbers``: decoded numbers back to a column of the source type."""
    values = np.asarray(values, dtype=np.float64)
    if kind == "date":
        days = pl.Series(name, np.round(values), nan_to_null=True).cast(pl.Int32)
        return days.cast(pl.Date)
    if kind == "datetime":
        micros = pl.Series(name, np.round(values * 1e6), nan_to_null=True).cast(pl.Int64)
        return micros.cast(pl.Datetime("us")).cast(parse_dtype(dtype))
    target = parse_dtype(dtype)
    series = pl.Series(name, values, nan_to_null=True)
    if target.is_integer():
        info = np.iinfo(pl.Series([], dtype=target).to_numpy().dtype)
        series = series.round(0).clip(info.min, info.max)
    return series.cast(target if target.is_numeric() else pl.Float64)


def from_categories(name: str, labels: np.ndarray, kind: str, dtype: str) -> pl.Series:
    """Decoded category labels (text) back to a column of the source type: booleans boolean,
    integer-coded categories integer."""
    text = pl.Series(name, labels.astype(str), dtype=pl.String)
    target = parse_dtype(dtype)
    if kind == "boolean" or target == pl.Boolean:
        return text.replace_strict({"true": True, "false": False}, default=None,
                                   return_dtype=pl.Boolean)
    if target.is_numeric():
        return text.cast(target, strict=False)
    return text


# A DP fit publishes these kinds in a fixed type: whether a numeric column holds integers is
# read off the rows (one row with 3.5 makes a column Float64). A categorical column keeps its
# source type: its values must be the public categories, which pin it.
PUBLIC_DTYPE = {"numeric": "Float64", "boolean": "Boolean", "date": "Date"}


def category_text(series: pl.Series) -> pl.Series:
    """Category labels of a column as text: booleans as "true"/"false", whole-number floats as
    integers ("1", not "1.0", as the profile's bounds write them)."""
    if series.dtype.is_float():
        whole = series.is_finite() & (series == series.round(0))
        return (pl.select(pl.when(whole).then(series.cast(pl.Int64, strict=False)
                                              .cast(pl.String))
                          .otherwise(series.cast(pl.String))).to_series().alias(series.name))
    return series.cast(pl.String)


# ---------------------------------------------------------------- source type as plain text
def dtype_name(dtype: pl.DataType) -> str:
    """A polars type as text that ``parse_dtype`` reads back (stored in the fitted state)."""
    if isinstance(dtype, pl.Datetime):
        return f"Datetime[{dtype.time_unit},{dtype.time_zone or ''}]"
    if isinstance(dtype, (pl.Categorical, pl.Enum)):
        return "String"
    return dtype.base_type().__name__ if hasattr(dtype, "base_type") else str(dtype)


_DATETIME = re.compile(r"^Datetime\[(\w+),(.*)\]$")


def parse_dtype(name: str) -> pl.DataType:
    """Inverse of ``dtype_name``."""
    m = _DATETIME.match(name)
    if m:
        return pl.Datetime(m.group(1), m.group(2) or None)  # type: ignore[arg-type]
    dtype = getattr(pl, name, None)
    if dtype is None or name == "Decimal":
        return pl.Float64
    return dtype()
