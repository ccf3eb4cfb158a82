#!/usr/bin/env python
"""Benchmark: the tutorial's reference script against the cloakflow flow, on one machine.

    python -m benchmarks.bench_tutorial [--scheme stratified-shuffled|tutorial] [--folds 10]
        [--csv PATH] [--reference PATH] [--compare-engines] [--temporary-server]

Both programs get the same table, seed and fold scheme; the flow runs with --control-fraction 0
so that it cross-validates exactly the rows and folds the reference does. Each runs under
``/usr/bin/time -v`` (wall, user+sys CPU of the process and its children, peak RSS).

The flow runs against a Prefect server started here beforehand (as a deployment's worker would
find one); ``--temporary-server`` also times a run that starts Prefect's temporary server
itself, as a bare ``cloakflow run`` on a fresh shell does. ``--tail-validation`` adds a run whose
autoencoders validate on the last 30% of rows, as the tutorial's Keras ``validation_split`` does
(on a date-ordered table: the last period). ``--compare-engines`` adds a flow run
with the scikit-learn forest: the autoencoders are seeded, so the two runs differ only in the
forest, which checks the LightGBM forest against scikit-learn's numbers on the same folds.

Prints both utility tables, the differences, and the time ratios; writes results.json and
results.md under --out.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
KEYS = ["test_roc_auc", "test_average_precision", "test_balanced_accuracy", "test_f1_weighted",
        "train_roc_auc"]
VIEWS = ["ORIGINAL", "ENCODED", "GROUP_ENCODED"]


def timed(cmd: list[str], env: dict[str, str], log: Path) -> dict:
    """Run ``cmd`` under /usr/bin/time -v; return wall, CPU and peak RSS."""
    print(f"$ {' '.join(cmd)}", flush=True)
    time_log = log.with_suffix(".time")
    with open(log, "w") as fh:
        proc = subprocess.run(["/usr/bin/time", "-v", "-o", str(time_log), *cmd], env=env,
                              stdout=fh, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0:
        sys.exit(f"command failed ({proc.returncode}); see {log}\n{log.read_text()[-3000:]}")
    return read_time(time_log, log)


def read_time(time_log: Path, log: Path) -> dict:
    """Wall, CPU and peak RSS from a ``/usr/bin/time -v`` report."""
    text = time_log.read_text()

    def grab(label: str) -> str:
        m = re.search(rf"{re.escape(label)}: (.+)", text)
        return m.group(1).strip() if m else "nan"

    wall = grab("Elapsed (wall clock) time (h:mm:ss or m:ss)")
    parts = [float(p) for p in wall.split(":")]
    wall_s = sum(p * 60 ** i for i, p in enumerate(reversed(parts)))
    cpu = float(grab("User time (seconds)")) + float(grab("System time (seconds)"))
    return {"wall_s": round(wall_s, 1), "cpu_s": round(cpu, 1),
            "peak_rss_mib": round(int(grab("Maximum resident set size (kbytes)")) / 1024, 1),
            "log": str(log)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_prefect_server(env: dict[str, str], log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    exe = Path(sys.executable).with_name("prefect")
    proc = subprocess.Popen([str(exe), "server", "start", "--host", "127.0.0.1", "--port",
                             str(port)], env=env, stdout=open(log, "w"),
                            stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/api"
    for _ in range(180):
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2):
                return proc, url
        except OSError:
            time.sleep(1)
    proc.terminate()
    sys.exit(f"Prefect server did not start; see {log}")


def flow_utility(release: Path) -> dict[str, dict[str, float]]:
    from cloakflow.tasks.release.manifest import Manifest

    rows = Manifest.read(release).utility
    return {v: {r["metric"]: r[v] for r in rows} for v in VIEWS}


def run_flow(csv: str, args, out: Path, env: dict[str, str], name: str,
             forest: str = "lightgbm", validation: str = "random") -> dict:
    cmd = [str(Path(sys.executable).with_name("cloakflow")), "run", args.dataset, "--input", csv,
           "--control-fraction", "0", "--fold-scheme", args.scheme, "--folds", str(args.folds),
           "--seed", str(args.seed), "--epochs", str(args.epochs), "--forest", forest,
           "--validation", validation,
           "--architecture", "tutorial",  # the tutorial's model, whatever the flow's default
           "--out", str(out / "releases"), "--no-cache",  # time the work, not a cache hit
           # the reference runs no attacks: compare like with like (bench_attacks.py times them)
           "--skip-attacks", "--accept-risk", "benchmark against the tutorial's script"]
    res = timed(cmd, env, out / f"{name}.log")
    # the CLI prints the release folder last; Prefect may log its shutdown after it
    lines = Path(res["log"]).read_text().strip().splitlines()
    release = next(Path(line) for line in reversed(lines)
                   if line.startswith(str(out)) and (Path(line) / "manifest.json").is_file())
    res["release"] = str(release)
    res["utility"] = flow_utility(release)
    return res


def table(results: dict[str, dict]) -> str:
    names = list(results)
    lines = ["| view | metric | " + " | ".join(names) + " |",
             "|---|---|" + "---|" * len(names)]
    for v in VIEWS:
        for k in KEYS:
            vals = [results[n]["utility"][v].get(k) for n in names]
            lines.append(f"| {v} | {k} | " + " | ".join(
                "n/a" if x is None else f"{x:.4f}" for x in vals) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="bank-marketing")
    ap.add_argument("--csv", default=None, help="default: $CLOAKFLOW_DATA_DIR/<profile file>")
    ap.add_argument("--reference", default=str(REPO.parent / "shared" / "reference" /
                                                   "tutorial_autoencoder.py"))
    ap.add_argument("--scheme", choices=["stratified-shuffled", "tutorial"],
                    default="stratified-shuffled")
    ap.add_argument("--folds", type=int, default=10)
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--compare-engines", action="store_true")
    ap.add_argument("--temporary-server", action="store_true")
    ap.add_argument("--tail-validation", action="store_true",
                    help="also run the flow with the tutorial's validation rows (the last 30%%)")
    ap.add_argument("--reuse-reference", default=None, metavar="DIR",
                    help="use the reference results an earlier run of this script left in DIR "
                         "(reported as reused) instead of running it again")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()

    from cloakflow.tasks.data.locate import locate_source
    from cloakflow.tasks.data.profile import load_profile

    csv = args.csv or str(locate_source(load_profile(args.dataset)))
    out = Path(args.out or REPO / "benchmarks" / "results" /
               f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{args.scheme}").resolve()
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2",
           "MLFLOW_TRACKING_URI": f"sqlite:///{out / 'mlflow.db'}",
           "PREFECT_HOME": str(out / "prefect"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120"}
    env.pop("PREFECT_API_URL", None)
    results: dict[str, dict] = {}
    print(f"benchmark: {csv}, scheme {args.scheme}, {args.folds} folds, seed {args.seed}, "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()}", flush=True)

    if args.reuse_reference:
        ref_dir = Path(args.reuse_reference).resolve()
        ref = read_time(ref_dir / "reference.time", ref_dir / "reference.log")
        ref["reused_from"] = str(ref_dir)
    else:
        cmd = [sys.executable, args.reference, csv, "--out", str(out / "reference"),
               "--cv", str(args.folds), "--epochs", str(args.epochs)]
        if args.scheme == "stratified-shuffled":
            cmd.append("--shuffle")
        ref = timed(cmd, env, out / "reference.log")
        ref_dir = out
    data = json.loads((ref_dir / "reference" / "results.json").read_text())
    if data["settings"]["shuffle"] != (args.scheme == "stratified-shuffled") or \
            data["settings"]["cv"] != args.folds:
        sys.exit(f"reference results in {ref_dir} used other folds: {data['settings']}")
    ref["utility"] = data["cv_mean"]
    ref["stages"] = data["stages"]
    ref["finished_at"] = datetime.fromtimestamp(
        (ref_dir / "reference" / "results.json").stat().st_mtime, UTC).isoformat(timespec="seconds")
    results["reference"] = ref

    if args.temporary_server:
        results["flow (temporary server)"] = run_flow(csv, args, out, env, "flow_temporary")

    server, url = start_prefect_server(env, out / "prefect_server.log")
    try:
        served = {**env, "PREFECT_API_URL": url}
        results["flow"] = run_flow(csv, args, out, served, "flow")
        if args.tail_validation:
            results["flow (tail validation)"] = run_flow(csv, args, out, served, "flow_tail",
                                                         validation="tail")
        if args.compare_engines:
            results["flow (sklearn forest)"] = run_flow(csv, args, out, served, "flow_sklearn",
                                                        forest="sklearn")
    finally:
        server.terminate()
        server.wait(timeout=60)

    lines = [f"# Benchmark {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
             f"table {Path(csv).name}, fold scheme {args.scheme}, {args.folds} folds, seed "
             f"{args.seed}, {os.cpu_count()} CPUs", "", "## Utility (mean over folds)", "",
             table(results), "", "## Time and memory", "",
             "| run | wall s | CPU s | peak RSS MiB | wall / reference |", "|---|---|---|---|---|"]
    ref_wall = results.get("reference", {}).get("wall_s")
    for name, r in results.items():
        ratio = f"{r['wall_s'] / ref_wall:.3f}" if ref_wall else "n/a"
        lines.append(f"| {name} | {r['wall_s']} | {r['cpu_s']} | {r['peak_rss_mib']} | "
                     f"{ratio} |")
    if "reference" in results:
        lines += ["", "## Differences from the reference (test ROC AUC)", ""]
        for name, r in results.items():
            if name == "reference":
                continue
            diffs = ", ".join(
                f"{v} {r['utility'][v]['test_roc_auc'] - results['reference']['utility'][v]['test_roc_auc']:+.4f}"  # noqa: E501
                for v in VIEWS)
            lines.append(f"- {name}: {diffs}")
    md = "\n".join(lines) + "\n"
    (out / "results.md").write_text(md)
    (out / "results.json").write_text(json.dumps(results, indent=1, default=str))
    print("\n" + md)
    print(f"results in {out}")


if __name__ == "__main__":
    main()
