"""Where work runs, chosen in one place.

- ``task_runner(kind)``: the Prefect task runner of a flow. ``thread`` (default) runs the
  flow's tasks in a thread pool in the flow's process. The release and model steps exchange
  only plain data (NumPy arrays, weight lists, typed records), so a distributed runner can be
  added here without touching the flows.
- ``gather(futures, key)``: wait for a flow's parallel tasks and fail fast: the first failure
  asks the others to stop (``stop_requested(key)``, checked by the training loops after every
  epoch) and is raised at once, instead of after minutes of training whose result is lost.
- ``interrupt(signum)``: the same stop for every run of the process, on Ctrl-C or SIGTERM
  (``runtime.StopOnSignals`` in the command line; ``tracking.parent_run`` when an interrupt
  reaches a flow): ``stop_requested`` is then true for every key, the long loops (training
  epochs, permutation importance, LightGBM trees) raise ``StopRequested`` at their next check,
  the attack worker processes are terminated, and the hooks of ``on_interrupt`` run once.
- ``attack_workers()``: the worker processes that run the attack maths (pure NumPy,
  scikit-learn and anonymeter; ``tasks.privacy.attacks.suite``). Threads would serialise that
  work on the interpreter lock, so each release's attacks run in a process of this pool; the
  flow opens the pool for its lifetime with ``with attack_workers():`` and the attack task
  finds it with ``current_attack_pool()`` (None: run in the calling thread).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from typing import Literal

RunnerKind = Literal["thread"]

_LIMITS: list = []
_STOPS: set[str] = set()
_STOPS_LOCK = threading.RLock()  # re-entrant: ``interrupt`` runs in signal handlers
_INTERRUPT = threading.Event()
_INTERRUPT_SIGNAL: list[int] = []  # the signal number of the first interrupt
_ON_INTERRUPT: list[Callable[[int], None]] = []


class StopRequested(RuntimeError):
    """Another task of the same run failed, or the process was interrupted (Ctrl-C, SIGTERM);
    this one stopped early (its work would be lost)."""


def stop_requested(key: str | None) -> bool:
    """Whether the run ``key`` (its MLflow parent run id) asked its tasks to stop, or the
    process was interrupted (``interrupt``: every run stops)."""
    if _INTERRUPT.is_set():
        return True
    with _STOPS_LOCK:
        return key is not None and key in _STOPS


def interrupt(signum: int) -> None:
    """Ask every run of this process to stop (a Ctrl-C or SIGTERM, ``signum``): the attack
    worker processes are terminated and the ``on_interrupt`` hooks run, both once; later
    calls do nothing. Safe from a signal handler and from any thread."""
    with _STOPS_LOCK:
        if _INTERRUPT.is_set():
            return
        _INTERRUPT_SIGNAL.append(int(signum))
        _INTERRUPT.set()
        hooks = list(_ON_INTERRUPT)
    terminate_attack_workers()
    for hook in hooks:
        hook(int(signum))


def interrupted() -> int | None:
    """The signal number that interrupted this process (``interrupt``), None if none did."""
    return _INTERRUPT_SIGNAL[0] if _INTERRUPT.is_set() else None


def on_interrupt(hook: Callable[[int], None]) -> None:
    """Call ``hook(signum)`` on the first ``interrupt`` (at once if it already happened)."""
    with _STOPS_LOCK:
        if not _INTERRUPT.is_set():
            _ON_INTERRUPT.append(hook)
            return
    hook(_INTERRUPT_SIGNAL[0])


def off_interrupt(hook: Callable[[int], None]) -> None:
    """Forget a hook of ``on_interrupt`` (a block that installed it ended without one)."""
    with _STOPS_LOCK:
        if hook in _ON_INTERRUPT:
            _ON_INTERRUPT.remove(hook)


def check_interrupt(what: str) -> None:
    """Raise ``StopRequested`` naming ``what`` was stopped if the process was interrupted:
    the check the long loops make between their steps.

    Raises:
        StopRequested: after ``interrupt``.
    """
    if _INTERRUPT.is_set():
        raise StopRequested(f"{what}: stopped by a {_signal_name(_INTERRUPT_SIGNAL[0])}")


def clear_interrupt() -> None:
    """Forget an ``interrupt`` and its hooks (tests; a command-line process ends after one)."""
    with _STOPS_LOCK:
        _INTERRUPT.clear()
        _INTERRUPT_SIGNAL.clear()
        _ON_INTERRUPT.clear()


def _signal_name(signum: int) -> str:
    import signal

    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


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
_POOL_LOCK = threading.RLock()
_OPEN_POOLS: list = []  # every attack pool open now (nested blocks included)


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
    overlap training. ``enabled=False`` opens nothing (the attacks are skipped). Leaving the
    block waits for running attacks, except after an interrupt (a ``KeyboardInterrupt`` or
    Prefect's ``TerminationSignal`` leaving it calls ``interrupt``): the workers are then
    terminated."""
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
        _OPEN_POOLS.append(pool)
    try:
        yield pool
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt) or type(exc).__name__ == "TerminationSignal":
            interrupt(getattr(exc, "signal", 2))  # SIGINT unless the exception says otherwise
        raise
    finally:
        with _POOL_LOCK:
            _POOL = previous
            _OPEN_POOLS.remove(pool)
        if _INTERRUPT.is_set():  # the running attacks' results are lost: do not wait for them
            _terminate(pool)
            pool.shutdown(wait=False, cancel_futures=True)
        else:
            pool.shutdown(cancel_futures=True)


def terminate_attack_workers() -> None:
    """Terminate (SIGTERM, then SIGKILL after 1 s) the worker processes of every open attack
    pool: their running jobs fail with ``BrokenProcessPool`` in the waiting task."""
    with _POOL_LOCK:
        pools = list(_OPEN_POOLS)
    for pool in pools:
        _terminate(pool)


def _terminate(pool) -> None:
    import time

    procs = [p for p in list((getattr(pool, "_processes", None) or {}).values())
             if p.is_alive()]
    for proc in procs:
        proc.terminate()
    deadline = time.monotonic() + 1.0
    for proc in procs:
        proc.join(max(0.0, deadline - time.monotonic()))
        if proc.is_alive():
            proc.kill()


def current_attack_pool() -> Executor | None:
    """The pool opened by the innermost ``attack_workers()`` block, if any."""
    return _POOL
