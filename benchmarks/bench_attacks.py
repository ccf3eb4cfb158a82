#!/usr/bin/env python
"""Benchmark: what the attack step adds to the flow's wall time on one machine.

    python -m benchmarks.bench_attacks [--pairs 2] [--csv PATH] [--out DIR]

Runs the flow alternately with the attack step and with ``--skip-attacks`` (same table, seed,
settings, ``--no-cache``), each under ``/usr/bin/time -v``, against one Prefect server started
here (as a deployment's worker finds one). Prints every run, the medians, the ratio of the
medians, and the attack step's own wall time as the flow measured it (MLflow metric
``time.attacks``). Writes results.json and results.md under --out.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.bench_tutorial import start_prefect_server, timed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="bank-marketing")
    ap.add_argument("--csv", default=None, help="default: $CLOAKFLOW_DATA_DIR/<profile file>")
    ap.add_argument("--pairs", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--out", default="benchmarks/out/attacks")
    args = ap.parse_args()

    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    csv = args.csv or str(Path(os.environ.get("CLOAKFLOW_DATA_DIR", ".")) /
                          "bank-additional-full.csv")
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2",
           "MLFLOW_TRACKING_URI": f"sqlite:///{out / 'mlflow.db'}",
           "PREFECT_HOME": str(out / "prefect"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    exe = str(Path(sys.executable).with_name("cloakflow"))
    base = [exe, "run", args.dataset, "--input", csv, "--seed", str(args.seed), "--epochs",
            str(args.epochs), "--out", str(out / "releases"), "--no-cache",
            "--accept-risk", "benchmark run on a public table"]
    server, url = start_prefect_server(env, out / "prefect_server.log")
    runs: list[dict] = []
    try:
        served = {**env, "PREFECT_API_URL": url}
        for i in range(args.pairs):
            for kind in ("attacks", "no-attacks"):
                cmd = base + (["--skip-attacks"] if kind == "no-attacks" else [])
                res = timed(cmd, served, out / f"{kind}-{i}.log")
                res["kind"] = kind
                runs.append(res)
                print(f"{kind} #{i}: wall {res['wall_s']} s, CPU {res['cpu_s']} s, peak RSS "
                      f"{res['peak_rss_mib']} MiB", flush=True)
    finally:
        server.terminate()

    os.environ["MLFLOW_TRACKING_URI"] = env["MLFLOW_TRACKING_URI"]
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    exp = client.get_experiment_by_name(f"cloakflow/{args.dataset}")
    parents = client.search_runs([exp.experiment_id], "attributes.run_name = "
                                 f"'anonymize-{args.dataset}'")
    stage = [r.data.metrics["time.attacks"] for r in parents
             if r.data.params.get("privacy_attacks") == "True" and "time.attacks" in r.data.metrics]
    med = {k: statistics.median(r["wall_s"] for r in runs if r["kind"] == k)
           for k in ("attacks", "no-attacks")}
    cpu = {k: statistics.median(r["cpu_s"] for r in runs if r["kind"] == k)
           for k in ("attacks", "no-attacks")}
    summary = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"), "runs": runs,
        "median_wall_s": med, "median_cpu_s": cpu,
        "wall_ratio": round(med["attacks"] / med["no-attacks"], 3),
        "attack_stage_s": sorted(stage),
        "attack_stage_share_of_no_attack_wall": round(statistics.median(stage)
                                                      / med["no-attacks"], 3) if stage else None,
    }
    lines = [f"# Attack step cost ({summary['date']}, {args.pairs} pairs, full flow, --no-cache)",
             "", "| run | wall s | CPU s | peak RSS MiB |", "|---|---|---|---|"]
    lines += [f"| {r['kind']} | {r['wall_s']} | {r['cpu_s']} | {r['peak_rss_mib']} |"
              for r in runs]
    lines += ["", f"Median wall: with attacks {med['attacks']} s, without {med['no-attacks']} s; "
                  f"ratio {summary['wall_ratio']}.",
              f"Attack stage as measured inside the flow (time.attacks): {sorted(stage)} s; "
              "median / median no-attack wall = "
              f"{summary['attack_stage_share_of_no_attack_wall']}."]
    text = "\n".join(lines) + "\n"
    print(text)
    (out / "results.md").write_text(text)
    (out / "results.json").write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
