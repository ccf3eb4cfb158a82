"""Prefect task of the privacy evaluation: every attack on one released table (in the flow's
attack process pool when it has one). The gate is the release pipeline's
(``flows/release.py``, ``tasks.privacy.policy.decide``)."""

from __future__ import annotations

from concurrent.futures import Executor

import numpy as np
import polars as pl
from prefect import task
from prefect.cache_policies import NO_CACHE

from cloakflow.tasks import console
from cloakflow.tasks.data.preprocess import TablePreprocessor
from cloakflow.tasks.data.profile import DatasetProfile
from cloakflow.tasks.privacy.attack import attack_release
from cloakflow.tasks.release.codes import CodeTable


@task(name="privacy-attacks", task_run_name="attack[{table.name}]", cache_policy=NO_CACHE)
def attack(table: CodeTable, x: np.ndarray, x_control: np.ndarray,
           train_records: pl.DataFrame, control_records: pl.DataFrame,
           pre: TablePreprocessor, profile: DatasetProfile, seed: int,
           pool: Executor | None = None) -> dict:
    """Prefect task: every attack on one released table (see ``attack_release``), in
    ``pool`` (the flow's ``runners.attack_workers()``) when it is given."""
    report = attack_release(table, x, x_control, train_records, control_records, pre, profile,
                            seed, pool=pool)
    console.step(f"  [{table.name}] attacks done in {sum(report['seconds'].values()):.1f}s: "
          + ", ".join(f"{k} {v:.1f}s" for k, v in report["seconds"].items()))
    return report
