"""Prefect tasks of the privacy evaluation: every attack on one released table, in the flow's
attack process pool when it has one."""

from __future__ import annotations

import numpy as np
import polars as pl
from prefect import task
from prefect.cache_policies import NO_CACHE

from cloakflow.tasks import runners
from cloakflow.tasks.data.preprocess import TablePreprocessor
from cloakflow.tasks.data.profile import DatasetProfile
from cloakflow.tasks.privacy.attack import attack_release
from cloakflow.tasks.release.codes import CodeTable


@task(name="privacy-attacks", cache_policy=NO_CACHE)
def attack(table: CodeTable, x: np.ndarray, x_control: np.ndarray,
           train_records: pl.DataFrame, control_records: pl.DataFrame,
           pre: TablePreprocessor, profile: DatasetProfile, seed: int) -> dict:
    """Prefect task: every attack on one released table (see ``attack_release``), in the
    flow's attack pool (``runners.current_attack_pool``) when it has one."""
    report = attack_release(table, x, x_control, train_records, control_records, pre, profile,
                            seed, pool=runners.current_attack_pool())
    print(f"  [{table.name}] attacks done in {sum(report['seconds'].values()):.1f}s: "
          + ", ".join(f"{k} {v:.1f}s" for k, v in report["seconds"].items()), flush=True)
    return report
