"""The Prefect engine around a command-line run: where its flow runs are recorded, the task
runner it is given, and how Ctrl-C and SIGTERM stop it.

- :func:`choose_prefect_api`: a Prefect server already running locally (``make ui``) gets the
  runs, found by a quick probe of ``/api/health``; otherwise the temporary server is started
  once, under a file lock in ``PREFECT_HOME`` so that runs started together do not race on its
  database migration;
- :func:`for_run`: a flow with the task runner chosen for this run
  (``flow.with_options(task_runner=...)``, ``tasks.steps.task_runner``);
- :class:`StopOnSignals`: Ctrl-C (SIGINT) and SIGTERM stop a release run within seconds;
- :func:`console`: the quiet console of a command-line run (``tasks.console``), or every log
  line with ``--verbose``.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import urllib.request
from pathlib import Path
from typing import Any, NoReturn

from cloakflow.tasks.runtime import end_stderr_captures, file_lock, say

PROBE_TIMEOUT_S = 0.5


def for_run(flow, runner: str = "thread"):
    """``flow`` with the task runner ``runner`` (``tasks.steps.task_runner``) for one run.

    Raises:
        ValueError: an unknown runner kind.
    """
    from cloakflow.tasks.steps import task_runner

    return flow.with_options(task_runner=task_runner(runner))


# ----------------------------------------------------------------------------- console
class _Terminal(logging.StreamHandler):
    """A stream handler writing to the ``sys.stderr`` of the moment, not the one it was made
    with (a test's captured stream is closed after the test)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


class _Quiet:
    """A filter for Prefect's console handler: warnings and errors only, less the errors the
    command line reports itself in plain words (a rejected input, a blocked release: marked by
    ``runtime.quiet_expected_errors``). Every record still reaches the flow run's log in the
    API, through its own handler."""

    def filter(self, record) -> bool:
        return record.levelno >= logging.WARNING and not getattr(record, "cloakflow_reported",
                                                                 False)


def console(verbose: bool) -> None:
    """Set up the terminal of a command-line run.

    Quiet (the default): Prefect's console handler shows warnings and errors only, and the
    lines of ``tasks.console`` (one per step, progress every 10 epochs) are printed as
    ``HH:MM:SS text``. Verbose: Prefect's console shows every log line of the run, the tasks'
    prints included, in Prefect's format. Either way the flow run's log in the API gets every
    line.
    """
    from prefect.logging.configuration import ensure_logging_setup
    from prefect.logging.handlers import PrefectConsoleHandler

    from cloakflow.tasks.console import LOGGER

    ensure_logging_setup()  # Prefect's handlers, as its first flow run would set them up
    prefect_console = [h for h in logging.getLogger().handlers
                       if isinstance(h, PrefectConsoleHandler)]
    for handler in prefect_console:
        for f in [f for f in handler.filters if isinstance(f, _Quiet)]:
            handler.removeFilter(f)
        if not verbose:
            handler.addFilter(_Quiet())
    for handler in [h for h in LOGGER.handlers if isinstance(h, _Terminal)]:
        LOGGER.removeHandler(handler)
    LOGGER.propagate = verbose
    if not verbose:
        terminal = _Terminal()
        terminal.setFormatter(logging.Formatter("%(asctime)s %(message)s", datefmt="%H:%M:%S"))
        LOGGER.addHandler(terminal)


# ----------------------------------------------------------------------------- Prefect
def _healthy(api_url: str, timeout: float = PROBE_TIMEOUT_S) -> bool:
    try:
        with urllib.request.urlopen(f"{api_url.rstrip('/')}/health", timeout=timeout) as resp:
            return resp.status == 200
    except (OSError, ValueError):
        return False


def local_server_url() -> str:
    """The API URL a local ``prefect server start`` listens on, from Prefect's settings
    (``PREFECT_SERVER_API_HOST`` / ``PREFECT_SERVER_API_PORT``, default 127.0.0.1:4200)."""
    from prefect.settings import get_current_settings

    api = get_current_settings().server.api
    host = api.host if api.host not in ("", "0.0.0.0", "::") else "127.0.0.1"
    return f"http://{host}:{api.port}/api"


def choose_prefect_api(start_temporary: bool = True) -> str | None:
    """Decide where this process's flow runs are recorded, and return that API URL.

    1. ``PREFECT_API_URL`` set by the user (environment or Prefect profile): used as is.
    2. A Prefect server answering ``/api/health`` at :func:`local_server_url` within
       :data:`PROBE_TIMEOUT_S`: ``PREFECT_API_URL`` is set to it, so the runs show in its UI.
    3. Otherwise Prefect's temporary server, started here under a lock in ``PREFECT_HOME``
       (with ``start_temporary``); None is returned.
    """
    from prefect.context import refresh_global_settings_context
    from prefect.settings import get_current_settings

    settings = get_current_settings()
    if settings.api.url:
        return settings.api.url
    url = local_server_url()
    if _healthy(url):
        os.environ["PREFECT_API_URL"] = url
        refresh_global_settings_context()
        print(f"Prefect: recording this run in the server at {url.removesuffix('/api')}",
              file=sys.stderr)
        return url
    if start_temporary and settings.server.ephemeral.enabled:
        print(f"Prefect: no server at {url.removesuffix('/api')}; starting a temporary one for "
              "this run (10-50 s, the longer on a busy machine or a fresh PREFECT_HOME; a "
              "running `make ui` server avoids it)", file=sys.stderr)
        start_temporary_server(settings.home)
    return None


def start_temporary_server(home: str | Path) -> None:
    """Start Prefect's temporary server for this process, one process at a time per
    ``PREFECT_HOME``: the first start creates and migrates its database, and two starts at
    once race on that migration. Later flows in this process reuse the server."""
    from prefect.server.api.server import SubprocessASGIServer

    with file_lock(Path(home) / ".cloakflow-temporary-server.lock"):
        SubprocessASGIServer().start()


# ----------------------------------------------------------------------------- stopping
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# after a stop signal, how long the run may take to unwind before the process exits anyway
STOP_GRACE_S = 2.0
# the longest each clean-up step of a stop may take (the Prefect API call, the server stop)
STOP_STEP_S = 1.0


class Interrupted(KeyboardInterrupt):
    """Raised in the main thread by :class:`StopOnSignals`: a Ctrl-C (SIGINT) or a SIGTERM.

    Attributes:
        signal: the signal number.
    """

    def __init__(self, signum: int):
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signal = int(signum)


class StopOnSignals:
    """Ctrl-C and SIGTERM stop a command-line run within seconds, with nothing published.

    Why a run did not stop: Python runs signal handlers in the main thread only, between
    bytecodes, while a flow's tasks run in Prefect's thread pool and the attacks in worker
    processes. A signal the kernel delivers to another thread leaves the main thread asleep in
    its wait for a task (its handler runs when that task ends, minutes later), and an
    interrupted flow still joined its task threads on the way out, deep in LightGBM or
    scikit-learn. As a context manager around a run (installed from the main thread; from
    another thread only ``runners.on_interrupt`` is hooked):

    1. the signal is seen at once, whichever thread the kernel chose, by a watcher thread
       reading ``signal.set_wakeup_fd``'s socket. The first SIGINT or SIGTERM calls
       ``runners.interrupt``: the long loops (training epochs, permutation importance,
       LightGBM trees) raise ``StopRequested`` at their next check and the attack worker
       processes are terminated. The Python handler raises ``Interrupted`` in the main thread
       as soon as it runs, and the flow unwinds (``tracking.parent_run`` ends its MLflow run
       KILLED; nothing is published: ``publish`` writes a release folder atomically or not at
       all);
    2. the run leaving the block, or ``STOP_GRACE_S`` after the signal at the latest (a task
       thread that cannot be stopped), :meth:`exit_now` ends the process: MLflow runs KILLED,
       the Prefect flow run Cancelled, the temporary Prefect server stopped, status 128 +
       signal (130 for SIGINT, 143 for SIGTERM). A second signal exits at once.

    Prefect replaces the Python SIGTERM handler while a flow runs (its ``TerminationSignal``);
    the watcher still sees the signal, and the flow's ``tracking.parent_run`` and
    ``runners.attack_workers`` pass ``TerminationSignal`` on to ``runners.interrupt``. Once the
    flow has unwound, Prefect sends the SIGTERM to the process again (to reach the handler it
    replaced); while the exit is under way that second SIGTERM is ignored (a second SIGINT
    still exits at once), so the clean-up and its last lines are not cut short.
    """

    def __init__(self, grace_s: float = STOP_GRACE_S):
        self.grace_s = grace_s
        self._previous: dict[int, Any] = {}
        self._previous_fd: int | None = None
        self._sockets: tuple | None = None
        self._exit_lock = threading.Lock()
        self._signals = 0  # SIGINT / SIGTERM seen by the watcher
        self._raised = False

    def __enter__(self) -> StopOnSignals:
        import socket

        from cloakflow.tasks import runners

        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
            read, write = socket.socketpair()
            read.setblocking(True)
            write.setblocking(False)
            self._sockets = (read, write)
            self._previous_fd = signal.set_wakeup_fd(write.fileno(), warn_on_full_buffer=False)
            threading.Thread(target=self._watch, args=(read,), name="cloakflow-stop",
                             daemon=True).start()
        runners.on_interrupt(self._begin)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        from cloakflow.tasks import runners

        signum = runners.interrupted()
        if signum is None and exc is not None and (
                isinstance(exc, KeyboardInterrupt) or type(exc).__name__ == "TerminationSignal"):
            signum = getattr(exc, "signal", signal.SIGINT)
        if signum is not None:
            self.exit_now(signum)
        runners.off_interrupt(self._begin)
        if self._sockets is not None:
            signal.set_wakeup_fd(self._previous_fd if self._previous_fd is not None else -1)
            for sock in self._sockets:  # the watcher's recv ends
                sock.close()
            self._sockets = None
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _watch(self, sock) -> None:
        """The watcher thread: one byte per signal received (the wakeup fd)."""
        while True:
            try:
                data = sock.recv(64)
            except OSError:
                return
            if not data:
                return
            for signum in data:
                if signum in STOP_SIGNALS:
                    self._on_signal(signum)

    def _on_signal(self, signum: int) -> None:
        """The first signal asks the run to stop; a second one exits now."""
        from cloakflow.tasks import runners

        self._signals += 1
        if self._signals == 1:
            runners.interrupt(signum)
        elif not self._exit_lock.locked():  # a second signal: no more waiting
            self.exit_now(signum)
        elif signum != signal.SIGTERM:
            os._exit(128 + signum)
        # else: Prefect's flow engine re-sends the first SIGTERM to the process itself once
        # the flow has unwound (``capture_sigterm``): not a second request; the exit under
        # way finishes its clean-up

    def _handle(self, signum: int, frame) -> None:
        """The Python handler (main thread): unwind the run once."""
        from cloakflow.tasks import runners

        runners.interrupt(signum)  # a no-op after the watcher's
        if not self._raised and not self._exit_lock.locked():
            self._raised = True
            raise Interrupted(signum)

    def _begin(self, signum: int) -> None:
        """The first interrupt (``runners.on_interrupt``): say so, arm the deadline."""
        say(f"{signal.Signals(signum).name} received: stopping the run (nothing will be "
             f"published; the process exits within {self.grace_s + 3 * STOP_STEP_S:.0f} s)")
        timer = threading.Timer(self.grace_s, self.exit_now, args=(signum,))
        timer.daemon = True
        timer.start()

    def exit_now(self, signum: int) -> NoReturn:
        """End the process now with status 128 + ``signum``, after the clean-up of a stop
        (``clean_up``). Called by one thread; any other caller waits for the exit."""
        self._exit_lock.acquire()  # never released: the process ends here
        done = clean_up()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        end_stderr_captures()  # fd 2 may be a TensorFlow import's capture: give it back
        say(f"STOPPED by {signal.Signals(signum).name}, nothing was published"
             + (f"; {'; '.join(done)}" if done else "") + ".")
        os._exit(128 + int(signum))


def clean_up() -> list[str]:
    """The clean-up of a stop: attack workers terminated, the open MLflow runs KILLED, their
    Prefect flow runs Cancelled, the temporary Prefect server stopped; returns what was done,
    as phrases."""
    from cloakflow.tasks import runners

    runners.terminate_attack_workers()
    runs = []
    if "cloakflow.tasks.tracking" in sys.modules:  # no MLflow run before it is imported
        from cloakflow.tasks import tracking

        runs = tracking.kill_active_runs(timeout=STOP_STEP_S)
    flow_runs = [r["prefect.flow_run_id"] for r in runs
                 if r.get("prefect.flow_run_id") not in (None, "", "none")]
    cancelled = _bounded(lambda: cancel_flow_runs(flow_runs), STOP_STEP_S) \
        if flow_runs else False
    stop_temporary_servers(STOP_STEP_S)
    done = [f"MLflow run {r['mlflow_run_id']} marked KILLED" for r in runs]
    if flow_runs:
        done.append(f"Prefect flow run {', '.join(flow_runs)} "
                    + ("cancelled" if cancelled else "left as Prefect recorded it"))
    return done


def _bounded(step, seconds: float) -> bool:
    """Run ``step()`` in a daemon thread for at most ``seconds``; whether it returned True."""
    result: list[bool] = []

    def run() -> None:
        try:
            result.append(bool(step()))
        except Exception:  # noqa: BLE001 - a stop's clean-up step is best effort
            result.append(False)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    return bool(result and result[0])


def cancel_flow_runs(flow_run_ids: list[str]) -> bool:
    """Set each Prefect flow run Cancelled (forced: the engine may have set it Crashed).

    Returns:
        True once every state was set.
    """
    from prefect.client.orchestration import get_client
    from prefect.states import Cancelled

    with get_client(sync_client=True) as client:
        for flow_run_id in flow_run_ids:
            client.set_flow_run_state(flow_run_id, Cancelled(
                message="Stopped by a signal (Ctrl-C or SIGTERM); nothing was published."),
                force=True)
    return True


def stop_temporary_servers(wait_s: float = STOP_STEP_S) -> None:
    """Stop the temporary Prefect servers this process started (Prefect stops them at exit,
    which ``os._exit`` skips): SIGTERM, then SIGKILL after ``wait_s`` seconds."""
    server_module = sys.modules.get("prefect.server.api.server")
    if server_module is None:
        return
    for server in list(server_module.SubprocessASGIServer._instances.values()):
        proc = getattr(server, "server_process", None)
        if proc is None or proc.poll() is not None:
            continue
        proc.terminate()
        try:
            proc.wait(wait_s)
        except Exception:  # noqa: BLE001 - subprocess.TimeoutExpired
            proc.kill()
