"""The domain modules run without Prefect: only the ``steps.py`` module of each domain (its
Prefect tasks), the flows and the orchestration infrastructure import it, so the federated
workers, benchmarks and a future Dask worker can use the rest on their own."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# orchestration infrastructure: Prefect's cache policies, task runners, artifacts, the
# stop signal's bridge to Prefect's cancellation (imported by the steps and the flows only)
INFRA = {"tasks/caching.py", "tasks/runners.py", "tasks/artifacts.py", "tasks/runtime.py"}


def _imports_prefect(path: Path) -> bool:
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import) and any(
                a.name.split(".")[0] == "prefect" for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "prefect":
            return True
    return False


def test_only_steps_flows_and_infra_import_prefect():
    offenders = sorted(
        str(p.relative_to(ROOT)) for d in ("tasks", "models", "federated")
        for p in (ROOT / d).rglob("*.py")
        if p.name != "steps.py" and str(p.relative_to(ROOT)) not in INFRA
        and _imports_prefect(p))
    assert offenders == []


def test_domain_modules_import_where_prefect_cannot():
    script = """
import importlib, pkgutil, sys
sys.modules["prefect"] = None  # any `import prefect` raises ImportError
failed = []
for base in ("cloakflow.tasks", "cloakflow.models", "cloakflow.federated"):
    pkg = importlib.import_module(base)
    for m in pkgutil.walk_packages(pkg.__path__, base + "."):
        if m.name.endswith(".steps") or m.name == "cloakflow.tasks.caching":
            continue
        try:
            importlib.import_module(m.name)
        except ImportError as exc:
            failed.append(f"{m.name}: {exc}")
print("\\n".join(failed) or "ok")
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "ok", done.stdout
