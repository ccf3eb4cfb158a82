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

``quality_report`` adds the two properties of SDMetrics' ``QualityReport`` (DataCebo,
sdmetrics 0.32): *column shapes* (KSComplement = 1 - the two-sample Kolmogorov-Smirnov statistic
for numbers, dates and datetimes; TVComplement = 1 - TVD of category frequencies for categories
and booleans; nulls dropped) and *column pair trends* (CorrelationSimilarity = 1 - |r_real -
r_synthetic| / 2 of Pearson's r for two number-like columns, nulls dropped; ContingencySimilarity
= 1 - TVD of the two-way table otherwise, numbers in 10 equal-width bins of each table's own
range as that report bins them; a pair counts only when the real rows' |r| > 0.5 or Cramér's
V > 0.3, that report's default thresholds), and their mean as the score. SDMetrics itself cannot
be installed beside this stack (it requires pandas < 3), so the definitions are computed here
with SciPy's ``ks_2samp``, ``pearsonr`` and ``contingency.association``;
``benchmarks/quality_check.py`` checks them against SDMetrics 0.32 on published releases and on
stored generated tables (equal to within 1e-15; ``tests/unit/tasks/evaluation/
test_quality_sdmetrics.py`` compares with the stored figures). Tables above 50,000 rows differ
slightly: SDMetrics subsamples them for its contingency pairs.

This module imports neither Prefect nor MLflow.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import polars as pl
from scipy import stats

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
    """A column's values as category labels; numbers through Float64, so that an integer
    column and its Float64 copy (a DP release publishes numbers as Float64) name the value 0
    alike ("0.0"), not "0" against "0.0"."""
    if series.dtype.is_numeric():
        series = series.cast(pl.Float64)
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
    three tables share. ``"quality"`` holds ``quality_report`` of both against the training
    rows, the same way. TVD between samples grows as they shrink, so the synthetic rows are
    subsampled (``seed``) to the control rows' count when there are more of them; beside them,
    ``quality["release"]`` scores every synthetic row against the training rows: the figure
    SDMetrics' ``QualityReport`` gives the published table (the release's headline quality).

    Args:
        categorical: numeric-typed columns that are categories (see ``Discretiser.fit``).

    Raises:
        ValueError: a table is empty.
    """
    shared = [c for c in train.columns if c in synthetic.columns and c in control.columns]
    train, synthetic, control = (f.select(shared) for f in (train, synthetic, control))
    release = quality_report(train, synthetic, tuple(categorical))
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
    categorical = tuple(categorical)
    out["quality"] = {"release": release,
                      "synthetic": quality_report(train, synthetic, categorical),
                      "holdout": quality_report(train, control, categorical),
                      "follows": "SDMetrics 0.32 QualityReport (default thresholds), "
                                 "computed with SciPy"}
    return out


QUALITY_BINS = 10  # SDMetrics ContingencySimilarity's num_discrete_bins
# SDMetrics 0.32 QualityReport's defaults: a pair counts toward column pair trends only when the
# real rows' |Pearson r| exceeds 0.5 (two number-like columns) or their Cramér's V exceeds 0.3
REAL_CORRELATION_THRESHOLD = 0.5
REAL_ASSOCIATION_THRESHOLD = 0.3


@dataclass(frozen=True)
class _Scored:
    """One column of both tables as the quality measures read it: numbers (NaN for a null)
    for a number-like column, else None; cell codes for contingency tables (SDMetrics' bins for
    numbers, one code per category, nulls included)."""

    real_numbers: np.ndarray | None
    synthetic_numbers: np.ndarray | None
    real_cells: np.ndarray
    synthetic_cells: np.ndarray
    temporal: bool = False  # a date or datetime (its numbers are whole time units)


# KSComplement rounds numbers to this many decimals before the test (sys.float_info.dig - 1)
KS_DECIMALS = 14
# TVComplement's regularisation: a category only the synthetic rows have counts this many
# times in the real rows (SDMetrics' ``get_frequencies``)
TV_REGULARISATION = 1e-6


def _quality_numbers(series: pl.Series) -> np.ndarray | None:
    """A number-like column as SDMetrics reads it from ``polars.to_pandas()``: numbers as
    Float64; a datetime as whole units of its own time unit since the epoch and a date as
    milliseconds (pandas' ``datetime64[us]``/``[ms]`` through ``pd.to_numeric``), so that
    sub-second parts count and bin edges fall where that report puts them; None otherwise."""
    dtype = series.dtype
    if isinstance(dtype, pl.Datetime):
        series = series.dt.epoch(dtype.time_unit)
    elif dtype == pl.Date:
        series = series.dt.epoch("ms")
    elif dtype == pl.Boolean or not dtype.is_numeric():
        return None
    return series.cast(pl.Float64).to_numpy().astype(np.float64)


def _score_column(real: pl.Series, synthetic: pl.Series, categorical: bool) -> _Scored:
    rn = None if categorical else _quality_numbers(real)
    if rn is not None:
        sn = _quality_numbers(synthetic)
        if sn is None:
            raise ValueError(f"column {real.name!r} is {real.dtype} in the real rows but "
                             f"{synthetic.dtype} in the synthetic rows")
        return _Scored(rn, sn, *_equal_width_cells(rn, sn), temporal=real.dtype.is_temporal())
    rn, sn = _quality_numbers(real), _quality_numbers(synthetic)
    if rn is not None and sn is not None:  # integer codes: 1 and 1.0 are one category
        both = np.concatenate([rn, sn])
        codes = np.unique(np.nan_to_num(both, nan=np.inf), return_inverse=True)[1].ravel()
        codes = np.where(np.isnan(both), -1, codes).astype(np.int64)
    else:
        both = pl.concat([_text(real), _text(synthetic)]).cast(pl.Categorical).to_physical()
        codes = both.fill_null(-1).cast(pl.Int64).to_numpy()
    return _Scored(None, None, codes[:len(real)], codes[len(real):])


def _equal_width_cells(real: np.ndarray, synthetic: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """SDMetrics 0.32 QualityReport's discretisation for contingency tables: each table in
    ``QUALITY_BINS`` equal-width bins over *its own* range (``np.histogram_bin_edges`` then
    ``np.digitize``, as that report does; a null lands beside the maximum). Binning each table
    on its own range is that report's choice, kept so the score compares with published ones."""
    def cells(values: np.ndarray) -> np.ndarray:
        finite = values[~np.isnan(values)]
        if not len(finite):
            return np.zeros(len(values), np.int64)
        return np.digitize(values, np.histogram_bin_edges(finite, bins=QUALITY_BINS)) \
            .astype(np.int64)
    return cells(real), cells(synthetic)


def _shape(col: _Scored) -> float | None:
    """KSComplement of a number-like column, TVComplement of a category; nulls dropped. As
    SDMetrics computes them: numbers (not whole time units) rounded to ``KS_DECIMALS``
    decimals before the test, and a category only the synthetic rows have counted
    ``TV_REGULARISATION`` times in the real rows."""
    if col.real_numbers is not None:
        a = col.real_numbers[~np.isnan(col.real_numbers)]
        b = col.synthetic_numbers[~np.isnan(col.synthetic_numbers)]
        if not len(a) or not len(b):
            return None
        if not col.temporal:
            a, b = np.round(a, KS_DECIMALS), np.round(b, KS_DECIMALS)
        return 1.0 - float(stats.ks_2samp(a, b).statistic)
    a, b = col.real_cells[col.real_cells >= 0], col.synthetic_cells[col.synthetic_cells >= 0]
    if not len(a) or not len(b):
        return None
    size = int(max(a.max(), b.max())) + 1
    p = np.bincount(a, minlength=size).astype(np.float64)
    q = np.bincount(b, minlength=size).astype(np.float64)
    p[(p == 0) & (q > 0)] += TV_REGULARISATION
    seen = p > 0  # SDMetrics sums over the real categories (the regularised ones included)
    return 1.0 - 0.5 * float(np.abs(q[seen] / q.sum() - p[seen] / p.sum()).sum())


def _pair_trend(one: _Scored, two: _Scored) -> tuple[float, bool] | None:
    """(pair trend, whether the real pair is associated enough to count toward the score) of
    two columns; None where it cannot be scored (a constant column)."""
    if one.real_numbers is not None and two.real_numbers is not None:
        rs = []
        for x, y in ((one.real_numbers, two.real_numbers),
                     (one.synthetic_numbers, two.synthetic_numbers)):
            keep = ~(np.isnan(x) | np.isnan(y))
            x, y = x[keep], y[keep]
            if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
                return None
            rs.append(float(stats.pearsonr(x, y).statistic))
        return 1.0 - abs(rs[0] - rs[1]) / 2.0, abs(rs[0]) > REAL_CORRELATION_THRESHOLD
    # cell codes (a null is -1) shifted to >= 0, then one integer per two-way cell
    shift = [min(c.real_cells.min(initial=0), c.synthetic_cells.min(initial=0)) for c in (one, two)]
    width = [max(c.real_cells.max(initial=0), c.synthetic_cells.max(initial=0)) - low + 1
             for c, low in zip((one, two), shift, strict=True)]
    size = width[0] * width[1]
    counts = [np.bincount((a - shift[0]) * width[1] + (b - shift[1]), minlength=size)
              for a, b in ((one.real_cells, two.real_cells),
                           (one.synthetic_cells, two.synthetic_cells))]
    tvd = 0.5 * float(np.abs(counts[0] / counts[0].sum() - counts[1] / counts[1].sum()).sum())
    table = counts[0].reshape(width)
    table = table[table.sum(axis=1) > 0][:, table.sum(axis=0) > 0]
    associated = min(table.shape) >= 2 and \
        float(stats.contingency.association(table, method="cramer")) > REAL_ASSOCIATION_THRESHOLD
    return 1.0 - tvd, associated


def quality_report(real: pl.DataFrame, synthetic: pl.DataFrame,
                   categorical: tuple[str, ...] = ()) -> dict:
    """SDMetrics-style quality of ``synthetic`` against ``real`` (see the module docstring).

    Args:
        real: the reference rows (the synthesizer's training rows, as SDMetrics is used).
        synthetic: rows to score, on the columns both tables have.
        categorical: numeric-typed columns that are categories (scored as categories).

    Returns:
        ``{"score", "column_shapes", "column_pair_trends"}`` in [0, 1] (None where no column
        or pair could be scored), ``"columns"``/``"pairs"`` (how many were scored; a pair counts
        only when the real rows' association passes SDMetrics' default thresholds,
        ``"pairs_below_threshold"`` the others), and the five lowest of each
        (``"worst_shapes"``, ``"worst_pairs"``).

    Raises:
        ValueError: a table is empty.
    """
    if real.height == 0 or synthetic.height == 0:
        raise ValueError("quality needs rows in both tables")
    shared = [c for c in real.columns if c in synthetic.columns]
    columns = {c: _score_column(real.get_column(c), synthetic.get_column(c), c in categorical)
               for c in shared}
    shapes = {c: _shape(col) for c, col in columns.items()}
    shapes = {c: v for c, v in shapes.items() if v is not None}
    pairs, unassociated = {}, 0
    for a, b in itertools.combinations(shared, 2):
        trend = _pair_trend(columns[a], columns[b])
        if trend is not None and trend[1]:
            pairs[f"{a}|{b}"] = trend[0]
        unassociated += trend is not None and not trend[1]
    shape = float(np.mean(list(shapes.values()))) if shapes else None
    trend = float(np.mean(list(pairs.values()))) if pairs else None
    parts = [v for v in (shape, trend) if v is not None]
    return {"score": float(np.mean(parts)) if parts else None,
            "column_shapes": shape, "column_pair_trends": trend,
            "columns": len(shapes), "pairs": len(pairs), "pairs_below_threshold": unassociated,
            "worst_shapes": sorted(shapes.items(), key=lambda kv: kv[1])[:5],
            "worst_pairs": sorted(pairs.items(), key=lambda kv: kv[1])[:5]}
