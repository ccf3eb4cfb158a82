"""Seeded train / control split, stratified on the target.

Control rows never reach the autoencoders or the release: they are the held-out population that
the privacy attacks compare training rows against. Both index lists keep the file's row order.
"""

from __future__ import annotations

import math

import numpy as np
from prefect import task

# fewer positive (or negative) rows per test fold than this and the utility figures are noise
RELIABLE_PER_FOLD = 10
_TRUE, _FALSE = {"true", "1", "yes", "t", "y"}, {"false", "0", "no", "f", "n"}


class TargetError(ValueError):
    """The target cannot support the split and the cross-validation asked for."""


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


def check_target(frame, profile, y: np.ndarray, control_fraction: float, folds: int | None,
                 file: str) -> str | None:
    """Refuse, before any training, a target that cannot support the run.

    Checks: the positive value matches at least one row (else the values present are named);
    both classes can be stratified into the control split; the training rows hold at least
    ``folds`` rows of each class for stratified cross-validation.

    Returns:
        None, or a warning when a test fold would hold fewer than ``RELIABLE_PER_FOLD``
        positive (or negative) rows: the utility figures are then unreliable.

    Raises:
        TargetError: naming the file, the target, the counts and the option to change.
    """
    target, positive = profile.target.column, profile.target.positive
    rows, pos = len(y), int(y.sum())
    neg = rows - pos
    where = f"{file}, target column {target!r}"
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


def split_rows(y: np.ndarray, control_fraction: float,
               seed: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Return sorted (train, control) row indices.

    Args:
        y: target labels (used for stratification).
        control_fraction: share of rows held out, in [0, 0.5]; 0 keeps every row for training.
        seed: the split's seed; None: a DP run's secret split, each row a control row with
            probability ``control_fraction`` on its own coin from OS entropy, so that adding
            or removing a source row changes the training rows by at most that row (a seeded
            shuffle of all rows would move many).
    """
    if not 0.0 <= control_fraction <= 0.5:
        raise ValueError(f"control_fraction must be in [0, 0.5], got {control_fraction}")
    idx = np.arange(len(y))
    if control_fraction == 0:
        return idx, idx[:0]
    if seed is None:
        control = np.random.default_rng().random(len(y)) < control_fraction  # secret
        return idx[~control], idx[control]
    from sklearn.model_selection import train_test_split

    train, control = train_test_split(idx, test_size=control_fraction, stratify=y,
                                      random_state=seed)
    return np.sort(train), np.sort(control)


@task(name="split")
def split(y: np.ndarray, control_fraction: float,
          seed: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Prefect task wrapper of :func:`split_rows`."""
    train, control = split_rows(y, control_fraction, seed)
    print(f"split: {len(train)} training rows, {len(control)} control rows "
          + (f"(seed {seed})" if seed is not None else "(secret per-row coins)"), flush=True)
    return train, control
