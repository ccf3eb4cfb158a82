import json
from pathlib import Path

import polars as pl
import pytest

from cloakflow.tasks.release.codes import PSEUDONYMISATION_STATEMENT
from cloakflow.tasks.release.publish import code_version, write_release


def tables():
    return {"encoded": pl.DataFrame({"latent_0": [0.1, 0.2], "y": ["no", "yes"]})}


def test_release_layout(tmp_path: Path):
    path = write_release(tmp_path, "ds", "run1", tables(), {"dataset": "ds"})
    assert path == tmp_path / "ds" / "run1"
    assert sorted(p.name for p in path.iterdir()) == ["encoded.parquet", "manifest.json"]
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["files"]["encoded"] == {"file": "encoded.parquet", "rows": 2, "columns": 2}
    assert manifest["created_at"].endswith("+00:00")
    assert pl.read_parquet(path / "encoded.parquet").equals(tables()["encoded"])


def test_failure_midway_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    def boom(self, *a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(pl.DataFrame, "write_parquet", boom)
    with pytest.raises(OSError, match="disk full"):
        write_release(tmp_path, "ds", "run1", tables(), {})
    assert list((tmp_path / "ds").iterdir()) == []


def test_existing_release_is_never_overwritten(tmp_path: Path):
    write_release(tmp_path, "ds", "run1", tables(), {})
    with pytest.raises(FileExistsError):
        write_release(tmp_path, "ds", "run1", tables(), {})


def test_statement_and_version():
    assert "pseudonymised" in PSEUDONYMISATION_STATEMENT
    assert "not an anonymisation" in PSEUDONYMISATION_STATEMENT
    assert code_version() != ""
