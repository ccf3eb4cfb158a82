import hashlib
import io
import zipfile
from pathlib import Path

import pytest

from cloakflow.tasks.data.locate import DataNotFoundError, locate_source
from cloakflow.tasks.data.profile import DatasetProfile
from cloakflow.tasks.data.steps import locate
from tests.helpers import tiny_profile_dict

PAYLOAD = b"age,city,income,owns,note,label\n30,north,10.0,yes,x,yes\n"


def profile_with_source(**source) -> DatasetProfile:
    return DatasetProfile.model_validate(tiny_profile_dict(source={"file": "tiny.csv", **source}))


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("CLOAKFLOW_DATA_DIR", raising=False)
    monkeypatch.setenv("CLOAKFLOW_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path


def nested_zip(tmp_path: Path) -> Path:
    """outer.zip -> inner.zip -> data/tiny.csv, like the UCI archive's layout."""
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as z:
        z.writestr("data/tiny.csv", PAYLOAD)
    outer = tmp_path / "outer.zip"
    with zipfile.ZipFile(outer, "w") as z:
        z.writestr("inner.zip", inner.getvalue())
    return outer


def test_explicit_input_wins(isolated: Path):
    f = isolated / "mine.csv"
    f.write_bytes(PAYLOAD)
    assert locate_source(profile_with_source(), f) == f


def test_missing_explicit_input(isolated: Path):
    with pytest.raises(DataNotFoundError, match="no such file"):
        locate_source(profile_with_source(), isolated / "nope.csv")


def test_data_dir_is_checked_against_sha(isolated: Path, monkeypatch: pytest.MonkeyPatch):
    d = isolated / "data"
    d.mkdir()
    (d / "tiny.csv").write_bytes(PAYLOAD)
    monkeypatch.setenv("CLOAKFLOW_DATA_DIR", str(d))
    good = profile_with_source(sha256=hashlib.sha256(PAYLOAD).hexdigest())
    assert locate_source(good) == d / "tiny.csv"
    bad = profile_with_source(sha256="0" * 64)
    with pytest.raises(DataNotFoundError, match="does not match"):
        locate_source(bad)


def test_download_from_nested_archive_then_cached(isolated: Path):
    url = nested_zip(isolated).as_uri()  # file:// keeps the test off the network
    prof = profile_with_source(url=url, sha256=hashlib.sha256(PAYLOAD).hexdigest(),
                               archive_path=["inner.zip", "data/tiny.csv"])
    got = locate_source(prof)
    assert got == isolated / "cache" / "tiny" / "tiny.csv"
    assert got.read_bytes() == PAYLOAD
    (isolated / "outer.zip").unlink()  # the second call must use the cache
    assert locate_source(prof) == got


def test_download_with_wrong_checksum_caches_nothing(isolated: Path):
    prof = profile_with_source(url=nested_zip(isolated).as_uri(), sha256="f" * 64,
                               archive_path=["inner.zip", "data/tiny.csv"])
    with pytest.raises(DataNotFoundError, match="expected"):
        locate_source(prof)
    assert not (isolated / "cache" / "tiny" / "tiny.csv").exists()


def test_offline_error_says_where_to_put_the_file(isolated: Path):
    prof = profile_with_source(url=(isolated / "absent.zip").as_uri())
    with pytest.raises(DataNotFoundError) as err:
        locate_source(prof)
    text = str(err.value)
    assert "CLOAKFLOW_DATA_DIR" in text and "--input" in text
    assert str(isolated / "cache" / "tiny" / "tiny.csv") in text


def test_locate_task_fn(isolated: Path):
    f = isolated / "mine.csv"
    f.write_bytes(PAYLOAD)
    assert locate.fn(profile_with_source(), str(f)) == str(f)


def test_only_transient_io_errors_are_retried():
    from cloakflow.tasks.data.ingest import IngestError
    from cloakflow.tasks.retry import transient

    try:
        try:
            raise ConnectionResetError("peer reset")
        except OSError as exc:
            raise DataNotFoundError("could not download") from exc
    except DataNotFoundError as wrapped:
        assert transient(wrapped)
    assert not transient(DataNotFoundError("no local copy"))
    assert not transient(IngestError("bad.csv: file is empty"))
    assert not transient(FileNotFoundError("absent.csv"))
