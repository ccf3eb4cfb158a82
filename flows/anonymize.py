"""The codes release flow (``cloakflow run``): ingest -> validate -> split -> preprocess ->
autoencoders -> code release -> utility -> privacy attacks and policy gate -> publish, every
step logged to one MLflow parent run.

A thin entry flow over the one release pipeline (``flows/release.py``) with the ``codes`` kind
(``tasks/release/kinds/codes.py``); it keeps its name, parameters, CLI command and deployment.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from prefect import flow

from cloakflow.flows.parameters import RunParameters
from cloakflow.flows.release import run_release
from cloakflow.tasks import steps
from cloakflow.tasks.release.kinds.codes import FlowOutcome


@flow(name="anonymize", task_runner=steps.task_runner(), log_prints=True)
def anonymize(params: RunParameters | None = None) -> FlowOutcome:
    """Encode a sensitive table with autoencoders, measure utility, attack the release, gate
    it on the profile's policy and publish it."""
    return run_release("codes", params or RunParameters())


__all__ = ["anonymize", "RunParameters", "FlowOutcome"]
