"""Rules every row of a table keeps (the profile's ``constraints:``), and how a synthesizer
keeps them in its rows.

Following SDV's constraint design (reversible transforms where one exists, rejection
otherwise), but over the profile's kinds and public bounds:

- ``inequality`` (low <= high): the model sees ``high - low`` in place of ``high`` (days for
  dates, seconds for datetimes) and the synthetic ``high`` is ``low`` plus that difference,
  never below 0: every synthetic row keeps it;
- ``formula`` (column = SQL expression of other columns, polars ``sql_expr``): the column is not
  modelled; it is computed on the synthetic rows: every row keeps it;
- ``fixed_combinations``: the columns are modelled as one categorical column over their
  allowed combinations (as SDV's ``FixedCombinations``) and split again: every row keeps it;
- ``range``: synthetic rows breaking it are drawn again (rejection); the share rejected is
  reported.

``ConstraintSet`` turns the source profile into the profile the model is fitted with
(``model_profile``), encodes and decodes frames between the two, and measures each rule's share
of valid rows in any frame of the source schema (``valid``). Under DP nothing here reads the
rows: the difference's scaling comes from the constraint's public ``difference`` bounds and the
fixed combinations from its public list; constraints marked ``origin: data`` (drafted from the
rows) are refused, as bounds are.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl

from cloakflow.tasks.data import kinds
from cloakflow.tasks.data.profile import (
    DatasetProfile,
    FixedCombinations,
    Formula,
    Inequality,
    Range,
)

MAX_ROUNDS = 20  # rejection: at most this many draws of the missing rows
MIN_ACCEPTANCE = 0.01  # below this share of valid draws, rejection gives up
JOINT = "\u241f"  # joins a fixed combination's values into one category (the unit separator)


class ConstraintError(ValueError):
    """A constraint that cannot be applied: a column of the wrong kind, a formula that does
    not parse, a DP release without the public facts it needs, or too few valid draws."""

    exit_code = 2  # the command line's exit status
    headline = "INPUT REJECTED, nothing was published."


@dataclass
class ConstraintSet:
    """The profile's constraints over a table whose source column kinds and types are
    ``kinds_of`` (column -> (kind, source dtype), e.g. from a fitted ``TablePreprocessor``'s
    specs)."""

    profile: DatasetProfile
    kinds_of: dict[str, tuple[str, str]]
    private: bool = False  # a DP release: public facts only
    combinations: dict[int, set[tuple]] = field(default_factory=dict)  # set by ``fit``

    def __post_init__(self) -> None:
        rules = self.profile.constraints
        if self.private:
            drafted = [c.describe() for c in rules if c.origin == "data"]
            if drafted:
                raise ConstraintError(
                    f"the profile's constraints {drafted} are marked origin: data (proposed by "
                    "`cloakflow profile` because they held on every row): under DP that is a "
                    "statistic of the private rows. Confirm each rule you know without the data "
                    "by setting origin: public, or remove it")
        target = self.profile.target.column if self.profile.target else None
        for c in rules:
            if target is not None and target in (
                    [c.high] if isinstance(c, Inequality) else [c.column] if isinstance(
                        c, Formula) else c.columns if isinstance(c, FixedCombinations) else []):
                raise ConstraintError(
                    f"constraint {c.describe()!r} would transform the target {target!r}, which "
                    "the synthesizer conditions on: state it the other way round (the target "
                    "as an inequality's low) or leave the target out")
            if isinstance(c, Inequality):
                low, high = (self.kinds_of[x][0] for x in (c.low, c.high))
                if kinds.FAMILY[low] != "numeric" or low != high:
                    raise ConstraintError(
                        f"constraint {c.describe()!r}: {c.low!r} is {low} and {c.high!r} is "
                        f"{high}; an inequality needs two numeric, two date or two datetime "
                        "columns")
                if self.private and c.difference is None:
                    unit = {"date": "days", "datetime": "seconds"}.get(low, "the columns' unit")
                    raise ConstraintError(
                        f"constraint {c.describe()!r}: a DP synthetic release models "
                        f"{c.high} - {c.low} and needs its public range (rule: public bounds): "
                        f"add `difference: {{min: 0, max: ...}}` to the constraint (in {unit}), "
                        "known without the data")
            elif isinstance(c, FixedCombinations):
                if self.private and c.combinations is None:
                    raise ConstraintError(
                        f"constraint {c.describe()!r}: a DP synthetic release keeps only the "
                        "combinations the profile lists (the ones in the rows are a statistic "
                        "of them): add `combinations: [[...], ...]` to the constraint")
                bad = [x for x in c.columns if kinds.FAMILY[self.kinds_of[x][0]] != "categorical"]
                if bad:
                    raise ConstraintError(f"constraint {c.describe()!r}: {bad} are not "
                                          "categorical or boolean columns")

    def __bool__(self) -> bool:
        return bool(self.profile.constraints)

    @property
    def rules(self) -> list:
        return list(self.profile.constraints)

    @property
    def derived(self) -> list[str]:
        """Columns computed by a formula (not modelled)."""
        return [c.column for c in self.rules if isinstance(c, Formula)]

    # ------------------------------------------------------------------ the model's view
    @staticmethod
    def joint_name(c: FixedCombinations) -> str:
        """The modelled column of a fixed combination: its columns' names joined by ``+``."""
        return "+".join(c.columns)

    def model_profile(self) -> DatasetProfile:
        """The profile the synthesizer is fitted with (after ``fit``): each inequality's
        ``high`` declared numeric (the difference), scaled under DP by the constraint's public
        ``difference`` bounds; each fixed combination one categorical column
        (``joint_name``) over its combinations (under DP the listed ones, as its public
        categories) in the group of its first column; formula columns left out of the groups
        (a group left empty is dropped)."""
        raw = self.profile.model_dump(mode="python")
        columns, bounds = dict(raw["columns"]), dict(raw["bounds"])
        for c in self.rules:
            if isinstance(c, Inequality):
                columns[c.high] = "numeric"
                bounds.pop(c.high, None)
                if c.difference is not None:
                    diff = c.difference.model_dump(mode="python")
                    diff["integer"] = diff["integer"] or self.kinds_of[c.low][0] == "date"
                    bounds[c.high] = diff
        derived = set(self.derived)
        gone = set(derived)  # not modelled under their own name
        groups = {g: list(cols) for g, cols in raw["groups"].items()}
        for c in self.rules:
            if isinstance(c, FixedCombinations):  # one column over the combinations
                name = self.joint_name(c)
                groups = {g: [name if x == c.columns[0] else x for x in cols
                              if x == c.columns[0] or x not in c.columns]
                          for g, cols in groups.items()}
                columns[name] = "categorical"
                for x in c.columns:
                    columns.pop(x, None)
                    bounds.pop(x, None)
                if c.combinations is not None:
                    bounds[name] = {"categories": sorted(JOINT.join(r) for r in
                                                         c.combinations)}
                gone |= set(c.columns)
        for x in list(raw["nullable"]):
            if any(isinstance(c, FixedCombinations) and x in c.columns for c in self.rules):
                raise ConstraintError(f"{x!r} is nullable and in a fixed combination: a "
                                      "combination's columns are modelled together, without "
                                      "missing values")
        groups = {g: [x for x in cols if x not in derived] for g, cols in groups.items()}
        raw.update(
            groups={g: cols for g, cols in groups.items() if cols}, columns={
                k: v for k, v in columns.items() if k not in derived},
            bounds={k: v for k, v in bounds.items() if k not in derived},
            nullable=[x for x in raw["nullable"] if x not in gone],
            quasi_identifiers=[x for x in raw["quasi_identifiers"] if x not in gone],
            date_formats={k: v for k, v in raw["date_formats"].items()
                          if k not in gone and columns.get(k) in ("date", "datetime")},
            constraints=[])
        raw["privacy"]["sensitive"] = [x for x in raw["privacy"]["sensitive"] if x not in gone]
        return DatasetProfile.model_validate(raw)

    def fit(self, train: pl.DataFrame) -> ConstraintSet:
        """The allowed combinations of each ``fixed_combinations``: its public list or, outside
        DP, the combinations in ``train``."""
        for i, c in enumerate(self.rules):
            if isinstance(c, FixedCombinations):
                self.combinations[i] = ({tuple(r) for r in c.combinations} if c.combinations
                                        else set(_text_rows(train, c.columns)))
        return self

    def encode(self, frame: pl.DataFrame) -> pl.DataFrame:
        """Source rows -> the model's columns: ``high`` replaced by ``high - low`` (in the
        columns' unit), formula columns dropped."""
        out = frame
        for c in self.rules:
            if isinstance(c, Inequality):
                kind = self.kinds_of[c.low][0]
                diff = _numbers(frame, c.high, kind) - _numbers(frame, c.low, kind)
                out = out.with_columns(pl.Series(c.high, diff, nan_to_null=True))
        for c in self.rules:
            if isinstance(c, FixedCombinations):
                joint = pl.Series(self.joint_name(c), [JOINT.join(r) for r in _text_rows(
                    frame, c.columns)], dtype=pl.String)
                out = out.with_columns(joint).drop(c.columns)
        return out.drop([x for x in self.derived if x in out.columns])

    def decode(self, frame: pl.DataFrame) -> pl.DataFrame:
        """The model's decoded rows -> the source schema: each ``high`` is ``low`` plus the
        difference (at least 0; within ``high``'s public bounds under DP), then each formula
        column computed and cast to its source type."""
        out = frame
        for c in self.rules:
            if isinstance(c, FixedCombinations):
                parts = np.array([v.split(JOINT) for v in out.get_column(
                    self.joint_name(c)).to_list()], dtype=object).reshape(-1, len(c.columns))
                out = out.with_columns(
                    kinds.from_categories(x, parts[:, j], *self.kinds_of[x])
                    for j, x in enumerate(c.columns)).drop(self.joint_name(c))
        pending = [c for c in self.rules if isinstance(c, Inequality)]
        highs = {c.high for c in pending}
        while pending:  # a low that is itself a high (a <= b <= c) is decoded first
            ready = [c for c in pending if c.low not in highs]
            for c in ready:
                kind, dtype = self.kinds_of[c.high]
                values = _numbers(out, c.low, kind) + np.maximum(
                    out.get_column(c.high).cast(pl.Float64).fill_null(np.nan).to_numpy(), 0.0)
                public = self.profile.bounds.get(c.high)
                if self.private and public is not None and public.min is not None:
                    values = np.clip(values, *public.span(kind))
                out = out.with_columns(kinds.from_numbers(c.high, values, kind, dtype))
                highs.discard(c.high)
            pending = [c for c in pending if c not in ready]
        for c in self.rules:
            if isinstance(c, Formula):
                out = out.with_columns(self._formula(out, c))
        return out

    def _formula(self, frame: pl.DataFrame, c: Formula) -> pl.Series:
        """The formula's values over ``frame``, in the column's source type.

        Raises:
            ConstraintError: the expression does not parse or names unknown columns.
        """
        try:
            values = frame.select(pl.sql_expr(c.expression).alias(c.column)).to_series()
        except Exception as exc:  # polars raises several error types for SQL
            raise ConstraintError(f"constraint {c.describe()!r}: the expression cannot be "
                                  f"computed over columns {frame.columns}: {exc}") from exc
        if isinstance(values.dtype, pl.Duration):
            values = values.dt.total_days()
        kind, dtype = self.kinds_of[c.column]
        if kinds.FAMILY[kind] != "numeric":
            return values.cast(kinds.parse_dtype(dtype), strict=False)
        return kinds.from_numbers(c.column, values.cast(pl.Float64).fill_null(np.nan)
                                  .to_numpy(), kind, dtype)

    # ------------------------------------------------------------------ validity
    def valid(self, frame: pl.DataFrame) -> list[np.ndarray]:
        """Per constraint, whether each row of ``frame`` (source schema) keeps it, shape
        (rows,); a row with a null in a column the rule reads keeps it (nothing to break)."""
        return [self._valid(frame, i, c) for i, c in enumerate(self.rules)]

    def _valid(self, frame: pl.DataFrame, i: int, c) -> np.ndarray:
        if isinstance(c, Inequality):
            kind = self.kinds_of[c.low][0]
            low, high = _numbers(frame, c.low, kind), _numbers(frame, c.high, kind)
            return ~(low > high)  # NaN compares False: kept
        if isinstance(c, Formula):
            want = self._formula(frame, c)
            have = frame.get_column(c.column)
            kind = self.kinds_of[c.column][0]
            if kinds.FAMILY[kind] == "numeric":
                a, b = _numbers(frame, c.column, kind), kinds.to_numbers(want, kind)
                return np.isnan(a) | np.isnan(b) | np.isclose(a, b, rtol=1e-9, atol=1e-9)
            return (have.is_null() | want.is_null() | (have == want)).to_numpy()
        if isinstance(c, FixedCombinations):
            allowed = self.combinations.get(i, set())
            return np.fromiter((r in allowed for r in _text_rows(frame, c.columns)), bool,
                               count=frame.height)
        if isinstance(c, Range):
            kind = self.kinds_of[c.column][0]
            x = _numbers(frame, c.column, kind)
            ok = np.ones(frame.height, dtype=bool)
            for bound, below in ((c.low, True), (c.high, False)):
                if bound is None:
                    continue
                b = _numbers(frame, bound, kind) if isinstance(bound, str) else float(bound)
                ok &= ~((x < b) if below else (x > b))
            return ok
        raise TypeError(f"unknown constraint {c!r}")

    def kept_by(self, c) -> str:
        """How a synthesizer keeps the rule: ``transform``, ``formula`` or ``rejection``."""
        return {"inequality": "transform", "formula": "formula",
                "fixed_combinations": "transform"}.get(c.type, "rejection")

    def admissible(self, frame: pl.DataFrame) -> np.ndarray:
        """Rows that keep every rule kept by rejection, shape (rows,)."""
        ok = np.ones(frame.height, dtype=bool)
        for i, c in enumerate(self.rules):
            if self.kept_by(c) == "rejection":
                ok &= self._valid(frame, i, c)
        return ok

    def report(self, real: pl.DataFrame | None, synthetic: pl.DataFrame,
               rejection: dict | None = None) -> dict:
        """Each rule's share of valid rows in the synthetic rows and, when given, in the real
        (training) rows, and how it is kept; ``rejection``: {"drawn", "rejected", "rate"}."""
        syn = self.valid(synthetic)
        real_valid = self.valid(real) if real is not None else [None] * len(syn)
        rows = [{"constraint": c.describe(), "type": c.type, "kept_by": self.kept_by(c),
                 "origin": c.origin,
                 "valid_synthetic": round(float(s.mean()), 6) if len(s) else None,
                 **({"valid_real": round(float(r.mean()), 6) if len(r) else None}
                    if r is not None else {})}
                for c, s, r in zip(self.rules, syn, real_valid, strict=True)]
        return {"rules": rows, "rejection": rejection or {"drawn": synthetic.height,
                                                          "rejected": 0, "rate": 0.0}}


def kinds_from(pre) -> dict[str, tuple[str, str]]:
    """Column -> (kind, source dtype) from a fitted ``TablePreprocessor`` (a discrete numeric
    reads as numeric)."""
    return {s.name: ("numeric" if s.discrete else s.kind, s.source_dtype)
            for s in pre.specs if s.missing_of is None}


def sample_valid(draw, rows: int, constraints: ConstraintSet) -> tuple[pl.DataFrame, dict]:
    """``rows`` synthetic rows that keep every rule kept by rejection: ``draw(n)`` gives n
    decoded rows (source schema); invalid ones are dropped and more drawn, up to
    ``MAX_ROUNDS`` rounds.

    Returns:
        (the rows, {"drawn", "rejected", "rate"}).

    Raises:
        ConstraintError: fewer than ``MIN_ACCEPTANCE`` of the draws are valid, or the rounds
            ran out: naming the rules and their valid shares.
    """
    kept, drawn, have = [], 0, 0
    need = rows
    for _ in range(MAX_ROUNDS):
        frame = draw(need)
        ok = constraints.admissible(frame)
        drawn += frame.height
        kept.append(frame.filter(pl.Series(ok)))
        have += int(ok.sum())
        rate = have / drawn
        if have >= rows:
            break
        if rate < MIN_ACCEPTANCE:
            break
        need = int(min(50 * rows, np.ceil((rows - have) / rate * 1.1) + 10))
    if have < rows:
        shares = {c.describe(): round(float(v.mean()), 4) for c, v in zip(
            constraints.rules, constraints.valid(frame), strict=True)
            if constraints.kept_by(c) == "rejection"}
        raise ConstraintError(f"only {have} of {drawn} synthetic rows drawn keep the "
                              f"constraints kept by rejection (valid shares of the last draw: "
                              f"{shares}); the model rarely produces them: check the rules, "
                              "or train longer")
    out = pl.concat(kept).head(rows)
    return out, {"drawn": drawn, "rejected": drawn - have, "rate": round(1 - have / drawn, 6)}


def _numbers(frame: pl.DataFrame, column: str, kind: str) -> np.ndarray:
    """A column as float64 in its kind's unit (days for dates), nulls as NaN."""
    return kinds.to_numbers(frame.get_column(column), kind)


def _text_rows(frame: pl.DataFrame, columns: list[str]):
    """The rows of ``columns`` as tuples of their category text (as profiles write them)."""
    text = [kinds.category_text(frame.get_column(c)).to_list() for c in columns]
    return zip(*text, strict=True)
