#!/usr/bin/env python
"""Benchmark: the desensitization trade-off over distortion budgets.

    python -m benchmarks.desensitize_sweep [--dataset bank-marketing] [--input FILE]
        [--sensitive housing,loan] [--budgets 0,0.05,0.1,0.2,0.4] [--epochs 30]
        [--seed 42] [--work DIR] [--json FILE] [--plot FILE]

Each budget runs ``cloakflow desensitize`` (a subprocess each, one PREFECT_HOME and MLflow
sqlite store for the sweep, ``--accept-risk`` so that every release is kept and measured;
each run's report and metrics are in MLflow and its report a Prefect artifact). Printed per
budget, from each release's manifest: the mean distortion and the cells changed, the
forest's and LightGBM's ROC AUC trained on the release and tested on real control rows (and
on the real rows: released columns, every column), and per sensitive column the strongest
fresh attacker's two-sided AUC on the release against the imputation baseline (the same
attackers on the real non-sensitive columns) and the raw rows, and the lowest shape score of a
released column against its source column (KS / TV complement); then the plot: utility
against the strongest attacker's AUC on the release, one point per budget, beside the
strongest on the dropped columns (the imputation baseline).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_budget(args, budget: float, work: Path) -> dict:
    """One ``cloakflow desensitize`` run; its manifest."""
    env = {**os.environ, "PREFECT_HOME": str(work / "prefect"),
           "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}",
           "CLOAKFLOW_LEDGER_DIR": str(work / "ledger")}
    cmd = [sys.executable, "-m", "cloakflow.flows.cli", "desensitize", args.dataset,
           "--sensitive", args.sensitive, "--distortion", str(budget), "--epochs",
           str(args.epochs), "--seed", str(args.seed), "--out", str(work / "releases"),
           "--accept-risk", "benchmark sweep on a public table"]
    if args.input:
        cmd += ["--input", args.input]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=work)
    if proc.returncode != 0:
        raise SystemExit(f"budget {budget}: exit {proc.returncode}\n{proc.stderr[-3000:]}")
    folder = Path(proc.stdout.strip().splitlines()[-1])
    folder = folder if folder.is_absolute() else work / folder
    return json.loads((folder / "manifest.json").read_text())


def row_of(budget: float, manifest: dict) -> dict:
    ev = manifest["evaluation"]
    util, moved = ev["utility"], ev["moved"]
    out = {"budget": budget, "distortion": moved["distortion"],
           "cells_changed": moved["cells_changed"], "seconds": manifest["model"]["seconds"],
           **{f"{k}_{side}": util[k][side] for k in ("forest", "lightgbm")
              for side in ("release", "dropped", "source")}, "attributes": {}}
    for col, r in ev["inference"].items():
        out["attributes"][col] = {view: r["strongest"].get(view)
                                  for view in ("release", "imputation", "raw")}
    shapes = {c: e["shape"] for c, e in moved["columns"].items() if e.get("shape") is not None}
    out["lowest_shape"] = min(shapes.items(), key=lambda kv: kv[1]) if shapes else None
    out["gain"] = max(a["release"] - a["imputation"] for a in out["attributes"].values())
    out["advantage"] = max(a["release"] for a in out["attributes"].values()) - 0.5
    return out


def plot(rows: list[dict], path: str) -> None:
    """Utility (the forest trained on the release) against the strongest fresh attacker's
    AUC on the release, one point per budget, beside the strongest attacker on the dropped
    columns (the imputation baseline) and on the raw rows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    best = [max(a["release"] for a in r["attributes"].values()) for r in rows]
    ax.scatter(best, [r["forest_release"] for r in rows], zorder=3)
    for r, x in zip(rows, best, strict=True):
        ax.annotate(f"D={r['budget']:g}", (x, r["forest_release"]),
                    textcoords="offset points", xytext=(4, 4), fontsize=8)
    imputation = max(a["imputation"] for a in rows[0]["attributes"].values())
    ax.axvline(imputation, color="tab:red", lw=0.8, ls="--",
               label=f"dropping the columns only ({imputation:.3f})")
    ax.axvline(0.52, color="grey", lw=0.8, ls=":", label="chance + 0.02")
    ax.axhline(rows[0]["forest_source"], color="grey", lw=0.8, ls="-.",
               label="forest on the source rows")
    ax.set_xlabel("strongest fresh attacker's ROC AUC on the release (any sensitive column)")
    ax.set_ylabel("forest ROC AUC (trained on the release)")
    ax.set_title("Desensitization: utility against attribute inference")
    ax.legend(fontsize=8, loc="center")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="bank-marketing")
    ap.add_argument("--input")
    ap.add_argument("--sensitive", default="housing,loan")
    ap.add_argument("--budgets", default="0,0.05,0.1,0.2,0.4")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--work")
    ap.add_argument("--json")
    ap.add_argument("--plot")
    args = ap.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="desensitize-sweep-")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for budget in [float(b) for b in args.budgets.split(",")]:
        row = row_of(budget, run_budget(args, budget, work))
        rows.append(row)
        attrs = "; ".join(f"{c}: release {a['release']:.3f} / imputation {a['imputation']:.3f}"
                          f" / raw {a['raw']:.3f}" for c, a in row["attributes"].items())
        print(f"D={budget:g}: distortion {row['distortion']:.3f}, cells changed "
              f"{row['cells_changed']:.3f}, forest {row['forest_release']:.3f} (dropped "
              f"{row['forest_dropped']:.3f}, source {row['forest_source']:.3f}), LightGBM "
              f"{row['lightgbm_release']:.3f}; advantage {row['advantage']:.3f}, gain "
              f"{row['gain']:+.3f}; {attrs}; lowest column shape {_shape(row)}; fit "
              f"{row['seconds']:.0f} s", flush=True)
    table(rows)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    if args.plot:
        plot(rows, args.plot)
        print(f"plot: {args.plot}")


def _shape(row: dict) -> str:
    low = row.get("lowest_shape")
    return f"{low[1]:.3f} ({low[0]})" if low else "—"


def table(rows: list[dict]) -> None:
    print("\n| budget | distortion | cells changed | forest AUC (release / dropped / source) "
          "| strongest attacker AUC per column (release / imputation / raw) | gain | lowest "
          "column shape |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        attrs = "<br>".join(f"{c}: {a['release']:.3f} / {a['imputation']:.3f} / "
                            f"{a['raw']:.3f}" for c, a in r["attributes"].items())
        print(f"| {r['budget']:g} | {r['distortion']:.3f} | {r['cells_changed']:.3f} | "
              f"{r['forest_release']:.3f} / {r['forest_dropped']:.3f} / "
              f"{r['forest_source']:.3f} | {attrs} | {r['gain']:+.3f} | {_shape(r)} |")


if __name__ == "__main__":
    main()
