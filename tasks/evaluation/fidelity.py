"""Fidelity of synthetic rows: univariate, bivariate and three-way accuracy (Prefect-free).

Accuracy of a k-way marginal is 1 - total variation distance between the discretised joint
distributions of k columns in two tables: TVD = 1/2 sum over cells |p - q|. It is 1 when the two
distributions agree on every cell and 0 when they share none. Columns are discretised on the
training rows alone (the reference): a numeric, date or datetime column into ``BINS`` quantile
bins, a categorical or boolean one into its ``TOP`` most frequent training values plus one
``(other)`` cell; nulls are a cell of their own. This follows the accuracy of MOSTLY AI's
open-source ``mostlyai-qa`` report (Platzer & Reutterer 2021, "Holdout-based fidelity and
privacy assessment of mixed-type synthetic data").

The same figure for real control rows that were never trained on is the *holdout maximum*: a
synthesizer that only sampled fresh rows from the true distribution would score about that, so
synthetic accuracy is read against it, not against 1.

This module imports neither Prefect nor MLflow.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import polars as pl

BINS = 10
TOP = 10
NULL, OTHER = -1, -2  # cell codes of a null and of a category outside the top values


@dataclass(frozen=True)
class Discretiser:
    """Cell boundaries fitted on the training rows: quantile edges per numeric-family column,
    the top values per categorical one."""

    edges: dict[str, np.ndarray]
    top: dict[str, list[str]]

    @classmethod
    def fit(cls, train: pl.DataFrame, bins: int = BINS, top: int = TOP,
            categorical: tuple[str, ...] = ()) -> Discretiser:
        """Cells from the training rows; ``categorical`` names numeric-typed columns that are
        categories (integer codes, the profile's kinds), which get top values, not bins.

        Raises:
            ValueError: an empty table.
        """
        if train.height == 0:
            raise ValueError("cannot fit cells on an empty table")
        edges, tops = {}, {}
        for name in train.columns:
            values = None if name in categorical else _numbers(train.get_column(name))
            if values is not None:
                finite = values[~np.isnan(values)]
                qs = np.quantile(finite, np.linspace(0, 1, bins + 1)[1:-1]) if len(finite) \
                    else np.array([])
                edges[name] = _between_values(np.unique(qs), np.unique(finite))
            else:
                counts = _text(train.get_column(name)).drop_nulls().value_counts(sort=True)
                tops[name] = counts.get_column(name).head(top).to_list()
        return cls(edges, tops)

    def cells(self, frame: pl.DataFrame) -> dict[str, np.ndarray]:
        """Each column's cell codes, shape (rows,) int64 (``NULL`` for a null, ``OTHER`` for a
        category outside the training top values).

        Raises:
            KeyError: a fitted column is missing from ``frame``.
        """
        out = {}
        for name, edges in self.edges.items():
            values = _numbers(frame.get_column(name))
            if values is None:
                raise ValueError(f"column {name!r} was numeric in the training rows but is "
                                 f"{frame.schema[name]} here")
            codes = np.searchsorted(edges, values, side="right").astype(np.int64)
            codes[np.isnan(values)] = NULL
            out[name] = codes
        for name, top in self.top.items():
            text = _text(frame.get_column(name))
            index = {v: i for i, v in enumerate(top)}
            codes = np.fromiter((NULL if v is None else index.get(v, OTHER)
                                 for v in text.to_list()), dtype=np.int64, count=len(text))
            out[name] = codes
        return out


def _between_values(qs: np.ndarray, distinct: np.ndarray) -> np.ndarray:
    """Quantile edges moved to the midpoint between the training values on either side, so
    that no edge sits on a value: a column with point masses (a rate published per quarter,
    a code like 999) would otherwise put a value and one a rounding error away (a DP value
    list's, a float's) in different cells."""
    if not len(qs) or len(distinct) < 2:
        return qs
    # the first training value above the edge (an edge on the largest value: the gap below it)
    i = np.clip(np.searchsorted(distinct, qs, side="right"), 1, len(distinct) - 1)
    return np.unique((distinct[i - 1] + distinct[i]) / 2)


def _numbers(series: pl.Series) -> np.ndarray | None:
    dtype = series.dtype
    if dtype == pl.Boolean or not (dtype.is_numeric() or dtype.is_temporal()):
        return None
    if dtype.is_temporal():
        series = series.dt.epoch("s") if dtype != pl.Date else series.cast(pl.Int64)
    return series.cast(pl.Float64).to_numpy().astype(np.float64)


def _text(series: pl.Series) -> pl.Series:
    return series.cast(pl.String)


def total_variation(a: np.ndarray, b: np.ndarray) -> float:
    """TVD between the empirical distributions of the rows of two int64 cell matrices
    (rows, k): 1/2 sum |p - q| over the cells either table has."""
    if len(a) == 0 or len(b) == 0:
        raise ValueError("total variation needs rows in both tables")
    cells, inverse = np.unique(np.vstack([a, b]), axis=0, return_inverse=True)
    inverse = inverse.ravel()
    p = np.bincount(inverse[:len(a)], minlength=len(cells)) / len(a)
    q = np.bincount(inverse[len(a):], minlength=len(cells)) / len(b)
    return 0.5 * float(np.abs(p - q).sum())


def accuracy(train: pl.DataFrame, other: pl.DataFrame, discretiser: Discretiser, k: int,
             max_sets: int = 500, seed: int = 0) -> dict:
    """Mean k-way accuracy (1 - TVD) of ``other`` against ``train`` over column sets.

    Args:
        train: the reference rows (the synthesizer's training rows).
        other: synthetic rows, or the control rows for the holdout maximum.
        discretiser: fitted on ``train``.
        k: 1 (univariate), 2 (bivariate) or 3 (three-way).
        max_sets: at most this many k-column sets, drawn with ``seed`` when there are more.

    Returns:
        ``{"accuracy": mean, "sets": how many, "per_set": {"a|b": accuracy}}``.
    """
    columns = list(discretiser.edges) + list(discretiser.top)
    columns = [c for c in train.columns if c in columns]
    sets = list(itertools.combinations(columns, k))
    if not sets:
        return {"accuracy": None, "sets": 0, "per_set": {}}
    if len(sets) > max_sets:
        pick = np.random.default_rng(seed).choice(len(sets), max_sets, replace=False)
        sets = [sets[i] for i in sorted(pick)]
    ref, cmp_ = discretiser.cells(train), discretiser.cells(other)
    per = {"|".join(s): 1.0 - total_variation(np.column_stack([ref[c] for c in s]),
                                              np.column_stack([cmp_[c] for c in s]))
           for s in sets}
    return {"accuracy": float(np.mean(list(per.values()))), "sets": len(per), "per_set": per}


def fidelity_report(train: pl.DataFrame, synthetic: pl.DataFrame, control: pl.DataFrame,
                    seed: int = 0, categorical: tuple[str, ...] = ()) -> dict:
    """Univariate, bivariate and three-way accuracy of the synthetic rows and, beside each, of
    the control rows (the holdout maximum); both against the training rows, on the columns the
    three tables share. TVD between samples grows as they shrink, so the synthetic rows are
    subsampled (``seed``) to the control rows' count when there are more of them.

    Args:
        categorical: numeric-typed columns that are categories (see ``Discretiser.fit``).

    Raises:
        ValueError: a table is empty.
    """
    shared = [c for c in train.columns if c in synthetic.columns and c in control.columns]
    train, synthetic, control = (f.select(shared) for f in (train, synthetic, control))
    if synthetic.height > control.height > 0:
        synthetic = synthetic.sample(control.height, seed=seed)
    disc = Discretiser.fit(train, categorical=tuple(categorical))
    out = {}
    for k, name in ((1, "univariate"), (2, "bivariate"), (3, "three_way")):
        syn = accuracy(train, synthetic, disc, k, seed=seed)
        hold = accuracy(train, control, disc, k, seed=seed)
        out[name] = {"synthetic": syn["accuracy"], "holdout_maximum": hold["accuracy"],
                     "sets": syn["sets"],
                     "worst": sorted(syn["per_set"].items(), key=lambda kv: kv[1])[:5]}
    return out
