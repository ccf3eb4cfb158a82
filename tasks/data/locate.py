"""Find a dataset's file: --input, then CLOAKFLOW_DATA_DIR, then the local cache, then download.

Downloads are checked against the SHA-256 in the profile before they enter the cache, so a
half-downloaded or altered file is never used.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import urllib.request
import zipfile
from pathlib import Path

from cloakflow.tasks import console
from cloakflow.tasks.data.profile import DatasetProfile

DATA_DIR_ENV = "CLOAKFLOW_DATA_DIR"
CACHE_ENV = "CLOAKFLOW_CACHE_DIR"


class DataNotFoundError(FileNotFoundError):
    """No copy of the dataset could be found or fetched."""

    exit_code = 2  # the command line's exit status
    headline = "INPUT REJECTED, nothing was published."


def cache_dir() -> Path:
    """Cache: $CLOAKFLOW_CACHE_DIR, else $XDG_CACHE_HOME/cloakflow, else ~/.cache/cloakflow."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "cloakflow"


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _extract(payload: bytes, members: list[str]) -> bytes:
    """Open nested zip members, outermost first, and return the innermost file's bytes."""
    for member in members:
        with zipfile.ZipFile(io.BytesIO(payload)) as archive:
            payload = archive.read(member)
    return payload


def download(profile: DatasetProfile, target: Path, timeout: float = 60.0) -> Path:
    """Download the profile's source into ``target``, verifying its checksum first.

    Raises:
        DataNotFoundError: the download failed or the checksum does not match.
    """
    src = profile.source
    assert src is not None and src.url
    console.step(f"downloading {src.url} ...")
    try:
        with urllib.request.urlopen(src.url, timeout=timeout) as resp:
            payload = resp.read()
        data = _extract(payload, src.archive_path)
    except (OSError, zipfile.BadZipFile, KeyError) as exc:
        raise DataNotFoundError(
            f"could not download {src.file} from {src.url}: {exc}\n{_where_to_put(profile)}"
        ) from exc
    got = hashlib.sha256(data).hexdigest()
    if src.sha256 and got != src.sha256:
        raise DataNotFoundError(
            f"downloaded {src.file} from {src.url} has SHA-256 {got}, expected {src.sha256}; "
            "nothing was cached"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as tmp:
        tmp.write(data)
    os.replace(tmp.name, target)
    return target


def _where_to_put(profile: DatasetProfile) -> str:
    name = profile.source.file if profile.source else "<the table>"
    return (
        f"Put {name} in a folder and set {DATA_DIR_ENV} to it, copy it to "
        f"{cache_dir() / profile.name / name}, or pass --input PATH."
    )


def _verified(path: Path, profile: DatasetProfile) -> Path:
    expected = profile.source.sha256 if profile.source else None
    if expected:
        got = sha256_file(path)
        if got != expected:
            raise DataNotFoundError(
                f"{path}: SHA-256 {got} does not match the profile's {expected} "
                f"(dataset {profile.name!r}); replace the file or pass --input to use it anyway"
            )
    return path


def locate_source(
    profile: DatasetProfile, input_path: str | Path | None = None, allow_download: bool = True
) -> Path:
    """Resolve the file to ingest for a profile.

    Order: an explicit ``input_path`` (used as is), ``$CLOAKFLOW_DATA_DIR/<source.file>``, the
    cache, then a download from ``source.url``. Copies found by name are checked against the
    profile's SHA-256.

    Raises:
        DataNotFoundError: nothing found and no download possible; the message says where to
            put the file.
    """
    if input_path is not None:
        path = Path(input_path)
        if not path.is_file():
            raise DataNotFoundError(f"--input {path}: no such file")
        return path
    if profile.source is None:
        raise DataNotFoundError(
            f"profile {profile.name!r} has no source section: pass --input PATH"
        )
    name = profile.source.file
    if os.environ.get(DATA_DIR_ENV):
        candidate = Path(os.environ[DATA_DIR_ENV]) / name
        if candidate.is_file():
            return _verified(candidate, profile)
    cached = cache_dir() / profile.name / name
    if cached.is_file():
        return _verified(cached, profile)
    if allow_download and profile.source.url:
        return download(profile, cached)
    raise DataNotFoundError(f"no local copy of {name} for dataset {profile.name!r}. "
                            + _where_to_put(profile))
