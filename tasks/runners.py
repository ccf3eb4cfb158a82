"""Where work runs, chosen in one place.

- ``task_runner(kind)``: the Prefect task runner of a flow. ``thread`` (default) runs the
  flow's tasks in a thread pool in the flow's process. The release and model steps exchange
  only plain data (NumPy arrays, weight lists, typed records), so a distributed runner can be
  added here without touching the flows.
- ``gather(futures, key)``: wait for a flow's parallel tasks and fail fast: the first failure
  asks the others to stop (``stop_requested(key)``, checked by the training loops after every
  epoch) and is raised at once, instead of after minutes of training whose result is lost.
- ``attack_workers()``: the worker processes that run the attack maths (pure NumPy,
  scikit-learn and anonymeter; ``tasks.privacy.attacks.suite``). Threads would serialise that
  work on the interpreter lock, so each release's attacks run in a process of this pool; the
  flow opens the pool for its lifetime with ``with attack_workers():`` and the attack task
  finds it with ``current_attack_pool()`` (None: run in the calling thread).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from concurrent.futures import Executor
from typing import Literal

RunnerKind = Literal["thread"]

_LIMITS: list = []
_STOPS: set[str] = set()
_STOPS_LOCK = threading.Lock()


class StopRequested(RuntimeError):
    """Another task of the same run failed; this one stopped early (its work would be lost)."""


def stop_requested(key: str | None) -> bool:
    """Whether the run ``key`` (its MLflow parent run id) asked its tasks to stop."""
    with _STOPS_LOCK:
        return key is not None and key in _STOPS


def gather(futures: dict, key: str | None) -> dict:
    """Results of Prefect futures by name; on the first failure, the run's other tasks are
    asked to stop (see ``stop_requested``), not-yet-started ones are cancelled, and the failure
    is raised.

    Raises:
        The first exception a task raised.
    """
    from prefect.futures import as_completed

    with _STOPS_LOCK:
        _STOPS.discard(key or "")
    try:
        for future in as_completed(list(futures.values())):
            future.result()  # raises the task's exception
    except BaseException:
        with _STOPS_LOCK:
            _STOPS.add(key or "")
        for future in futures.values():
            wrapped = getattr(future, "wrapped_future", None)
            if wrapped is not None:
                wrapped.cancel()
        raise
    return {name: f.result() for name, f in futures.items()}
_POOL: Executor | None = None
_POOL_LOCK = threading.Lock()


def task_runner(kind: RunnerKind = "thread", workers: int = 8):
    """The Prefect task runner for ``kind`` (``thread``: a thread pool of ``workers``)."""
    from prefect.task_runners import ThreadPoolTaskRunner

    if kind == "thread":
        return ThreadPoolTaskRunner(max_workers=workers)
    raise ValueError(f"unknown task runner {kind!r}: expected 'thread'")


def worker_init() -> None:
    """Initializer of an attack worker process: one BLAS thread per worker (the workers
    already use the cores), and the heavy imports done while the flow is still training."""
    from threadpoolctl import threadpool_limits

    _LIMITS.append(threadpool_limits(limits=1))
    import anonymeter.evaluators  # noqa: F401
    import sklearn.linear_model  # noqa: F401
    import sklearn.metrics  # noqa: F401
    import sklearn.neural_network  # noqa: F401


@contextlib.contextmanager
def attack_workers(workers: int = 2, enabled: bool = True) -> Iterator[Executor | None]:
    """Open the process pool for the attack maths (spawned: the parent holds TensorFlow
    threads) for the duration of the block; its workers start at once so their imports
    overlap training. ``enabled=False`` opens nothing (the attacks are skipped)."""
    global _POOL
    if not enabled:
        yield None
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    pool = ProcessPoolExecutor(max_workers=workers, initializer=worker_init,
                               mp_context=multiprocessing.get_context("spawn"))
    for _ in range(workers):
        pool.submit(int)
    with _POOL_LOCK:
        previous, _POOL = _POOL, pool
    try:
        yield pool
    finally:
        with _POOL_LOCK:
            _POOL = previous
        pool.shutdown(cancel_futures=True)


def current_attack_pool() -> Executor | None:
    """The pool opened by the innermost ``attack_workers()`` block, if any."""
    return _POOL
