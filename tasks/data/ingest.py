"""Ingest a CSV or Parquet table with polars (lazy scan, full-length schema inference)."""

from __future__ import annotations

import codecs
import io
from pathlib import Path

import polars as pl

from cloakflow.tasks import console
from cloakflow.tasks.data import kinds
from cloakflow.tasks.data.profile import DatasetProfile, near_names


class IngestError(ValueError):
    """The file cannot be read as a table."""

    exit_code = 2  # the command line's exit status
    headline = "INPUT REJECTED, nothing was published."


PARQUET_MAGIC = b"PAR1"  # the first (and last) four bytes of every Parquet file


def file_format(path: str | Path, profile: DatasetProfile) -> str:
    """What the file is: ``parquet`` when it starts with Parquet's magic bytes, else ``csv``
    (text); the profile's ``format`` is only the default for files that cannot be opened."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        return profile.format
    return "parquet" if head == PARQUET_MAGIC else "csv"


def scan_table(path: str | Path, profile: DatasetProfile,
               fmt: str | None = None) -> pl.LazyFrame:
    """A lazy scan of the file in its format (``file_format``; ``fmt`` overrides).

    CSV schema inference reads the whole file (``infer_schema_length=None``): on wide or ordered
    tables a prefix guess is wrong (a decimal first seen after row 100 breaks the scan). Types are
    not forced here, so that a wrongly typed column reaches validation and is reported there by
    name instead of failing the parser. Dates are parsed after reading (``read_table``): ISO
    8601 text by itself, other forms only when declared. The profile's ``null_values`` read as
    nulls; a CSV in another ``encoding`` than UTF-8 (a spreadsheet's cp1252 export) is decoded
    by Python's codec first and handed to polars as UTF-8 (in memory).

    Raises:
        IngestError: the file does not decode in the profile's encoding.
    """
    path = Path(path)
    if (fmt or file_format(path, profile)) == "parquet":
        return pl.scan_parquet(path)
    options = {"separator": profile.separator, "infer_schema_length": None,
               "null_values": list(profile.null_values) or None}
    if codecs.lookup(profile.encoding).name == "utf-8":
        return pl.scan_csv(path, **options)
    try:
        text = path.read_bytes().decode(profile.encoding)
    except UnicodeDecodeError as exc:
        raise IngestError(f"{path}: byte {exc.start} does not decode as {profile.encoding} "
                          "(rule: encoding; set the file's `encoding:` in the profile)") from exc
    return pl.read_csv(io.BytesIO(text.encode("utf-8")), **options).lazy()


def read_table(path: str | Path, profile: DatasetProfile,
               notes: list[str] | None = None) -> pl.DataFrame:
    """Read the columns the profile needs (and any others it does not drop) into memory, with
    text columns declared boolean, date or datetime parsed into those types and zone-aware
    datetimes converted to UTC (``kinds.to_utc``; the release states it, ``conversions``).
    Decimal columns keep their type: the models read them as Float64 (``kinds.to_numbers``)
    and decoded rows come back in it. Text values are stripped of surrounding spaces, and text
    columns of plain numbers and missing-value markers (``?``, ``NA``) read as numbers with
    nulls (``kinds.tidy_text``); ``notes``, where given, receives a line per such change.

    Raises:
        IngestError: the file is missing, empty, malformed, or has no rows, or a declared kind
            does not parse; the message names it.
    """
    path = Path(path)
    if not path.is_file():
        raise IngestError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise IngestError(f"{path}: file is empty")
    fmt = file_format(path, profile)
    if fmt != profile.format and notes is not None:
        notes.append(f"{path.name} is a {fmt} file (its first bytes say so): read as {fmt}, "
                     f"not as the profile's `format: {profile.format}`")
    try:
        lazy = scan_table(path, profile, fmt)
        schema = lazy.collect_schema()
        keep = [c for c in schema.names() if c not in set(profile.drop)]
        frame = lazy.select(keep).collect()
    except (pl.exceptions.PolarsError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        hint = (" (rule: encoding; the file is not UTF-8: set its `encoding:` in the profile, "
                "e.g. cp1252 for a spreadsheet export)" if "utf-8" in first.lower()
                or "utf8" in first.lower() else "")
        raise IngestError(
            f"{path}: cannot be read as {fmt}"
            + (f" with separator {profile.separator!r}" if fmt == "csv" else "")
            + f": {first}{hint}"
        ) from exc
    if frame.height == 0:
        raise IngestError(f"{path}: the table has a header but no rows")
    if frame.width == 1 and fmt == "csv" and len(profile.features) > 1:
        raise IngestError(
            f"{path}: only one column ({frame.columns[0][:60]!r}) was found; is the separator "
            f"{profile.separator!r} right?"
        )
    declared = {c: k for c, k in profile.columns.items()
                if c in frame.columns and k in ("boolean", "date", "datetime", "numeric")}
    frame, tidied = kinds.tidy_text(frame, dict(profile.columns), path.name)
    if notes is not None:
        notes.extend(tidied)
    frame = kinds.parse_iso_text(frame, skip=set(profile.columns))
    try:
        frame = frame.with_columns(
            kinds.coerce(frame.get_column(c), k, path.name, profile.date_formats.get(c))
            for c, k in declared.items())
    except kinds.KindError as exc:
        raise IngestError(str(exc)) from exc
    return kinds.to_utc(frame)


def source_schema(path: str | Path, profile: DatasetProfile) -> dict[str, pl.DataType]:
    """The column types the file stores: a Parquet file's schema (read from its footer, no
    rows); a CSV file stores text only, and what ingest parses from it (dates, ISO datetimes
    with offsets, already in UTC) is no conversion to state: ``{}``."""
    if file_format(path, profile) != "parquet":
        return {}
    return dict(pl.scan_parquet(Path(path)).collect_schema())


def conversions(path: str | Path, profile: DatasetProfile,
                released: dict[str, pl.DataType] | None = None) -> dict[str, str]:
    """How ingest and the models convert the modelled columns' source types (decimals,
    zone-aware datetimes), column -> statement (``kinds.conversions``), for the release
    manifest and the ingest log.

    Args:
        released: the release's schema where it holds source values (decoded synthetic rows);
            ``None`` for codes.
    """
    columns = [*profile.features, profile.target.column]
    schema = source_schema(path, profile)
    out = kinds.conversions(schema, columns, released)
    for col in columns:  # text declared boolean: read as, and released as, Boolean
        if profile.columns.get(col) == "boolean" and schema.get(col, pl.String) == pl.String \
                and (released is None or released.get(col) == pl.Boolean):
            out[col] = ("text booleans (true/false, yes/no, 1/0) read as Boolean"
                        + ("; released as Boolean (declare the column categorical to keep "
                           "its text)" if released is not None else ""))
    return out


def stated_conversions(profile: DatasetProfile, input_path: str | None,
                       released: dict[str, pl.DataType] | None = None) -> dict[str, str]:
    """``conversions`` of the file a run read (``--input``, else the profile's located copy;
    never downloaded here: ingest found it already).

    Raises:
        DataNotFoundError: the file is gone since ingest.
    """
    from cloakflow.tasks.data.locate import locate_source

    path = locate_source(profile, input_path, allow_download=False)
    return conversions(path, profile, released)  # text stores no types: {} for a CSV


# text that reads as a number written for people: thousands separators or a decimal comma
_NUMBER_LIKE = r"^[+-]?(\d{1,3}([,.' ]\d{3})*|\d+)([.,]\d+)?$"
_SEPARATED = r"^[+-]?\d{1,3}([,.' ]\d{3})+([.,]\d+)?$|^[+-]?\d+,\d+$"
NUMBER_AS_TEXT_SHARE = 0.9


def check_columns(frame: pl.DataFrame, profile: DatasetProfile, file: str) -> list[str]:
    """Refuse feature columns whose content cannot be what the profile will make of them, and
    return warnings for doubtful ones.

    Refused (``IngestError``): a column with no value in any row; a text column whose values
    read as numbers written with thousands separators or a decimal comma (it would be one-hot
    encoded as hundreds of categories, or fail as a number).
    Refused too: ``identifiers:`` naming a column the table does not have (the privacy report
    would claim it was kept out); dates written as text in a form not read as dates
    (``01/02/2024``), unless declared ``date``/``datetime`` (parsed) or ``categorical`` (kept
    as text); a column type no kind covers (time of day, duration, list, ...).
    Refused too: a float column holding infinite values (no scaling or quantile reads them).
    Warned: a text column holding missing-value markers (``?``, ``NA``: encoded as a category
    of their own); a column with a single value (it carries nothing); a decimal column with more
    digits than a Float64 holds exactly (``kinds.FLOAT_DIGITS``): the models read it rounded.

    Raises:
        IngestError: naming the file, the column, what was seen and the profile key that
            decides.
    """
    warnings = []
    absent = [c for c in profile.identifiers if c not in frame.columns]
    if absent:  # the privacy report would claim a column kept out that does not exist
        hints = [f"{c!r} ~ {m[0]!r}" for c in absent if (m := near_names(c, frame.columns))]
        raise IngestError(
            f"{file}: `identifiers:` names {absent}, which the table does not have"
            + (f" (a typo? {', '.join(hints)})" if hints else "")
            + "; list the table's own identifier columns there")
    for col in profile.features:
        if col not in frame.columns:
            continue  # the validation suite reports missing columns
        series = frame.get_column(col)
        if series.null_count() == len(series) and len(series):
            raise IngestError(
                f"{file}, column {col!r}: empty in every row ({len(series)} of {len(series)} "
                "null): it holds no information; list it under `drop:` in the profile and "
                "remove it from its group")
        infinite = kinds.infinite_count(series)
        if infinite:
            signs = sorted({str(v) for v in series.filter(series.is_infinite()).to_list()})
            raise IngestError(
                f"{file}, column {col!r}: {infinite} infinite values ({', '.join(signs)}) in "
                f"{len(series)} rows (rule: numbers must be finite; an infinity has no scale "
                "or quantile). Write them as empty fields (missing, then `missing: impute`) "
                "or as a bound, or list the column under `drop:`")
        markers = kinds.missing_markers(series)
        if markers and profile.columns.get(col) in (None, "categorical"):
            seen = ", ".join(f"{m!r} in {n} rows" for m, n in markers.items())
            warnings.append(
                f"{file}, column {col!r}: {seen}: a usual missing-value marker, encoded as a "
                "category of its own (rule: only empty fields are missing); if it means "
                "missing, write those fields empty and set `missing: impute`")
        if series.dtype == pl.String and profile.columns.get(col) != "categorical":
            values = series.drop_nulls()
            # polars read it as text although it looks numeric: some values carry separators
            numeric = values.str.contains(_NUMBER_LIKE)
            separated = values.str.contains(_SEPARATED)
            share = float(numeric.mean() or 0.0)
            if share >= NUMBER_AS_TEXT_SHARE and separated.any():
                example = values.filter(separated).head(1).to_list()[0]
                declared = profile.columns.get(col)
                how = f"declared {declared}" if declared else "inferred as categorical"
                raise IngestError(
                    f"{file}, column {col!r}: {share:.0%} of its values are numbers written as "
                    f"text with separators (e.g. {example!r}); {how}, they would be "
                    "misread. Store the column as plain numbers (12345.67) or, if the text "
                    "itself is meant, declare it categorical under `columns:`")
        declared = profile.columns.get(col)
        example = kinds.looks_like_date_text(series) if declared is None else None
        if example is not None:
            raise IngestError(
                f"{file}, column {col!r}: dates written as text (e.g. {example!r}), which would "
                "be one-hot encoded as categories; declare it `date` or `datetime` under "
                "`columns:` (parsed, then scaled as a number of days or seconds), or "
                "`categorical` if the text itself is meant, or write ISO 8601 (2024-03-31)")
        try:
            kinds.kind_of(series, declared)
        except kinds.KindError as exc:
            raise IngestError(f"{file}, {exc}") from exc
        if isinstance(series.dtype, pl.Decimal) and (series.dtype.precision or 38) > \
                kinds.FLOAT_DIGITS:
            warnings.append(
                f"{file}, column {col!r}: {kinds.type_text(series.dtype)} holds more digits "
                f"than a Float64 keeps exactly ({kinds.FLOAT_DIGITS}): the models read it "
                "rounded to about 15 significant digits; decoded rows are rounded to its scale")
        if series.drop_nulls().n_unique() == 1:
            warnings.append(f"{file}, column {col!r}: one value in every row; it carries no "
                            "information (consider `drop:`)")
    return warnings


def load_table(path: str, profile: DatasetProfile) -> pl.DataFrame:
    """Read the table and check its columns (``check_columns``), printing what was read, the
    readers' notes, the source types converted and the columns' warnings (the ingest step;
    its Prefect task, retried on transient I/O errors, is ``tasks.data.steps.ingest``)."""
    notes: list[str] = []
    frame = read_table(path, profile, notes)
    console.step(f"ingested {path} ({file_format(path, profile)}): {frame.height} rows x "
                 f"{frame.width} columns")
    for note in notes:
        console.warn(note)
    converted = conversions(path, profile)
    if converted:
        print("source types converted: " + "; ".join(f"{c}: {t}" for c, t in converted.items()),
              flush=True)
    for warning in check_columns(frame, profile, Path(path).name):
        console.warn(warning)
    return frame
