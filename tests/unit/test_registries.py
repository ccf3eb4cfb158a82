"""Kinds and models are told apart by asking their registries, never by comparing names: no
comparison, membership test or ``match`` on a registered release-kind or model name outside
``models/registry.py`` and ``tasks/release/kinds/``."""

from __future__ import annotations

import ast
from pathlib import Path

from cloakflow.models import registry
from cloakflow.tasks.release import kinds

ROOT = Path(__file__).resolve().parents[2]
REGISTRIES = ("models/registry.py", "tasks/release/kinds/")
# wire-protocol operation names of the federated worker are not kinds
WIRE = {("federated/worker.py", "op == 'codes'")}


def _strings(node: ast.AST) -> list[str]:
    items = node.elts if isinstance(node, (ast.Tuple, ast.List, ast.Set)) else [node]
    return [i.value for i in items if isinstance(i, ast.Constant) and isinstance(i.value, str)]


def name_tests(source: str, names: set[str]) -> list[tuple[int, str]]:
    """(line, code) of each comparison, membership test or match case on one of ``names``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare):
            if any(s in names for part in (node.left, *node.comparators) for s in _strings(part)):
                found.append((node.lineno, ast.unparse(node)))
        elif isinstance(node, ast.match_case):
            for sub in ast.walk(node.pattern):
                if isinstance(sub, ast.MatchValue) and set(_strings(sub.value)) & names:
                    found.append((sub.lineno, f"case {ast.unparse(sub.value)}"))
    return found


def test_the_check_sees_comparisons_membership_and_match():
    source = ("a == 'vae'\nb in ('x', 'codes')\nmatch k:\n    case 'synthetic':\n        pass\n"
              "d = {'vae': 1}\nf(model='vae')\n")
    assert [line for line, _ in name_tests(source, {"vae", "codes", "synthetic"})] == [1, 2, 4]


def test_no_kind_or_model_name_is_compared_outside_the_registries():
    names = set(registry.names()) | set(kinds.names())
    found = []
    for base in ("flows", "tasks", "models", "federated"):
        for path in sorted((ROOT / base).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel.startswith(REGISTRIES):
                continue
            found += [f"{rel}:{line}: {code}" for line, code in
                      name_tests(path.read_text(), names) if (rel, code) not in WIRE]
    assert not found, "ask the registry instead:\n" + "\n".join(found)
