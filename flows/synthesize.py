"""The synthetic-release flow (``cloakflow synthesize``): ingest -> validate -> split ->
preprocess -> (DP histogram and quantiles) -> VAE (plain or DP-SGD) -> sample rows -> evaluate
and attack against the control rows -> policy gate -> publish ``synthetic.parquet`` with its
manifest, every step logged to one MLflow run.

A thin entry flow over the one release pipeline (``flows/release.py``) with the ``synthetic``
kind (``tasks/release/kinds/synthetic.py``); it keeps its name, parameters, CLI command and
deployment.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from prefect import flow

from cloakflow.flows.parameters import SynthesizeParameters
from cloakflow.flows.release import run_release
from cloakflow.tasks.release.kinds.synthetic import SynthesisOutcome


@flow(name="synthesize", log_prints=True)
def synthesize(params: SynthesizeParameters | None = None) -> SynthesisOutcome:
    """Train a generator on a sensitive table, sample synthetic rows, measure their fidelity,
    utility and privacy against held-out rows, gate them on the profile's policy and publish."""
    return run_release("synthetic", params or SynthesizeParameters())


__all__ = ["synthesize", "SynthesizeParameters", "SynthesisOutcome"]
