"""Shared fixtures: a small generated table with its profile, the bank sample, MLflow in a
temporary sqlite file, and one Prefect test server for the whole session."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import polars as pl
import pytest
import yaml

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# cached task results of this session only: no test may reuse a result from an earlier session
os.environ["PREFECT_RESULTS_LOCAL_STORAGE_PATH"] = tempfile.mkdtemp(prefix="cloakflow-results-")

from cloakflow.tasks.data.profile import DatasetProfile  # noqa: E402
from tests.helpers import DATA_DIR, make_tiny_frame, tiny_profile_dict  # noqa: E402


@pytest.fixture
def tiny_profile() -> DatasetProfile:
    return DatasetProfile.model_validate(tiny_profile_dict())


@pytest.fixture
def tiny_frame() -> pl.DataFrame:
    return make_tiny_frame()


@pytest.fixture
def tiny_files(tmp_path: Path, tiny_frame: pl.DataFrame) -> tuple[Path, Path]:
    """(csv path, profile yaml path) of the tiny table."""
    csv = tmp_path / "tiny.csv"
    tiny_frame.write_csv(csv)
    prof = tmp_path / "tiny.yaml"
    prof.write_text(yaml.safe_dump(tiny_profile_dict()))
    return csv, prof


@pytest.fixture
def bank_sample() -> Path:
    path = DATA_DIR / "bank-additional.csv"
    if not path.is_file():
        pytest.skip(f"{path} not found: set CLOAKFLOW_DATA_DIR to the folder holding the "
                    "UCI Bank Marketing files")
    return path


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run inside a temporary folder with MLflow tracking to a sqlite file there (and the
    privacy ledger in a folder there)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("CLOAKFLOW_LEDGER_DIR", str(tmp_path / "ledger"))
    return tmp_path


@pytest.fixture(scope="session")
def prefect_harness():
    """One temporary Prefect server (real API and database) for all flow tests."""
    from prefect.logging.configuration import setup_logging
    from prefect.testing.utilities import prefect_test_harness

    # Prefect's console log handler binds to sys.stderr when logging is first set up: do it
    # here, on the session's stream, not inside a test whose capsys stream is closed after it
    setup_logging()
    with prefect_test_harness(server_startup_timeout=180):
        yield


def pytest_sessionfinish(session, exitstatus):
    """Freeze every object the suite made before the interpreter exits: its final garbage
    collection would otherwise walk the graphs and models of hundreds of tests (about 2 min
    of a CI run on 2 cores); session fixtures are already torn down here."""
    import gc

    gc.freeze()
