"""The release-kind registry, and what a release is whatever its kind.

A **release kind** (:class:`ReleaseKind`, one module under ``tasks/release/kinds/``) declares
what a release of that kind publishes and claims: the command and the flow that build it, the
evaluations and attacks that apply, the statement its manifest carries, how its label column
is released, how many control rows its measurements need, and how a federation's holder
describes it. Code that must tell kinds apart asks the kind (``get(name)``), never compares
names. Adding a kind is one module here plus one line in ``_KINDS`` (or :func:`register`, as
the tests' toy kind does).

A kind's **stages** (:class:`Stages`) are what ``flows/release.py``'s one pipeline runs for
it: prepare -> budget -> train -> build -> evaluate -> attack -> gate -> publish. Each stage
reads and fills in one :class:`ReleaseRun`; the Prefect side (tasks, artifacts) reaches a stage
as ``run.steps``, so a kind's module imports no Prefect and another orchestrator (a Dask
runner) can run the same stages with its own steps.

``Release`` is a codes release before publishing: the policy gate, the report, the manifest and
publish take it.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np
import polars as pl

from cloakflow.tasks.release.codes import CodeTable

# name -> "module:attribute" of its kind (imported on first use)
_KINDS: dict[str, str] = {
    "codes": "cloakflow.tasks.release.kinds.codes:CODES",
    "synthetic": "cloakflow.tasks.release.kinds.synthetic:SYNTHETIC",
    "desensitized": "cloakflow.tasks.release.kinds.desensitized:DESENSITIZED",
    "masked": "cloakflow.tasks.release.kinds.masked:MASKED",
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
        stages: its pipeline stages (:class:`Stages`).
        run_name: the MLflow parent run's name prefix (its entry flow's name).
        limits: the pydantic model of its policy limits (``privacy.policy.<name>`` in the
            profile; ``limits_of``), with their bounds and defaults.
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
    stages: Stages | None = None
    run_name: str = "release"
    limits: type | None = None


@dataclass
class Judged:
    """What a kind's measurements give the one gate (``tasks.privacy.policy.decide``).

    Attributes:
        measured: released table -> limit name -> value (None: not measured).
        limits: limit name -> its bound (a value above it is crossed).
        expected: limit name -> what it must cover on this table; a limit that measured
            nothing although it has something to cover is crossed, one with nothing is not
            judged (``policy.judge``).
        utility: (what, value) of the headline utility judged against ``min_utility``.
        missing: why a value is None where it should not be (the sentence's tail).
        covered: limit name -> what it measured; unmeasured: the limits with nothing of
            their kind on this table, as sentences (both shown in the report).
    """

    measured: dict[str, dict[str, float | None]]
    limits: dict[str, float]
    expected: dict[str, list[str]] | None
    utility: tuple[str, float | None] | None
    missing: str | None = None
    covered: dict[str, list[str]] = field(default_factory=dict)
    unmeasured: list[str] = field(default_factory=list)


@dataclass
class Package:
    """What the one publish path writes: tables (file stem -> frame), the manifest (JSON-ready),
    the folder's documents (file name -> text or bytes) and README, and what the flow run's
    page shows."""

    tables: dict[str, pl.DataFrame]
    manifest: dict
    documents: dict[str, str | bytes]
    readme: str
    page: str


@dataclass
class ReleaseRun:
    """One release being built: what every stage of the pipeline reads and fills in.

    Attributes:
        kind: the release kind; params: its entry flow's parameters; profile: the dataset's.
        steps: the orchestrator's steps (``flows/release.py``: Prefect tasks and artifacts).
        timings: stage -> seconds, logged to MLflow.
        parent: the MLflow parent run id; pool: the attack worker pool (or None).
        data: the prepared table (``tasks.data.steps.Prepared``); the other fields are each
            stage's result, ``state`` what a kind keeps between its own stages.
    """

    kind: ReleaseKind
    params: Any
    profile: Any
    flow_run_id: str
    steps: Any
    timings: dict
    parent: str = ""
    pool: Any = None
    data: Any = None
    budget: Any = None
    models: Any = None
    release: Any = None
    evaluation: Any = None
    attacks: Any = None
    judged: Judged | None = None
    report: Any = None
    verdict: str = ""
    folder: str = ""
    state: dict = field(default_factory=dict)


class Stages(Protocol):
    """The stages a release kind runs in the pipeline, in this order (each fills in ``run``).

    ``resolve`` adjusts the parameters before anything runs (a federation's holder adopts its
    split); a kind may also have ``check(params, profile, where)``, which refuses options
    the profile alone shows to be wrong before anything runs (``check_options``); ``pooled``
    says whether the attacks use a worker pool; ``judge`` turns the measurements into
    :class:`Judged`; ``render`` writes the report once the verdict is known
    (and logs it) and returns its markdown; ``package`` is what ``publish`` writes;
    ``outcome`` is what the entry flow returns.
    """

    def resolve(self, params: Any) -> Any: ...
    def pooled(self, run: ReleaseRun) -> bool: ...
    def prepare(self, run: ReleaseRun) -> None: ...
    def budget(self, run: ReleaseRun) -> None: ...
    def train(self, run: ReleaseRun) -> None: ...
    def build(self, run: ReleaseRun) -> None: ...
    def evaluate(self, run: ReleaseRun) -> None: ...
    def attack(self, run: ReleaseRun) -> None: ...
    def judge(self, run: ReleaseRun) -> Judged: ...
    def render(self, run: ReleaseRun, outcome: Any) -> str: ...
    def package(self, run: ReleaseRun) -> Package: ...
    def outcome(self, run: ReleaseRun) -> Any: ...


def min_utility(headline: str):
    """The ``min_utility`` limit field every kind's limits model has: the smallest utility of
    the release in its target kind's headline score (``headline``: which figure)."""
    from pydantic import Field

    return Field(None, le=1, description="smallest utility of the release in its target kind's "
                                         "headline score: ROC AUC (binary), macro one-vs-rest "
                                         f"ROC AUC (multiclass) or R² (numeric), of {headline}; "
                                         "null: no utility limit")


def warn_unused_under_dp(params, unused: dict[str, str]) -> None:
    """Under DP, a console warning for each option the user gave that DP-SGD does not use
    (``unused``: parameter name -> what is used instead), so that a DP run never ignores an
    option silently."""
    if getattr(params, "dp_epsilon", None) is None:
        return
    from cloakflow.tasks import console

    for name, instead in unused.items():
        if name in params.model_fields_set:
            console.warn(f"--{name.replace('_', '-')} {getattr(params, name)} is not used "
                         f"under DP: {instead}")


def gate_record(outcome, table: str) -> dict:
    """The gate as a one-table kind's report and manifest carry it: the one gate's
    ``PolicyOutcome`` (limits, crossed, verdict, accepted risk) with ``table``'s measured
    values."""
    return {"limits": outcome.limits, "measured": outcome.measured[table],
            "crossed": outcome.crossed, "verdict": outcome.verdict,
            "accepted_risk": outcome.accepted_risk}


def secret_order(run: ReleaseRun, rows: int) -> np.ndarray:
    """A permutation of ``rows`` released rows from OS entropy (never derived from the seed),
    kept in the MLflow run as the owner's copy (``release/row_order.json``)."""
    import json

    from cloakflow.tasks import tracking

    order = np.random.default_rng().permutation(rows)
    tracking.log_text(run.parent, json.dumps(order.tolist()), "release/row_order.json")
    return order


def log_report(run: ReleaseRun, report: str, gate: dict, metrics: dict[str, float],
               key: str, title: str) -> None:
    """A kind's report to the MLflow run (its evaluation and gate as ``report/report.json``,
    the markdown, ``metrics``) and to the flow run's page (artifact ``key``)."""
    from cloakflow.tasks import tracking

    tracking.log_dict(run.parent, {"evaluation": run.evaluation, "gate": gate},
                      "report/report.json")
    tracking.log_text(run.parent, report, "report/report.md")
    tracking.log_metrics(run.parent, metrics)
    run.steps.markdown(key, run.profile.name, report, title)


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


def limits_of(profile, kind: str):
    """The policy limits of ``kind`` in ``profile`` (a ``DatasetProfile``): its section of
    ``privacy.policy`` over the flat limits of that name, validated by the kind's limits model
    (defaults where neither sets one).

    Raises:
        ProfileError: a section of an unregistered kind, a flat limit no kind has, or a value
            out of a limit's bounds (naming the profile, the key and the rule).
    """
    from pydantic import ValidationError

    from cloakflow.tasks.data.profile import ProfileError

    policy, where = profile.privacy.policy, f"profile {profile.name!r}: privacy.policy"
    unknown = [k for k in policy.sections() if k not in names()]
    if unknown:
        raise ProfileError(f"{where}: {unknown} are not release kinds (sections are named by "
                           f"kind: {list(names())})")
    fields = {n: set(get(n).limits.model_fields) if get(n).limits else set() for n in names()}
    stray = [k for k in policy.flat() if not any(k in f for f in fields.values())]
    if stray:
        raise ProfileError(f"{where}: no release kind has the limits {stray} (limits per kind: "
                           + "; ".join(f"{n}: {sorted(f)}" for n, f in fields.items()) + ")")
    model = get(kind).limits
    values = {k: v for k, v in policy.flat().items() if k in fields[kind]}
    values.update(policy.sections().get(kind, {}))
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        e = exc.errors()[0]
        key = ".".join(map(str, e["loc"]))
        if e["type"] == "extra_forbidden":
            raise ProfileError(f"{where}.{kind}.{key}: release kind {kind!r} has no limit "
                               f"{key!r}; its limits: {sorted(fields[kind])}") from exc
        raise ProfileError(f"{where}.{kind}.{key}: {e['msg']} (got {e.get('input')!r})") \
            from exc


def check_policy(profile, where: str | None = None) -> None:
    """Every section and flat limit of ``profile``'s ``privacy.policy``, for every registered
    kind, checked before anything runs (``limits_of`` for each kind), so that no release is
    trained and attacked only to be refused at the gate, and none publishes with another
    kind's broken limits. ``where``: the profile's file, for the message.

    Raises:
        ProfileError: as ``limits_of``.
    """
    from cloakflow.tasks.data.profile import ProfileError

    for name in names():
        if get(name).limits is not None:
            try:
                limits_of(profile, name)
            except ProfileError as exc:
                raise ProfileError(f"{where}: {exc}" if where else str(exc)) from None


def check_options(params, profile, where: str | None = None) -> None:
    """The kind of ``params`` (its entry flow's parameters) checks its options against the
    profile, where its stages have a ``check`` (a desensitized release's ``--sensitive``, a
    masked one's ``--columns``), before any server starts or row is read.

    Raises:
        ValueError: the kind's own refusal (``DesensitizeError``, ``MaskError``).
    """
    name = type(params).__name__
    for kind in (get(n) for n in names()):
        if kind.parameters.endswith(f":{name}") and kind.stages is not None:
            check = getattr(kind.stages, "check", None)
            if check is not None:
                check(params, profile, where or f"profile {profile.name!r}")


def for_model(model: str) -> ReleaseKind:
    """The kind a registered model family's trained weights feed (``ModelFamily.release``)."""
    from cloakflow.models import registry

    return get(registry.get(model).release)


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
            f"The label column {column!r} is a column of the synthetic rows: each row's label "
            "is drawn from the training rows' label shares (a DP histogram under DP) and the "
            "model generates the other columns conditioned on it; a release conditioned on "
            "another column (--condition) samples the label with the model instead.")
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
