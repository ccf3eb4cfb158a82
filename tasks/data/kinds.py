"""Column kinds: what a source column is, how it becomes model input and how it comes back.

Five kinds, declared under ``columns:`` in the profile or inferred from the column's polars type:

========== ======================== ======================= ================================
kind       inferred from            model input             decoded back to
========== ======================== ======================= ================================
numeric    integer, float, decimal  min-max scaled number   the source type (integers rounded,
                                                            decimals to their scale)
categorical text, categorical, enum one-hot over categories the source type (an integer-coded
           (integers when declared)                         categorical comes back integer)
boolean    boolean                  one-hot over false/true boolean
date       date                     days since 1970-01-01,  date
                                    min-max scaled
datetime   datetime                 seconds since the       datetime (same unit; zoned
                                    epoch, min-max scaled   ones in UTC since ingest)
========== ======================== ======================= ================================

The attacks and the policy see two *families*: ``numeric`` (numeric, date, datetime: regression,
R^2) and ``categorical`` (categorical, boolean: classification, accuracy gain over the majority).

Text columns declared ``boolean``, ``date`` or ``datetime`` are parsed at ingest (``coerce``);
a value that does not parse is refused by name. Column types no kind covers (time of day,
durations, lists, structs, binary) are refused with the column and its type named, declared or
not.

Source types the models do not take as they are (``conversions`` states each one): a decimal
column (``decimal(12,2)``) is a Float64 for the models (``to_numbers``; declared categorical:
its values as text at its scale) and decoded back to its decimal type, rounded to its scale; a
zone-aware datetime is converted to UTC at ingest (``to_utc``), so the models, the attacks and
the release all see UTC. Attacks and evaluations compare records of source rows with decoded
rows through ``common_types``: one type per column on every side.
"""

from __future__ import annotations

import re
from collections import Counter
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


def is_nested(dtype: pl.DataType) -> bool:
    """Whether a type holds several values per cell (list, array, struct) or opaque ones
    (binary, Python objects): no kind encodes it, whatever the profile declares."""
    return isinstance(dtype, (pl.List, pl.Array, pl.Struct)) or dtype in (pl.Binary, pl.Object)


def kind_of(series: pl.Series, declared: str | None) -> ColumnKind:
    """The declared kind, else the inferred one.

    Raises:
        KindError: nothing is declared and no kind covers the column's type, or the column is
            nested (``is_nested``: declaring a kind does not make a list one value).
    """
    if declared is not None and is_nested(series.dtype):
        raise KindError(f"column {series.name!r}: declared {declared} (`columns:`) but its type "
                        f"{series.dtype} holds several values per row, which no column kind "
                        "encodes; split it into plain columns before export or list it under "
                        "`drop:`")
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
    if kind is None or is_nested(dtype):
        try:
            kind_of(series, kind)  # refuses a type no kind covers, declared or not
        except KindError as exc:
            raise KindError(f"{where}, {exc}") from None
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


# ---------------------------------------------------------------- text as read from a file
# values that stand for "missing" in exported tables (UCI's "?", R's "NA", spreadsheets' "-")
MISSING_MARKERS = ("?", "NA", "N/A", "n/a", "na", "NaN", "nan", "null", "NULL", "None", "-",
                   "--", ".")
_PLAIN_NUMBER = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"
_PLAIN_INTEGER = r"^[+-]?\d+$"


def tidy_text(frame: pl.DataFrame, declared: dict[str, str], where: str
              ) -> tuple[pl.DataFrame, list[str]]:
    """Text columns as their values mean, with a note for each change made.

    Leading and trailing spaces are stripped from every text value (``" Male"`` and ``"Male"``
    would be two categories; a value of spaces only is null). A text column not declared
    ``categorical`` whose values, stripped, are all plain numbers (``12.5``, ``-3``, ``1e6``)
    but for missing-value markers (``MISSING_MARKERS``: ``?``, ``NA``, ``-``, ...), at least
    half of them numbers, is read as numbers (Int64 when every one is whole, else Float64),
    the markers as nulls (the profile's ``missing:`` rule then decides): otherwise one stray
    ``?`` makes a measured column a categorical of hundreds of values. A column declared
    ``numeric`` is read so whatever the share; numbers with separators (``12,345``) stay text
    (``check_columns`` refuses them).

    Args:
        frame: the table as read.
        declared: column -> declared kind (``columns:`` in the profile).
        where: the file name, for the notes.

    Returns:
        The frame and one note per column changed, naming the file, the column and the rule.
    """
    out, notes = [], []
    for name, dtype in frame.schema.items():
        if dtype != pl.String:
            continue
        raw = frame.get_column(name)
        text = raw.str.strip_chars()
        text = pl.select(pl.when(text == "").then(None).otherwise(text)).to_series().alias(name)
        padded = int((raw.drop_nulls() != raw.drop_nulls().str.strip_chars()).sum())
        kind = declared.get(name)
        values = text.drop_nulls()
        marker = values.is_in(list(MISSING_MARKERS))
        number = values.str.contains(_PLAIN_NUMBER)
        numbers = int(number.sum())
        markers = int(marker.sum())
        # text of plain numbers only because of spaces or markers (text stored as such, e.g.
        # zip codes in a Parquet string column, stays text unless declared numeric)
        if kind in (None, "numeric") and numbers and bool((number | marker).all()) \
                and (kind == "numeric" or ((padded or markers) and numbers >= 0.5 * len(values))):
            whole = bool(values.filter(number).str.contains(_PLAIN_INTEGER).all())
            kept = pl.select(pl.when(text.is_in(list(MISSING_MARKERS))).then(None)
                             .otherwise(text)).to_series().alias(name)
            try:
                parsed = kept.cast(pl.Int64 if whole else pl.Float64, strict=True)
            except pl.exceptions.PolarsError:
                parsed = kept.cast(pl.Float64, strict=False)
            found = sorted(set(values.filter(marker).to_list()))
            how = []
            if padded:
                how.append(f"{padded} with leading or trailing spaces")
            if found:
                how.append(f"{markers} missing-value markers {found}, read as nulls")
            if how:
                notes.append(f"{where}, column {name!r}: numbers written as text ("
                             f"{'; '.join(how)}): read as {parsed.dtype} (rule: a text column "
                             "of plain numbers and missing-value markers is numeric; declare it "
                             "categorical under `columns:` to keep the text)")
            out.append(parsed)
        elif padded:
            example = raw.drop_nulls().filter(raw.drop_nulls() != raw.drop_nulls()
                                              .str.strip_chars()).head(1).to_list()[0]
            notes.append(f"{where}, column {name!r}: {padded} values with leading or trailing "
                         f"spaces stripped (e.g. {example!r} -> {example.strip()!r}; rule: "
                         "spaces around a value are not part of it)")
            out.append(text)
    return (frame.with_columns(out) if out else frame), notes


def missing_markers(series: pl.Series) -> dict[str, int]:
    """Missing-value markers (``MISSING_MARKERS``) among a text column's values, marker ->
    rows; ``{}`` for other types."""
    if series.dtype != pl.String:
        return {}
    values = series.drop_nulls().str.strip_chars()
    hits = values.filter(values.is_in(list(MISSING_MARKERS)))
    return dict(sorted(Counter(hits.to_list()).items())) if len(hits) else {}


def infinite_count(series: pl.Series) -> int:
    """Rows holding +inf or -inf in a float column (0 for other types)."""
    if not series.dtype.is_float():
        return 0
    return int(series.is_infinite().fill_null(False).sum())


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
    if isinstance(target, pl.Decimal):
        return to_decimal(series, target)
    if target.is_integer():
        info = np.iinfo(pl.Series([], dtype=target).to_numpy().dtype)
        series = series.round(0).clip(info.min, info.max)
    return series.cast(target if target.is_numeric() else pl.Float64)


def to_decimal(series: pl.Series, target: pl.Decimal) -> pl.Series:
    """Float64 numbers as a decimal column: rounded to its scale and clipped to the largest
    magnitude its precision holds (a decoded value beyond it would not cast); NaN is null."""
    scale = target.scale or 0
    precision = target.precision or 38
    limit = float(10 ** (precision - scale)) - 10.0 ** -scale
    return series.fill_nan(None).clip(-limit, limit).round(scale).cast(target, strict=False)


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
    if isinstance(dtype, pl.Decimal):
        return f"Decimal[{dtype.precision or 38},{dtype.scale or 0}]"
    if isinstance(dtype, (pl.Categorical, pl.Enum)):
        return "String"
    return dtype.base_type().__name__ if hasattr(dtype, "base_type") else str(dtype)


_DATETIME = re.compile(r"^Datetime\[(\w+),(.*)\]$")
_DECIMAL = re.compile(r"^Decimal\[(\d+),(\d+)\]$")


def parse_dtype(name: str) -> pl.DataType:
    """Inverse of ``dtype_name`` (a bare ``Decimal``, as states saved before decimal types were
    kept wrote it, reads as Float64)."""
    m = _DATETIME.match(name)
    if m:
        return pl.Datetime(m.group(1), m.group(2) or None)  # type: ignore[arg-type]
    m = _DECIMAL.match(name)
    if m:
        return pl.Decimal(int(m.group(1)), int(m.group(2)))
    dtype = getattr(pl, name, None)
    if dtype is None or name == "Decimal":
        return pl.Float64
    return dtype()


def type_text(dtype: pl.DataType) -> str:
    """A polars type as people read it in a manifest: ``decimal(12,2)``,
    ``datetime[us, Europe/Paris]``, ``Float64``."""
    if isinstance(dtype, pl.Decimal):
        return f"decimal({dtype.precision or 38},{dtype.scale or 0})"
    if isinstance(dtype, pl.Datetime):
        zone = f", {dtype.time_zone}" if dtype.time_zone else ""
        return f"datetime[{dtype.time_unit}{zone}]"
    return str(dtype)


# ---------------------------------------------------------------- source types the models convert
FLOAT_DIGITS = 15  # significant digits a Float64 holds exactly


def to_utc(frame: pl.DataFrame) -> pl.DataFrame:
    """Zone-aware datetime columns converted to UTC (the same instants; naive ones are left
    as they are)."""
    zoned = [n for n, t in frame.schema.items()
             if isinstance(t, pl.Datetime) and t.time_zone not in (None, "UTC")]
    return frame.with_columns(pl.col(zoned).dt.convert_time_zone("UTC")) if zoned else frame


def conversion(dtype: pl.DataType, released: pl.DataType | None = None) -> str | None:
    """How a column of source type ``dtype`` is converted, as the manifest states it, or
    ``None`` when it is taken as it is.

    Args:
        released: the type the release holds the column in; ``None`` when the release holds
            no source values of it (codes).
    """
    if isinstance(dtype, pl.Decimal):
        text = f"{type_text(dtype)} -> Float64 for the models"
    elif isinstance(dtype, pl.Datetime) and dtype.time_zone not in (None, "UTC"):
        text = f"{type_text(dtype)} -> UTC"
    else:
        return None
    return text + (f", released as {type_text(released)}" if released is not None else "")


def conversions(schema: dict[str, pl.DataType], columns: list[str],
                released: dict[str, pl.DataType] | None = None) -> dict[str, str]:
    """``conversion`` of each of ``columns`` the source ``schema`` holds (column -> statement),
    for the release manifest; ``released``: the release's own schema, where it holds source
    values."""
    out = {}
    for col in columns:
        if col in schema:
            text = conversion(schema[col], (released or {}).get(col))
            if text is not None:
                out[col] = text
    return out


def model_types(frame: pl.DataFrame) -> pl.DataFrame:
    """Decimal columns as Float64, the type the models and the attacks read them in (a
    pandas copy of a decimal column holds Python ``Decimal`` objects, which anonymeter takes
    for categories and cannot compare with its medians)."""
    decimals = [n for n, t in frame.schema.items() if isinstance(t, pl.Decimal)]
    return frame.with_columns(pl.col(decimals).cast(pl.Float64)) if decimals else frame


def common_types(frames: dict[str, pl.DataFrame]) -> dict[str, pl.DataFrame]:
    """Records of source rows and decoded rows with one type per column in every frame:
    decimals as Float64 (``model_types``), and a number typed differently on two sides (an
    integer column against a DP release's Float64) as Float64 on all.

    Args:
        frames: name (for messages: "training rows", "released rows") -> frame; columns are
            compared where every frame has them.

    Raises:
        KindError: a column holds numbers on one side and something else on another (or two
            different non-numeric types); the message names the column and each side's type.
    """
    frames = {k: model_types(f) for k, f in frames.items()}
    schemas = {k: f.schema for k, f in frames.items()}
    shared = [c for c in next(iter(frames.values())).columns
              if all(c in s for s in schemas.values())]
    to_float = []
    for col in shared:
        types = {k: s[col] for k, s in schemas.items()}
        if len(set(types.values())) == 1:
            continue
        if all(t.is_numeric() for t in types.values()):
            to_float.append(col)
            continue
        seen = ", ".join(f"{t} in the {k}" for k, t in types.items())
        raise KindError(f"column {col!r}: {seen}: the attacks and evaluations compare a column "
                        "in one type on every side (rule: decoded rows come back in the "
                        "source type)")
    if not to_float:
        return frames
    return {k: f.with_columns(pl.col(to_float).cast(pl.Float64)) for k, f in frames.items()}
