"""The desensitized-release flow (``cloakflow desensitize``): ingest -> validate -> split ->
preprocess -> the privatizer trained against its adversary -> privatize the training rows ->
utility kept, distance moved, fresh attackers, re-identification -> policy gate -> publish
``desensitized.parquet`` with its manifest, every step logged to one MLflow run.

A thin entry flow over the one release pipeline (``flows/release.py``) with the
``desensitized`` kind (``tasks/release/kinds/desensitized.py``).
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from prefect import flow

from cloakflow.flows.parameters import DesensitizeParameters
from cloakflow.flows.release import run_release
from cloakflow.tasks.release.kinds.desensitized import DesensitizeOutcome


@flow(name="desensitize", log_prints=True)
def desensitize(params: DesensitizeParameters | None = None) -> DesensitizeOutcome:
    """Train a privatizer that removes the sensitive columns' signal from the other columns,
    privatize the table's rows, measure what they keep and what fresh attackers still infer,
    gate them on the profile's policy and publish."""
    return run_release("desensitized", params or DesensitizeParameters())


__all__ = ["desensitize", "DesensitizeParameters", "DesensitizeOutcome"]
