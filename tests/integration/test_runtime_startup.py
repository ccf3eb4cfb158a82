"""CLI start-up (tasks/runtime.py), each in a fresh interpreter with a clean environment: the
Prefect server probe, user settings winning, env defaults and the TensorFlow noise filter."""

from __future__ import annotations

import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from tests.integration.conftest import clean_env

PROBE = ("from cloakflow.tasks import runtime; runtime.prepare_cli(); "
         "from cloakflow.flows import engine; "
         "print(engine.choose_prefect_api(start_temporary=False)); import os; "
         "print(os.environ['PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS'])")


def python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    return out


class _Health(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's name
        self.send_response(200 if self.path == "/api/health" else 404)
        self.end_headers()
        self.wfile.write(b"true")

    def log_message(self, *args):
        pass


@pytest.fixture
def health_server():
    server = HTTPServer(("127.0.0.1", 0), _Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()


def test_a_running_local_server_gets_the_runs(tmp_path: Path, health_server: int):
    env = clean_env(tmp_path, PREFECT_SERVER_API_PORT=str(health_server))
    out = python(PROBE, env).stdout.split()
    assert out == [f"http://127.0.0.1:{health_server}/api", "120"]


def test_no_server_and_user_settings_win(tmp_path: Path, health_server: int):
    assert python(PROBE, clean_env(tmp_path)).stdout.split() == ["None", "120"]
    mine = clean_env(tmp_path, PREFECT_SERVER_API_PORT=str(health_server),
                     PREFECT_API_URL="http://127.0.0.1:9/api",
                     PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="33")
    assert python(PROBE, mine).stdout.split() == ["http://127.0.0.1:9/api", "33"]


def test_filtered_stderr_drops_only_tensorflow_noise(tmp_path: Path):
    code = ("import os; from cloakflow.tasks.runtime import filtered_stderr\n"
            "with filtered_stderr():\n"
            "    os.write(2, b'WARNING: All log messages before absl::InitializeLog() is called "
            "are written to STDERR\\n')\n"
            "    os.write(2, b'I0000 port.cc:153] oneDNN custom operations are on. You may\\n')\n"
            "    os.write(2, b'E0000 cuda_platform.cc:52] failed call to cuInit: INTERNAL\\n')\n"
            "    os.write(2, b'a real error\\n')\n")
    assert python(code, clean_env(tmp_path)).stderr == "a real error\n"
