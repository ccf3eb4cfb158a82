"""Dataset profiles: the YAML contract that describes a table to cloakflow.

A profile names the target, the columns to drop, the feature groups (one autoencoder each), the
quasi-identifiers, how to treat missing values and unseen categories, and where the data comes
from. Nothing about a particular dataset is hard-coded outside its profile and its expectation
suite.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
PROFILES_DIR = Path(
    os.environ.get("CLOAKFLOW_PROFILES_DIR", REPO_ROOT / "deployments" / "profiles"))
EXPECTATIONS_DIR = REPO_ROOT / "expectations"

from cloakflow.tasks.data.kinds import FAMILY, ColumnKind  # noqa: E402


class ProfileError(ValueError):
    """A profile file is missing or does not satisfy the profile contract."""

    exit_code = 2  # the command line's exit status
    headline = "INPUT REJECTED, nothing was published."


TargetKind = Literal["binary", "multiclass", "numeric"]


class Target(BaseModel):
    """The label column, its kind and, for a binary target, the value that counts as the
    positive class.

    ``kind: binary`` (the default) needs ``positive``, and the column must hold at most two
    values; a column with more is refused by name with its value counts unless
    ``one_vs_rest: true`` asks for ``positive`` against all other values (then stated in the
    utility table, the report and the manifest). ``multiclass``: a label with a few classes
    (utility and TSTR by macro one-vs-rest ROC AUC, balanced accuracy, macro F1; the
    synthesizers condition on it); ``numeric``: a measured quantity (a regressor: R², MAE; the
    synthesizers model it as a column, not a condition).
    """

    model_config = ConfigDict(extra="forbid")

    column: str
    kind: TargetKind = "binary"
    positive: str | int | float | bool | None = None
    one_vs_rest: bool = Field(
        False, description="binary kind on a column with more than two values: model "
                           "`positive` against all the other values (stated in the release)")

    @model_validator(mode="after")
    def _check(self) -> Target:
        if self.kind == "binary" and self.positive is None:
            raise ValueError(f"target {self.column!r} is binary (the default kind): give "
                             "`positive:` (the value that counts as the positive class), or "
                             "declare `kind: multiclass` (three or more classes) or "
                             "`kind: numeric` (a number to predict)")
        if self.kind != "binary" and (self.one_vs_rest or self.positive is not None):
            raise ValueError(f"target {self.column!r}: `positive:` and `one_vs_rest:` belong "
                             f"to a binary target, not kind {self.kind!r}")
        return self


class Source(BaseModel):
    """Where the table can be fetched from when no local copy is given."""

    model_config = ConfigDict(extra="forbid")

    file: str = Field(description="file name looked up in CLOAKFLOW_DATA_DIR and the cache")
    sha256: str | None = Field(default=None, description="expected SHA-256 of the file")
    url: str | None = Field(default=None, description="public download address")
    archive_path: list[str] = Field(
        default_factory=list,
        description="members to open inside the download, outermost first (nested zips)",
    )


class ReleasePolicy(BaseModel):
    """The limits a release must stay within to be published without ``--accept-risk``, per
    release kind: ``privacy.policy.<kind>: {limit: value}`` (``codes:``, ``synthetic:``, ...).

    Each kind declares its limits, their bounds and defaults (``ReleaseKind.limits``); a
    section is validated against them when a release of that kind reads it
    (``tasks.release.kinds.limits_of``), since the kinds are not this module's to know. Limits
    given flat under ``policy:`` (the layout of profile version 1) apply to every kind that
    has a limit of that name; a kind's own section wins over them.
    """

    model_config = ConfigDict(extra="allow")

    @model_validator(mode="after")
    def _numbers_or_sections(self) -> ReleasePolicy:
        for key, value in (self.__pydantic_extra__ or {}).items():
            number = value is None or (isinstance(value, int | float)
                                       and not isinstance(value, bool))
            if not (number or isinstance(value, dict)):
                raise ValueError(f"privacy.policy.{key}: a limit is a number and a release "
                                 f"kind's section a mapping of limits, not {value!r}")
        return self

    def sections(self) -> dict[str, dict]:
        """Release kind -> the limits its section sets."""
        return {k: v for k, v in (self.__pydantic_extra__ or {}).items() if isinstance(v, dict)}

    def flat(self) -> dict[str, float | None]:
        """The limits set flat under ``policy:`` (for every kind that has them)."""
        return {k: v for k, v in (self.__pydantic_extra__ or {}).items()
                if not isinstance(v, dict)}


class CodeNoise(BaseModel):
    """Clip every released code vector to an L2 norm bound and add Gaussian noise."""

    model_config = ConfigDict(extra="forbid")

    multiplier: float = Field(
        0.0, ge=0, description="noise standard deviation per code coordinate, in units of "
                               "the clip norm (0 = no noise)")
    clip_norm: float | None = Field(
        None, gt=0, description="L2 bound per code vector; null = the median norm of each "
                                "model's codes (data-dependent, stated in the manifest)")


class DpCap(BaseModel):
    """A lifetime privacy budget for the dataset: every DP run recorded in its privacy ledger,
    composed, must stay within (epsilon, delta)."""

    model_config = ConfigDict(extra="forbid")

    epsilon: float = Field(gt=0, description="largest total epsilon over all DP runs")
    delta: float = Field(gt=0, lt=1, description="delta at which the total is computed")


class PrivacySettings(BaseModel):
    """What the attack step treats as sensitive, the policy, the release noise and the lifetime
    DP cap."""

    model_config = ConfigDict(extra="forbid")

    sensitive: list[str] = Field(
        default_factory=list, description="attributes the release policy protects")
    known_fractions: list[float] = Field(
        default_factory=lambda: [0.001, 0.01, 0.1],
        description="shares of source rows the known-plaintext attacker holds")
    anonymeter_attacks: int = Field(300, ge=10, description="attacks per anonymeter evaluator")
    policy: ReleasePolicy = Field(default_factory=ReleasePolicy)
    noise: CodeNoise = Field(default_factory=CodeNoise)
    dp_cap: DpCap | None = Field(
        None, description="lifetime (epsilon, delta) cap over every DP run on this dataset; a "
                          "run that would exceed it is refused before training")

    @model_validator(mode="after")
    def _check(self) -> PrivacySettings:
        if 0.01 not in self.known_fractions:
            raise ValueError("known_fractions must include 0.01 (the policy's p = 1% attacker)")
        if any(not 0 < p < 1 for p in self.known_fractions):
            raise ValueError("known_fractions must lie strictly between 0 and 1")
        return self


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


class PublicBounds(BaseModel):
    """Bounds of one column known without looking at the data (a code book, a domain range).

    DP runs scale numeric, date and datetime columns with ``min``/``max`` (values outside are
    clipped; dates may be written as dates) and one-hot encode categorical ones over
    ``categories``, so that the preprocessing state carries no information about the training
    rows. Non-DP runs measure them on the training rows.

    ``origin: data`` marks bounds read off the table (``cloakflow profile`` drafts them so):
    they are statistics of the private rows, and a DP run refuses them as public bounds
    (``TablePreprocessor.fit``) until they are replaced by public ones or removed.
    """

    model_config = ConfigDict(extra="forbid")

    min: float | dt.datetime | dt.date | None = None
    max: float | dt.datetime | dt.date | None = None
    categories: list[str] | None = None  # numbers and booleans are read as their text
    knots: list[float | dt.datetime | dt.date] | None = Field(
        None, description="public quantiles of a numeric, date or datetime column at evenly "
                          "spaced levels strictly inside (0, 1), ascending, within [min, max] "
                          "(e.g. published quartiles [q25, q50, q75] or deciles): the quantile "
                          "scaling of a DP run then comes from them, not from the rows")
    integer: bool = Field(
        False, description="the column holds whole numbers (known without the data): a DP "
                           "release, whose types come from the profile, returns it as Int64")
    step: float | None = Field(
        None, gt=0, description="the column's values lie on the grid min + k * step (a "
                                "published resolution known without the data: 0.1 for a rate "
                                "published to one decimal): a DP release counts its DP "
                                "histogram on that grid and decodes onto it")
    origin: Literal["public", "data"] = Field(
        "public", description="public: known without the data (usable by DP runs); data: "
                              "measured on the table (private, never used as public)")

    @field_validator("categories", mode="before")
    @classmethod
    def _as_text(cls, value):
        """Integer codes (``[1, 2, 3]``) and booleans name categories as their text does."""
        if isinstance(value, list):
            return [str(v).lower() if isinstance(v, bool) else
                    (str(int(v)) if isinstance(v, float) and v.is_integer() else str(v))
                    for v in value]
        return value

    @model_validator(mode="after")
    def _check(self) -> PublicBounds:
        numeric = self.min is not None or self.max is not None
        if numeric == (self.categories is not None):
            raise ValueError("give either min and max (numeric) or categories (categorical)")
        if numeric and (self.min is None or self.max is None):
            raise ValueError(f"need both min and max, got min={self.min} max={self.max}")
        if numeric and isinstance(self.min, dt.date) != isinstance(self.max, dt.date):
            raise ValueError("min and max must both be numbers or both dates")
        if numeric and not self.number(self.min, "datetime") < self.number(self.max, "datetime"):
            raise ValueError(f"need min < max, got min={self.min} max={self.max}")
        if self.knots is not None:
            if not numeric:
                raise ValueError("knots need min and max (a numeric, date or datetime column)")
            if not self.knots:
                raise ValueError("knots must be a non-empty list (or left out)")
            if any(isinstance(k, dt.date) != isinstance(self.min, dt.date) for k in self.knots):
                raise ValueError("knots must be numbers or dates as min and max are")
            values = [self.number(v, "datetime") for v in [self.min, *self.knots, self.max]]
            if any(b < a for a, b in zip(values, values[1:], strict=False)):
                raise ValueError(f"knots must ascend and lie within [min, max], got min="
                                 f"{self.min} knots={self.knots} max={self.max}")
        if self.integer and not numeric:
            raise ValueError("integer: true needs min and max (a numeric column's bounds)")
        if self.step is not None and (not numeric or isinstance(self.min, dt.date)):
            raise ValueError("step needs numeric min and max (a numeric column's bounds)")
        if self.categories is not None and (not self.categories
                                            or len(set(self.categories)) != len(self.categories)):
            raise ValueError("categories must be a non-empty list without repeats")
        return self

    def grid_step(self) -> float | None:
        """The public resolution of the column's values: ``step``, or 1 for ``integer``."""
        return self.step if self.step is not None else (1.0 if self.integer else None)

    def knot_values(self, kind: str) -> list[float]:
        """``[min, *knots, max]`` in the column's scaled unit (see :meth:`number`): the knots
        of a quantile transform at evenly spaced levels 0, 1/(m+1), ..., 1."""
        return [self.number(v, kind) for v in [self.min, *(self.knots or []), self.max]]

    @staticmethod
    def number(value: float | dt.date, kind: str) -> float:
        """A bound in the unit the column is scaled in: dates as days and datetimes as seconds
        since 1970-01-01 (UTC when no zone is given), numbers as they are."""
        if not isinstance(value, dt.date):
            return float(value)
        if not isinstance(value, dt.datetime):
            value = dt.datetime(value.year, value.month, value.day)
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        seconds = value.timestamp()
        return seconds / 86400.0 if kind == "date" else seconds

    def span(self, kind: str) -> tuple[float, float]:
        """(min, max) in the unit of a column of this kind (see ``number``)."""
        return self.number(self.min, kind), self.number(self.max, kind)  # type: ignore[arg-type]


class _Rule(BaseModel):
    """What every constraint has: where it came from (``origin``, as for bounds)."""

    model_config = ConfigDict(extra="forbid")

    origin: Literal["public", "data"] = Field(
        "public", description="public: a rule the owner states; data: proposed by `cloakflow "
                              "profile` because it held on every row (review it: under DP it "
                              "is a statistic of the rows until the owner sets origin: public)")


class Inequality(_Rule):
    """``low <= high`` in every row, between two numeric, two date or two datetime columns.
    Kept by a reversible transform (as SDV's ``Inequality``): the synthesizer models
    ``high - low`` (days for dates, seconds for datetimes), which cannot go below 0."""

    type: Literal["inequality"]
    low: str
    high: str
    difference: PublicBounds | None = Field(
        None, description="public min and max of high - low (days for dates, seconds for "
                          "datetimes): a DP synthetic release scales the modelled difference "
                          "with them, and refuses the constraint without them")

    def describe(self) -> str:
        return f"{self.low} <= {self.high}"

    def named(self) -> list[str]:
        return [self.low, self.high]


class Formula(_Rule):
    """``column`` equals an expression of other columns in every row (a length of stay, a
    total): not modelled, computed on the synthetic rows. ``expression`` is SQL over the
    table's columns (polars ``sql_expr``, e.g. ``discharge_date - admission_date`` or
    ``price * quantity``); a date difference reads in whole days."""

    type: Literal["formula"]
    column: str
    expression: str = Field(min_length=1)

    def describe(self) -> str:
        return f"{self.column} = {self.expression}"

    def named(self) -> list[str]:
        return [self.column]


class FixedCombinations(_Rule):
    """The combinations of ``columns`` (categorical) that may appear together (a city and
    its region): the ones seen in the training rows or, required under DP, those listed.
    Kept by a reversible transform (as SDV's ``FixedCombinations``): the synthesizer models
    the columns as one categorical column over the combinations."""

    type: Literal["fixed_combinations"]
    columns: list[str] = Field(min_length=2)
    combinations: list[list[str]] | None = None

    @field_validator("combinations", mode="before")
    @classmethod
    def _as_text(cls, value):
        if isinstance(value, list):
            return [PublicBounds._as_text(v) if isinstance(v, list) else v for v in value]
        return value

    def describe(self) -> str:
        return "fixed combinations of " + ", ".join(self.columns)

    def named(self) -> list[str]:
        return list(self.columns)


class Range(_Rule):
    """``low <= column <= high`` in every row, each bound a number or another column's name
    (one may be left out). Kept by rejection."""

    type: Literal["range"]
    column: str
    low: float | str | None = None
    high: float | str | None = None

    @model_validator(mode="after")
    def _one_bound(self) -> Range:
        if self.low is None and self.high is None:
            raise ValueError(f"range on {self.column!r}: give low, high or both")
        return self

    def describe(self) -> str:
        return " <= ".join(str(v) for v in (self.low, self.column, self.high) if v is not None)

    def named(self) -> list[str]:
        return [self.column] + [v for v in (self.low, self.high) if isinstance(v, str)]


Constraint = Annotated[Inequality | Formula | FixedCombinations | Range,
                       Field(discriminator="type")]


# the layout of a profile; a newer one is refused by name. 2: the policy's limits in
# one section per release kind (version 1's flat limits are still read)
PROFILE_VERSION = 2


class DatasetProfile(BaseModel):
    """Everything cloakflow needs to know about one table."""

    model_config = ConfigDict(extra="forbid")

    version: int = Field(1, description="the profile layout's version (absent: 1)")
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    format: Literal["csv", "parquet"] = Field(
        "csv", description="the profile's own file's format; a file given with --input is "
                           "read as what its first bytes say (Parquet or text)")
    separator: str = ","
    encoding: str = Field(
        "utf8", description="text encoding of a CSV file (e.g. cp1252 or latin-1 for a "
                            "spreadsheet export); decoded before polars reads it")
    null_values: list[str] = Field(
        default_factory=list, description="CSV cell values that mean missing (e.g. 'NA', "
                                          "'N/A', '-'): read as nulls")
    target: Target | None = Field(
        None, description="the label; a draft without an unambiguous label leaves it unset, "
                          "and runs refuse the profile until the owner sets it")
    target_candidates: list[str] = Field(
        default_factory=list, description="columns the drafter found that could be the label "
                                          "(written while target is unset)")
    drop: list[str] = Field(default_factory=list)
    identifiers: list[str] = Field(
        default_factory=list, description="identifier columns (one value per row, e.g. a "
                                          "customer id): kept out of the features and the release")
    groups: dict[str, list[str]] = Field(min_length=1)
    quasi_identifiers: list[str] = Field(default_factory=list)
    missing: Literal["error", "impute"] = "error"
    nullable: list[str] = Field(
        default_factory=list,
        description="feature columns that may hold nulls, known without the data: a DP "
                    "synthetic release models missing values only for these (other nulls are "
                    "imputed with the public fill value)")
    unseen: Literal["error", "ignore"] = "error"
    columns: dict[str, ColumnKind] = Field(default_factory=dict)
    date_formats: dict[str, str] = Field(
        default_factory=dict, description="strftime format of a date/datetime column written "
                                          "as text other than ISO 8601, e.g. '%m/%d/%Y'")
    expectations: str | None = None
    source: Source | None = None
    privacy: PrivacySettings = Field(default_factory=PrivacySettings)
    bounds: dict[str, PublicBounds] = Field(
        default_factory=dict, description="public bounds per feature column (used by DP runs)")
    constraints: list[Constraint] = Field(
        default_factory=list, description="rules every row keeps (inequalities, formulas, "
                                          "fixed combinations, ranges): synthetic releases keep "
                                          "them and report each one's share of valid rows")

    @field_validator("version")
    @classmethod
    def _known_version(cls, value: int) -> int:
        if not 1 <= value <= PROFILE_VERSION:
            raise ValueError(f"profile version {value}: this cloakflow reads profile versions 1 "
                             f"to {PROFILE_VERSION} (a newer profile needs a newer cloakflow)")
        return value

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        import codecs

        try:
            codecs.lookup(value)
        except LookupError:
            raise ValueError(f"encoding {value!r} is not a text encoding Python knows (e.g. "
                             "utf8, cp1252, latin-1)") from None
        return value

    @model_validator(mode="after")
    def _check_columns(self) -> DatasetProfile:
        seen: dict[str, str] = {}
        for group, cols in self.groups.items():
            if not group.isidentifier():
                raise ValueError(f"group name {group!r} must be an identifier (it prefixes codes)")
            if not cols:
                raise ValueError(f"group {group!r} lists no columns")
            for col in cols:
                if col in seen:
                    raise ValueError(f"column {col!r} is in groups {seen[col]!r} and {group!r}")
                seen[col] = group
        label = [self.target.column] if self.target is not None else []
        bad = {*label, *self.drop} & set(seen)
        if bad:
            raise ValueError(f"target or dropped columns listed in a group: {sorted(bad)}")
        ids = set(self.identifiers) & set(seen)
        if ids:
            raise ValueError(f"identifiers listed in a group: {sorted(ids)} (an identifier is "
                             "kept out of the features and the release; remove it from groups)")
        for col, b in self.bounds.items():
            kind = self.columns.get(col)
            if isinstance(b.min, dt.date) and kind is not None \
                    and kind not in ("date", "datetime"):
                raise ValueError(f"bounds for {col!r} are dates: declare it date or datetime "
                                 "under columns:, or give numbers")
            # a numeric column may list its values instead (a discrete numeric: a rate
            # published per quarter, a code book of integer codes)
            listed = b.categories is not None and kind != "numeric"
            if kind is not None and (FAMILY[kind] == "numeric") == listed:
                want = ("min and max, or categories: [...] (the values a numeric column "
                        "takes)" if kind == "numeric" else "min and max"
                        if FAMILY[kind] == "numeric"
                        else "categories: [...] (integer codes may be written as numbers)")
                raise ValueError(f"bounds for {col!r} do not match its kind {kind!r}: give "
                                 f"{want}, or remove its bounds")
            if kind == "numeric" and b.categories is not None:
                words = [c for c in b.categories if not _is_number(c)]
                if words:
                    raise ValueError(f"bounds for {col!r} do not match its kind 'numeric': "
                                     f"its categories {words[:5]} are not numbers")
        elsewhere = {*label, *self.drop, *self.identifiers}
        stray = sorted(set(self.columns) - set(seen) - elsewhere)
        if stray:  # most often a typo in groups: the declared name is the right one
            raise ValueError(f"columns names {stray} but no group lists them"
                             + _near(stray, list(seen)))
        for col in self.date_formats:
            if self.columns.get(col) not in ("date", "datetime"):
                raise ValueError(f"date_formats names {col!r}: declare it date or datetime "
                                 "under columns:")
        for kind, cols in (("quasi_identifiers", self.quasi_identifiers),
                           ("privacy.sensitive", self.privacy.sensitive),
                           ("nullable", self.nullable),
                           ("bounds", list(self.bounds))):
            # the target may have bounds and be sensitive too: a synthetic release models it
            allowed = set(seen) | (set(label) if kind in ("bounds", "privacy.sensitive")
                                   else set())
            unknown = sorted(set(cols) - allowed)
            if unknown:
                raise ValueError(f"{kind} names columns that are in no group: {unknown}"
                                 + _near(unknown, list(seen)))
        self._check_constraints(set(seen) | set(label))
        return self

    def _check_constraints(self, modelled: set[str]) -> None:
        """Each constraint names modelled columns; a formula's column is not also another
        constraint's, and a column is the ``high`` of one inequality at most."""
        derived = {c.column for c in self.constraints if isinstance(c, Formula)}
        highs: list[str] = []
        for c in self.constraints:
            named = c.named()
            unknown = sorted(set(named) - modelled)
            if unknown:
                raise ValueError(f"constraint {c.describe()!r} names columns that are in no "
                                 f"group: {unknown}" + _near(unknown, sorted(modelled)))
            if not isinstance(c, Formula) and derived & set(named):
                raise ValueError(f"constraint {c.describe()!r} names {sorted(derived & set(named))}"
                                 ", which a formula computes: state the rule on the columns "
                                 "it is computed from")
            if isinstance(c, Inequality):
                if c.low == c.high:
                    raise ValueError(f"constraint {c.describe()!r}: low and high are one column")
                highs.append(c.high)
        twice = sorted({h for h in highs if highs.count(h) > 1})
        if twice:
            raise ValueError(f"{twice} are the high side of more than one inequality: keep one "
                             "(a <= b <= c is written as a <= b and b <= c)")

    def public_dump(self) -> dict:
        """The profile as a release manifest may show it: bounds marked ``origin: data`` (read
        off the private rows) are left out and their columns listed under
        ``bounds_omitted_measured_on_data``."""
        out = self.model_dump(mode="json")
        measured = sorted(c for c, b in self.bounds.items() if b.origin == "data")
        out["bounds"] = {c: b for c, b in out["bounds"].items() if c not in measured}
        if measured:
            out["bounds_omitted_measured_on_data"] = measured
        return out

    @property
    def features(self) -> list[str]:
        """Feature columns in group order."""
        return [c for cols in self.groups.values() for c in cols]

    @property
    def group_of(self) -> dict[str, str]:
        """Map each feature column to its group."""
        return {c: g for g, cols in self.groups.items() for c in cols}

    def suite_path(self) -> Path | None:
        """The expectation suite file, if the profile names one."""
        if self.expectations is None:
            return None
        path = Path(self.expectations)
        return path if path.is_absolute() else EXPECTATIONS_DIR / path


def near_names(name: str, known: list[str], n: int = 1) -> list[str]:
    """Names in ``known`` close enough to ``name`` to be what a typo meant (difflib)."""
    import difflib

    return difflib.get_close_matches(name, known, n=n, cutoff=0.75)


def _near(names: list[str], known: list[str]) -> str:
    """" (a typo? ...)" for names close to a known one, else ""."""
    hints = [f"{n!r} ~ {m[0]!r}" for n in names if (m := near_names(n, known))]
    return f" (a typo? close names in the groups: {', '.join(hints)})" if hints else ""


def readable(exc: ValidationError) -> str:
    """A pydantic validation error as one line per problem: where in the YAML, and what."""
    lines = []
    for e in exc.errors():
        where = ".".join(str(p) for p in e["loc"]) or "profile"
        msg = e["msg"].removeprefix("Value error, ")
        lines.append(f"{where}: {msg}")
    return "; ".join(lines)


def load_profile(name_or_path: str | Path) -> DatasetProfile:
    """Load and validate a profile by dataset name or by YAML path.

    Args:
        name_or_path: a dataset name (looked up in ``deployments/profiles/``) or a path to YAML.

    Raises:
        ProfileError: the file is missing, is not YAML, or breaks the contract.
    """
    path = Path(name_or_path)
    if path.suffix not in {".yaml", ".yml"}:
        path = PROFILES_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in PROFILES_DIR.glob("*.yaml"))
        raise ProfileError(f"no profile at {path} (known datasets: {', '.join(known) or 'none'}); "
                           "give your own with --profile PATH")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ProfileError(f"{path}: not valid YAML: {exc}") from exc
    try:
        profile = DatasetProfile.model_validate(raw)
    except ValidationError as exc:
        raise ProfileError(f"{path}: {readable(exc)}") from exc
    if profile.expectations is not None and not profile.suite_path().is_file():
        raise ProfileError(f"{path}: expectation suite {profile.suite_path()} does not exist")
    if profile.target is None:
        candidates = (f" (candidates the draft found: {', '.join(profile.target_candidates)})"
                      if profile.target_candidates else "")
        raise ProfileError(
            f"{path}: target is not set{candidates}: write `target: {{column: NAME, positive: "
            "VALUE}` for a binary label, `{column: NAME, kind: multiclass}` for a few classes "
            "or `{column: NAME, kind: numeric}` for a measured quantity, and remove that column "
            "from its group (the label column is published in clear in every release); "
            "cloakflow never picks the label itself")
    return profile
