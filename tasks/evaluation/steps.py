"""Prefect tasks of the utility evaluation: cross-validation and permutation importance per
view of the table, cached on their inputs and the evaluation code (a rerun after a crash skips
finished evaluations), and ``Evaluations``, which submits them as views become available."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from prefect import task

from cloakflow.tasks.evaluation import learners, utility
from cloakflow.tasks.evaluation.utility import (
    Blocks,
    Engine,
    FoldScheme,
    importance_of_view,
    utility_of_view,
)
from cloakflow.tasks.steps import CACHE_EXPIRATION, step_policy

_CACHE = dict(persist_result=True, cache_expiration=CACHE_EXPIRATION,
              cache_policy=step_policy(utility, learners))

# task runs named by the view they measure (the Prefect UI lists them so)
evaluate_utility = task(name="evaluate-utility", task_run_name="evaluate[{name}]",
                        **_CACHE)(utility_of_view)
importance = task(name="permutation-importance", task_run_name="importance[{name}]",
                  **_CACHE)(importance_of_view)


class Evaluations:
    """The utility and importance tasks of one run, submitted (on the flow's task runner) as
    views of the table become available; ``results()`` waits for them. ``class_names``: a
    multiclass target's (``split.class_names``), naming its per-class figures."""

    def __init__(self, y: np.ndarray, *, engine: Engine, scheme: FoldScheme, folds: int,
                 seed: int, importance_rows: int, refresh: bool, kind: str = "binary",
                 class_names: Sequence[str] | None = None):
        self._cv_task = evaluate_utility.with_options(refresh_cache=refresh)
        self._imp_task = importance.with_options(refresh_cache=refresh)
        self._y = y
        self._cv_kw = dict(engine=engine, scheme=scheme, folds=folds, seed=seed, kind=kind)
        if kind == "multiclass" and class_names is not None:
            self._cv_kw["class_names"] = [str(n) for n in class_names]
        self._imp_kw = dict(engine=engine, seed=seed, rows=importance_rows, kind=kind)
        self.cv: dict = {}
        self.imp: dict = {}

    def __call__(self, name: str, x: np.ndarray, columns: list[str],
                 importance: bool = True, blocks: Blocks | None = None) -> None:
        """Submit the view ``name`` (x: rows x columns, named by ``columns``); ``blocks``:
        its importance per source column, (name, column indices) each (``source_blocks`` of
        the preprocessor for ORIGINAL; None: per column, as the code views are)."""
        self.cv[name] = self._cv_task.submit(name, x, self._y, **self._cv_kw)
        if importance:
            blocks = None if blocks is None else [(n, [int(i) for i in c]) for n, c in blocks]
            self.imp[name] = self._imp_task.submit(name, x, self._y, columns, **self._imp_kw,
                                                   blocks=blocks)

    def results(self) -> tuple[dict, dict, list[str]]:
        """(view -> CV result, view -> importance, the steps reused from the cache)."""
        cv = {k: f.result() for k, f in self.cv.items()}
        imp = {k: f.result() for k, f in self.imp.items()}
        # states are read after the results: before, a future may still be running
        cached = [f"utility:{k}" for k, f in self.cv.items() if f.state.name == "Cached"] + [
            f"importance:{k}" for k, f in self.imp.items() if f.state.name == "Cached"]
        return cv, imp, cached
