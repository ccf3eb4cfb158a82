#!/usr/bin/env python
"""Benchmark: the tutorial autoencoder against the per-kind one (``--architecture``), end to end.

    python -m benchmarks.architectures [--tables bank,skewed,levels,mixed] [--seeds 3]
        [--folds K] [--epochs N] [--skip-attacks-for-generated] [--work /tmp/arch-bench]
        [--temporary-server]

Writes three seeded synthetic tables (20,000 rows each) with their profiles into --work:

- ``skewed``: lognormal and Pareto-like numerics; the target depends mainly on one Pareto-like
  amount (``pay_amount``) that sits in a group of three numerics (``pay_*``);
- ``levels``: 120- and 40-level categoricals and a few numerics; the target is an interaction
  of the 40-level ``prod_code`` with the numeric ``num_price``;
- ``mixed``: booleans, a date, an integer-coded categorical declared ``categorical``; the target
  depends on one numeric (``m_income``).

Then runs the real CLI (``cloakflow run``) once per (table, architecture, seed), one run at a
time, against one Prefect server started here (``--temporary-server``: each run starts its own),
with ``--no-cache`` so that every run does the work. The bank table runs as the named
``bank-marketing`` dataset on ``$CLOAKFLOW_DATA_DIR/bank-additional-full.csv``.

Reads each release's manifest.json and prints per run and, per table and architecture, medians
over seeds: test ROC AUC per view (ORIGINAL, ENCODED, GROUP_ENCODED), the gap ORIGINAL minus each
view, the largest ``dead_outputs`` over the models, the p = 1% inversion gain and R² the gate uses
(``privacy.policy.measured``) when attacks ran, and the flow's wall time with the ratio
kinds / tutorial. Every run is appended to WORK/runs.jsonl; results-<tables>.md and .json are
written under --work.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl
import yaml

REPO = Path(__file__).resolve().parents[1]
VIEWS = ["ORIGINAL", "ENCODED", "GROUP_ENCODED"]
ARCHS = ["tutorial", "kinds"]
GENERATED = ["skewed", "levels", "mixed"]
DATA_DIR = os.environ.get("CLOAKFLOW_DATA_DIR", "/work/shared/data")
ROWS = 20_000


# ---------------------------------------------------------------- synthetic tables


def _label(rng: np.random.Generator, logit: np.ndarray) -> list[str]:
    p = 1.0 / (1.0 + np.exp(-logit))
    return np.where(rng.random(len(p)) < p, "yes", "no").tolist()


def _privacy() -> dict:
    return {"sensitive": [], "known_fractions": [0.001, 0.01, 0.1], "anonymeter_attacks": 300}


def table_skewed(rng: np.random.Generator, n: int) -> tuple[pl.DataFrame, dict]:
    """Heavy tails; the target rides on the Pareto-like ``pay_amount`` (group ``pay``)."""
    wage = rng.lognormal(mean=10.3, sigma=0.8, size=n)                  # lognormal wage
    amount = (rng.pareto(1.3, size=n) + 1.0) * 100.0                    # Pareto tail, alpha 1.3
    bonus = wage * rng.lognormal(-2.0, 1.0, size=n)                     # skewed, tied to wage
    age = np.clip(rng.normal(42, 12, size=n), 18, 90).round().astype(np.int64)
    tenure = rng.exponential(6.0, size=n).round(2)
    segment = rng.choice(["a", "b", "c", "d", "e"], size=n, p=[.4, .25, .15, .12, .08])
    balance = (rng.standard_t(2.5, size=n) * 3000 + 1500).round(2)      # heavy tails both ways
    acct_type = rng.choice(["basic", "plus", "premium"], size=n, p=[.6, .3, .1])
    # mainly log(amount): the signal lives in the bulk, which min-max scaling squashes near 0
    z = (np.log(amount) - np.median(np.log(amount))) / np.log(amount).std()
    logit = 2.2 * z + 0.25 * (segment == "e") + 0.1 * (age - 42) / 12 - 1.6
    frame = pl.DataFrame({
        "pay_wage": wage.round(2), "pay_amount": amount.round(2), "pay_bonus": bonus.round(2),
        "cust_age": age, "cust_tenure": tenure, "cust_segment": segment,
        "acct_balance": balance, "acct_type": acct_type, "y": _label(rng, logit)})
    profile = {
        "name": "bench-skewed", "format": "csv", "separator": ",",
        "target": {"column": "y", "positive": "yes"},
        "groups": {"pay": ["pay_wage", "pay_amount", "pay_bonus"],
                   "cust": ["cust_age", "cust_tenure", "cust_segment"],
                   "acct": ["acct_balance", "acct_type"]},
        "columns": {"pay_wage": "numeric", "pay_amount": "numeric", "pay_bonus": "numeric",
                    "cust_age": "numeric", "cust_tenure": "numeric",
                    "cust_segment": "categorical", "acct_balance": "numeric",
                    "acct_type": "categorical", "y": "categorical"},
        "privacy": _privacy()}
    return frame, profile


def table_levels(rng: np.random.Generator, n: int) -> tuple[pl.DataFrame, dict]:
    """Many-level categoricals; the target is ``prod_code`` x ``num_price``."""
    city_w = rng.dirichlet(np.full(120, 0.7))
    city = rng.choice([f"c{i:03d}" for i in range(120)], size=n, p=city_w)
    region = rng.choice([f"r{i}" for i in range(8)], size=n)
    code_idx = rng.choice(40, size=n, p=rng.dirichlet(np.full(40, 2.0)))
    code = np.array([f"p{i:02d}" for i in range(40)])[code_idx]
    channel = rng.choice(["web", "shop", "phone", "partner"], size=n, p=[.5, .3, .15, .05])
    price = rng.lognormal(3.5, 0.6, size=n).round(2)
    qty = rng.poisson(3.0, size=n).astype(np.int64)
    score = rng.normal(0, 1, size=n).round(4)
    sign = rng.choice([-1.0, 1.0], size=40)                             # per code: slope sign
    zp = (np.log(price) - 3.5) / 0.6
    logit = 2.5 * sign[code_idx] * zp + 0.15 * score - 1.5
    frame = pl.DataFrame({
        "geo_city": city, "geo_region": region, "prod_code": code, "prod_channel": channel,
        "num_price": price, "num_qty": qty, "num_score": score, "y": _label(rng, logit)})
    profile = {
        "name": "bench-levels", "format": "csv", "separator": ",",
        "target": {"column": "y", "positive": "yes"},
        "groups": {"geo": ["geo_city", "geo_region"], "prod": ["prod_code", "prod_channel"],
                   "num": ["num_price", "num_qty", "num_score"]},
        "columns": {"geo_city": "categorical", "geo_region": "categorical",
                    "prod_code": "categorical", "prod_channel": "categorical",
                    "num_price": "numeric", "num_qty": "numeric", "num_score": "numeric",
                    "y": "categorical"},
        "privacy": _privacy()}
    return frame, profile


def table_mixed(rng: np.random.Generator, n: int) -> tuple[pl.DataFrame, dict]:
    """Booleans, a date, integer codes declared categorical; the target rides on ``m_income``."""
    active = rng.random(n) < 0.7
    vip = rng.random(n) < 0.1
    start = np.datetime64("2015-01-01")
    days = rng.integers(0, 3650, size=n)
    evt_date = (start + days.astype("timedelta64[D]")).astype("datetime64[D]").astype(str)
    evt_code = rng.choice([101, 102, 205, 310, 311, 400, 512, 600, 701, 999], size=n)
    evt_count = rng.poisson(4.0, size=n).astype(np.int64)
    income = rng.gamma(4.0, 12_000.0, size=n).round(0)
    visits = rng.negative_binomial(3, 0.3, size=n).astype(np.int64)
    z = (income - income.mean()) / income.std()
    logit = 2.0 * z + 0.2 * vip - 1.5
    frame = pl.DataFrame({
        "flag_active": active, "flag_vip": vip, "evt_date": evt_date, "evt_code": evt_code,
        "evt_count": evt_count, "m_income": income, "m_visits": visits,
        "y": _label(rng, logit)})
    profile = {
        "name": "bench-mixed", "format": "csv", "separator": ",",
        "target": {"column": "y", "positive": "yes"},
        "groups": {"flag": ["flag_active", "flag_vip"],
                   "evt": ["evt_date", "evt_code", "evt_count"],
                   "m": ["m_income", "m_visits"]},
        "columns": {"flag_active": "boolean", "flag_vip": "boolean", "evt_date": "date",
                    "evt_code": "categorical", "evt_count": "numeric", "m_income": "numeric",
                    "m_visits": "numeric", "y": "categorical"},
        "privacy": _privacy()}
    return frame, profile


MAKERS = {"skewed": table_skewed, "levels": table_levels, "mixed": table_mixed}


def write_table(name: str, work: Path, seed: int = 20261130) -> tuple[Path, Path]:
    """Write the table (CSV) and its profile (YAML); same seed, same bytes."""
    rng = np.random.default_rng([seed, GENERATED.index(name)])
    frame, profile = MAKERS[name](rng, ROWS)
    data = work / "data" / f"{name}.csv"
    prof = work / "data" / f"{name}.yaml"
    data.parent.mkdir(parents=True, exist_ok=True)
    frame.write_csv(data)
    prof.write_text(yaml.safe_dump(profile, sort_keys=False))
    rate = (frame.get_column("y") == "yes").mean()
    print(f"table {name}: {frame.height} rows, {frame.width - 1} features, positive rate "
          f"{rate:.3f} -> {data}", flush=True)
    return data, prof


# ---------------------------------------------------------------- runs


def release_dir(stdout: str) -> Path | None:
    """The release folder: the CLI prints it as its last stdout line."""
    for line in reversed(stdout.strip().splitlines()):
        p = Path(line.strip())
        if p.is_absolute() and (p / "manifest.json").is_file():
            return p
    return None


def read_release(release: Path) -> dict:
    m = json.loads((release / "manifest.json").read_text())
    auc = next(r for r in m["utility"] if r["metric"] == "test_roc_auc")
    models = m.get("models") or {}
    measured = ((m.get("privacy") or {}).get("policy") or {}).get("measured") or {}
    return {
        "release": str(release),
        "code_version": m.get("code_version"),
        "test_roc_auc": {v: auc.get(v) for v in VIEWS},
        "models": {k: {f: v.get(f) for f in ("architecture", "code_size", "inputs",
                                               "dead_outputs", "seconds", "epochs_run")}
                   for k, v in models.items()},
        "max_dead_outputs": max((v.get("dead_outputs") or 0 for v in models.values()),
                                default=None),
        "architectures": sorted({str(v.get("architecture")) for v in models.values()}),
        "inversion_gain": {v: (measured.get(v) or {}).get("max_inversion_gain")
                           for v in ("ENCODED", "GROUP_ENCODED")},
        "inversion_r2": {v: (measured.get(v) or {}).get("max_inversion_r2")
                         for v in ("ENCODED", "GROUP_ENCODED")},
        "folds_note": (m.get("folds") or {}).get("note") if isinstance(m.get("folds"), dict)
        else None,
    }


def code_state() -> dict:
    """HEAD and a hash of the uncommitted diff: the CLI runs whatever the checkout holds now."""
    def git(*a: str) -> str:
        return subprocess.run(["git", "-C", str(REPO), *a], capture_output=True,
                              text=True).stdout
    others = ["--", ".", ":!benchmarks/architectures.py"]  # this script's own edits aside
    diff = git("diff", "HEAD", *others)
    return {"head": git("rev-parse", "--short", "HEAD").strip(),
            "dirty": git("diff", "--name-only", "HEAD", *others).split(),
            "diff_sha": hashlib.sha256(diff.encode()).hexdigest()[:12] if diff else None}


def run_one(table: str, arch: str, seed: int, args, inputs: dict, env: dict, work: Path) -> dict:
    exe = str(REPO / ".venv" / "bin" / "cloakflow")
    if not Path(exe).exists():
        exe = str(Path(sys.executable).with_name("cloakflow"))
    if table == "bank":
        cmd = [exe, "run", "bank-marketing", "--input", f"{DATA_DIR}/bank-additional-full.csv"]
        folds = args.folds or 10
        skip = False
    else:
        data, prof = inputs[table]
        cmd = [exe, "run", "--profile", str(prof), "--input", str(data)]
        folds = args.folds or 5
        skip = args.skip_attacks_for_generated
    cmd += ["--architecture", arch, "--seed", str(seed), "--folds", str(folds),
            "--accept-risk", "benchmark", "--out", str(work / "releases"), "--no-cache"]
    if args.epochs is not None:
        cmd += ["--epochs", str(args.epochs)]
    if skip:
        cmd.append("--skip-attacks")
    log = work / "logs" / f"{table}-{arch}-s{seed}"
    log.parent.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()[0]
    state = code_state()
    print(f"$ {' '.join(cmd)}   [load {load:.2f}, {datetime.now(UTC):%H:%M:%S} UTC]", flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    log.with_suffix(".out").write_text(proc.stdout)
    log.with_suffix(".err").write_text(proc.stderr)
    rec = {"table": table, "arch": arch, "seed": seed, "folds": folds, "epochs": args.epochs,
           "attacks": not skip, "rc": proc.returncode, "wall_s": round(wall, 1),
           "load_at_start": round(load, 2), "cmd": cmd, "code": state,
           "started": datetime.now(UTC).isoformat(timespec="seconds")}
    release = release_dir(proc.stdout) if proc.returncode == 0 else None
    if release is None:
        rec["error"] = (proc.stderr.strip().splitlines() or ["(no stderr)"])[-20:]
        print(f"  FAILED rc={proc.returncode} after {wall:.1f} s; see {log}.err:\n    "
              + "\n    ".join(rec["error"]), flush=True)
    else:
        rec.update(read_release(release))
        if arch not in rec["architectures"]:
            rec["warning"] = f"manifest says architecture {rec['architectures']}, asked {arch}"
        print("  " + describe(rec), flush=True)
    with open(work / "runs.jsonl", "a") as fh:
        fh.write(json.dumps(rec) + "\n")
    return rec


def fmt(x: float | None, spec: str = ".4f") -> str:
    return "n/a" if x is None else format(x, spec)


def describe(r: dict) -> str:
    if "test_roc_auc" not in r:
        return f"{r['table']} {r['arch']} seed {r['seed']}: FAILED rc={r['rc']} ({r['wall_s']} s)"
    auc = r["test_roc_auc"]
    dead = ", ".join(f"{k} {v['dead_outputs']}/{v['inputs']} (code {v['code_size']})"
                     for k, v in r["models"].items())
    inv = ""
    if r["attacks"]:
        inv = "; inversion gain p=1% " + ", ".join(
            f"{v} {fmt(r['inversion_gain'][v])}" for v in r["inversion_gain"]) + \
            "; inversion R2 " + ", ".join(f"{v} {fmt(r['inversion_r2'][v])}"
                                           for v in r["inversion_r2"])
    warn = f"; WARNING {r['warning']}" if r.get("warning") else ""
    return (f"{r['table']} {r['arch']} seed {r['seed']}: wall {r['wall_s']} s; test ROC AUC "
            + ", ".join(f"{v} {fmt(auc[v])}" for v in VIEWS)
            + f"; dead outputs (max {r['max_dead_outputs']}): {dead}{inv}{warn}")


# ---------------------------------------------------------------- summary


def med(xs: list[float | None]) -> float | None:
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def summarize(runs: list[dict], tables: list[str]) -> tuple[str, dict]:
    summary: dict = {}
    for t in tables:
        for a in ARCHS:
            ok = [r for r in runs if r["table"] == t and r["arch"] == a and "test_roc_auc" in r]
            failed = [r for r in runs if r["table"] == t and r["arch"] == a
                      and "test_roc_auc" not in r]
            if not ok and not failed:
                continue
            s = {"runs": len(ok), "failed": len(failed), "seeds": [r["seed"] for r in ok],
                 "auc": {v: med([r["test_roc_auc"][v] for r in ok]) for v in VIEWS},
                 "max_dead": max((r["max_dead_outputs"] or 0 for r in ok), default=None),
                 "wall_s": med([r["wall_s"] for r in ok]),
                 "attacks": any(r["attacks"] for r in ok)}
            # the gap per seed, then the median (same seed: same folds, same ORIGINAL)
            s["gap"] = {v: med([r["test_roc_auc"]["ORIGINAL"] - r["test_roc_auc"][v]
                                for r in ok if r["test_roc_auc"][v] is not None])
                        for v in ("ENCODED", "GROUP_ENCODED")}
            s["gain"] = {v: med([r["inversion_gain"][v] for r in ok if r["attacks"]])
                         for v in ("ENCODED", "GROUP_ENCODED")}
            s["r2"] = {v: med([r["inversion_r2"][v] for r in ok if r["attacks"]])
                       for v in ("ENCODED", "GROUP_ENCODED")}
            summary[f"{t}/{a}"] = s
    lines = ["| table | architecture | runs | AUC ORIGINAL | AUC ENCODED | AUC GROUP_ENCODED | "
             "gap ENC | gap GROUP | max dead | inv. gain ENC | inv. gain GROUP | inv. R2 ENC | "
             "inv. R2 GROUP | median wall s | wall kinds/tutorial |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for key, s in summary.items():
        t, a = key.split("/")
        base = summary.get(f"{t}/tutorial", {}).get("wall_s")
        ratio = fmt(s["wall_s"] / base, ".3f") if a == "kinds" and base and s["wall_s"] else ""
        runs_txt = f"{s['runs']}" + (f" (+{s['failed']} failed)" if s["failed"] else "")
        inv = [fmt(s[k][v]) if s["attacks"] else "skipped"
               for k in ("gain", "r2") for v in ("ENCODED", "GROUP_ENCODED")]
        lines.append(
            f"| {t} | {a} | {runs_txt} | " + " | ".join(fmt(s["auc"][v]) for v in VIEWS)
            + f" | {fmt(s['gap']['ENCODED'], '+.4f')} | {fmt(s['gap']['GROUP_ENCODED'], '+.4f')}"
            + f" | {s['max_dead']} | " + " | ".join(inv)
            + f" | {fmt(s['wall_s'], '.1f')} | {ratio} |")
    return "\n".join(lines), summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tables", default="bank,skewed,levels,mixed",
                    help="comma-separated subset of bank,skewed,levels,mixed")
    ap.add_argument("--seeds", type=int, default=3, help="seeds 1..N")
    ap.add_argument("--folds", type=int, default=None,
                    help="default: 10 for bank, 5 for the generated tables")
    ap.add_argument("--epochs", type=int, default=None, help="default: the CLI's")
    ap.add_argument("--skip-attacks-for-generated", action="store_true",
                    help="--skip-attacks on the generated tables (the bank table keeps them)")
    ap.add_argument("--work", default="/tmp/arch-bench")
    ap.add_argument("--temporary-server", action="store_true",
                    help="no shared Prefect server: every run starts Prefect's temporary one")
    ap.add_argument("--report-only", action="store_true",
                    help="run nothing: summarize the runs of --tables recorded in WORK/runs.jsonl "
                         "(e.g. after an interrupted benchmark)")
    args = ap.parse_args()

    tables = [t.strip() for t in args.tables.split(",") if t.strip()]
    unknown = set(tables) - {"bank", *GENERATED}
    if unknown:
        ap.error(f"unknown tables {sorted(unknown)}")
    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    if args.report_only:
        with open(work / "runs.jsonl") as fh:
            recorded = [json.loads(line) for line in fh if line.strip()]
        report(args, tables, [r for r in recorded if r["table"] in tables], work)
        return
    inputs = {t: write_table(t, work) for t in tables if t in GENERATED}

    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2",
           "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}",
           "CLOAKFLOW_LEDGER_DIR": str(work / "ledger"), "CLOAKFLOW_DATA_DIR": DATA_DIR,
           "PREFECT_HOME": str(work / "prefect"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120"}
    env.pop("PREFECT_API_URL", None)
    print(f"architectures benchmark {datetime.now(UTC):%Y-%m-%d %H:%M} UTC: tables {tables}, "
          f"seeds 1..{args.seeds}, {os.cpu_count()} CPUs, load {os.getloadavg()}", flush=True)

    server = None
    if not args.temporary_server:
        from benchmarks.bench_tutorial import start_prefect_server

        server, url = start_prefect_server(env, work / "prefect_server.log")
        env["PREFECT_API_URL"] = url
    runs: list[dict] = []
    try:
        for t in tables:
            for seed in range(1, args.seeds + 1):
                for arch in ARCHS:  # alternate, so drift in machine load hits both alike
                    runs.append(run_one(t, arch, seed, args, inputs, env, work))
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=60)
    report(args, tables, runs, work)


def report(args, tables: list[str], runs: list[dict], work: Path) -> None:
    md, summary = summarize(runs, tables)
    lines = [f"# Architectures benchmark {datetime.now(UTC):%Y-%m-%d %H:%M} UTC", "",
             f"tables {', '.join(tables)}; seeds {sorted({r['seed'] for r in runs})}; folds "
             f"{args.folds or 'bank 10, generated 5'}; epochs {args.epochs or 'CLI default'}; "
             f"attacks on generated tables: {not args.skip_attacks_for_generated}; "
             f"{os.cpu_count()} CPUs", "", "## Per run", ""]
    lines += [f"- {describe(r)}" for r in runs]
    lines += ["", "## Medians over seeds (gap = ORIGINAL - view, per seed, then median)", "", md]
    text = "\n".join(lines) + "\n"
    print("\n" + text)
    stem = work / f"results-{'-'.join(tables)}"
    stem.with_suffix(".md").write_text(text)
    stem.with_suffix(".json").write_text(json.dumps({"runs": runs, "summary": summary}, indent=1))
    print(f"results in {work}")


if __name__ == "__main__":
    main()
