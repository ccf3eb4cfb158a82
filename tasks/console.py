"""What a command-line run shows on its terminal.

A run's tasks print their details (every epoch's losses, each check's counts); Prefect turns
those prints into log records of the flow run (``log_prints``), so they are all in the Prefect
UI's flow-run page and, with ``cloakflow ... --verbose``, on the console too.

The quiet console (the default of every ``cloakflow`` command) shows only:

- the lines sent through :func:`step`: one per step, training progress every 10 epochs, a
  verdict; and through :func:`warn`: a warning the user should act on;
- Prefect's own warnings and errors (a failed task, a crashed flow run);
- what the command prints at the end (the verdict, the report's path, the release folder).

Both functions log to the ``cloakflow.console`` logger (standard :mod:`logging`, no Prefect
here). ``flows/engine.py`` (:func:`~cloakflow.flows.engine.console`) gives that logger a
terminal handler for the quiet console and sends its records to the flow run's log, so the UI
has them too.
"""

from __future__ import annotations

import logging

LOGGER = logging.getLogger("cloakflow.console")
LOGGER.setLevel(logging.INFO)


def step(text: str) -> None:
    """One line of a run's progress: shown on the quiet console and in the flow run's log."""
    LOGGER.info(text)


EPOCH_EVERY = 10  # the quiet console shows every 10th epoch's line


def epoch(number: int, text: str, last: int | None = None) -> None:
    """A training epoch's line: on the quiet console every ``EPOCH_EVERY``-th epoch (and the
    ``last``), in the flow run's log always (a print: Prefect logs the task's prints)."""
    if number % EPOCH_EVERY == 0 or number == last:
        step(text)
    else:
        print(text, flush=True)


def warn(text: str) -> None:
    """A warning for the user (``warning: text``): shown on every console and in the log."""
    LOGGER.warning("warning: %s", text)
