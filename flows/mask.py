"""The masked-release flow (``cloakflow mask``): ingest -> validate -> split -> preprocess ->
choose the masked cells -> one GAN imputer per fold, each drawing its fold's masked cells ->
regenerated cells against the truth and baseline imputers, utility kept, re-identification ->
policy gate -> publish ``masked.parquet`` with its manifest, every step logged to one MLflow
run.

A thin entry flow over the one release pipeline (``flows/release.py``) with the ``masked``
kind (``tasks/release/kinds/masked.py``).
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from prefect import flow

from cloakflow.flows.parameters import MaskParameters
from cloakflow.flows.release import run_release
from cloakflow.tasks.release.kinds.masked import MaskOutcome


@flow(name="mask", log_prints=True)
def mask(params: MaskParameters | None = None) -> MaskOutcome:
    """Regenerate chosen cells of a table's rows with a GAN imputer trained on the other
    folds, measure them against the truth and baseline imputers, gate them on the profile's
    policy and publish."""
    return run_release("masked", params or MaskParameters())


__all__ = ["mask", "MaskParameters", "MaskOutcome"]
