"""Process start-up of the command line: defaults, quiet imports, store initialisation.

Everything here runs before Prefect, MLflow or TensorFlow is used, and never overrides what the
user set:

- :func:`set_env_defaults`: settings that make a bare ``cloakflow run`` work as ``make demo``
  does (no analytics, a temporary-server start-up timeout that survives a loaded 2-core machine,
  TensorFlow's C++ log level), set with ``os.environ.setdefault`` before the libraries read them;
- :func:`quiet_tensorflow_import`: drops TensorFlow's, CUDA's and absl's start-up lines
  (oneDNN notice, "Could not find cuda drivers", "failed call to cuInit", the absl
  pre-initialisation warning) from stderr; every other line is kept;
- :func:`init_mlflow_store`: a sqlite MLflow store is created or migrated by one process at a
  time, under a file lock beside the database;
- :func:`say`: a line on the terminal's stderr, also while a capture holds file descriptor 2.

The Prefect side of a command-line run (which API records it, the temporary server, stopping
on Ctrl-C and SIGTERM) is in ``flows/engine.py``; nothing here imports Prefect.
"""

from __future__ import annotations

import fcntl
import importlib.abc
import importlib.util
import os
import re
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ENV_DEFAULTS = {
    "GX_ANALYTICS_ENABLED": "false",
    # no download progress bars between the report lines of `cloakflow attack`
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    # Prefect's 20 s default was exceeded on a loaded 2-core machine (first start ~20-26 s)
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    # hides TensorFlow's C++ INFO and WARNING lines; ERROR lines stay visible
    "TF_CPP_MIN_LOG_LEVEL": "2",
    "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
}

# Start-up noise of TensorFlow, CUDA and absl, one regex per line kind. Nothing else is dropped.
TF_NOISE = re.compile(
    r"All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|oneDNN custom operations are on"
    r"|Could not find cuda drivers on your machine"
    r"|failed call to cuInit"
    r"|Unable to register cu(DNN|FFT|BLAS) factory"
    r"|This TensorFlow binary is optimized to use available CPU instructions"
    r"|To enable the following instructions: .* in other operations, rebuild TensorFlow")

_MLFLOW_READY: set[str] = set()


def set_env_defaults(env: dict[str, str] | None = None) -> None:
    """Set :data:`ENV_DEFAULTS` where the user has not (``os.environ`` by default)."""
    target = os.environ if env is None else env
    for key, value in ENV_DEFAULTS.items():
        target.setdefault(key, value)


# ----------------------------------------------------------------------------- file locks
@contextmanager
def file_lock(path: str | Path) -> Iterator[None]:
    """An exclusive inter-process lock (``fcntl.flock``) on ``path``, created if missing."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# ----------------------------------------------------------------------------- TensorFlow
_CAPTURES: list[list] = []  # the open captures of ``filtered_stderr``: [tmp, saved fd, noise]
_CAPTURES_LOCK = threading.Lock()


@contextmanager
def filtered_stderr(noise: re.Pattern[str] = TF_NOISE) -> Iterator[None]:
    """Capture file descriptor 2 (C++ writes go there, not to ``sys.stderr``) and replay every
    captured line that does not match ``noise`` when the block ends (or when a stop ends the
    process first: ``end_stderr_captures``)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        capture = [tmp, saved, noise]
        with _CAPTURES_LOCK:
            _CAPTURES.append(capture)
        try:
            yield
        finally:
            _end_capture(capture)


def _end_capture(capture: list) -> None:
    """Give file descriptor 2 back and replay what a capture kept; once per capture."""
    with _CAPTURES_LOCK:
        if capture not in _CAPTURES:
            return
        _CAPTURES.remove(capture)
        tmp, saved, noise = capture
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        tmp.seek(0)
        kept = [line for line in tmp.read().decode(errors="replace").splitlines(True)
                if not noise.search(line)]
        if kept:
            os.write(2, "".join(kept).encode())


def end_stderr_captures() -> None:
    """End every open ``filtered_stderr`` capture now (latest first), replaying its lines:
    a process about to ``os._exit`` in the middle of TensorFlow's import."""
    with _CAPTURES_LOCK:
        open_ = list(reversed(_CAPTURES))
    for capture in open_:
        _end_capture(capture)


class _QuietLoader(importlib.abc.Loader):
    def __init__(self, loader: Any):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        with filtered_stderr():
            self._loader.exec_module(module)
            # CUDA is probed on the first device query ("failed call to cuInit" without a
            # driver): do it here. Listing physical devices leaves them configurable.
            try:
                module.config.list_physical_devices()
            except Exception:  # noqa: BLE001 - Keras will meet and report the same failure
                pass

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)


class _QuietTensorflowFinder(importlib.abc.MetaPathFinder):
    """Wraps the first import of ``tensorflow`` (in any thread) in :func:`filtered_stderr`."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "tensorflow":
            return None
        if self in sys.meta_path:
            sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


def quiet_tensorflow_import() -> None:
    """Drop TensorFlow's start-up lines when it is first imported; a no-op once it is loaded.

    The oneDNN notice and the CUDA driver lines are written by absl before its logging is
    initialised, so ``TF_CPP_MIN_LOG_LEVEL`` does not hide them; "failed call to cuInit" is an
    ERROR line, which the level would hide only together with every other C++ error, and
    ``CUDA_VISIBLE_DEVICES=""`` does not prevent it. ``TF_ENABLE_ONEDNN_OPTS`` is left alone
    (it changes numerics).
    """
    if "tensorflow" in sys.modules:
        return
    if not any(isinstance(f, _QuietTensorflowFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietTensorflowFinder())


# ----------------------------------------------------------------------------- MLflow
def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI, None for any other store."""
    if not uri.startswith("sqlite:///"):
        return None
    rest = uri.removeprefix("sqlite:///").split("?", 1)[0]
    return Path(rest if rest.startswith("/") else os.path.abspath(rest)) if rest else None


def init_mlflow_store(uri: str) -> None:
    """Create or migrate the MLflow store at ``uri`` once, under a file lock beside a sqlite
    database (``<db>.lock``), so that processes opening a fresh store together do not race on
    its schema migration. Other stores (a tracking server) are left to MLflow."""
    db = sqlite_path(uri)
    if db is None or uri in _MLFLOW_READY:
        return
    import logging

    from mlflow.tracking import MlflowClient

    # MLflow's "Creating initial MLflow database tables..." lines say nothing to the user
    schema_log = logging.getLogger("mlflow.store.db.utils")
    level = schema_log.level
    schema_log.setLevel(logging.WARNING)
    try:
        with file_lock(db.with_name(db.name + ".lock")):
            client = MlflowClient(tracking_uri=uri, registry_uri=uri)
            client.search_experiments(max_results=1)  # tracking tables
            client.search_registered_models(max_results=1)  # model registry tables
    finally:
        schema_log.setLevel(level)
    _MLFLOW_READY.add(uri)


def prepare_cli() -> None:
    """Everything the command line needs before it imports Prefect or TensorFlow."""
    set_env_defaults()
    quiet_tensorflow_import()


class _ExpectedErrors:
    """A logging filter: a rejected input, a blocked release or a refused budget is reported by
    the command line in plain words; Prefect's log line of it keeps its message but drops the
    Python traceback (it points into cloakflow's code, not at the user's table). So do the
    failures of tasks stopped by Ctrl-C or SIGTERM (``runners.interrupt``)."""

    def __init__(self, types: tuple[type[BaseException], ...]):
        self.types = types

    def filter(self, record) -> bool:
        from cloakflow.tasks import runners

        exc = record.exc_info[1] if record.exc_info else None
        # after Ctrl-C or SIGTERM every task's failure is the stop's (a terminated attack
        # worker's BrokenProcessPool, a StopRequested): their tracebacks are noise
        if exc is not None and (isinstance(exc, self.types) or runners.interrupted()):
            record.exc_info, record.exc_text = None, None
            record.cloakflow_reported = True  # the quiet console leaves it to the CLI
        return True


def quiet_expected_errors(types: tuple[type[BaseException], ...]) -> None:
    """Drop the traceback from Prefect's log lines about exceptions of ``types`` (the errors
    the command line reports itself)."""
    import logging

    for name in ("prefect.flow_runs", "prefect.task_runs"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _ExpectedErrors) for f in logger.filters):
            logger.addFilter(_ExpectedErrors(types))


def say(text: str) -> None:
    """A line on stderr's file descriptor, not through ``print``: inside a flow Prefect turns
    prints into log records (``log_prints``), and a stop must not wait on logging."""
    with _CAPTURES_LOCK:  # the terminal's stderr, also while TensorFlow's import captures fd 2
        try:
            os.write(_CAPTURES[0][1] if _CAPTURES else 2, f"\n{text}\n".encode())
        except OSError:
            pass
