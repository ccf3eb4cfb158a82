"""The release-kind registry, and what a release is whatever its kind.

A **release kind** (:class:`ReleaseKind`, one module under ``tasks/release/kinds/``) declares
what a release of that kind publishes and claims: the command and the flow that build it, the
evaluations and attacks that apply, the statement its manifest carries, how its label column
is released, how many control rows its measurements need, and how a federation's holder
describes it. Code that must tell kinds apart asks the kind (``get(name)``), never compares
names. Adding a kind is one module here plus one line in ``_KINDS`` (or :func:`register`, as
the tests' toy kind does).

``Release`` is a codes release before publishing: the policy gate, the report, the manifest and
publish take it.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Literal

import numpy as np
import polars as pl

from cloakflow.tasks.release.codes import CodeTable

# name -> "module:attribute" of its kind (imported on first use)
_KINDS: dict[str, str] = {
    "codes": "cloakflow.tasks.release.kinds.codes:CODES",
    "synthetic": "cloakflow.tasks.release.kinds.synthetic:SYNTHETIC",
}
_LOADED: dict[str, ReleaseKind] = {}


@dataclass(frozen=True)
class ReleaseKind:
    """What a release kind declares.

    Attributes:
        name: the registry key (the manifest's ``kind``).
        command: the CLI command that publishes it.
        flow: ``"module:function"`` of its Prefect entry flow (resolved by ``flows/``).
        parameters: ``"module:class"`` of that flow's parameters.
        evaluations, attacks: what is measured on it and how it is attacked.
        statement: the privacy statement its manifest carries.
        label_in_clear: whether the label column carries each source row's value (else it is
            generated like every other column).
        min_control_fraction: the control rows its attacks need (a smaller fraction refused).
        holder_release: what a federation's holder publishes with the global models.
        holder_note: what the federation's DP statement says of that release.
    """

    name: str
    command: str
    flow: str
    parameters: str
    evaluations: tuple[str, ...]
    attacks: tuple[str, ...]
    statement: str
    label_in_clear: bool
    min_control_fraction: float = 0.0
    holder_release: str = ""
    holder_note: str = ""


def names() -> tuple[str, ...]:
    """The registered kinds' names."""
    return tuple(_KINDS) + tuple(n for n in _LOADED if n not in _KINDS)


def get(name: str) -> ReleaseKind:
    """The kind registered as ``name``.

    Raises:
        ValueError: an unknown kind (the message lists the registered ones).
    """
    if name in _LOADED:
        return _LOADED[name]
    if name not in _KINDS:
        raise ValueError(f"unknown release kind {name!r}; choose one of {list(names())}")
    module, _, attribute = _KINDS[name].partition(":")
    kind = getattr(importlib.import_module(module), attribute)
    _LOADED[name] = kind
    return kind


def register(kind: ReleaseKind) -> ReleaseKind:
    """Add a kind under ``kind.name`` (tests and extensions); returns it.

    Raises:
        ValueError: a name already registered to another kind.
    """
    known = _LOADED.get(kind.name)
    if (kind.name in _KINDS and kind.name not in _LOADED) or (
            known is not None and known is not kind):
        raise ValueError(f"release kind {kind.name!r} is registered already")
    _LOADED[kind.name] = kind
    return kind


def unregister(name: str) -> None:
    """Remove a kind added by :func:`register` (tests)."""
    if name in _KINDS:
        raise ValueError(f"release kind {name!r} is built in")
    _LOADED.pop(name, None)


def label_statement(target, kind: str = "codes") -> str:
    """What the release says about its label column (``target``: the profile's ``Target``):
    in a kind whose label is released in clear it is the source value of each row; in a
    generated one it is sampled; a one-vs-rest target's figures describe the positive value
    against all the others."""
    column, clear = target.column, get(kind).label_in_clear
    text = (f"The label column {column!r} is published in clear: each released row carries its "
            "source row's value." if clear else
            f"The label column {column!r} is a column of the synthetic rows, sampled by the "
            "model like every other column.")
    if target.one_vs_rest:
        text += (f" {column!r} holds more than two values; the utility figures are one-vs-rest "
                 f"(declared in the profile): {target.positive!r} against all other values"
                 + (", while the released column keeps every value." if clear else "."))
    return text


@dataclass
class Release:
    """A release before publishing.

    Attributes:
        kind: the release kind (a registered name).
        tables: the released tables, rows in training-row order.
        label: the target column name, published beside every table.
    """

    kind: Literal["codes"]
    tables: list[CodeTable]
    label: str

    @property
    def evaluations(self) -> tuple[str, ...]:
        return get(self.kind).evaluations

    @property
    def attacks(self) -> tuple[str, ...]:
        return get(self.kind).attacks

    @property
    def statement(self) -> str:
        return get(self.kind).statement

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
