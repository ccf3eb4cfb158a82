"""The domain modules run without Prefect: only the ``steps.py`` modules (each domain's Prefect
tasks, and ``tasks/steps.py``, the Prefect side of the infrastructure) and the flows import it,
so the federated workers, benchmarks and a future Dask worker can use the rest on their own."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _imports_prefect(path: Path) -> bool:
    """Whether ``path`` imports Prefect anywhere (module level or inside a function)."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import) and any(
                a.name.split(".")[0] == "prefect" for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "prefect":
            return True
    return False


def test_only_steps_modules_and_flows_import_prefect():
    offenders = sorted(
        str(p.relative_to(ROOT)) for d in ("tasks", "models", "federated")
        for p in (ROOT / d).rglob("*.py")
        if p.name != "steps.py" and _imports_prefect(p))
    assert offenders == []


def test_the_check_sees_a_lazy_import(tmp_path):
    module = tmp_path / "lazy.py"
    module.write_text("def f():\n    from prefect.futures import as_completed\n")
    assert _imports_prefect(module)
    module.write_text("def f():\n    return 'prefect'\n")
    assert not _imports_prefect(module)


def test_domain_modules_import_where_prefect_cannot():
    script = """
import importlib, pkgutil, sys
sys.modules["prefect"] = None  # any `import prefect` raises ImportError
failed = []
for base in ("cloakflow.tasks", "cloakflow.models", "cloakflow.federated"):
    pkg = importlib.import_module(base)
    for m in pkgutil.walk_packages(pkg.__path__, base + "."):
        if m.name.endswith(".steps"):
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
