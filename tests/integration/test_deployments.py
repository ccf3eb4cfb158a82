"""prefect.yaml registers with the real `prefect deploy` against the test server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def prefect_cli(*args: str, env: dict[str, str]) -> str:
    exe = Path(sys.executable).with_name("prefect")
    out = subprocess.run([str(exe), *args], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, f"prefect {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}"
    return out.stdout


def test_prefect_yaml_deploys(prefect_harness, tmp_path: Path):
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(),
           "CLOAKFLOW_HOME": str(REPO), "PREFECT_HOME": str(tmp_path)}
    for pool in ("cpu", "gpu"):
        prefect_cli("work-pool", "create", pool, "--type", "process", "--overwrite", env=env)
    prefect_cli("--no-prompt", "deploy", "--all", env=env)

    with get_client(sync_client=True) as client:
        daily = client.read_deployment_by_name("anonymize/bank-marketing-daily")
        gpu = client.read_deployment_by_name("anonymize/bank-marketing-gpu")
        sweep = client.read_deployment_by_name("privacy-frontier/bank-marketing-frontier")
        dp = client.read_deployment_by_name("anonymize/bank-marketing-dp")
        synthetic = client.read_deployment_by_name("synthesize/bank-marketing-synthetic")
        federated = client.read_deployment_by_name("federate/bank-marketing-federated")
        quick = client.read_deployment_by_name("anonymize/bank-marketing-quick")
        desensitized = client.read_deployment_by_name("desensitize/bank-marketing-desensitized")
        masked = client.read_deployment_by_name("mask/bank-marketing-masked")
    assert daily.work_pool_name == "cpu" and gpu.work_pool_name == "gpu"
    assert quick.work_pool_name == "cpu" and quick.schedules == []
    assert (quick.parameters["params"]["epochs"], quick.parameters["params"]["folds"]) == (5, 3)
    assert [s.schedule.cron for s in daily.schedules] == ["0 3 * * *"]
    assert gpu.schedules == [] and dp.schedules == []
    assert dp.parameters["params"]["dp_epsilon"] == 3.0 and dp.work_pool_name == "cpu"
    assert daily.parameters["params"]["dataset"] == "bank-marketing"
    assert "public" in daily.parameters["params"]["accept_risk"]
    assert sweep.work_pool_name == "cpu" and len(sweep.parameters["params"]["multipliers"]) >= 5
    assert gpu.job_variables["env"]["CUDA_VISIBLE_DEVICES"] == "0"
    assert daily.pull_steps[0]["prefect.deployments.steps.set_working_directory"][
        "directory"] in (str(REPO), "{{ $CLOAKFLOW_HOME }}")
    # the pydantic parameter model is what the UI renders as a form
    schema = daily.parameter_openapi_schema
    props = schema["definitions"]["RunParameters"]["properties"]
    assert {"dataset", "seed", "epochs", "folds", "fold_scheme", "forest", "accept_risk",
            "noise_multiplier", "dp_epsilon", "dp_delta", "dp_clip", "dp_epochs", "dp_design",
            "dp_report"} <= set(props)
    assert props["fold_scheme"]["enum"] == ["stratified-shuffled", "tutorial"]
    assert synthetic.work_pool_name == "cpu" and synthetic.schedules == []
    assert synthetic.parameters["params"]["dp_epsilon"] == 3.0
    form = synthetic.parameter_openapi_schema["definitions"]["SynthesizeParameters"]
    assert {"rows", "condition", "model", "dp_epsilon", "dp_sampling_rate",
            "accept_risk"} <= set(form["properties"])
    assert desensitized.parameters["params"]["sensitive"] == ["housing", "loan"]
    form = desensitized.parameter_openapi_schema["definitions"]["DesensitizeParameters"]
    assert {"sensitive", "distortion", "epochs", "accept_risk"} <= set(form["properties"])
    assert masked.parameters["params"]["columns"] == ["age", "job"]
    form = masked.parameter_openapi_schema["definitions"]["MaskParameters"]
    assert {"columns", "rows", "folds", "accept_risk"} <= set(form["properties"])
    assert federated.work_pool_name == "cpu" and federated.parameters["params"]["clients"] == 3
    form = federated.parameter_openapi_schema["definitions"]["FederateParameters"]
    assert {"holders", "partition", "clients", "rounds", "local_epochs", "weighting",
            "dp_epsilon"} <= set(form["properties"])


def test_make_deploy_says_what_it_needs_without_a_server_address():
    import shutil

    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    done = subprocess.run(["make", "deploy"], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "PREFECT_API_URL=http://127.0.0.1:4200/api make deploy" in done.stderr
