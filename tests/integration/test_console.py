"""The console of a command-line run: quiet by default (one line per step, progress every 10
epochs, the verdict, then the report's path and the release folder last: at most 40 lines),
every log line with ``--verbose``; the flow run's log in Prefect's API has every line either
way (``tasks.console``, ``engine.console``).

The real command line in its own process, recording its run in the session's Prefect test
server (no temporary server to start).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import mlflow
import pytest
import yaml

from tests.helpers import make_tiny_frame, tiny_profile_dict
from tests.integration.conftest import BIN, clean_env

pytestmark = pytest.mark.integration

STEP = re.compile(r"^\d\d:\d\d:\d\d ")  # a quiet console line: HH:MM:SS text


def _cloakflow_run(root: Path, *options: str) -> tuple[int, str, str, dict[str, str]]:
    from prefect.settings import PREFECT_API_URL

    csv, prof = root / "tiny.csv", root / "tiny.yaml"
    make_tiny_frame(n=600).write_csv(csv)
    prof.write_text(yaml.safe_dump(tiny_profile_dict()))
    env = clean_env(root, PREFECT_API_URL=PREFECT_API_URL.value())
    done = subprocess.run(
        [str(BIN / "cloakflow"), "run", "tiny", "--profile", str(prof), "--input", str(csv),
         "--epochs", "12", "--folds", "2", "--importance-rows", "100", "--no-cache",
         "--accept-risk", "test of the console", *options],
        cwd=root, env=env, capture_output=True, text=True, timeout=600)
    return done.returncode, done.stdout, done.stderr, env


def _flow_run_log(env: dict[str, str], release: str) -> list[str]:
    """The messages of the release's flow run log, read through Prefect's API."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    parent = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"]).get_run(Path(release).name)
    flow_run_id = parent.data.tags["prefect.flow_run_id"]
    messages: list[str] = []
    with get_client(sync_client=True) as client:
        while True:  # the API pages its answers by at most 200 lines
            page = client.read_logs(log_filter=LogFilter(
                flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])), limit=200,
                offset=len(messages))
            messages += [log.message for log in page]
            if len(page) < 200:
                return messages


def test_the_quiet_console_prints_a_line_per_step_and_the_release_last(
        prefect_harness, tmp_path: Path):
    rc, out, err, env = _cloakflow_run(tmp_path)
    assert rc == 0, err
    lines = (out + err).splitlines()
    assert len(lines) <= 40, "\n".join(lines)
    steps = [line for line in err.splitlines() if STEP.match(line)]
    for expected in ("ingested ", "validation of tiny.csv", "split: ", "preprocessed: ",
                     "[whole] ", "utility ENCODED: test ROC AUC", "attacks done",
                     "verdict: "):
        assert any(expected in line for line in steps), (expected, err)
    # no task states, no per-epoch lines below the 10th, no library warnings
    assert not [line for line in lines if "Finished in state" in line or "epoch 1/12" in line
                or "Warning" in line or "warnings.warn" in line], "\n".join(lines)
    release = out.strip().splitlines()[-1]
    assert (tmp_path / release / "manifest.json").is_file()
    assert out.strip().splitlines()[-3].startswith(f"report: {release}/privacy-report.md")
    # the flow run's log holds the details the console left out, and the step lines
    log = _flow_run_log(env, release)
    assert any("epoch 1/12" in m for m in log) and any("verdict: " in m for m in log)
    assert any("# Privacy report: tiny" in m for m in log)


@pytest.mark.slow  # ~40 s: the same run with every log line
def test_verbose_prints_every_log_line_and_the_tables(prefect_harness, tmp_path: Path):
    rc, out, err, _ = _cloakflow_run(tmp_path, "--verbose")
    assert rc == 0, err
    assert "Finished in state Completed()" in err and "epoch 1/12" in err
    assert "| test_roc_auc |" in out and not any(STEP.match(line) for line in err.splitlines())
