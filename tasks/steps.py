"""The Prefect side of the infrastructure every domain's steps share: cache policies, the
artifacts shown on a flow run's page, the task runner a run is given, and ``gather`` over a
flow's parallel tasks.

This and the ``steps.py`` module of each domain are the only modules under ``tasks/`` that
import Prefect (``tests/unit/test_prefect_free.py``); the work they wrap runs without it.

- **Cache policies** (``step_policy``): a rerun after a crash reuses the expensive steps that
  had finished. A step's key covers its inputs, its task's source and the source of the
  modules that do the work (a change to the model code must not reuse a stale result); inputs
  that differ on every run but do not change the result (the MLflow parent run id) are left
  out.
- **Artifacts** (``table``, ``markdown``): Prefect table and markdown artifacts keyed by kind
  and dataset.
- **Task runners** (``task_runner``): chosen per run with ``flow.with_options(task_runner=...)``
  (``flows/engine.py``); ``thread`` runs a flow's tasks in a thread pool in its process.
- **gather**: wait for a flow's parallel tasks and fail fast: the first failure asks the run's
  other tasks to stop (``runners.Stop``) and is raised at once, instead of after minutes of
  training whose result is lost.
- **The run's log**: the progress lines of ``tasks.console`` (standard logging) are sent to
  the flow run's log in Prefect's API (``RunLogHandler``), as the tasks' prints are.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
from datetime import timedelta
from types import ModuleType
from typing import Any, Literal

from prefect.cache_policies import INPUTS, TASK_SOURCE, CacheKeyFnPolicy, CachePolicy
from prefect.logging.handlers import APILogHandler

from cloakflow.tasks import console, runners

CACHE_EXPIRATION = timedelta(days=7)
RunnerKind = Literal["thread"]
RUNNER_KINDS: tuple[str, ...] = ("thread",)


# ----------------------------------------------------------------------------- the run's log
class RunLogHandler(APILogHandler):
    """Prefect's API log handler for the ``cloakflow.console`` logger, inside a flow or task
    run only: a line logged outside any run (a unit test, ``cloakflow attack``) is not sent,
    where Prefect's own handler would warn that it has no flow run id."""

    def emit(self, record: logging.LogRecord) -> None:
        from prefect.context import FlowRunContext, TaskRunContext

        if FlowRunContext.get() is not None or TaskRunContext.get() is not None:
            super().emit(record)


if not any(isinstance(h, RunLogHandler) for h in console.LOGGER.handlers):
    console.LOGGER.addHandler(RunLogHandler())


# ----------------------------------------------------------------------------- caching
def code_fingerprint(*modules: ModuleType) -> CachePolicy:
    """A policy whose key is the hash of the given modules' source files."""
    digest = hashlib.sha256()
    for module in modules:
        digest.update(inspect.getsource(module).encode())
    key = digest.hexdigest()

    def _key(context, parameters) -> str:  # noqa: ARG001 - Prefect's cache_key_fn signature
        return key

    return CacheKeyFnPolicy(cache_key_fn=_key)


def step_policy(*modules: ModuleType, exclude: tuple[str, ...] = ()) -> CachePolicy:
    """Inputs (less ``exclude``) + task source + the source of ``modules``."""
    inputs = INPUTS
    for name in exclude:
        inputs = inputs - name
    return inputs + TASK_SOURCE + code_fingerprint(*modules)


# ----------------------------------------------------------------------------- artifacts
def artifact_key(kind: str, dataset: str) -> str:
    """A valid Prefect artifact key: lowercase letters, digits and dashes."""
    return f"{kind}-" + "".join(c if c.isalnum() else "-" for c in dataset.lower())


def table(kind: str, dataset: str, rows: list[dict[str, Any]], description: str) -> None:
    """A table artifact on the current flow run's page."""
    from prefect.artifacts import create_table_artifact

    create_table_artifact(table=rows, key=artifact_key(kind, dataset), description=description)


def markdown(kind: str, dataset: str, text: str, description: str) -> None:
    """A markdown artifact on the current flow run's page."""
    from prefect.artifacts import create_markdown_artifact

    create_markdown_artifact(markdown=text, key=artifact_key(kind, dataset),
                             description=description)


# ----------------------------------------------------------------------------- runners
def task_runner(kind: RunnerKind = "thread", workers: int = 8):
    """The Prefect task runner for ``kind`` (``thread``: a thread pool of ``workers``).

    Raises:
        ValueError: an unknown kind (the message lists :data:`RUNNER_KINDS`).
    """
    from prefect.task_runners import ThreadPoolTaskRunner

    if kind == "thread":
        return ThreadPoolTaskRunner(max_workers=workers)
    raise ValueError(f"unknown task runner {kind!r}: expected one of {', '.join(RUNNER_KINDS)}")


def gather(futures: dict, key: str | None) -> dict:
    """Results of Prefect futures by name; on the first failure, the run ``key``'s other tasks
    are asked to stop (``runners.request_stop``, seen by their ``runners.Stop(key)``),
    not-yet-started ones are cancelled, and the failure is raised.

    Raises:
        The first exception a task raised.
    """
    from prefect.futures import as_completed

    runners.clear_stop(key)
    try:
        for future in as_completed(list(futures.values())):
            future.result()  # raises the task's exception
    except BaseException:
        runners.request_stop(key)
        for future in futures.values():
            wrapped = getattr(future, "wrapped_future", None)
            if wrapped is not None:
                wrapped.cancel()
        raise
    return {name: f.result() for name, f in futures.items()}
