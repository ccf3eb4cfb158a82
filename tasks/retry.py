"""Retry only what a retry can fix: I/O and network errors, not bad content."""

from __future__ import annotations


def transient(exc: BaseException | None) -> bool:
    """True when ``exc`` (or what caused it) is an I/O error other than a missing file."""
    while exc is not None:
        if isinstance(exc, OSError) and not isinstance(exc, FileNotFoundError):
            return True
        exc = exc.__cause__
    return False


def retry_on_io(task, task_run, state) -> bool:  # noqa: ARG001 - Prefect's signature
    """Prefect ``retry_condition_fn``: retry a failed run only for transient I/O errors."""
    try:
        state.result()
    except BaseException as exc:  # noqa: BLE001 - we only classify it
        return transient(exc)
    return False
