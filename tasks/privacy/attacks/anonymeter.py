"""anonymeter's singling-out, linkability and inference evaluators (Giomi et al. 2023), run on
the decoded release as synthetic records (Prefect-free)."""

from __future__ import annotations

import time
import warnings
from typing import Any

import polars as pl

from cloakflow.tasks.data.profile import DatasetProfile


def run_anonymeter(ori: pl.DataFrame, syn: pl.DataFrame, control: pl.DataFrame,
                   profile: DatasetProfile, seed: int) -> dict:
    """anonymeter's three GDPR-style risks (value and 95% confidence interval).

    Args:
        ori, control: records of training and control rows (source values); syn: decoded
            released rows. They are compared in one type per column (``comparable``).

    Raises:
        KindError: a column holds numbers on one side and text on another; it names them.
    """
    import logging

    from anonymeter.evaluators import (
        InferenceEvaluator,
        LinkabilityEvaluator,
        SinglingOutEvaluator,
    )

    logging.getLogger("anonymeter").setLevel(logging.ERROR)
    n = min(profile.privacy.anonymeter_attacks, len(control), len(ori))
    ori, syn, control = comparable(ori, syn, control)
    o, s, c = ori.to_pandas(), syn.to_pandas(), control.to_pandas()
    qis = list(profile.quasi_identifiers)
    others = [col for col in ori.columns if col not in qis]

    def risk(ev, **kw) -> dict:
        # anonymeter warns (on stderr) when an attack does no better than its baseline; the
        # report says it instead, in words a data owner can act on
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            r = ev.risk(**kw)
            res = ev.results()
        out = {"risk": float(r.value), "ci": [float(r.ci[0]), float(r.ci[1])],
               "attack_rate": float(res.attack_rate.value),
               "baseline_rate": float(res.baseline_rate.value),
               "control_rate": (None if res.control_rate is None
                                else float(res.control_rate.value))}
        if any("as good or worse as baseline" in str(w.message) for w in caught):
            out["note"] = ("the attack did no better than guessing from the baseline: its "
                           "risk reads as none found, not as proof of safety")
        return out

    out: dict[str, Any] = {"attacks": n, "seconds": {}}
    if n < profile.privacy.anonymeter_attacks:
        out["attacks_note"] = (f"{n} attacks per evaluator: the profile asks for "
                               f"{profile.privacy.anonymeter_attacks}, capped by the "
                               f"{len(control)} control rows and {len(ori)} training rows")
    t = time.perf_counter()
    so = SinglingOutEvaluator(ori=o, syn=s, control=c, n_attacks=n, n_cols=3, seed=seed,
                              max_attempts=20 * n).evaluate(mode="multivariate")
    queries = len(so.queries())
    out["singling_out"] = {**risk(so), "queries": queries, "mode": "multivariate, 3 columns"}
    if queries < n:  # anonymeter found fewer singling-out queries than it was asked for
        out["singling_out"]["note"] = (f"{queries} of {n} queries built: inconclusive (the "
                                       "risk and its interval rest on fewer attacks)")
    out["seconds"]["singling_out"] = round(time.perf_counter() - t, 2)
    t = time.perf_counter()
    if qis and others:
        lk = LinkabilityEvaluator(ori=o, syn=s, control=c, n_attacks=n, aux_cols=(qis, others),
                                  n_neighbors=1).evaluate(n_jobs=1)
        out["linkability"] = {**risk(lk), "aux_cols": [qis, others]}
    out["seconds"]["linkability"] = round(time.perf_counter() - t, 2)
    t = time.perf_counter()
    out["inference"] = {}
    for secret in (c for c in profile.privacy.sensitive if c in ori.columns):
        aux = [q for q in qis if q != secret] or [col for col in others if col != secret]
        ev = InferenceEvaluator(ori=o, syn=s, control=c, aux_cols=aux, secret=secret,
                                regression=profile_kind(ori, secret) == "numeric",
                                n_attacks=n).evaluate(n_jobs=1)
        out["inference"][secret] = {**risk(ev), "aux_cols": aux}
    out["seconds"]["inference"] = round(time.perf_counter() - t, 2)
    return out


def comparable(ori: pl.DataFrame, syn: pl.DataFrame,
               control: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """The three tables in the types anonymeter compares, the same on every side: decimals
    and numbers typed differently across them as Float64 (``kinds.common_types``), dates and
    datetimes as numbers (``dates_as_numbers``). anonymeter sorts columns into numbers and
    categories by their pandas type and refuses tables that differ.

    Raises:
        KindError: a column holds numbers on one side and something else on another.
    """
    from cloakflow.tasks.data.kinds import common_types

    same = common_types({"training rows": ori, "released rows": syn, "control rows": control})
    return tuple(dates_as_numbers(f) for f in same.values())  # type: ignore[return-value]


def dates_as_numbers(frame: pl.DataFrame) -> pl.DataFrame:
    """Date and datetime columns as numbers (days / seconds since the epoch): anonymeter
    measures distances on numbers and would compare timestamps as categories."""
    from cloakflow.tasks.data.kinds import infer_kind, to_numbers

    return frame.with_columns(
        pl.Series(name, to_numbers(frame.get_column(name), kind))
        for name, kind in ((n, infer_kind(t)) for n, t in frame.schema.items())
        if kind in ("date", "datetime"))


def profile_kind(frame: pl.DataFrame, column: str) -> str:
    return "numeric" if frame.schema[column].is_numeric() else "categorical"
