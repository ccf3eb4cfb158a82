"""Fail fast: when one of a run's parallel tasks fails, the others are asked to stop and the
flow fails at once (real Prefect engine and thread task runner), instead of finishing minutes
of work whose result is lost."""

from __future__ import annotations

import time

import pytest
from prefect import flow, task

from cloakflow.tasks import runners, steps
from cloakflow.tasks.training.fit import _progress

pytestmark = pytest.mark.integration


@task
def _fails() -> None:
    time.sleep(0.5)
    raise ValueError("column 'x': bad input")


@task
def _trains(run: str, epochs: int = 120) -> int:
    """Stands in for a training loop: one 'epoch' per half second, the real progress
    callback after each."""
    from cloakflow.models.autoencoder import AutoencoderConfig

    progress = _progress("slow", AutoencoderConfig(epochs=epochs), None,
                         stop=runners.Stop(run))
    for epoch in range(1, epochs + 1):
        time.sleep(0.5)
        progress(epoch, {"loss": 1.0, "val_loss": 1.0})
    return epochs


@flow(task_runner=steps.task_runner())
def _two_tasks(run: str) -> dict:
    return steps.gather({"slow": _trains.submit(run), "bad": _fails.submit()}, run)


def test_first_failure_stops_the_others_and_is_raised_at_once(prefect_harness):
    t = time.perf_counter()
    with pytest.raises(ValueError, match="column 'x': bad input"):
        _two_tasks("run-1")
    assert time.perf_counter() - t < 20  # not the 60 s the slow task would take
    assert runners.stop_requested("run-1")
    # another run is not affected
    assert not runners.stop_requested("run-2")
    from cloakflow.models.autoencoder import AutoencoderConfig

    progress = _progress("slow", AutoencoderConfig(epochs=5), None, stop=runners.Stop("run-1"))
    with pytest.raises(runners.StopRequested, match=r"\[slow\] stopped after epoch 3"):
        progress(3, {"loss": 1.0, "val_loss": 1.0})
