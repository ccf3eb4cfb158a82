#!/usr/bin/env python
"""Check a release's ``quality`` (manifest.json) against SDMetrics' QualityReport on the same rows.

``cloakflow synthesize`` states in its manifest the SDMetrics-style quality of every published
synthetic row against the training rows (``tasks.evaluation.fidelity.quality_report``, a SciPy
re-implementation of SDMetrics 0.32 QualityReport). SDMetrics needs pandas < 3 and cannot be
installed beside the project, so the check runs in two steps, each in its own environment:

1. ``export`` (project venv) rebuilds the training rows exactly as the flow did and writes
   ``WORKDIR/train.parquet`` (the columns of ``synthetic.parquet``), ``WORKDIR/metadata.json``
   (SDMetrics single-table metadata) and ``WORKDIR/ours.json`` (the manifest's quality, our
   figure recomputed on the exported rows, and our per-column and per-pair scores)::

       .venv/bin/python -m benchmarks.quality_check export --release DIR \\
           --input CSV_OR_PARQUET [--profile P] --out WORKDIR

   Training rows: the profile is ``--profile`` if given, else the one the manifest states;
   the table is read with ``tasks.data.ingest.read_table`` and split with
   ``tasks.data.split.train_control(frame, profile, split.control_fraction, split.seed)``
   (the manifest's); the training rows are ``frame[train_idx]`` (those with the release's
   ``--condition`` value where it fixed one, as the evaluation compares with). A DP release
   draws its split from OS entropy (not the seed), so its training rows cannot be rebuilt: it
   is refused.

   Metadata rule (from the preprocessing kinds: ``TablePreprocessor`` fitted on the training
   rows with the flow's options): a column in ``tasks.release.synthetic.exact_discrete(pre)``
   (a numeric column modelled as categories of its exact training values) is ``categorical``;
   else kind ``boolean`` is ``boolean``, ``categorical`` is ``categorical``, ``date`` and
   ``datetime`` are ``datetime``, ``numeric`` is ``numerical``. These are the columns our
   quality scores as categories (``quality_report(..., categorical=exact_discrete(pre))``) and
   as numbers.

2. ``score`` (an SDMetrics venv; this mode does not import cloakflow) runs SDMetrics'
   ``QualityReport`` on ``synthetic.parquet`` against ``train.parquet`` with that metadata,
   prints our score, SDMetrics', their difference and the per-property, per-column and
   per-pair differences, and writes ``WORKDIR/sdmetrics.json``::

       python3.11 -m venv /tmp/sdv-env
       /tmp/sdv-env/bin/pip install "sdmetrics==0.32.*" polars pyarrow
       /tmp/sdv-env/bin/python benchmarks/quality_check.py score --work WORKDIR --release DIR

A third mode, ``stored`` (SDMetrics venv), scores the seeded generated tables of
``generated_tables`` (plain numpy/polars, shared with the unit test
``tests/unit/tasks/evaluation/test_quality_sdmetrics.py``, which stores the figures it
prints)::

    /tmp/sdv-env/bin/python benchmarks/quality_check.py stored [--out FILE.json]

Types, the same on both sides (``sdmetrics_frames``): both tables of a pair are brought to one
type per column as the flow's evaluation does (``kinds.common_types``: decimals as Float64,
a number typed differently on the two sides as Float64), categorical/enum columns as text,
zone-aware datetimes as naive UTC, dates as ``Datetime("ms")``; then ``polars.to_pandas()``:
numbers as float64/int64 (an integer column with nulls as float64 with NaN), text and
booleans with nulls as objects (None a null), dates and datetimes as ``datetime64[ms|us|ns]``
in their time unit, which SDMetrics converts to integers of that unit (``pd.to_numeric``).

SDMetrics' ContingencySimilarity subsamples tables of more than 50,000 rows at random
(``num_rows_subsample``); on such tables the two figures are not expected to agree to 1e-6.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path

import numpy as np
import polars as pl

TOLERANCE = 1e-6


# ----------------------------------------------------------------------------- shared: types
def sdmetrics_frames(real: pl.DataFrame, synthetic: pl.DataFrame,
                     columns: list[str]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Both tables on ``columns`` with one type per column, as the flow's evaluation reads them
    and as SDMetrics is fed them (see the module docstring)."""
    real, synthetic = real.select(columns), synthetic.select(columns)
    casts = {}
    for name in columns:
        a, b = real.schema[name], synthetic.schema[name]
        if isinstance(a, pl.Decimal) or isinstance(b, pl.Decimal) or (
                a != b and a.is_numeric() and b.is_numeric()):
            casts[name] = pl.Float64
        elif isinstance(a, (pl.Categorical, pl.Enum)) or isinstance(b, (pl.Categorical, pl.Enum)):
            casts[name] = pl.String
        elif a == pl.Date and b == pl.Date:
            casts[name] = pl.Datetime("ms")

    def fix(frame: pl.DataFrame) -> pl.DataFrame:
        frame = frame.with_columns(pl.col(c).cast(t) for c, t in casts.items())
        zoned = [c for c, t in frame.schema.items()
                 if isinstance(t, pl.Datetime) and t.time_zone is not None]
        return frame.with_columns(pl.col(c).dt.convert_time_zone("UTC").dt.replace_time_zone(None)
                                  for c in zoned)

    return fix(real), fix(synthetic)


def to_pandas(frame: pl.DataFrame):
    """``polars.to_pandas()`` (pyarrow), the frame SDMetrics reads."""
    return frame.to_pandas()


# ------------------------------------------------------------------ shared: generated tables
GENERATED_CATEGORICAL = ("visits",)  # an integer code scored as categories


def _generated(rng: np.random.Generator, rows: int, shift: float, extra: bool) -> pl.DataFrame:
    """One table of the generated family: ``shift`` moves its distributions, ``extra`` adds a
    segment value the other table lacks."""
    base = rng.standard_normal(rows)
    age = np.clip(np.round(45 + 12 * base + 3 * rng.standard_normal(rows) + 4 * shift), 18, 90)
    amount = np.round(np.exp(3.0 + 0.6 * base + 0.3 * rng.standard_normal(rows) + shift), 2)
    visits = np.clip(np.round(2 + 1.5 * base + rng.standard_normal(rows)), 0, 6).astype(np.int64)
    labels = np.array(["basic", "plus", "premium"] + (["trial"] if extra else []))
    level = np.clip(np.digitize(base + 0.5 * rng.standard_normal(rows), [-0.6, 0.7])
                    + (rng.random(rows) < 0.1 * extra).astype(int) * 3, 0, len(labels) - 1)
    segment = labels[level].astype(object)
    segment[rng.random(rows) < 0.05] = None
    member = (level >= 1) ^ (rng.random(rows) < 0.15 + 0.1 * shift)
    member = member.astype(object)
    member[rng.random(rows) < 0.04] = None
    amount_nulls = rng.random(rows) < 0.05
    days = np.round(3000 - 40 * (age - 45) + 200 * rng.standard_normal(rows)).astype(np.int64)
    joined = [dt.date(2010, 1, 1) + dt.timedelta(days=int(d)) for d in days]
    seconds = days * 86400 + rng.integers(0, 400 * 86400, rows)
    micros = rng.integers(0, 1_000_000, rows)
    last_seen = [dt.datetime(2010, 1, 1) + dt.timedelta(seconds=int(s), microseconds=int(u))
                 for s, u in zip(seconds, micros, strict=True)]
    last_seen = [None if rng.random() < 0.03 else v for v in last_seen]
    # a few seconds apart at millisecond resolution: sub-second parts decide its shape
    clicked = [dt.datetime(2024, 5, 1, 12) + dt.timedelta(milliseconds=int(v))
               for v in rng.uniform(0, 3000, rows) + 1300 * shift]
    noise = np.round(rng.uniform(0, 100, rows), 3)  # independent of the rest: pairs below
    channel = rng.choice(np.array(["web", "shop", "phone"]), rows)  # the thresholds
    return pl.DataFrame({
        "age": pl.Series(age.astype(np.int64), dtype=pl.Int64),
        "amount": pl.Series(np.where(amount_nulls, np.nan, amount)).fill_nan(None),
        "visits": pl.Series(visits, dtype=pl.Int64),
        "segment": pl.Series(list(segment), dtype=pl.String),
        "member": pl.Series(list(member), dtype=pl.Boolean),
        "joined": pl.Series(joined, dtype=pl.Date),
        "last_seen": pl.Series(last_seen, dtype=pl.Datetime("us")),
        "clicked": pl.Series(clicked, dtype=pl.Datetime("ms")),
        "noise": pl.Series(noise, dtype=pl.Float64),
        "channel": pl.Series(channel.tolist(), dtype=pl.String),
    })


def generated_tables(seed: int = 20261206, rows: int = 300,
                     synthetic_rows: int = 400) -> tuple[pl.DataFrame, pl.DataFrame, dict]:
    """Seeded real and synthetic tables (numbers with nulls, an integer code, text with nulls
    and a value only the synthetic rows have, booleans with nulls, dates, datetimes with
    microseconds and nulls, datetimes a few seconds apart in milliseconds, independent columns
    whose pairs fall below the thresholds), and their SDMetrics metadata. The synthetic
    ``visits`` are Float64 (a DP release's numbers) against the real Int64."""
    rng = np.random.default_rng(seed)
    real = _generated(rng, rows, 0.0, extra=False)
    synthetic = _generated(rng, synthetic_rows, 0.3, extra=True)
    synthetic = synthetic.with_columns(pl.col("visits").cast(pl.Float64))
    metadata = {"columns": {"age": {"sdtype": "numerical"}, "amount": {"sdtype": "numerical"},
                            "visits": {"sdtype": "categorical"},
                            "segment": {"sdtype": "categorical"},
                            "member": {"sdtype": "boolean"}, "joined": {"sdtype": "datetime"},
                            "last_seen": {"sdtype": "datetime"},
                            "clicked": {"sdtype": "datetime"},
                            "noise": {"sdtype": "numerical"},
                            "channel": {"sdtype": "categorical"}}}
    return real, synthetic, metadata


# ------------------------------------------------------------------------- SDMetrics side
def sdmetrics_quality(real: pl.DataFrame, synthetic: pl.DataFrame, metadata: dict) -> dict:
    """SDMetrics' QualityReport of ``synthetic`` against ``real`` (import SDMetrics here only:
    the project venv has none)."""
    import warnings
    from importlib.metadata import version

    columns = list(metadata["columns"])
    real, synthetic = sdmetrics_frames(real, synthetic, columns)
    with warnings.catch_warnings():  # the single-table report is deprecated in name only
        warnings.simplefilter("ignore", FutureWarning)
        from sdmetrics.reports.single_table import QualityReport

        report = QualityReport()
        report.generate(to_pandas(real), to_pandas(synthetic), metadata, verbose=False)
    props = report.get_properties().set_index("Property")["Score"]
    shapes = report.get_details("Column Shapes")
    pairs = report.get_details("Column Pair Trends")
    errors = {}
    for frame, key in ((shapes, ["Column"]), (pairs, ["Column 1", "Column 2"])):
        if "Error" in frame.columns:
            for _, row in frame[frame["Error"].notna()].iterrows():
                errors["|".join(row[k] for k in key)] = row["Error"]
    counted = pairs[pairs["Meets Threshold?"].astype("boolean").fillna(False)]

    def num(v) -> float | None:
        return None if v is None or np.isnan(v) else float(v)

    return {"score": num(report.get_score()),
            "column_shapes": num(props["Column Shapes"]),
            "column_pair_trends": num(props["Column Pair Trends"]),
            "shapes": {r["Column"]: num(r["Score"]) for _, r in shapes.iterrows()},
            "pairs": {f"{r['Column 1']}|{r['Column 2']}": num(r["Score"])
                      for _, r in counted.iterrows()},
            "pairs_below_threshold": int(len(pairs) - len(counted)),
            "errors": errors, "rows": {"real": real.height, "synthetic": synthetic.height},
            "sdmetrics_version": version("sdmetrics"), "pandas_version": version("pandas"),
            "numpy_version": version("numpy"), "scipy_version": version("scipy"),
            "polars_version": version("polars")}


def compare(ours: dict, theirs: dict) -> float:
    """Print both figures, their differences (overall, per property, per column, per pair) and
    return the largest absolute difference."""
    worst = 0.0
    print(f"{'':22} {'ours':>14} {'SDMetrics':>14} {'difference':>12}")
    for key in ("score", "column_shapes", "column_pair_trends"):
        a, b = ours.get(key), theirs.get(key)
        d = None if a is None or b is None else a - b
        worst = max(worst, abs(d) if d is not None else (0.0 if a is b else float("inf")))
        print(f"{key:22} {_f(a):>14} {_f(b):>14} {_f(d, '+.2e'):>12}")
    for part in ("shapes", "pairs"):
        mine, other = ours.get(part), theirs.get(part, {})
        if mine is None:
            continue
        only = sorted(set(mine) ^ set(other))
        if only:
            print(f"{part}: scored on one side only: "
                  + ", ".join(f"{k} ({'ours' if k in mine else 'SDMetrics'})" for k in only))
        diffs = sorted(((abs(mine[k] - other[k]), k) for k in set(mine) & set(other)
                        if mine[k] is not None and other[k] is not None), reverse=True)
        off = [(d, k) for d, k in diffs if d > TOLERANCE]
        print(f"{part}: {len(diffs)} compared, largest difference "
              f"{diffs[0][0] if diffs else 0:.2e}"
              + (": " + ", ".join(f"{k} ours {mine[k]:.6f} vs {other[k]:.6f}"
                                  for _, k in off[:8]) if off else ""))
    if theirs.get("errors"):
        print(f"SDMetrics errors (not scored): {theirs['errors']}")
    return worst


def _f(v, spec: str = ".10f") -> str:
    return "-" if v is None else format(v, spec)


def score(work: Path, release: Path) -> None:
    real = pl.read_parquet(work / "train.parquet")
    synthetic = pl.read_parquet(release / "synthetic.parquet")
    metadata = json.loads((work / "metadata.json").read_text())
    ours = json.loads((work / "ours.json").read_text())
    theirs = sdmetrics_quality(real, synthetic, metadata)
    print(f"{release}: {theirs['rows']['synthetic']} synthetic rows against "
          f"{theirs['rows']['real']} training rows; sdmetrics {theirs['sdmetrics_version']}, "
          f"pandas {theirs['pandas_version']}")
    manifest = ours["manifest"]
    print("manifest quality against SDMetrics:")
    worst = compare({**manifest, "shapes": ours.get("shapes"), "pairs": ours.get("pairs")},
                    theirs)
    recomputed = ours.get("recomputed", {})
    if any(abs((recomputed.get(k) or 0) - (manifest.get(k) or 0)) > 1e-12
           for k in ("score", "column_shapes", "column_pair_trends")):
        print(f"note: our quality recomputed on the exported rows {recomputed} differs from the "
              "manifest's")
    verdict = "agree" if worst <= TOLERANCE else "DIFFER"
    print(f"largest difference {worst:.3e}: {verdict} (tolerance {TOLERANCE:g})")
    out = {"release": str(release), "ours": manifest, "sdmetrics": theirs,
           "largest_difference": worst, "agree": worst <= TOLERANCE}
    (work / "sdmetrics.json").write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {work / 'sdmetrics.json'}")


def stored(out: Path | None) -> None:
    real, synthetic, metadata = generated_tables()
    theirs = sdmetrics_quality(real, synthetic, metadata)
    keep = {k: theirs[k] for k in ("score", "column_shapes", "column_pair_trends", "shapes",
                                   "pairs", "pairs_below_threshold", "errors",
                                   "sdmetrics_version")}
    text = json.dumps(keep, indent=2)
    print(text)
    if out is not None:
        out.write_text(text + "\n")


# ------------------------------------------------------------------------- project side
def export(release: Path, input_path: Path, profile_path: str | None, out: Path) -> None:
    """Training rows, metadata and our figures of a release (project venv only)."""
    from cloakflow.tasks.data.ingest import read_table
    from cloakflow.tasks.data.kinds import category_text, common_types
    from cloakflow.tasks.data.preprocess import DISCRETE_LEVELS, TablePreprocessor
    from cloakflow.tasks.data.profile import DatasetProfile, load_profile
    from cloakflow.tasks.data.split import train_control
    from cloakflow.tasks.evaluation import fidelity
    from cloakflow.tasks.release.synthetic import exact_discrete

    manifest = json.loads((release / "manifest.json").read_text())
    if manifest.get("dp"):
        sys.exit(f"{release}: a DP release: its control split was drawn from OS entropy, not "
                 "the seed, so its training rows cannot be rebuilt")
    quality = manifest.get("quality")
    if not isinstance(quality, dict):
        sys.exit(f"{release}: the manifest states no quality figures ({quality!r})")
    if profile_path is not None:
        profile = load_profile(profile_path)
    else:
        raw = {k: v for k, v in manifest["profile"].items()
               if k != "bounds_omitted_measured_on_data"}
        profile = DatasetProfile.model_validate(raw)
    frame = read_table(input_path, profile)
    split = manifest["split"]
    train_idx, _ = train_control(frame, profile, split["control_fraction"], split["seed"])
    train = frame[train_idx]
    if split.get("training_rows") not in (None, train.height):
        sys.exit(f"rebuilt {train.height} training rows, the manifest states "
                 f"{split['training_rows']}: not the release's input or profile")
    pre = TablePreprocessor(profile, public_bounds=bool(manifest.get("federation")),
                            numeric="quantile", with_target=True, missing_state=True,
                            discrete_levels=DISCRETE_LEVELS).fit(train, input_path.name)
    discrete = exact_discrete(pre)
    condition = manifest.get("condition") or {}
    if condition.get("value") is not None:
        keep = category_text(train.get_column(condition["column"])) == condition["value"]
        train = train.filter(keep)
    synthetic = pl.read_parquet(release / "synthetic.parquet")
    columns = synthetic.columns
    out.mkdir(parents=True, exist_ok=True)
    train.select(columns).write_parquet(out / "train.parquet")
    kinds = {s.name: s.kind for s in pre.specs if not s.missing_of}
    sdtype = {"boolean": "boolean", "categorical": "categorical", "date": "datetime",
              "datetime": "datetime", "numeric": "numerical"}
    metadata = {"columns": {c: {"sdtype": "categorical" if c in discrete
                                else sdtype[kinds[c]]} for c in columns}}
    (out / "metadata.json").write_text(json.dumps(metadata, indent=2) + "\n")

    # our figures on the exported rows, in the types the flow's evaluation read them
    t, s = common_types({"training rows": train.select(columns),
                         "synthetic rows": synthetic}).values()
    recomputed = fidelity.quality_report(t, s, discrete)
    cols = {c: fidelity._score_column(t.get_column(c), s.get_column(c), c in discrete)
            for c in columns}
    shapes = {c: fidelity._shape(col) for c, col in cols.items()}
    pairs = {}
    for i, a in enumerate(columns):
        for b in columns[i + 1:]:
            trend = fidelity._pair_trend(cols[a], cols[b])
            if trend is not None and trend[1]:
                pairs[f"{a}|{b}"] = trend[0]
    keys = ("score", "column_shapes", "column_pair_trends")
    ours = {"manifest": {k: quality[k] for k in keys},
            "recomputed": {k: recomputed[k] for k in keys},
            "shapes": {c: v for c, v in shapes.items() if v is not None}, "pairs": pairs,
            "categorical": list(discrete), "training_rows": train.height}
    (out / "ours.json").write_text(json.dumps(ours, indent=2) + "\n")
    print(f"{release.name}: {train.height} training rows, {synthetic.height} synthetic rows; "
          f"categorical numerics: {', '.join(discrete) or 'none'}")
    print(f"manifest quality {quality['score']}, recomputed {recomputed['score']}")
    print(f"wrote {out}/train.parquet, metadata.json, ours.json")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    e = sub.add_parser("export", help="project venv: training rows, metadata, our figures")
    e.add_argument("--release", type=Path, required=True)
    e.add_argument("--input", type=Path, required=True)
    e.add_argument("--profile")
    e.add_argument("--out", type=Path, required=True)
    s = sub.add_parser("score", help="SDMetrics venv: SDMetrics' QualityReport against ours")
    s.add_argument("--work", type=Path, required=True)
    s.add_argument("--release", type=Path, required=True)
    t = sub.add_parser("stored", help="SDMetrics venv: the generated tables' figures")
    t.add_argument("--out", type=Path)
    p = sub.add_parser("tables", help="SDMetrics venv: synthetic tables against their real "
                                      "rows (NAME.parquet, NAME.train.parquet, "
                                      "NAME.metadata.json, as vae_synthesis --save writes)")
    p.add_argument("synthetic", type=Path, nargs="+")
    p.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.mode == "tables":
        for path in args.synthetic:
            stem = path.name.removesuffix(".parquet")
            metadata = json.loads((path.parent / f"{stem}.metadata.json").read_text())
            got = sdmetrics_quality(pl.read_parquet(path.parent / f"{stem}.train.parquet"),
                                    pl.read_parquet(path), metadata)
            print(f"{stem}: SDMetrics {got['sdmetrics_version']} quality {got['score']:.4f} "
                  f"(column shapes {got['column_shapes']:.4f}, column pair trends "
                  f"{got['column_pair_trends']:.4f})", flush=True)
            if args.json:
                with open(args.json, "a") as fh:
                    fh.write(json.dumps({"table": stem, **got}) + "\n")
    elif args.mode == "export":
        export(args.release, args.input, args.profile, args.out)
    elif args.mode == "score":
        score(args.work, args.release)
    else:
        stored(args.out)


if __name__ == "__main__":
    main()
