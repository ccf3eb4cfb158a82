"""Start-up cost of a bare ``cloakflow run``: seconds from process start to the flow's first log
line ("Beginning flow run"), from an environment with no cloakflow/Prefect variables.

    python -m benchmarks.bench_startup [--repeats 3] [--server] [--concurrent 2]

--server starts ``prefect server start --host 127.0.0.1 --port 4200`` first (the port the CLI
probes by default); --concurrent N runs N full runs at once and reports their exit codes.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

BIN = Path(sys.executable).parent
DATA = os.environ.get("CLOAKFLOW_DATA_DIR", "/work/shared/data")
CMD = [str(BIN / "cloakflow"), "run", "bank-marketing", "--input", f"{DATA}/bank-additional.csv",
       "--epochs", "3", "--folds", "3", "--accept-risk", "x"]
ENV = {"PATH": os.environ["PATH"], "HOME": os.environ["HOME"], "CLOAKFLOW_DATA_DIR": DATA}


def start(workdir: Path) -> tuple[subprocess.Popen, float]:
    t0 = time.monotonic()
    proc = subprocess.Popen(CMD, cwd=workdir, env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    return proc, t0


def first_flow_line(proc: subprocess.Popen, t0: float, log: Path) -> float | None:
    with open(log, "w") as fh:
        for line in proc.stdout:
            fh.write(line)
            if "Beginning flow run" in line:
                return time.monotonic() - t0
    return None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--server", action="store_true")
    ap.add_argument("--concurrent", type=int, default=0)
    a = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="cloakflow-startup-"))
    server = None
    if a.server:
        server = subprocess.Popen([str(BIN / "prefect"), "server", "start", "--host",
                                   "127.0.0.1", "--port", "4200"], env=ENV,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  start_new_session=True)
        for _ in range(240):
            try:
                urllib.request.urlopen("http://127.0.0.1:4200/api/health", timeout=1)
                break
            except OSError:
                time.sleep(0.5)
    try:
        if a.concurrent:
            runs, ups = [], {}
            for i in range(a.concurrent):
                (root / f"c{i}").mkdir()
                log = open(root / f"c{i}.log", "w")
                runs.append((subprocess.Popen(CMD, cwd=root / f"c{i}", env=ENV, stdout=log,
                                              stderr=subprocess.STDOUT), log))
            t0 = time.monotonic()
            while any(p.poll() is None for p, _ in runs):
                for i, (_, log) in enumerate(runs):
                    if i not in ups and "Beginning flow run" in Path(log.name).read_text():
                        ups[i] = round(time.monotonic() - t0, 1)
                time.sleep(0.2)
            print(f"{a.concurrent} concurrent full runs: start-up {ups} s, exit codes "
                  f"{[p.returncode for p, _ in runs]}, total {time.monotonic() - t0:.1f} s, "
                  f"logs in {root}")
            return
        times = []
        for i in range(a.repeats):
            (root / f"r{i}").mkdir()
            proc, t0 = start(root / f"r{i}")
            times.append(first_flow_line(proc, t0, root / f"r{i}.log"))
            os.killpg(proc.pid, signal.SIGTERM)  # start-up measured; the run itself is not
            proc.wait()
            print(f"run {i + 1}: {times[-1]:.1f} s to the first flow log line", flush=True)
        print(f"{'with' if a.server else 'without'} a running Prefect server: median "
              f"{statistics.median(times):.1f} s of {times}")
    finally:
        if server is not None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait()


if __name__ == "__main__":
    main()
