"""What a release is, whatever its kind: the tables it publishes and which evaluations and
attacks apply to them. The policy gate, the report, the manifest and publish take a
``Release``; ``codes`` is the first kind (``tasks.release.codes``), synthetic, desensitized
and masked rows will be others.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import polars as pl

from cloakflow.tasks.release.codes import PSEUDONYMISATION_STATEMENT, CodeTable

ReleaseKind = Literal["codes"]

# per kind: the evaluations and attacks that apply, and the statement the manifest carries
KINDS: dict[str, dict] = {
    "codes": {
        "evaluations": ("utility", "importance"),
        "attacks": ("known_plaintext_inversion", "leaked_decoder", "reidentification",
                    "membership", "dcr", "anonymeter"),
        "statement": PSEUDONYMISATION_STATEMENT,
    },
}


def label_statement(target, kind: str = "codes") -> str:
    """What the release says about its label column (``target``: the profile's ``Target``):
    in a codes release it is the source value of each row, published in clear; a one-vs-rest
    target's figures describe the positive value against all the others."""
    column = target.column
    text = (f"The label column {column!r} is published in clear: each released row carries its "
            "source row's value." if kind == "codes" else
            f"The label column {column!r} is a column of the synthetic rows, sampled by the "
            "model like every other column.")
    if target.one_vs_rest:
        text += (f" {column!r} holds more than two values; the utility figures are one-vs-rest "
                 f"(declared in the profile): {target.positive!r} against all other values"
                 + (", while the released column keeps every value." if kind == "codes"
                    else "."))
    return text


@dataclass
class Release:
    """A release before publishing.

    Attributes:
        kind: the release kind (a key of ``KINDS``).
        tables: the released tables, rows in training-row order.
        label: the target column name, published beside every table.
    """

    kind: ReleaseKind
    tables: list[CodeTable]
    label: str

    @property
    def evaluations(self) -> tuple[str, ...]:
        return KINDS[self.kind]["evaluations"]

    @property
    def attacks(self) -> tuple[str, ...]:
        return KINDS[self.kind]["attacks"]

    @property
    def statement(self) -> str:
        return KINDS[self.kind]["statement"]

    def table(self, name: str) -> CodeTable:
        return next(t for t in self.tables if t.name == name)

    def frames(self, labels: pl.Series, order: np.ndarray) -> dict[str, pl.DataFrame]:
        """file stem -> the table as published: rows permuted by ``order`` (secret), the
        label column appended."""
        return {t.file: pl.DataFrame(t.codes[order], schema=t.columns)
                .with_columns(labels[order]) for t in self.tables}

    def column_entries(self) -> list[dict]:
        """The manifest's ``columns``: every published column, its model group and file."""
        out = [{"name": c, "group": "whole" if t.name == "ENCODED" else c.rsplit("_", 1)[0],
                "file": t.file} for t in self.tables for c in t.columns]
        return out + [{"name": self.label, "group": "label", "file": "both"}]
