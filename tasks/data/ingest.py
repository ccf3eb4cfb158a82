"""Ingest a CSV or Parquet table with polars (lazy scan, full-length schema inference)."""

from __future__ import annotations

from pathlib import Path

import polars as pl
from prefect import task

from cloakflow.tasks.data.profile import DatasetProfile
from cloakflow.tasks.retry import retry_on_io


class IngestError(ValueError):
    """The file cannot be read as a table."""


def scan_table(path: str | Path, profile: DatasetProfile) -> pl.LazyFrame:
    """A lazy scan of the file in the profile's format.

    CSV schema inference reads the whole file (``infer_schema_length=None``): on wide or ordered
    tables a prefix guess is wrong (a decimal first seen after row 100 breaks the scan). Types are
    not forced here, so that a wrongly typed column reaches validation and is reported there by
    name instead of failing the parser.
    """
    path = Path(path)
    if profile.format == "csv":
        return pl.scan_csv(path, separator=profile.separator, infer_schema_length=None)
    return pl.scan_parquet(path)


def read_table(path: str | Path, profile: DatasetProfile) -> pl.DataFrame:
    """Read the columns the profile needs (and any others it does not drop) into memory.

    Raises:
        IngestError: the file is missing, empty, malformed, or has no rows; the message names it.
    """
    path = Path(path)
    if not path.is_file():
        raise IngestError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise IngestError(f"{path}: file is empty")
    try:
        lazy = scan_table(path, profile)
        schema = lazy.collect_schema()
        keep = [c for c in schema.names() if c not in set(profile.drop)]
        frame = lazy.select(keep).collect()
    except (pl.exceptions.PolarsError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise IngestError(
            f"{path}: cannot be read as {profile.format}"
            + (f" with separator {profile.separator!r}" if profile.format == "csv" else "")
            + f": {first}"
        ) from exc
    if frame.height == 0:
        raise IngestError(f"{path}: the table has a header but no rows")
    if frame.width == 1 and profile.format == "csv" and len(profile.features) > 1:
        raise IngestError(
            f"{path}: only one column ({frame.columns[0][:60]!r}) was found; is the separator "
            f"{profile.separator!r} right?"
        )
    return frame


@task(name="ingest", retries=2, retry_delay_seconds=2, retry_condition_fn=retry_on_io)
def ingest(path: str, profile: DatasetProfile) -> pl.DataFrame:
    """Prefect task: read the table; retried on transient I/O errors, never on bad content."""
    frame = read_table(path, profile)
    print(f"ingested {path}: {frame.height} rows x {frame.width} columns", flush=True)
    return frame
