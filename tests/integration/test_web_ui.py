"""The web interfaces as a user meets them, in headless Chromium.

`make ui` on non-default ports (Prefect server + MLflow UI, 127.0.0.1 only, fresh stores),
`make deploy`, a `prefect worker start --pool cpu`, two runs of the bank sample triggered
through the Prefect API with the parameters the UI's run form sends (one published, one the
policy blocks); then the flow-run page, its task runs (named by what they do), the blocked
run, the utility table artifact, the MLflow run page and the experiment's models view are
rendered by Chromium and their TEXT is checked. The screenshots go to docs/img/ (the docs
show them; this test refreshes them). Every process started here is stopped at the end
(process groups), and nothing may listen on anything but 127.0.0.1.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import DATA_DIR
from tests.integration.conftest import (
    BIN,
    REPO,
    clean_env,
    free_port,
    group_pids,
    listening_sockets,
    wait_http,
)

pytestmark = pytest.mark.integration
OUTPUT = REPO / "test-output" / "web-ui"
IMAGES = REPO / "docs" / "img"  # the screenshots the docs show, refreshed by this test
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def chromium(url: str, screenshot: Path | None = None) -> str:
    """The DOM of ``url`` after Chromium rendered it (and a screenshot, if asked)."""
    base = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1500,1000",
            "--virtual-time-budget=20000", "--user-data-dir=" + str(OUTPUT / ".profile")]
    if screenshot is not None:
        subprocess.run([*base, f"--screenshot={screenshot}", url], capture_output=True,
                       timeout=120, check=True)
        print(f"screenshot: {screenshot}")
    out = subprocess.run([*base, "--dump-dom", url], capture_output=True, text=True,
                         timeout=120, check=True)
    return out.stdout


def _finished(client, run, worker, log_dir: Path, timeout: float = 420):
    """The flow run ``run`` once it reached a final state (fail if the worker died first)."""
    deadline = time.monotonic() + timeout
    while True:
        run = client.read_flow_run(run.id)
        if run.state is not None and run.state.is_final():
            return run
        assert worker.poll() is None, (log_dir / "worker.log").read_text()
        assert time.monotonic() < deadline, f"run still {run.state_name}"
        time.sleep(2)


def page_text(dom: str) -> str:
    """Visible text of a dumped DOM (tags, scripts and styles removed)."""
    import re

    dom = re.sub(r"<(script|style)[^>]*>.*?</\1>", " ", dom, flags=re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", dom))


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not on PATH (apt-get install -y "
                    "chromium; .ci/run installs it when run as root)")
# ~2.5 min (two servers, a worker, Chromium): test_deployments checks deployments and UI forms
@pytest.mark.slow
def test_prefect_and_mlflow_uis_show_a_deployed_run(tmp_path: Path, process_groups):
    sample = DATA_DIR / "bank-additional.csv"
    if not sample.is_file():
        pytest.skip(f"{sample} not found: set CLOAKFLOW_DATA_DIR")
    OUTPUT.mkdir(parents=True, exist_ok=True)
    IMAGES.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    pp, mp = free_port(), free_port()
    api = f"http://127.0.0.1:{pp}/api"
    env = clean_env(tmp_path, PREFECT_API_URL=api, CLOAKFLOW_HOME=str(REPO),
                    PREFECT_WORKER_QUERY_SECONDS="1", PREFECT_WORKER_PREFETCH_SECONDS="1")
    env.pop("PREFECT_SERVER_API_PORT")
    make = ["make", "-s", "-o", "setup", f"BIN={BIN}"]
    ui_log = open(tmp_path / "ui.log", "w")
    ui = process_groups.start([*make, "ui", f"PREFECT_PORT={pp}", f"MLFLOW_PORT={mp}"],
                              cwd=REPO, env={k: v for k, v in env.items()
                                             if k != "PREFECT_API_URL"},
                              stdout=ui_log, stderr=subprocess.STDOUT)
    wait_http(f"{api}/health", 180, ui)
    wait_http(f"http://127.0.0.1:{mp}/health", 180, ui)
    with urllib.request.urlopen(f"http://127.0.0.1:{pp}/ui-settings", timeout=5) as resp:
        assert json.load(resp)["api_url"] == api  # the browser calls this server, not :4200
    t_ui = time.monotonic() - t0

    # the experiment's artifacts go under tmp_path, not into the checkout the worker runs from
    import mlflow

    client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])
    exp_id = client.create_experiment("cloakflow/bank-marketing",
                                      artifact_location=(tmp_path / "mlartifacts").as_uri())

    subprocess.run([*make, "deploy"], cwd=REPO, env=env, check=True, capture_output=True,
                   timeout=300)
    worker_log = open(tmp_path / "worker.log", "w")
    worker = process_groups.start([str(BIN / "prefect"), "worker", "start", "--pool", "cpu"],
                                  cwd=tmp_path, env=env, stdout=worker_log,
                                  stderr=subprocess.STDOUT)

    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: api}), get_client(sync_client=True) as pc:
        dep = pc.read_deployment_by_name("anonymize/bank-marketing-daily")
        # what the run form sends: the deployment's parameters, as edited by the user
        params = {**dep.parameters["params"], "input_path": str(sample), "epochs": 1,
                  "folds": 2, "importance_rows": 0, "privacy_attacks": False,
                  "use_cache": False, "out": str(tmp_path / "releases")}
        run = _finished(pc, pc.create_flow_run_from_deployment(
            dep.id, parameters={"params": params}), worker, tmp_path)
        assert run.state.is_completed(), (tmp_path / "worker.log").read_text()[-4000:]
        t_run = time.monotonic() - t0
        # the same without attacks and without an accepted risk: the policy blocks it
        blocked = _finished(pc, pc.create_flow_run_from_deployment(dep.id, parameters={
            "params": {**params, "accept_risk": None}}), worker, tmp_path)
        assert (blocked.state.type.value, blocked.state.name) == ("FAILED", "Blocked")

        # nothing started here listens on anything but loopback
        sockets = listening_sockets(group_pids({p.pid for p in process_groups.procs}))
        assert sockets and all(a.startswith(("127.0.0.1:", "::ffff:127.0.0.1:"))
                               for _, a in sockets), sockets

    mruns = client.search_runs([exp_id], f"tags.`prefect.flow_run_id` = '{run.id}'")
    assert len(mruns) == 1
    mrun = mruns[0]

    flow_dom = chromium(f"http://127.0.0.1:{pp}/runs/flow-run/{run.id}",
                        IMAGES / "prefect-flow-run.png")
    text = page_text(flow_dom)
    assert run.name in text and "Completed" in text, text[:2000]
    # the task runs are named by what they do (task_run_name from the registries' names): the
    # flow-run page draws them on a canvas (in the screenshot); each one's own page names it
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with temporary_settings({PREFECT_API_URL: api}), get_client(sync_client=True) as pc:
        task_runs = {t.name: t.id for t in pc.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id])))}
    assert {"train[autoencoder:whole]", "evaluate[ENCODED]", "publish[bank-marketing]"} <= \
        set(task_runs), sorted(task_runs)
    task_text = page_text(chromium(f"http://127.0.0.1:{pp}/runs/task-run/"
                                   f"{task_runs['train[autoencoder:whole]']}",
                                   IMAGES / "prefect-task-run.png"))
    assert "train[autoencoder:whole]" in task_text, task_text[:2000]
    blocked_text = page_text(chromium(f"http://127.0.0.1:{pp}/runs/flow-run/{blocked.id}",
                                      IMAGES / "prefect-blocked-run.png"))
    assert "Blocked" in blocked_text and blocked.name in blocked_text, blocked_text[:2000]
    key = "utility-bank-marketing"
    key_text = page_text(chromium(f"http://127.0.0.1:{pp}/artifacts/key/{key}",
                                  IMAGES / "prefect-utility-artifact-key.png"))
    # the key's latest artifact: the blocked run's, made after the published one's
    assert key in key_text and blocked.name in key_text, key_text[:2000]
    query = {"artifacts": {"key": {"any_": [key]}, "flow_run_id": {"any_": [str(run.id)]}}}
    req = urllib.request.Request(f"{api}/artifacts/filter", data=json.dumps(query).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        (artifact,) = json.load(resp)
    table_text = page_text(chromium(f"http://127.0.0.1:{pp}/artifacts/artifact/{artifact['id']}",
                                    IMAGES / "prefect-utility-table.png"))
    assert all(w in table_text for w in ("test_roc_auc", "ENCODED", "GROUP_ENCODED")), \
        table_text[:2000]
    ml_dom = chromium(f"http://127.0.0.1:{mp}/#/experiments/{exp_id}/runs/{mrun.info.run_id}"
                      "?workflowType=machine_learning", IMAGES / "mlflow-run.png")
    ml_text = page_text(ml_dom)
    assert mrun.info.run_name in ml_text, ml_text[:2000]
    assert "ENCODED.test_roc_auc" in ml_text, ml_text[:3000]
    # the experiment's models view lists the Keras models the child runs logged
    # (the UI's model-training view: its GenAI view calls the same page "Agent versions")
    models_text = page_text(chromium(f"http://127.0.0.1:{mp}/#/experiments/{exp_id}/models"
                                     "?workflowType=machine_learning",
                                     IMAGES / "mlflow-models.png"))
    assert "autoencoder" in models_text and "Agent versions" not in models_text, \
        models_text[:3000]
    print(f"web UI test: servers healthy after {t_ui:.1f} s, run completed after {t_run:.1f} s, "
          f"pages rendered after {time.monotonic() - t0:.1f} s; screenshots in {IMAGES}")
