"""Where work runs, chosen in one place.

- ``Stop(key)``: the stop signal handed to a long computation (training epochs, permutation
  importance, LightGBM trees): it stops when the process is interrupted or when another task
  of the run ``key`` failed (``request_stop``, called by ``tasks.steps.gather``).
- ``interrupt(signum)``: the same stop for every run of the process, on Ctrl-C or SIGTERM
  (``engine.StopOnSignals`` in the command line; ``tracking.parent_run`` when an interrupt
  reaches a flow): ``stop_requested`` is then true for every key, the long loops (training
  epochs, permutation importance, LightGBM trees) raise ``StopRequested`` at their next check,
  the attack worker processes are terminated, and the hooks of ``on_interrupt`` run once.
- ``attack_workers()``: the worker processes that run the attack maths (pure NumPy,
  scikit-learn and anonymeter; ``tasks.privacy.attacks.suite``). Threads would serialise that
  work on the interpreter lock, so each release's attacks run in a process of this pool; the
  flow opens the pool for its lifetime with ``with attack_workers() as pool:`` and hands
  ``pool`` to its attack tasks (None: they run in the calling thread).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Executor

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


def request_stop(key: str | None) -> None:
    """Ask the tasks of the run ``key`` to stop (another of its tasks failed)."""
    with _STOPS_LOCK:
        _STOPS.add(key or "")


def clear_stop(key: str | None) -> None:
    """Forget a stop request of the run ``key`` (its parallel tasks start afresh)."""
    with _STOPS_LOCK:
        _STOPS.discard(key or "")


class Stop:
    """The stop signal a long computation is handed: ``check(what)`` between its steps raises
    ``StopRequested`` once the process was interrupted (``interrupt``) or the run ``key``
    asked its tasks to stop (``request_stop``, by ``tasks.steps.gather`` on a failure).

    A computation takes it as a parameter (``stop: Stop | None``; None: the process's
    interrupt only), so a runner in another process can hand in its own.
    """

    def __init__(self, key: str | None = None):
        self.key = key

    def requested(self) -> bool:
        """Whether the computation should stop now."""
        return stop_requested(self.key)

    def check(self, what: str) -> None:
        """Raise ``StopRequested`` naming ``what`` if a stop was requested.

        Raises:
            StopRequested: after ``interrupt``, or after ``request_stop(key)``.
        """
        check_interrupt(what)
        if self.key is not None and stop_requested(self.key):
            raise StopRequested(f"{what}: stopped because another task of this run failed")


_POOL_LOCK = threading.RLock()
_OPEN_POOLS: list = []  # every attack pool open now (nested blocks included)


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
        _OPEN_POOLS.append(pool)
    try:
        yield pool
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt) or type(exc).__name__ == "TerminationSignal":
            interrupt(getattr(exc, "signal", 2))  # SIGINT unless the exception says otherwise
        raise
    finally:
        with _POOL_LOCK:
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
