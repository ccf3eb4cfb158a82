"""Prefect artifacts (the tables and markdown shown on a flow run's page in the Prefect UI),
keyed by kind and dataset."""

from __future__ import annotations

from typing import Any


def artifact_key(kind: str, dataset: str) -> str:
    """A valid Prefect artifact key: lowercase letters, digits and dashes."""
    return f"{kind}-" + "".join(c if c.isalnum() else "-" for c in dataset.lower())


def table(kind: str, dataset: str, rows: list[dict[str, Any]], description: str) -> None:
    from prefect.artifacts import create_table_artifact

    create_table_artifact(table=rows, key=artifact_key(kind, dataset), description=description)


def markdown(kind: str, dataset: str, text: str, description: str) -> None:
    from prefect.artifacts import create_markdown_artifact

    create_markdown_artifact(markdown=text, key=artifact_key(kind, dataset),
                             description=description)
