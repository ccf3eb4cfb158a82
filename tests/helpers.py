"""Helpers shared by test modules (fixtures live in conftest.py): a small generated table and
its profile, quick flow parameters, and an independent recomputation of a release epsilon."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import polars as pl

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
                               "max_membership_auc": 1.0, "max_reidentification": 1.0,
                               "max_dcr_share": 1.0, "max_exact_copy_excess": 1.0,
                               "max_membership_tpr": 1.0}},
    }
    d.update(overrides)
    return d


def release_epsilon_by_dp_accounting(dp: dict, adjacency: str = "replace_one") -> float:
    """The release total from a manifest's ``dp`` numbers, with dp-accounting called directly
    (PLD; replace-one, or ``add_remove``), independently of cloakflow's own accounting code.
    A mechanism with one step at q = 1 is a plain Gaussian mechanism (a DP histogram)."""
    import dp_accounting
    from dp_accounting.pld import pld_privacy_accountant

    relation = {"replace_one": dp_accounting.NeighboringRelation.REPLACE_ONE,
                "add_remove": dp_accounting.NeighboringRelation.ADD_OR_REMOVE_ONE}[adjacency]
    acc = pld_privacy_accountant.PLDAccountant(neighboring_relation=relation)
    for m in dp["mechanisms"]:
        acc.compose(dp_accounting.SelfComposedDpEvent(dp_accounting.PoissonSampledDpEvent(
            m["sampling_rate"], dp_accounting.GaussianDpEvent(m["noise_multiplier"])),
            m["steps"]))
    return acc.get_epsilon(dp["delta"])


def fast(**kw):
    """Quick run parameters for flow tests (3 epochs, 3 folds)."""
    from cloakflow.flows.parameters import RunParameters

    base = dict(epochs=3, folds=3, importance_rows=500, out="releases")
    return RunParameters(**{**base, **kw})


def run_cli(capsys, args: list[str]) -> tuple[int, str, str]:
    """``cloakflow ARGS`` in this process: (exit status, stdout, stderr)."""
    from cloakflow.flows.cli import main

    capsys.readouterr()
    rc = main(args)
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def releases_of(workdir: Path, dataset: str) -> list[Path]:
    folder = workdir / "releases" / dataset
    return sorted(folder.iterdir()) if folder.exists() else []


def jax_result(script: str, helpers: Path) -> list[str]:
    """Run ``script`` in a fresh interpreter on Keras's jax backend (CPU) with ``HELPERS``
    replaced by the folder holding helper modules; returns the fields of its ``RESULT`` line."""
    import subprocess
    import sys

    import pytest

    pytest.importorskip("jax")
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-c", script.replace("HELPERS", repr(str(helpers)))],
                          env=env, capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1], timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")).split()[1:]


def duplicated_table(rows: int = 1000, share: float = 0.4, seed: int = 0):
    """A table in which ``share`` of the rows repeat an earlier row's features (the copies
    keep their own label half the time: conflicting duplicates too)."""
    rng = np.random.default_rng(seed)
    distinct = int(rows * (1 - share))
    base = pl.DataFrame({"age": rng.integers(18, 90, distinct),
                         "income": np.round(rng.lognormal(10, 1, distinct), 2),
                         "city": rng.choice(["a", "b", "c"], distinct),
                         "label": rng.choice(["yes", "no"], distinct, p=[0.3, 0.7])})
    copies = base[rng.integers(0, distinct, rows - distinct)]
    flip = rng.random(len(copies)) < 0.5
    copies = copies.with_columns(
        label=pl.when(pl.Series(flip)).then(pl.lit("yes")).otherwise(pl.col("label")))
    return pl.concat([base, copies])[rng.permutation(rows)]


def hospital_table(rows: int = 1500, seed: int = 0) -> pl.DataFrame:
    """Hospital admissions with rules every row keeps: discharge on or after admission,
    length_of_stay = discharge - admission in days, each ward on its own floor, a cost that
    grows with the stay; readmitted is the label."""
    import datetime as dt

    rng = np.random.default_rng(seed)
    admission = np.datetime64(dt.date(2024, 1, 1)) + rng.integers(0, 365, rows).astype(
        "timedelta64[D]")
    stay = rng.poisson(4, rows) + (rng.random(rows) < 0.2) * rng.integers(5, 30, rows)
    wards = np.array(["cardio", "ortho", "neuro", "general"])
    floors = {"cardio": "3", "ortho": "2", "neuro": "4", "general": "1"}
    ward = wards[rng.integers(0, 4, rows)]
    cost = np.round(800 * stay + rng.gamma(2.0, 400.0, rows), 2)
    age = rng.integers(18, 96, rows)
    score = stay / 6 + (age > 70) * 0.8 + rng.normal(0, 0.8, rows)
    return pl.DataFrame({
        "admission_date": admission, "discharge_date": admission + stay.astype(
            "timedelta64[D]"), "length_of_stay": stay, "ward": ward,
        "floor": [floors[w] for w in ward], "age": age, "cost": cost,
        "readmitted": np.where(score > np.quantile(score, 0.8), "yes", "no")}).with_columns(
        pl.col("admission_date").cast(pl.Date), pl.col("discharge_date").cast(pl.Date))


HOSPITAL_CONSTRAINTS = [
    {"type": "inequality", "low": "admission_date", "high": "discharge_date",
     "difference": {"min": 0, "max": 60}},
    {"type": "formula", "column": "length_of_stay",
     "expression": "discharge_date - admission_date"},
    {"type": "fixed_combinations", "columns": ["ward", "floor"],
     "combinations": [["cardio", 3], ["ortho", 2], ["neuro", 4], ["general", 1]]},
    {"type": "range", "column": "cost", "low": 0},
]


def hospital_profile(**overrides) -> dict:
    """The hospital table's profile (public bounds for DP runs), with its four constraints."""
    out = {
        "name": "hospital", "target": {"column": "readmitted", "positive": "yes"},
        "groups": {"stay": ["admission_date", "discharge_date", "length_of_stay"],
                   "patient": ["ward", "floor", "age", "cost"]},
        "columns": {"admission_date": "date", "discharge_date": "date",
                    "length_of_stay": "numeric", "ward": "categorical",
                    "floor": "categorical", "age": "numeric", "cost": "numeric",
                    "readmitted": "categorical"},
        "bounds": {"admission_date": {"min": "2024-01-01", "max": "2024-12-31"},
                   "discharge_date": {"min": "2024-01-01", "max": "2025-03-01"},
                   "length_of_stay": {"min": 0, "max": 60, "integer": True},
                   "ward": {"categories": ["cardio", "ortho", "neuro", "general"]},
                   "floor": {"categories": [1, 2, 3, 4]},
                   "age": {"min": 18, "max": 100, "integer": True},
                   "cost": {"min": 0, "max": 100_000},
                   "readmitted": {"categories": ["no", "yes"]}},
        "constraints": HOSPITAL_CONSTRAINTS}
    out.update(overrides)
    return out
