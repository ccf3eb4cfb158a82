"""Runs the Flower app (``federated/``) on Flower's deployment engine as real processes on
127.0.0.1, and stops every process it started — after success, on failure, and when a process
of the run dies (Prefect-free).

Per run (``Federation``), in its own folder:

- one **holder worker** per holder (``python -m cloakflow.federated.worker``): loads the holder's
  table (ingest, GX validation, shared-schema encoding) and keeps TensorFlow warm; a holder whose
  table is refused stops the run before Flower starts, with the worker's readable error;
- one **SuperLink** (``flower-superlink``: ServerAppIo, Fleet and Control APIs, health server)
  and one **SuperNode** per holder (``flower-supernode --node-config worker=... key-file=...``),
  every address explicit on 127.0.0.1, runtime dependency installation disabled;
- ``flwr run`` of the app with the run config, then polling ``flwr ls`` until the run finishes,
  reading ``rounds.jsonl`` as rounds end (``on_round``), and watching every process: one that
  exits early fails the run at once with its log's tail.

Every process starts in its own session (process group) and is stopped with SIGTERM, then
SIGKILL after a grace period; the Flower home (``FLWR_HOME``) is the run's own folder. A
**watchdog** process (the first one started) outlives a coordinating process that is killed
from outside (SIGKILL, an out-of-memory kill): it sees its parent gone and SIGKILLs every
process group of the run, so nothing is orphaned even when ``stop()`` never runs.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

LOOPBACK = "127.0.0.1"
READY_TIMEOUT_S = 180.0
GRACE_S = 10.0

# the watchdog (``python -c``): once its parent (the coordinating process) is gone, SIGKILL
# every process group listed in the run's group file; stdlib only, so it starts in ~50 ms
WATCHDOG = """
import os, signal, sys, time
parent, groups = int(sys.argv[1]), sys.argv[2]
while os.getppid() == parent:
    time.sleep(0.5)
mine = os.getpgid(0)
for pgid in open(groups).read().split():
    if int(pgid) == mine:  # the watchdog's own group: it ends by returning
        continue
    try:
        os.killpg(int(pgid), signal.SIGKILL)
    except (ProcessLookupError, PermissionError, ValueError):
        pass
"""


class FederationFailed(RuntimeError):
    """The federated run failed; the message names the holder or process and the reason."""

    exit_code = 2  # the command line's exit status
    headline = ("FEDERATION FAILED, nothing was published; every process of the run was "
                "stopped.")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the OS's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def app_dir() -> Path:
    """The Flower app's folder (``federated/``, installed as ``cloakflow.federated``)."""
    import cloakflow.federated

    return Path(cloakflow.federated.__file__).parent


def _bin(name: str) -> str:
    """An executable of this Python environment (Flower's CLIs live beside the interpreter)."""
    path = Path(sys.executable).parent / name
    return str(path) if path.exists() else (shutil.which(name) or name)


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    log: Path

    def tail(self, lines: int = 15) -> str:
        try:
            text = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(text[-lines:])


@dataclass
class Federation:
    """One federated run's processes. Use as a context manager: ``stop()`` runs on exit."""

    folder: Path
    profile: str  # a dataset name or a profile path, as every holder's worker loads it
    holders: dict[str, str]  # holder name -> its table's path
    declared: dict[str, float] | None = None  # holder -> size declared public (FedAvg weight)
    control_fraction: float = 0.0  # each holder's rows kept out of training (its release's)
    seed: int = 0  # seeds that split
    model: str = "codes"  # what the holders' workers encode their tables for: codes or vae
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    procs: list[Proc] = field(default_factory=list)
    control: str = ""

    def __enter__(self) -> Federation:
        self.folder = Path(self.folder).resolve()  # the processes run in it
        self.holders = {n: str(Path(p).resolve()) for n, p in self.holders.items()}
        if Path(self.profile).suffix in (".yaml", ".yml"):
            self.profile = str(Path(self.profile).resolve())
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "logs").mkdir(exist_ok=True)
        self.home = self.folder / "flwr-home"
        self.home.mkdir(exist_ok=True)
        self.env.update({"FLWR_HOME": str(self.home), "FLWR_TELEMETRY_ENABLED": "0",
                         "FLWR_DISABLE_UPDATE_CHECK": "1", "PYTHONUNBUFFERED": "1"})
        self.env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{self.env.get('PATH', '')}"
        self.groups = self.folder / "process-groups"
        self.groups.write_text("")
        self._start("watchdog", [sys.executable, "-c", WATCHDOG, str(os.getpid()),
                                 str(self.groups)])
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------------ processes
    def _start(self, name: str, argv: list[str]) -> Proc:
        log = self.folder / "logs" / f"{name}.log"
        fh = log.open("w")
        popen = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, env=self.env,
                                 cwd=self.folder, start_new_session=True)
        fh.close()
        with self.groups.open("a") as groups:  # the watchdog's list (session: pgid = pid)
            groups.write(f"{popen.pid}\n")
        proc = Proc(name, popen, log)
        self.procs.append(proc)
        return proc

    def _check_alive(self) -> None:
        for p in self.procs:
            code = p.popen.poll()
            if code is not None:
                raise FederationFailed(f"{p.name} exited with status {code} during the run; "
                                       f"its log ({p.log}) ends:\n{p.tail()}")

    def stop(self) -> None:
        """SIGTERM every process group of the run, SIGKILL what is left after ``GRACE_S``."""
        # the watchdog (first) stops last: it covers a kill of this process meanwhile
        for p in self.procs[1:]:
            if p.popen.poll() is None:
                _signal_group(p.popen.pid, signal.SIGTERM)
        deadline = time.monotonic() + GRACE_S
        for p in self.procs:
            try:
                p.popen.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                pass
        for p in self.procs[1:] + self.procs[:1]:  # the groups too: Flower's children
            _signal_group(p.popen.pid, signal.SIGKILL)
            try:
                p.popen.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        if getattr(self, "key", None) is not None:  # the workers' key outlives no run
            Path(self.key).unlink(missing_ok=True)

    # ------------------------------------------------------------------ steps
    def start_workers(self) -> dict[str, str]:
        """One warm worker per holder; waits until each has loaded its table.

        Raises:
            FederationFailed: a holder's table was refused (the worker's readable error).
        """
        key = self.folder / "worker.key"
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # never readable by others
        with os.fdopen(fd, "wb") as fh:
            fh.write(secrets.token_bytes(32))
        self.key = key
        addresses, ready = {}, {}
        for name, path in self.holders.items():
            address = f"{LOOPBACK}:0"  # the worker binds a free port and reports it when ready
            ready[name] = self.folder / f"{name}.ready"
            error = self.folder / f"{name}.error"
            self._start(f"worker-{name}", [
                sys.executable, "-m", "cloakflow.federated.worker", "--profile", self.profile,
                "--input", str(path), "--holder", name, "--address", address,
                "--key-file", str(key), "--ready-file", str(ready[name]),
                "--error-file", str(error), "--control-fraction", str(self.control_fraction),
                "--seed", str(self.seed), "--model", self.model])
            addresses[name] = address
        deadline = time.monotonic() + READY_TIMEOUT_S
        waiting = set(self.holders)
        while waiting:
            for name in sorted(waiting):
                error = self.folder / f"{name}.error"
                if error.exists():
                    raise FederationFailed(error.read_text())
                if ready[name].exists():
                    try:
                        addresses[name] = json.loads(ready[name].read_text())["address"]
                    except (ValueError, KeyError):
                        continue  # being written: read it again
                    waiting.discard(name)
            proc = next((p for p in self.procs if p.popen.poll() is not None), None)
            if proc is not None and waiting:
                raise FederationFailed(f"{proc.name} exited with status {proc.popen.poll()}; "
                                       f"its log ends:\n{proc.tail()}")
            if time.monotonic() > deadline:
                raise FederationFailed(f"holders {sorted(waiting)} did not load their tables "
                                       f"within {READY_TIMEOUT_S:.0f} s")
            time.sleep(0.3)
        self.workers = addresses
        return addresses

    def start_flower(self) -> None:
        """The SuperLink and one SuperNode per holder, every API on 127.0.0.1."""
        fleet, control, appio = (f"{LOOPBACK}:{free_port()}" for _ in range(3))
        self.control = control
        self._start("superlink", [
            _bin("flower-superlink"), "--insecure", "--serverappio-api-address", appio,
            "--fleet-api-address", fleet, "--control-api-address", control,
            "--health-server-address", f"{LOOPBACK}:{free_port()}",
            "--disable-runtime-dependency-installation"])
        for name, worker in self.workers.items():
            node = f'worker="{worker}" key-file="{self.key}" holder="{name}"'
            if self.declared:
                node += f" declared-size={float(self.declared[name])!r}"
            self._start(f"supernode-{name}", [
                _bin("flower-supernode"), "--insecure", "--superlink", fleet,
                "--clientappio-api-address", f"{LOOPBACK}:{free_port()}",
                "--health-server-address", f"{LOOPBACK}:{free_port()}",
                "--node-config", node])
        (self.home / "config.toml").write_text(
            '[superlink]\ndefault = "federation"\n\n[superlink.federation]\n'
            f'address = "{control}"\ninsecure = true\n')

    def _flwr(self, *args: str, timeout: float = 120) -> dict:
        out = subprocess.run([_bin("flwr"), *args, "--format", "json"], capture_output=True,
                             text=True, env=self.env, cwd=self.folder, timeout=timeout)
        try:
            return json.loads(out.stdout[out.stdout.find("{"):])
        except ValueError as exc:
            raise FederationFailed(f"flwr {args[0]}: no JSON in its output:\n{out.stdout}\n"
                                   f"{out.stderr}") from exc

    def run(self, run_config: dict, on_round: Callable[[dict], None] | None = None,
            timeout: float = 3600.0) -> Path:
        """``flwr run`` the app, follow it to the end; returns the output folder.

        Raises:
            FederationFailed: the run failed, timed out, or one of its processes died.
        """
        out = self.folder / "output"
        out.mkdir(exist_ok=True)
        config = {**run_config, "holders": len(self.holders), "output-dir": str(out)}
        flat = " ".join(f"{k}={_toml(v)}" for k, v in config.items())
        # FLWR connects when the SuperLink's Control API is up; retry briefly while it starts
        deadline = time.monotonic() + 60
        while True:
            self._check_alive()
            started = self._flwr("run", str(app_dir()), "federation", "--run-config", flat)
            if started.get("success"):
                break
            if time.monotonic() > deadline:
                raise FederationFailed(f"flwr run failed: {started.get('error-message')}")
            time.sleep(1.0)
        run_id = started["run-id"]
        seen, end = 0, time.monotonic() + timeout
        rounds = out / "rounds.jsonl"
        try:
            while True:
                if rounds.exists():  # complete lines only: the last may be half written
                    lines = rounds.read_text().split("\n")[:-1]
                    for line in lines[seen:]:
                        if on_round:
                            on_round(json.loads(line))
                    seen = len(lines)
                status = self._status(run_id)
                if status.startswith("finished"):
                    break
                self._check_alive()
                if time.monotonic() > end:
                    raise FederationFailed(f"the run did not finish within {timeout:.0f} s")
                time.sleep(1.0)
        except BaseException:
            try:  # the original error matters more than a failed stop
                self._flwr("stop", str(run_id), "federation", timeout=30)
            except (FederationFailed, subprocess.SubprocessError, OSError):
                pass
            raise
        if rounds.exists():  # rounds written between the last read and the end
            for line in rounds.read_text().splitlines()[seen:]:
                if on_round:
                    on_round(json.loads(line))
        if status != "finished:completed":
            error = out / "error.txt"
            reason = error.read_text().splitlines()[0] if error.exists() else status
            raise FederationFailed(f"the federated run {status}: {reason}")
        return out

    def _status(self, run_id: str) -> str:
        listed = self._flwr("ls", "federation", "--run-id", str(run_id), timeout=60)
        runs = listed.get("runs") or []
        return runs[0]["status"] if runs else "unknown"

    def ask_worker(self, holder: str, request: dict) -> dict:
        """A request to a holder's worker (e.g. ``codes`` with the global weights)."""
        from multiprocessing.connection import Client

        host, _, port = self.workers[holder].rpartition(":")
        with Client((host, int(port)), authkey=self.key.read_bytes()) as conn:
            conn.send(request)
            reply = conn.recv()
        if "error" in reply:
            raise FederationFailed(f"holder {holder!r}: {reply['error']}")
        return reply


def merge_private_rounds(rounds: list[dict], reports: list[dict]) -> list[dict]:
    """The server's round lines with what DP holders kept to themselves (each ``report``'s
    ``private_rounds``: loss and training seconds per round) merged in: the slowest holder's
    training time, the overhead and the holders' losses of every round. Lines that already
    have them (no DP) are returned as they are. These are figures on private rows: reported,
    not covered by any holder's epsilon."""
    kept = {}
    for r in reports:
        for p in r.get("private_rounds") or []:
            kept.setdefault(int(p["round"]), []).append({"holder": r["holder"], **p})
    out = []
    for line in rounds:
        held = kept.get(int(line["round"]))
        if line.get("overhead_seconds") is None and held:
            slowest = max(h["train-seconds"] for h in held)
            line = {**line, "slowest_training_seconds": round(slowest, 3),
                    "overhead_seconds": round(line["wall_seconds"] - slowest, 3),
                    "holders": sorted(held, key=lambda h: h["holder"])}
        out.append(line)
    return out


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value))  # a TOML basic string
