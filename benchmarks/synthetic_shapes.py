#!/usr/bin/env python
"""Benchmark: do synthetic releases keep the table's column shapes and rules, plain and DP?

    python -m benchmarks.synthetic_shapes [--rows 8000] [--epsilon 3] [--epochs 40]
        [--dp-epochs 30] [--tables claims,earnings,hospital] [--work DIR] [--json FILE]
        [--bound-states] [--model vae|gan] [--modes plain,dp]

Three generated tables (seeded numpy; nothing of the bank table):

- ``claims``: a lognormal claim amount with 2 decimals (a right tail to 10^5), a deductible
  code (0, 250, 500, 1000), an integer visit count with 35% zeros, an integer age, a region
  and a binary ``fraud`` label;
- ``earnings``: a wage far above its public lower bound (minimum 50.05 on [0, 20,000]), hours
  worked piling at 40 on [1, 99], a zero-inflated capital gain on [0, 100,000], an education
  level, a binary ``high_income`` label;
- ``hospital``: ``tests/helpers.hospital_table`` with its four constraints (discharge on or
  after admission, length of stay = the difference, ward/floor combinations, cost >= 0).

Each table runs ``cloakflow synthesize`` twice (a subprocess each, its own PREFECT_HOME and
MLflow sqlite store): plain (``--epochs``) and DP end to end (``--dp-epsilon``,
``--dp-epochs``, ``--dp-report full`` so that the evaluation stays in the manifest; every
column has public bounds and declared kinds, integers ``integer: true``). Printed per run and
numeric column: the released dtype against the source's, the share of values outside the
public bounds, the share at each bound (real training rows against synthetic), the distinct
values kept (synthetic / real) and the KS complement (1 - KS statistic, SciPy) against the
training rows; per run: the manifest's quality, exact copies against the control rows' own
rate, TSTR, and each constraint's share of valid synthetic rows.
The training rows are rebuilt from the manifest's split for plain runs; a DP run's split is
secret, so its real figures are against the whole table (the training rows are ~80% of it).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import polars as pl
import yaml
from scipy.stats import ks_2samp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.helpers import hospital_profile, hospital_table  # noqa: E402


def claims(rows: int, seed: int = 0) -> tuple[pl.DataFrame, dict]:
    rng = np.random.default_rng(seed)
    age = rng.integers(18, 91, rows)
    region = rng.choice(["north", "south", "east", "west", "centre"], rows)
    visits = np.where(rng.random(rows) < 0.35, 0, 1 + rng.poisson(2 + age / 30, rows))
    amount = np.round(np.minimum(np.exp(rng.normal(6.5 + 0.2 * np.log1p(visits), 1.1)),
                                 99_999), 2)
    deductible = rng.choice([0, 250, 500, 1000], rows, p=[0.4, 0.3, 0.2, 0.1])
    score = np.log(amount) / 3 + (region == "east") * 0.7 - deductible / 1000 \
        + rng.normal(0, 0.7, rows)
    fraud = np.where(score > np.quantile(score, 0.85), "yes", "no")
    frame = pl.DataFrame({"age": age, "region": region, "visits": visits,
                          "claim_amount": amount, "deductible": deductible, "fraud": fraud})
    profile = {
        "name": "claims", "target": {"column": "fraud", "positive": "yes"},
        "groups": {"person": ["age", "region"], "claim": ["visits", "claim_amount",
                                                           "deductible"]},
        "columns": {"age": "numeric", "region": "categorical", "visits": "numeric",
                    "claim_amount": "numeric", "deductible": "numeric",
                    "fraud": "categorical"},
        "bounds": {"age": {"min": 18, "max": 100, "integer": True},
                   "region": {"categories": ["north", "south", "east", "west", "centre"]},
                   "visits": {"min": 0, "max": 200, "integer": True},
                   "claim_amount": {"min": 0, "max": 100_000},
                   "deductible": {"categories": [0, 250, 500, 1000]},
                   "fraud": {"categories": ["no", "yes"]}}}
    return frame, profile


def earnings(rows: int, seed: int = 0) -> tuple[pl.DataFrame, dict]:
    rng = np.random.default_rng(seed)
    education = rng.choice(["school", "college", "bachelor", "master", "doctorate"], rows,
                           p=[0.3, 0.3, 0.25, 0.1, 0.05])
    level = {"school": 0, "college": 1, "bachelor": 2, "master": 3, "doctorate": 4}
    lv = np.array([level[e] for e in education])
    hours = np.clip(np.where(rng.random(rows) < 0.45, 40, np.round(rng.normal(38, 11, rows))),
                    1, 99).astype(np.int64)
    wage = np.round(50.05 + np.exp(rng.normal(6.0 + 0.25 * lv, 0.6, rows)) * hours / 40, 2)
    gain = np.where(rng.random(rows) < 0.9, 0.0, np.round(rng.lognormal(8, 1.2, rows), 2))
    gain = np.minimum(gain, 99_999.0)
    score = np.log(wage) + 0.4 * lv + (gain > 0) * 0.8 + rng.normal(0, 0.5, rows)
    label = np.where(score > np.quantile(score, 0.75), "yes", "no")
    frame = pl.DataFrame({"education": education, "hours": hours, "wage": wage,
                          "capital_gain": gain, "high_income": label})
    profile = {
        "name": "earnings", "target": {"column": "high_income", "positive": "yes"},
        "groups": {"work": ["education", "hours", "wage", "capital_gain"]},
        "columns": {"education": "categorical", "hours": "numeric", "wage": "numeric",
                    "capital_gain": "numeric", "high_income": "categorical"},
        "bounds": {"education": {"categories": sorted(level)},
                   "hours": {"min": 1, "max": 99, "integer": True},
                   "wage": {"min": 0, "max": 20_000},
                   "capital_gain": {"min": 0, "max": 100_000},
                   "high_income": {"categories": ["no", "yes"]}}}
    return frame, profile


def hospital(rows: int, seed: int = 0) -> tuple[pl.DataFrame, dict]:
    return hospital_table(rows, seed), hospital_profile()


TABLES = {"claims": claims, "earnings": earnings, "hospital": hospital}


def run(table: str, frame: pl.DataFrame, profile: dict, work: Path, extra: list[str]) -> Path:
    """One ``cloakflow synthesize`` subprocess; the release folder."""
    csv, prof = work / f"{table}.csv", work / f"{table}.yaml"
    frame.write_csv(csv)
    prof.write_text(yaml.safe_dump(profile))
    env = {**os.environ, "PREFECT_HOME": tempfile.mkdtemp(dir=work),
           "MLFLOW_TRACKING_URI": f"sqlite:///{work}/mlflow.db",
           "CLOAKFLOW_LEDGER_DIR": str(work / "ledger"), "TF_CPP_MIN_LOG_LEVEL": "2"}
    cmd = [sys.executable, "-m", "cloakflow.flows.cli", "synthesize", profile["name"],
           "--input", str(csv), "--profile", str(prof), "--out", str(work / "releases"),
           "--accept-risk", "benchmark", *extra]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return Path(done.stdout.strip().splitlines()[-1])


def training_rows(frame: pl.DataFrame, profile: dict, manifest: dict) -> pl.DataFrame:
    """The manifest's training rows (plain runs), or the whole table (a DP run's split is
    secret)."""
    split = manifest.get("split", {})
    if manifest.get("dp") is not None or "training_rows" not in split:
        return frame
    from cloakflow.tasks.data.profile import DatasetProfile
    from cloakflow.tasks.data.split import train_control

    prof = DatasetProfile.model_validate(profile)
    train_idx, _ = train_control(frame, prof, split["control_fraction"], split["seed"])
    return frame[np.asarray(train_idx)]


def column_shapes(real: pl.DataFrame, syn: pl.DataFrame, profile: dict) -> list[dict]:
    """Per numeric column with public min/max: dtype, out-of-bounds share, bound shares,
    distinct values kept, KS complement."""
    out = []
    for col, b in profile["bounds"].items():
        if "min" not in b or profile["columns"].get(col) != "numeric" or col not in syn.columns:
            continue
        r = real[col].cast(pl.Float64).drop_nulls().to_numpy()
        s = syn[col].cast(pl.Float64).drop_nulls().to_numpy()
        lo, hi = float(b["min"]), float(b["max"])
        out.append({
            "column": col, "dtype_real": str(real.schema[col]), "dtype_synthetic":
            str(syn.schema[col]), "outside_bounds": float(((s < lo) | (s > hi)).mean()),
            "at_min_real": float((r == lo).mean()), "at_min_synthetic": float((s == lo).mean()),
            "at_max_real": float((r == hi).mean()), "at_max_synthetic": float((s == hi).mean()),
            "fractional_synthetic": float((s != np.round(s)).mean()),
            "distinct_kept": len(np.unique(s)) / max(1, len(np.unique(r))),
            "ks_complement": 1.0 - float(ks_2samp(r, s).statistic)})
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=8000)
    ap.add_argument("--epsilon", type=float, default=3.0)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--dp-epochs", type=int, default=30)
    ap.add_argument("--tables", default="claims,earnings,hospital")
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--bound-states", action="store_true",
                    help="plain runs with `cloakflow synthesize --bound-states`")
    ap.add_argument("--model", choices=["vae", "gan"], default="vae",
                    help="`cloakflow synthesize --model`")
    ap.add_argument("--modes", default="plain,dp", help="plain, dp or both")
    args = ap.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="shapes-"))
    work.mkdir(parents=True, exist_ok=True)
    results = []
    for table in args.tables.split(","):
        frame, profile = TABLES[table](args.rows)
        modes = (("plain", ["--epochs", str(args.epochs)]
                  + (["--bound-states"] if args.bound_states else [])),
                 (f"dp-eps{args.epsilon:g}", [
                     "--dp-epsilon", str(args.epsilon), "--dp-epochs",
                     str(args.dp_epochs), "--dp-report", "full"]))
        for mode, extra in modes:
            if mode.partition("-")[0] not in args.modes.split(","):
                continue
            release = run(table, frame, profile, work, ["--model", args.model, *extra])
            manifest = json.loads((release / "manifest.json").read_text())
            syn = pl.read_parquet(release / "synthetic.parquet")
            real = training_rows(frame, profile, manifest)
            ev = manifest.get("evaluation", {})
            priv = ev.get("privacy", {}) if isinstance(ev, dict) else {}
            row = {"table": table, "mode": mode, "model": args.model, "rows": syn.height,
                   "detection_auc": (ev.get("detection") or {}).get("auc"),
                   "quality": (manifest.get("quality") or {}).get("score"),
                   "exact_copies": {k: (priv.get("distance") or {}).get(k) for k in (
                       "exact_copies", "exact_copies_control")},
                   "tstr_forest": (ev.get("tstr", {}).get("forest") or {}).get("tstr"),
                   "constraints": [(r["constraint"], r["valid_synthetic"]) for r in
                                   manifest.get("constraints", {}).get("rules", [])],
                   "columns": column_shapes(real, syn, profile)}
            results.append(row)
            print(f"\n## {table} / {args.model} {mode}: {syn.height} rows, quality "
                  f"{row['quality']}, TSTR forest {row['tstr_forest']}, detection AUC "
                  f"{row['detection_auc']}, exact copies {row['exact_copies']}")
            for name, share in row["constraints"]:
                print(f"  constraint {name}: {100 * share:.1f}% valid synthetic rows")
            print("  column | dtype real -> synthetic | outside bounds | at min real/syn | "
                  "at max real/syn | fractional | distinct kept | KS complement")
            for c in row["columns"]:
                print(f"  {c['column']} | {c['dtype_real']} -> {c['dtype_synthetic']} | "
                      f"{100 * c['outside_bounds']:.2f}% | {100 * c['at_min_real']:.1f}% / "
                      f"{100 * c['at_min_synthetic']:.1f}% | {100 * c['at_max_real']:.1f}% / "
                      f"{100 * c['at_max_synthetic']:.1f}% | "
                      f"{100 * c['fractional_synthetic']:.1f}% | {c['distinct_kept']:.2f} | "
                      f"{c['ks_complement']:.3f}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
