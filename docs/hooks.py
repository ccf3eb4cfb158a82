"""MkDocs hooks of the documentation site: the reference pages are generated at build time
from the sources the product itself uses, so they cannot drift from it.

A page holds a marker ``<!-- generated: NAME -->``; :func:`on_page_markdown` replaces it with
:data:`GENERATORS` ``[NAME]()``:

- ``cli``: every command of ``cloakflow`` with its options, from the parser the command line
  builds (``flows.cli._parser``: its options come from the flows' parameter models);
- ``profile``: the profile's fields, from the pydantic model ``DatasetProfile``;
- ``manifest``: the release manifests, from the committed JSON Schemas in ``schemas/`` (the
  files a test keeps equal to the manifest types);
- ``exit-codes``: the command line's exit statuses and refusal headlines, from its refusal
  classes;
- ``limits``: each registered release kind's policy limits, from its limits model;
- ``kinds`` / ``models``: the registered release kinds and model families.

``tests/unit/test_docs.py`` imports this module to check the pages against ``--help`` and
the registries.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MARKER = re.compile(r"<!-- generated: ([a-z-]+) -->")


def _cell(text) -> str:
    """Text for a markdown table cell: pipes escaped, HTML-special characters as entities
    (``<dataset>`` is text, not a tag), argparse's doubled ``%`` single."""
    text = str(text).replace("%%", "%").replace("&", "&amp;").replace("<", "&lt;")
    return text.replace(">", "&gt;").replace("|", "\\|").replace("\n", " ").strip()


def _flags(action: argparse.Action) -> str:
    if not action.option_strings:
        return f"`{action.dest.upper()}`"
    return ", ".join(f"`{o}`" for o in action.option_strings)


def options(command: str) -> list[tuple[str, str]]:
    """(flags, help) of every option of ``cloakflow COMMAND``, in the parser's order."""
    from cloakflow.flows import cli

    sub = cli._parser()._subparsers._group_actions[0].choices[command]
    return [(_flags(a), a.help or "") for a in sub._actions
            if not isinstance(a, argparse._HelpAction)]


def cli_reference() -> str:
    """Every ``cloakflow`` command: its purpose, usage and options."""
    from cloakflow.flows import cli

    parser = cli._parser()
    subs = parser._subparsers._group_actions[0].choices
    out = []
    for name, command in cli.COMMANDS.items():
        usage = subs[name].format_usage().removeprefix("usage: ").strip()
        source = (f"Options from the parameter model `{command.model}` "
                  "(`flows/parameters.py`), the form the Prefect UI shows for its deployments."
                  if command.model else "")
        out += [f"## `cloakflow {name}`", "", command.help[0].upper() + command.help[1:] + ".",
                "", "```text", usage, "```", ""]
        if source:
            out += [source, ""]
        out += ["| option | meaning |", "|---|---|"]
        out += [f"| {flags} | {_cell(text)} |" for flags, text in options(name)]
        out.append("")
    return "\n".join(out)


def _type_text(schema: dict, defs: dict) -> str:
    if "$ref" in schema:
        return schema["$ref"].rsplit("/", 1)[-1]
    if "anyOf" in schema:  # each type once (a date and a datetime are both strings)
        kinds = [_type_text(s, defs) for s in schema["anyOf"]]
        return " or ".join(dict.fromkeys(kinds))
    if "enum" in schema:
        return " / ".join(f"`{v}`" for v in schema["enum"])
    if "const" in schema:
        return f"`{schema['const']}`"
    kind = schema.get("type", "any")
    if schema.get("format") in ("date", "date-time"):
        return "date or datetime text" if kind == "string" else str(kind)
    if kind == "array":
        return f"list of {_type_text(schema.get('items', {}), defs)}"
    if kind == "object" and "additionalProperties" in schema:
        extra = schema["additionalProperties"]
        return "map to " + (_type_text(extra, defs) if isinstance(extra, dict) else "any")
    return str(kind)


def _fields_table(schema: dict, defs: dict) -> list[str]:
    required = set(schema.get("required", []))
    rows = ["| field | type | default | meaning |", "|---|---|---|---|"]
    for name, field in schema.get("properties", {}).items():
        default = "required" if name in required else (
            f"`{json.dumps(field['default'])}`" if "default" in field else "")
        rows.append(f"| `{name}` | {_cell(_type_text(field, defs))} | {_cell(default)} | "
                    f"{_cell(field.get('description', ''))} |")
    return rows


def _schema_page(schema: dict, title_level: str = "##") -> list[str]:
    """A JSON Schema as tables: its top-level fields, then each referenced type's."""
    defs = schema.get("$defs", {})
    out = [*_fields_table(schema, defs), ""]
    for name, sub in defs.items():
        if not sub.get("properties"):  # a map of free keys: its description says what
            if sub.get("description"):
                out += [f"{title_level} `{name}`", "", sub["description"].strip(), ""]
            continue
        out += [f"{title_level} `{name}`", ""]
        if sub.get("description"):
            out += [sub["description"].strip(), ""]
        out += [*_fields_table(sub, defs), ""]
    return out


def profile_reference() -> str:
    """The profile's fields (``DatasetProfile``'s JSON Schema, as pydantic validates it)."""
    from cloakflow.tasks.data.profile import PROFILE_VERSION, DatasetProfile

    schema = DatasetProfile.model_json_schema()
    return "\n".join([f"Profile format version {PROFILE_VERSION} (`version:`). Generated from "
                      "`DatasetProfile` (`tasks/data/profile.py`), the model every profile is "
                      "validated against.", "", *_schema_page(schema, "###")])


def manifest_reference() -> str:
    """Each release manifest's JSON Schema (the committed files), as field tables."""
    from cloakflow.tasks.release.manifest import SCHEMA_TYPES

    out = []
    for name in SCHEMA_TYPES:
        schema = json.loads((ROOT / "schemas" / name).read_text())
        out += [f"## `{name}`", "", f"`schemas/{name}` ({schema.get('title', '')}).", ""]
        out += _schema_page(schema, "###")
    return "\n".join(out)


def exit_codes() -> str:
    """The command line's exit statuses: 0, each refusal's status and headline, the stops."""
    from cloakflow.flows import cli

    rows = ["| status | headline | raised as | when |", "|---|---|---|---|",
            "| 0 | | | published (or, for `budget` and `profile`, done) |"]
    for cls in sorted(cli._refusals(), key=lambda c: (c.exit_code, c.__name__)):
        doc = (cls.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")
        rows.append(f"| {cls.exit_code} | {_cell(cls.headline)} | `{cls.__module__}."
                    f"{cls.__name__}` | {_cell(doc)} |")
    rows += ["| 130 / 143 | STOPPED by SIGINT / SIGTERM | | Ctrl-C or SIGTERM: nothing "
             "published, the MLflow run KILLED, the Prefect flow run Cancelled |"]
    return "\n".join(rows)


def limits_reference() -> str:
    """Each registered release kind's policy limits (``privacy.policy.<kind>``)."""
    from cloakflow.tasks.release import kinds

    out = []
    for name in kinds.names():
        kind = kinds.get(name)
        if kind.limits is None:
            continue
        schema = kind.limits.model_json_schema()
        out += [f"## `privacy.policy.{name}`", "",
                f"The limits of a {name} release (`{kind.limits.__module__}."
                f"{kind.limits.__name__}`).", "", *_fields_table(schema, {}), ""]
    return "\n".join(out)


def kinds_reference() -> str:
    """The registered release kinds."""
    from cloakflow.tasks.release import kinds

    rows = ["| kind | command | evaluations | attacks | label in clear |",
            "|---|---|---|---|---|"]
    for name in kinds.names():
        k = kinds.get(name)
        rows.append(f"| `{name}` | `cloakflow {k.command}` | {', '.join(k.evaluations)} | "
                    f"{', '.join(k.attacks)} | {'yes' if k.label_in_clear else 'no'} |")
    return "\n".join(rows)


def models_reference() -> str:
    """The registered model families."""
    from cloakflow.models import registry

    rows = ["| model | release | command | description |", "|---|---|---|---|"]
    for name in registry.names():
        f = registry.get(name)
        rows.append(f"| `{name}` | {f.release} | `cloakflow {f.command}` | "
                    f"{_cell(f.description)} |")
    return "\n".join(rows)


GENERATORS = {"cli": cli_reference, "profile": profile_reference,
              "manifest": manifest_reference, "exit-codes": exit_codes,
              "limits": limits_reference, "kinds": kinds_reference,
              "models": models_reference}


def on_page_markdown(markdown: str, page, config, files) -> str:
    """MkDocs hook: each ``<!-- generated: NAME -->`` marker replaced by its generated text."""
    return MARKER.sub(lambda m: GENERATORS[m.group(1)](), markdown)
