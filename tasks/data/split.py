"""Seeded train / control split, stratified on the target, grouped on the modelled features.

Control rows never reach the models or the release: they are the held-out population that the
privacy attacks compare training rows against. Rows whose modelled feature values are equal
(duplicates) form one group and fall on one side of the split, so that no control row is a copy
of a training row: otherwise its distance to the closest training record is 0, the membership
attack scores "unseen" rows that were trained on and the exact-copy baseline counts the table's
own duplicates. Both index lists keep the file's row order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from cloakflow.tasks import console

# fewer positive (or negative) rows per test fold than this and the utility figures are noise
RELIABLE_PER_FOLD = 10
_TRUE, _FALSE = {"true", "1", "yes", "t", "y"}, {"false", "0", "no", "f", "n"}


class TargetError(ValueError):
    """The target cannot support the split and the cross-validation asked for."""

    exit_code = 2  # the command line's exit status
    headline = "INPUT REJECTED, nothing was published."


def positive_labels(frame, profile) -> np.ndarray:
    """The profile's target as 0/1 (1 = the positive value), one entry per row of ``frame``.

    A boolean column matches ``positive: true`` and ``positive: "true"`` alike (also
    yes/no, 1/0, t/f); any other column is compared as text.
    """
    import polars as pl

    column = frame.get_column(profile.target.column)
    positive = profile.target.positive
    if column.dtype == pl.Boolean:
        word = str(positive).strip().lower()
        if word not in _TRUE | _FALSE:
            return np.zeros(len(column), dtype=np.int8)  # matches no row: check_target says so
        return (column == (word in _TRUE)).fill_null(False).to_numpy().astype(np.int8)
    text = column.cast(pl.String)
    wanted = str(positive)
    if wanted.lower() in ("true", "false"):  # a boolean written as text: True/true/TRUE
        wanted, text = wanted.lower(), text.str.to_lowercase()
    return (text == wanted).fill_null(False).to_numpy().astype(np.int8)


MAX_CLASSES = 50  # a multiclass target with more values is refused (a numeric one, likely)
NUMERIC_STRATA = 5  # a numeric target's split is stratified on its quantile bins


def target_labels(frame, profile) -> np.ndarray:
    """The profile's target as the learners read it, one entry per row of ``frame``.

    binary: 0/1 (``positive_labels``); multiclass: the class index, classes in the order of
    ``class_names``; numeric: the value as float64 (nulls as NaN; ``check_target`` refuses
    them).
    """
    import polars as pl

    kind = profile.target.kind
    if kind == "binary":
        return positive_labels(frame, profile)
    column = frame.get_column(profile.target.column)
    if kind == "numeric":
        return column.cast(pl.Float64, strict=False).fill_null(np.nan).to_numpy()
    names = class_names(column)
    text = column.cast(pl.String)
    return text.replace_strict(names, list(range(len(names))), default=-1).to_numpy().astype(
        np.int64)


def class_names(column) -> list[str]:
    """A multiclass target's classes as text, sorted: class index i is ``class_names[i]``."""
    import polars as pl

    return sorted(column.drop_nulls().cast(pl.String).unique().to_list())


def strata(y: np.ndarray, kind: str) -> np.ndarray:
    """What the split stratifies on: the labels, or a numeric target's quantile bin."""
    if kind != "numeric":
        return y
    edges = np.nanquantile(y, np.linspace(0, 1, NUMERIC_STRATA + 1)[1:-1])
    return np.searchsorted(np.unique(edges), y, side="right")


def value_counts(values, top: int = 8) -> str:
    """``'high' 300, 'low' 200, ...``: the most frequent values of a column and their counts."""
    counts = values.value_counts(sort=True)
    shown = ", ".join(f"{v!r} {n}" for v, n in counts.head(top).iter_rows())
    return shown + (f", ... ({len(counts) - top} more)" if len(counts) > top else "")


def check_target(frame, profile, y: np.ndarray, control_fraction: float, folds: int | None,
                 file: str) -> str | None:
    """Refuse, before any training, a target that cannot support the run.

    Checks: a binary target holds at most two values unless ``one_vs_rest`` is declared (else
    its value counts are named); the positive value matches at least one row (else the values
    present are named);
    both classes can be stratified into the control split; the training rows hold at least
    ``folds`` rows of each class for stratified cross-validation.

    Returns:
        None, or a warning when a test fold would hold fewer than ``RELIABLE_PER_FOLD``
        positive (or negative) rows: the utility figures are then unreliable.

    Raises:
        TargetError: naming the file, the target, the counts and the option to change.
    """
    target, positive = profile.target.column, profile.target.positive
    where = f"{file}, target column {target!r}"
    values = frame.get_column(target).drop_nulls()
    if profile.target.kind != "binary":
        return _check_other_target(frame, profile, y, control_fraction, folds, where)
    rows, pos = len(y), int(y.sum())
    neg = rows - pos
    if values.n_unique() > 2 and not profile.target.one_vs_rest:
        raise TargetError(
            f"{where}: {values.n_unique()} distinct values ({value_counts(values)}) but the "
            f"profile declares a binary target (positive {positive!r}), which would silently "
            "read it as positive against everything else (rule: target.kind binary holds at "
            "most two values); declare `kind: multiclass` (no positive) for a label of several "
            "classes or `kind: numeric` for a measured quantity, or set `one_vs_rest: true` "
            "under target: to model the positive value against the rest (stated in the release)")
    if pos == 0:
        seen = frame.get_column(target).drop_nulls().unique().sort().head(10).to_list()
        raise TargetError(f"{where}: the positive value {positive!r} (profile target.positive) "
                          f"matches no row; values present: {seen}")
    if neg == 0:
        raise TargetError(f"{where}: every one of the {rows} rows is positive ({positive!r}); "
                          "a classifier needs both classes")
    held = control_fraction > 0
    if held and min(pos, neg) < 2:
        raise TargetError(
            f"{where}: {min(pos, neg)} {'positive' if pos < neg else 'negative'} row(s) of "
            f"{rows}: the stratified control split (--control-fraction {control_fraction:g}) "
            "needs at least 2 of each class; add rows or run with --control-fraction 0")
    if held and math.ceil(rows * control_fraction) < 2:
        raise TargetError(
            f"{where}: {rows} rows: a control split of {control_fraction:g} holds "
            f"{math.ceil(rows * control_fraction)} row, and a stratified split needs one row of "
            "each class; raise --control-fraction, add rows or run with --control-fraction 0")
    if folds is None:
        return None
    # the stratified split holds about round(count * fraction) of each class out
    train_pos = pos - (round(pos * control_fraction) if held else 0)
    train_neg = neg - (round(neg * control_fraction) if held else 0)
    if train_pos + train_neg < folds or min(train_pos, train_neg) < folds:
        raise TargetError(
            f"{where}: about {train_pos + train_neg} training rows ({train_pos} positive, "
            f"{train_neg} negative) after the control split (--control-fraction "
            f"{control_fraction:g}) cannot fill {folds} stratified folds (--folds {folds}): "
            f"each class needs at least {folds} rows; lower --folds or add rows")
    per_fold = min(train_pos, train_neg) / folds
    if per_fold < RELIABLE_PER_FOLD:
        scarce = "positive" if train_pos < train_neg else "negative"
        return (f"unreliable: about {per_fold:.1f} {scarce} rows per test fold (fewer than "
                f"{RELIABLE_PER_FOLD}); the utility figures vary widely from fold to fold")
    return None


def _check_other_target(frame, profile, y: np.ndarray, control_fraction: float,
                        folds: int | None, where: str) -> str | None:
    """``check_target`` for multiclass and numeric targets (see there)."""
    column = frame.get_column(profile.target.column)
    values = column.drop_nulls()
    kind = profile.target.kind
    if column.null_count():
        raise TargetError(f"{where}: {column.null_count()} of {len(column)} rows have no "
                          f"value (rule: a {kind} target has a value in every row); drop them "
                          "or fill them")
    if kind == "numeric":
        if not column.dtype.is_numeric():
            raise TargetError(f"{where}: declared numeric but holds {column.dtype} values "
                              f"({value_counts(values)}); declare kind multiclass or binary, "
                              "or store the column as numbers")
        if values.n_unique() < 3:
            raise TargetError(f"{where}: declared numeric but holds {values.n_unique()} "
                              f"value(s) ({value_counts(values)}); declare kind binary")
        if folds is not None and len(y) * (1 - control_fraction) < 2 * folds:
            raise TargetError(f"{where}: {len(y)} rows cannot fill {folds} folds (--folds "
                              f"{folds}) after the control split; lower --folds or add rows")
        return None
    classes = values.n_unique()
    if classes < 2:
        raise TargetError(f"{where}: a single value ({value_counts(values)}): a classifier "
                          "needs two classes or more")
    if classes > MAX_CLASSES or (column.dtype.is_float() and classes > 20):
        raise TargetError(f"{where}: {classes} distinct values ({value_counts(values)}) for a "
                          f"multiclass target (rule: at most {MAX_CLASSES} classes, a float "
                          "column at most 20); a measured quantity is `kind: numeric`")
    counts = np.bincount(y, minlength=classes)
    held = control_fraction > 0
    train = counts - (np.round(counts * control_fraction).astype(int) if held else 0)
    need = max(folds or 0, 2 if held else 1)
    scarce = [n for n, c, t in zip(class_names(column), counts, train, strict=True)
              if (held and c < 2) or t < need]
    if scarce:
        raise TargetError(f"{where}: classes {scarce} are too rare ({value_counts(values)}): "
                          f"each class needs at least 2 rows for the stratified control split "
                          f"and {folds or 1} training rows for the folds (--folds {folds}); "
                          "merge rare classes, lower --folds or add rows")
    if folds and train.min() / folds < RELIABLE_PER_FOLD:
        return (f"unreliable: about {train.min() / folds:.1f} rows of the rarest class per test "
                f"fold (fewer than {RELIABLE_PER_FOLD}); the utility figures vary widely")
    return None


@dataclass(frozen=True)
class Duplicates:
    """Repeated rows of a table, counted before the split.

    Attributes:
        rows: rows in the table.
        whole_rows: rows equal in every column (target included) to an earlier row.
        feature_rows: rows equal in every modelled feature column to an earlier row.
        groups: distinct modelled feature rows (the split's groups).
        conflicting_groups: groups whose rows disagree on the target.
    """

    rows: int
    whole_rows: int
    feature_rows: int
    groups: int
    conflicting_groups: int

    @property
    def share(self) -> float:
        """Share of rows that repeat an earlier row's modelled features."""
        return self.feature_rows / self.rows if self.rows else 0.0

    def describe(self) -> str:
        """One line for the console and the report."""
        if not self.feature_rows:
            return f"duplicates: none ({self.rows} rows, every feature row distinct)"
        return (f"duplicates: {self.feature_rows} of {self.rows} rows ({self.share:.1%}) repeat "
                f"an earlier row's modelled features ({self.whole_rows} repeat the whole row, "
                f"target included; {self.conflicting_groups} groups disagree on the target); "
                f"the split keeps each of the {self.groups} distinct feature rows on one side")

    def to_dict(self) -> dict:
        return {"rows": self.rows, "whole_rows": self.whole_rows,
                "feature_rows": self.feature_rows, "share": round(self.share, 6),
                "groups": self.groups, "conflicting_groups": self.conflicting_groups}


def feature_groups(frame, columns: list[str]) -> np.ndarray:
    """Group id per row: rows with equal values in ``columns`` (nulls equal to nulls) share an
    id; ids count distinct rows in order of first appearance, so a table without duplicates
    gets ``0, 1, ..., n - 1``.

    Args:
        frame: a polars DataFrame holding ``columns``.
        columns: the modelled feature columns.

    Returns:
        int64 array of shape (rows,).
    """
    import polars as pl

    if not columns:
        return np.arange(frame.height, dtype=np.int64)
    keyed = frame.select(columns).with_row_index("_row")
    first = keyed.group_by(columns, maintain_order=True).agg(  # nulls group together
        pl.col("_row").first().alias("_first"))
    ids = first.with_row_index("_group").select(columns + ["_group"])
    joined = keyed.join(ids, on=columns, how="left", nulls_equal=True).sort("_row")
    return joined.get_column("_group").to_numpy().astype(np.int64)


def count_duplicates(frame, features: list[str], target: str | None,
                     groups: np.ndarray | None = None) -> Duplicates:
    """Count whole-row and feature-row duplicates of ``frame`` (see ``Duplicates``)."""
    groups = feature_groups(frame, features) if groups is None else groups
    whole = [c for c in [*features, target] if c is not None and c in frame.columns]
    whole_rows = frame.height - frame.select(whole).unique().height
    n_groups = int(groups.max()) + 1 if len(groups) else 0
    conflicting = 0
    if target is not None and target in frame.columns and n_groups < frame.height:
        import polars as pl

        conflicting = (pl.DataFrame({"g": groups, "y": frame.get_column(target)})
                       .group_by("g").agg(pl.col("y").n_unique()).filter(pl.col("y") > 1)
                       .height)
    return Duplicates(frame.height, whole_rows, frame.height - n_groups, n_groups,
                      conflicting)


def split_rows(y: np.ndarray, control_fraction: float, seed: int | None,
               groups: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Return sorted (train, control) row indices, every group on one side.

    Args:
        y: target labels (used for stratification).
        control_fraction: share of groups held out, in [0, 0.5]; 0 keeps every row for
            training. With duplicates the control rows are about this share of the rows.
        seed: the split's seed; None: a DP run's secret split, each group a control group
            with probability ``control_fraction`` on its own coin from OS entropy, so that
            adding or removing a source row changes the training rows by at most that row (a
            seeded shuffle of all rows would move many).
        groups: group id per row (``feature_groups``); None: every row its own group. A
            group is stratified by its most frequent label (ties: the larger label).

    Without duplicates the seeded split is ``train_test_split`` over the rows, as before.
    """
    if not 0.0 <= control_fraction <= 0.5:
        raise ValueError(f"control_fraction must be in [0, 0.5], got {control_fraction}")
    idx = np.arange(len(y))
    if control_fraction == 0:
        return idx, idx[:0]
    groups = idx if groups is None else np.asarray(groups)
    n_groups = int(groups.max()) + 1 if len(groups) else 0
    if seed is None:
        held = np.random.default_rng().random(n_groups) < control_fraction  # secret
        control = held[groups]
        return idx[~control], idx[control]
    from sklearn.model_selection import train_test_split

    labels = _group_labels(np.asarray(y), groups, n_groups)
    _, counts = np.unique(labels, return_counts=True)
    stratify = labels if counts.min() >= 2 else None
    if stratify is None:  # check_target has refused this without duplicates
        print(f"split: a label holds {counts.min()} distinct feature row(s): the control "
              "split is not stratified", flush=True)
    _, held_groups = train_test_split(np.arange(n_groups), test_size=control_fraction,
                                      stratify=stratify, random_state=seed)
    held = np.zeros(n_groups, dtype=bool)
    held[held_groups] = True
    control = held[groups]
    return idx[~control], idx[control]


def _group_labels(y: np.ndarray, groups: np.ndarray, n_groups: int) -> np.ndarray:
    """Each group's most frequent label (ties: the larger); a group of one keeps its own."""
    if n_groups == len(y):
        out = np.empty_like(y)
        out[groups] = y
        return out
    values, codes = np.unique(y, return_inverse=True)
    counts = np.zeros((n_groups, len(values)), dtype=np.int64)
    np.add.at(counts, (groups, codes), 1)
    best = len(values) - 1 - np.argmax(counts[:, ::-1], axis=1)
    return values[best]


def train_control(frame, profile, control_fraction: float,
                  seed: int | None) -> tuple[np.ndarray, np.ndarray]:
    """The run's (train, control) rows of ``frame``: stratified on the profile's target,
    grouped on its modelled features (``split_rows``)."""
    return split_rows(strata(target_labels(frame, profile), profile.target.kind),
                      control_fraction, seed, feature_groups(frame, profile.features))


def split_reported(y: np.ndarray, control_fraction: float, seed: int | None,
                   groups: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`split_rows`, printing the row counts (the split step; its Prefect task is
    ``tasks.data.steps.split``)."""
    train, control = split_rows(y, control_fraction, seed, groups)
    console.step(f"split: {len(train)} training rows, {len(control)} control rows "
          + (f"(seed {seed})" if seed is not None else "(secret per-group coins)")
          + ("" if groups is None or len(groups) == 0 or groups.max() + 1 == len(groups)
             else ", duplicate feature rows kept on one side"))
    return train, control
