"""Masked releases' pieces (``tasks.release.masked``): the baselines impute each fold from
the other folds' true values (also when every row is masked), the posterior baseline draws
categories, exact linkage by the kept cells, and the gate's quantities."""

from __future__ import annotations

import numpy as np
import polars as pl

from cloakflow.tasks.data.preprocess import TablePreprocessor
from cloakflow.tasks.data.profile import DatasetProfile
from cloakflow.tasks.release.masked import baselines, column_mask, exact_linkage, folds_of, measure
from tests.helpers import tiny_profile_dict


def _frame(n: int = 600, seed: int = 0) -> pl.DataFrame:
    """``city`` decides ``region`` (a copy under another name); ``owns`` is independent."""
    rng = np.random.default_rng(seed)
    city = rng.choice(["north", "south", "east", "west"], n)
    return pl.DataFrame({"age": rng.integers(20, 70, n), "income": rng.normal(50, 10, n),
                         "city": city, "owns": rng.choice(["no", "yes"], n, p=[0.7, 0.3]),
                         "region": np.char.add("r-", city), "label": rng.choice(["no", "yes"], n),
                         "note": ["x"] * n})


def _pre(frame: pl.DataFrame) -> TablePreprocessor:
    d = tiny_profile_dict()
    d["groups"] = {"person": ["age", "city", "region"], "money": ["income", "owns"]}
    d["columns"] = {**d["columns"], "region": "categorical"}
    return TablePreprocessor(DatasetProfile.model_validate(d), with_target=True).fit(frame)


def test_every_row_masked_is_imputed_from_the_other_folds():
    frame = _frame()
    pre = _pre(frame)
    x = pre.transform(frame)
    rows = np.ones(frame.height, dtype=bool)  # --rows all: no unmasked row at all
    heads, _ = column_mask(pre, ["region", "owns"], rows)
    out = baselines(pre, x, heads, rows, folds_of(frame.height, 3, 0), seed=0)
    decoded = {n: pre.reverse_transform(m) for n, m in out.items()}
    for name in ("iterative", "extra_trees"):  # region follows city: the folds learn it
        assert (decoded[name]["region"] == frame["region"]).mean() > 0.9, name
    # owns is independent of the row: the posterior draw keeps its share (a mode would give
    # every row "no"), the marginal draw too
    for name in ("iterative", "marginal"):
        share = (decoded[name]["owns"] == "yes").mean()
        assert 0.2 < share < 0.4, (name, share)
    assert (decoded["extra_trees"]["age"] == frame["age"]).all()  # unmasked columns untouched


def test_exact_linkage_by_the_kept_cells_and_the_gate_quantities():
    train = pl.DataFrame({"a": [1, 2, 2, 3], "b": ["x", "y", "y", "z"], "m": [5, 6, 7, 8]})
    released = train.with_columns(pl.Series("m", [9, 9, 9, 9]))
    link = exact_linkage(train, released, ["m"])
    assert link["columns"] == ["a", "b"] and link["linked"] == 0.5  # rows 2 and 3 share a, b
    cells = {"age": {"release": {"equal_to_truth": 0.05}, "iterative": {"equal_to_truth": 0.02}},
             "job": {"release": {"equal_to_truth": 0.10}, "iterative": {"equal_to_truth": 0.11}}}
    got = measure({"cells": cells, "reidentification": {"after": 0.004}})
    assert abs(got["max_truth_excess"] - 0.03) < 1e-12 and got["max_reidentification"] == 0.004
    assert measure({}) == {"max_truth_excess": None, "max_reidentification": None}
