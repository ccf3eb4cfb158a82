"""The README's example commands run as written: each line of its example block, in a shell,
from a fresh working folder with the environment activated (``. .venv/bin/activate`` is the
interpreter's own bin on PATH here) and the bank table in ``CLOAKFLOW_DATA_DIR``; every one
exits 0. The default suite checks that every documented command parses
(``tests/unit/test_docs.py``); this runs them."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.conftest import DATA_DIR
from tests.integration.conftest import clean_env
from tests.unit.test_docs import REPO, shell_lines

pytestmark = pytest.mark.integration


def readme_examples() -> list[str]:
    """The ``cloakflow ...`` lines of the README's example block."""
    return [line for line in shell_lines(REPO / "README.md") if line.startswith("cloakflow ")]


@pytest.mark.slow  # ~10 min: five commands on the full bank table
def test_the_readme_examples_run_as_written(tmp_path: Path):
    if not (DATA_DIR / "bank-additional-full.csv").is_file():
        pytest.skip(f"the bank table is not in {DATA_DIR}: set CLOAKFLOW_DATA_DIR")
    examples = readme_examples()
    assert len(examples) >= 5
    env = clean_env(tmp_path, CLOAKFLOW_DATA_DIR=str(DATA_DIR))
    for line in examples:
        done = subprocess.run(["bash", "-c", line], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=1200)
        assert done.returncode == 0, f"`{line}` exited {done.returncode}:\n{done.stderr[-3000:]}"
    assert (tmp_path / "my_table.yaml").is_file()
    assert len(list((tmp_path / "releases" / "bank-marketing").iterdir())) >= 2
