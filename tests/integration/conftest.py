"""Helpers for tests that start the product's own processes (CLI runs, servers, workers): a
clean environment with fresh stores, free loopback ports, and process groups that are always
stopped at the end."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def clean_env(root: Path, **extra: str) -> dict[str, str]:
    """The caller's environment without any Prefect, MLflow or cloakflow setting (except
    CLOAKFLOW_DATA_DIR), with fresh stores under ``root``. PREFECT_SERVER_API_PORT points at a
    free port, so that a Prefect server a developer runs on :4200 is not picked up."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PREFECT_", "MLFLOW_", "CLOAKFLOW_"))}
    if "CLOAKFLOW_DATA_DIR" in os.environ:
        env["CLOAKFLOW_DATA_DIR"] = os.environ["CLOAKFLOW_DATA_DIR"]
    env.update(PREFECT_HOME=str(root / "prefect-home"),
               MLFLOW_TRACKING_URI=f"sqlite:///{root / 'mlflow.db'}",
               CLOAKFLOW_LEDGER_DIR=str(root / "ledger"),
               PREFECT_SERVER_API_PORT=str(free_port()),
               PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}")
    env.update(extra)
    return env


def wait_http(url: str, timeout: float, proc: subprocess.Popen | None = None) -> None:
    """Wait until ``url`` answers 200 (or fail, with the process's exit if it died)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{proc.args} exited with {proc.returncode} before {url} "
                                 "answered")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"{url} did not answer within {timeout:.0f} s")


class ProcessGroups:
    """Starts commands in their own process groups and stops every group at the end."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []

    def start(self, args: list[str], **kwargs) -> subprocess.Popen:
        proc = subprocess.Popen(args, start_new_session=True, **kwargs)
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in self.procs:
            _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for proc in self.procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            _signal_group(proc, signal.SIGKILL)  # children left behind by the leader too
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


@pytest.fixture
def process_groups():
    groups = ProcessGroups()
    try:
        yield groups
    finally:
        groups.stop_all()


def listening_sockets(pids: set[int]) -> list[tuple[int, str]]:
    """(pid, local address) of every TCP socket in LISTEN state owned by ``pids`` (Linux)."""
    inodes: dict[str, int] = {}
    for pid in pids:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes[target[8:-1]] = pid
        except OSError:
            continue
    found = []
    for table, v6 in (("/proc/net/tcp", False), ("/proc/net/tcp6", True)):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if parts[3] != "0A" or parts[9] not in inodes:  # 0A = LISTEN
                continue
            host_hex, port_hex = parts[1].split(":")
            found.append((inodes[parts[9]], f"{_host(host_hex, v6)}:{int(port_hex, 16)}"))
    return found


def _host(hex_addr: str, v6: bool) -> str:
    import ipaddress

    raw = bytes.fromhex(hex_addr)
    if not v6:
        return str(ipaddress.IPv4Address(raw[::-1]))
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
    return str(ipaddress.IPv6Address(words))


def group_pids(pgids: set[int]) -> set[int]:
    """Every live process whose process group is one of ``pgids`` (a zombie, an exited
    process its new parent has not reaped yet, is not live)."""
    pids = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.getpgid(int(entry)) in pgids and not _zombie(int(entry)):
                    pids.add(int(entry))
            except OSError:
                continue
    return pids


def _zombie(pid: int) -> bool:
    """Whether ``pid`` has exited and waits to be reaped (state Z in /proc/<pid>/stat)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] == "Z"
