"""Shared fixtures: a small generated table with its profile, the bank sample, MLflow in a
temporary sqlite file, and one Prefect test server for the whole session."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# cached task results of this session only: no test may reuse a result from an earlier session
os.environ["PREFECT_RESULTS_LOCAL_STORAGE_PATH"] = tempfile.mkdtemp(prefix="cloakflow-results-")

from cloakflow.tasks.profile import DatasetProfile  # noqa: E402

DATA_DIR = Path(os.environ.get("CLOAKFLOW_DATA_DIR",
                               Path(__file__).resolve().parents[2] / "shared" / "data"))


def make_tiny_frame(n: int = 400, seed: int = 0) -> pl.DataFrame:
    """A small table whose label depends on income and city, so models have signal."""
    rng = np.random.default_rng(seed)
    city = rng.choice(["north", "south", "east", "west"], size=n)
    income = rng.gamma(3.0, 10.0, size=n).round(2)
    age = rng.integers(18, 80, size=n)
    owns = rng.choice(["yes", "no"], size=n, p=[0.3, 0.7])
    score = income / 30 + (city == "north") * 1.0 + rng.normal(0, 0.5, size=n)
    label = np.where(score > np.quantile(score, 0.75), "yes", "no")
    return pl.DataFrame({"age": age, "city": city, "income": income, "owns": owns,
                         "note": ["free text"] * n, "label": label})


def tiny_profile_dict(**overrides) -> dict:
    d = {
        "name": "tiny",
        "format": "csv",
        "separator": ",",
        "target": {"column": "label", "positive": "yes"},
        "drop": ["note"],
        "groups": {"person": ["age", "city"], "money": ["income", "owns"]},
        "quasi_identifiers": ["age", "city"],
        "columns": {"age": "numeric", "income": "numeric", "city": "categorical",
                    "owns": "categorical"},
        # a policy every release passes: tests about blocking set their own limits
        "privacy": {"sensitive": ["owns"], "anonymeter_attacks": 30,
                    "policy": {"max_inversion_gain": 1.0, "max_inversion_r2": 1.0,
                               "max_membership_auc": 1.0, "max_reidentification": 1.0}},
    }
    d.update(overrides)
    return d


def release_epsilon_by_dp_accounting(dp: dict) -> float:
    """The release total from a manifest's ``dp`` numbers, with dp-accounting called directly
    (PLD, replace-one), independently of cloakflow's own accounting code."""
    import dp_accounting
    from dp_accounting.pld import pld_privacy_accountant

    acc = pld_privacy_accountant.PLDAccountant(
        neighboring_relation=dp_accounting.NeighboringRelation.REPLACE_ONE)
    for m in dp["mechanisms"]:
        acc.compose(dp_accounting.SelfComposedDpEvent(dp_accounting.PoissonSampledDpEvent(
            m["sampling_rate"], dp_accounting.GaussianDpEvent(m["noise_multiplier"])),
            m["steps"]))
    return acc.get_epsilon(dp["delta"])


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
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield
