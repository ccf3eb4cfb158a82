"""The documentation site and the README against the product: the site builds strictly
(`mkdocs build --strict`: a broken link or page fails), its generated CLI reference lists every
option ``cloakflow COMMAND --help`` lists, every registered release kind, model family and
command has its page, every command a shell block of the README or the docs shows parses as
the command line reads it (and the README's examples are run as written by the slow test
``tests/integration/test_readme.py``), and the README stays short."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
BIN = Path(sys.executable).parent


def _hooks():
    spec = importlib.util.spec_from_file_location("docs_hooks", DOCS / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def shell_lines(path: Path) -> list[str]:
    """The command lines of ``path``'s shell blocks (```bash, ```sh or unlabelled; continuation
    lines joined, comments and prompts dropped)."""
    lines, inside = [], False
    for raw in path.read_text().splitlines():
        if raw.strip().startswith("```"):  # an unlabelled block counts as shell
            inside = not inside and raw.strip() in ("```", "```bash", "```sh", "```shell")
            continue
        if not inside:
            continue
        text = raw.split(" #", 1)[0].strip().removeprefix("$ ")
        if lines and lines[-1].endswith("\\"):
            lines[-1] = lines[-1][:-1] + " " + text
        elif text and not text.startswith("#"):
            lines.append(text)
    return lines


def documented() -> list[Path]:
    return [REPO / "README.md", *sorted(p for p in DOCS.rglob("*.md")
                                        if "reports" not in p.parts and "api-root" not in p.parts)]


def test_the_readme_is_short_and_starts_with_the_two_commands():
    text = (REPO / "README.md").read_text().splitlines()
    assert len(text) <= 150
    assert text[2].split() == ["make", "demo", "#", *text[2].split()[3:]]
    assert text[3].split()[:2] == ["make", "test"]


@pytest.mark.parametrize("command", ["run", "synthesize", "desensitize", "mask", "federate",
                                     "frontier", "budget", "profile", "attack"])
def test_the_cli_reference_lists_every_option_of_help(command):
    from cloakflow.flows import cli

    assert set(cli.COMMANDS) == {"run", "synthesize", "desensitize", "mask", "federate",
                                 "frontier", "budget", "profile", "attack"}  # a new one: above
    help_text = subprocess.run([str(BIN / "cloakflow"), command, "--help"], capture_output=True,
                               text=True, check=True,
                               env={**os.environ, "COLUMNS": "1000"}).stdout  # no wrapping
    from_help = set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", help_text)) - {"--help"}
    page = _hooks().cli_reference()
    section = page.split(f"## `cloakflow {command}`")[1].split("\n## ")[0]
    listed = set(re.findall(r"`(--[a-z][a-z0-9-]*)`", section))
    assert listed == from_help, (listed ^ from_help)


def test_every_kind_model_and_command_has_its_page():
    from cloakflow.flows import cli
    from cloakflow.models import registry
    from cloakflow.tasks.release import kinds

    nav = (REPO / "mkdocs.yml").read_text()
    for name in kinds.names():
        assert f"guides/{name}.md" in nav and (DOCS / "guides" / f"{name}.md").is_file(), name
    models = (DOCS / "concepts" / "models.md").read_text()
    for name in registry.names():
        assert f"`{name}`" in models, f"model family {name!r} is not in concepts/models.md"
    pages = "\n".join(p.read_text() for p in documented() if p.name != "README.md")
    for name in cli.COMMANDS:
        assert f"cloakflow {name}" in pages, f"no page shows `cloakflow {name}`"
    reference = _hooks().cli_reference()
    assert all(f"## `cloakflow {name}`" in reference for name in cli.COMMANDS)


def test_every_documented_command_parses_as_the_command_line_reads_it():
    """Each ``cloakflow ...`` line of a shell block parses (its options exist, its values
    have their types); each ``make X`` names a target of the Makefile."""
    import shlex

    from cloakflow.flows import cli

    targets = set(re.findall(r"^([a-z][a-z-]*):", (REPO / "Makefile").read_text(), re.M))
    seen = 0
    for path in documented():
        for line in shell_lines(path):
            command = re.sub(r"^(\w+=\S+\s+)+", "", line)  # VAR=value prefixes
            if not command.startswith(("cloakflow ", "make ")):
                continue  # another program, or a diagram in an unlabelled block
            words = shlex.split(command)
            if words[0] == "cloakflow":
                try:
                    cli._parser().parse_args(words[1:])
                except SystemExit as exc:
                    raise AssertionError(f"{path.name}: `{line}` does not parse") from exc
                seen += 1
            elif words[0] == "make":
                named = [w for w in words[1:] if "=" not in w and not w.startswith("-")]
                assert set(named) <= targets, f"{path.name}: `{line}`: no such make target"
                seen += 1
    assert seen >= 10


def test_the_site_builds_strictly(tmp_path):
    done = subprocess.run([str(BIN / "mkdocs"), "build", "--strict", "--site-dir",
                           str(tmp_path / "site")], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
                          timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    cli_page = (tmp_path / "site" / "reference" / "cli" / "index.html").read_text()
    assert "--dp-epsilon" in cli_page and "cloakflow synthesize" in cli_page
    assert (tmp_path / "site" / "reports" / "2026-12-07-synthetic-structure" /
            "index.html").is_file()  # the dated reports are pages of the site
