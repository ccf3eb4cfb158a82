"""Draft a dataset profile from a table (``cloakflow profile INPUT``), for its owner to edit.

The draft proposes a kind per column, feature groups by name prefix (or one group), a target
and its positive value only when one is unambiguous (else it lists the candidates and leaves the
target unset, which runs refuse until the owner sets it), identifier and quasi-identifier
candidates, and the columns to drop; the reasons and doubts are written as comments above the
YAML. It is checked against the profile contract before it is written, so a draft of a table
cloakflow can use runs without edits once its target is set.

Bounds read off the table are statistics of the private rows: the draft writes them with
``origin: data``, which DP runs refuse as public bounds (see ``profile.PublicBounds``).
"""

from __future__ import annotations

import io
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import yaml

from cloakflow.tasks.data import kinds
from cloakflow.tasks.data.ingest import _NUMBER_LIKE, _SEPARATED, NUMBER_AS_TEXT_SHARE
from cloakflow.tasks.data.preprocess import (
    DISCRETE_LEVELS,
    IDENTIFIER_MIN_ROWS,
    IDENTIFIER_SHARE,
    MAX_CATEGORIES,
    integer_key_reasons,
)
from cloakflow.tasks.data.profile import PROFILE_VERSION, DatasetProfile

SEPARATORS = [",", ";", "\t", "|"]
# names that usually mark the label, and columns an attacker can usually look up elsewhere
TARGET_NAMES = r"(?i)^(y|target|label|class|outcome|response|result)$|(churn|default|fraud|" \
               r"readmit|approved|survived|converted|subscribed)"
QUASI_NAMES = r"(?i)(^age$|_age$|^age_|sex|gender|birth|dob|zip|postcode|postal|region|city|" \
              r"country|nationality|race|ethnic|marital|occupation|^job$|education)"
_YES = {"1", "1.0", "true", "yes", "y", "t"}  # a two-valued label's positive value, if present
BOUND_CATEGORIES = 20  # categories listed as (data) bounds up to this many
MIN_RULE_ROWS = 20  # an inequality is proposed only when it held on this many rows or more
MAX_RULES = 10  # at most this many proposed inequalities
# an inequality that would hold on more rows than this with its columns' pairing shuffled
# follows from their distributions, not from a rule: not proposed
MAX_CHANCE_SHARE = 0.9


class DraftError(ValueError):
    """The table cannot be read, or has no feature column."""


@dataclass
class Draft:
    """A drafted profile: the YAML text (with comments) and the notes behind it; its
    ``profile.target`` is None when no label was unambiguous (runs refuse it until set)."""

    profile: DatasetProfile
    text: str
    notes: list[str] = field(default_factory=list)


def sniff_separator(path: Path) -> str:
    """The CSV separator that splits the first lines into the most, equally many, fields."""
    lines = [ln for ln in path.read_text(errors="replace").splitlines()[:20] if ln.strip()]
    if not lines:
        raise DraftError(f"{path}: file is empty")
    best, score = ",", (0, 0)
    for sep in SEPARATORS:
        counts = [ln.count(sep) for ln in lines]
        consistent = sum(c == counts[0] for c in counts)
        if (counts[0], consistent) > score and counts[0] > 0:
            best, score = sep, (counts[0], consistent)
    return best


def text_encoding(path: Path, encoding: str | None) -> tuple[str, str | None]:
    """(the CSV's encoding, a note or None): ``encoding`` if given, else UTF-8 when the file
    decodes as UTF-8, else cp1252 (a spreadsheet's export; latin-1 where cp1252 fails).

    Raises:
        DraftError: the file does not decode in the given encoding.
    """
    raw = path.read_bytes()
    if encoding is not None:
        try:
            raw.decode(encoding)
        except (UnicodeDecodeError, LookupError) as exc:
            raise DraftError(f"{path}: does not decode as {encoding}: {exc}") from exc
        return encoding, None
    try:
        raw.decode("utf-8")
        return "utf8", None
    except UnicodeDecodeError as exc:
        for guess in ("cp1252", "latin-1"):
            try:
                raw.decode(guess)
            except UnicodeDecodeError:
                continue
            return guess, (f"{path.name} is not UTF-8 (byte {exc.start}); it decodes as "
                           f"{guess}, a spreadsheet export's encoding: encoding: {guess} "
                           "(check a few accented values; --encoding states it)")
    raise DraftError(f"{path}: not UTF-8 and no fallback decodes it; give --encoding")


def _read(path: Path, fmt: str, separator: str, encoding: str = "utf8") -> pl.DataFrame:
    try:
        if fmt == "parquet":
            frame = pl.read_parquet(path)
        else:
            source = path if encoding in ("utf8", "utf-8") else io.BytesIO(
                path.read_bytes().decode(encoding).encode("utf-8"))
            frame = kinds.parse_iso_text(
                pl.read_csv(source, separator=separator, infer_schema_length=None), skip=set())
    except (pl.exceptions.PolarsError, OSError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise DraftError(f"{path}: cannot be read as {fmt}: {first}") from exc
    if frame.height == 0:
        raise DraftError(f"{path}: the table has a header but no rows")
    return frame


def _value(v: Any) -> Any:
    """A value as YAML writes it (numpy/polars scalars to plain Python)."""
    from decimal import Decimal

    v = v.item() if hasattr(v, "item") else v
    return float(v) if isinstance(v, Decimal) else v


@dataclass
class _Column:
    name: str
    kind: str | None  # None: dropped
    role: str = "feature"  # feature, drop, identifier
    notes: list[str] = field(default_factory=list)
    date_format: str | None = None


def _classify(series: pl.Series, distinct_rows: int | None = None) -> _Column:
    """Kind, role and notes of one column, by the same rules ingest and preprocessing apply
    (identifiers judged per distinct row of the table, ``distinct_rows``: a key repeats only
    with its whole row)."""
    name, rows = series.name, len(series)
    values = series.drop_nulls()
    col = _Column(name, kinds.infer_kind(series.dtype))
    if not len(values):
        col.role = "drop"
        col.notes.append(f"{name}: empty in every row ({rows} of {rows} null): dropped")
        return col
    if col.kind is None:
        col.role = "drop"
        col.notes.append(f"{name}: type {series.dtype} is no column kind: dropped")
        return col
    if infinite := kinds.infinite_count(series):
        col.role = "drop"
        col.notes.append(f"{name}: {infinite} infinite values (ingest refuses them): dropped; "
                         "write them as empty fields (missing) and add the column back")
        return col
    if values.n_unique() == 1:
        col.role = "drop"
        col.notes.append(f"{name}: one value in every row ({values[0]!r}): dropped")
        return col
    if markers := kinds.missing_markers(series):
        col.notes.append(f"{name}: {', '.join(f'{m!r} in {n} rows' for m, n in markers.items())}"
                         ": a usual missing-value marker, kept as a category of its own; if it "
                         "means missing, write those fields empty")
    if series.dtype == pl.String:
        date = kinds.looks_like_date_text(series)
        numeric = values.str.contains(_NUMBER_LIKE)
        if date is not None:
            col.kind = "datetime" if re.search(r"\d:\d", date) else "date"
            try:
                fits = kinds.date_text_formats(series, col.kind, "draft")
            except kinds.KindError:  # two-digit years
                fits = []
            if fits is None:  # ISO 8601 text: read as it is
                col.notes.append(f"{name}: ISO 8601 dates written as text: declared {col.kind}")
            elif len(fits) == 1:
                col.date_format = fits[0]
                col.notes.append(f"{name}: dates written as text (e.g. {date!r}): declared "
                                 f"{col.kind}, read as {col.date_format!r} (date_formats:)")
            elif fits:
                col.date_format = fits[0]
                col.notes.append(
                    f"{name}: AMBIGUOUS dates written as text (e.g. {date!r}): every day is 12 "
                    f"or less, so day first and month first both read; drafted {fits[0]!r}: "
                    "CHECK it (date_formats:), or month and day are swapped; its bounds were "
                    "read with this guess: change them with it")
            else:
                col.role = "drop"
                col.notes.append(f"{name}: dates written as text (e.g. {date!r}) in no format "
                                 "recognised (or with two-digit years): dropped; write them as "
                                 "ISO 8601")
                return col
        elif float(numeric.mean() or 0) >= NUMBER_AS_TEXT_SHARE \
                and values.str.contains(_SEPARATED).any():
            col.role = "drop"
            col.notes.append(f"{name}: numbers written as text with separators (e.g. "
                             f"{values.filter(values.str.contains(_SEPARATED))[0]!r}): dropped;"
                             " store them as plain numbers and add the column back")
            return col
    distinct = values.n_unique()
    per = min(len(values), distinct_rows or len(values))  # rows, duplicates counted once
    if col.kind == "categorical" and per >= IDENTIFIER_MIN_ROWS \
            and distinct >= IDENTIFIER_SHARE * per:
        col.role = "identifier"
        col.notes.append(f"{name}: {distinct} distinct values in {len(values)} rows"
                         + (f" ({per} distinct rows)" if per < len(values) else "")
                         + ": an identifier (kept out of the features and the release)")
    elif reasons := integer_key_reasons(series, distinct_rows):
        col.role = "identifier"
        col.notes.append(f"{name}: one distinct integer per row and {' and '.join(reasons)}: "
                         "an identifier")
    elif col.kind == "categorical" and distinct == 2 and series.dtype == pl.String and \
            set(values.str.strip_chars().str.to_lowercase().unique()) <= set(kinds.BOOLEAN_TEXT):
        col.notes.append(f"{name}: two values ({', '.join(map(repr, sorted(values.unique())))})"
                         ": drafted categorical, released as the same text; declare it boolean "
                         "under columns: to model and release it as true/false")
    elif col.kind == "categorical" and distinct > MAX_CATEGORIES:
        col.notes.append(f"{name}: {distinct} categories (one model input each); consider "
                         "grouping rare ones or dropping it")
    elif series.dtype.is_integer() and distinct <= 10 and len(values) >= 20 * distinct:
        col.notes.append(f"{name}: integers with {distinct} values: drafted numeric; if the "
                         "numbers are codes, declare it categorical under columns: and give "
                         "its bounds as categories: [...] (or remove them)")
    return col


def _target(frame: pl.DataFrame, cols: dict[str, _Column]
            ) -> tuple[str | None, Any, list[str], str]:
    """(column or None, positive value, candidates, note).

    The target is drafted only when it is unambiguous: exactly one usable column has a
    label-like name (``TARGET_NAMES``), without nulls, and it holds two values (binary; the
    positive value is 1, true or yes where one of the two is, else the rarer one), 3 to 20
    categories (multiclass) or more than 20 numbers (numeric). Otherwise the target is left
    unset and the candidates (two-valued columns, and categorical ones with a few values,
    without nulls) are listed: a feature
    chosen as the label would be published in clear.
    """
    usable = [c for c, col in cols.items() if col.role == "feature"]
    binary = [c for c in usable if frame.get_column(c).null_count() == 0
              and frame.get_column(c).n_unique() == 2]
    few = [c for c in usable if cols[c].kind == "categorical" and c not in binary
           and frame.get_column(c).null_count() == 0 and 2 < frame.get_column(c).n_unique() <= 20]
    pool = binary + few
    named = [c for c in usable if re.search(TARGET_NAMES, c)]
    if len(named) == 1 and named[0] in binary:
        column = named[0]
        counts = frame.get_column(column).value_counts(sort=True)
        values = [_value(v) for v in counts.get_column(column).to_list()]
        yes = [v for v in values if str(v).strip().lower() in _YES]
        positive = yes[0] if len(yes) == 1 else values[-1]  # 1/true/yes, else the rarer value
        why = "its yes value" if len(yes) == 1 else "the rarer value"
        return column, positive, pool, f"target {column!r} (positive {positive!r}, {why}; " \
                                       f"its name reads as a label); other candidates: " \
                                       f"{', '.join(c for c in pool if c != column) or 'none'}"
    if len(named) == 1 and frame.get_column(named[0]).null_count() == 0:
        column, series = named[0], frame.get_column(named[0])
        if cols[column].kind == "categorical" and 2 < series.n_unique() <= 20:
            return column, None, pool, (f"target {column!r} (kind multiclass: "
                                        f"{series.n_unique()} classes; its name reads as a label)")
        if cols[column].kind == "numeric" and series.n_unique() > 20:
            return column, None, pool, (f"target {column!r} (kind numeric: a measured "
                                        "quantity; its name reads as a label)")
    if len(named) == 1:
        why = (f"the label-like column {named[0]!r} has {frame.get_column(named[0]).n_unique()}"
               " values, neither two nor a few classes nor a measured quantity"
               if frame.get_column(named[0]).null_count() == 0 else
               f"the label-like column {named[0]!r} has nulls")
    elif named:
        why = f"several columns are named like a label ({', '.join(named)})"
    else:
        why = "no column is named like a label"
    return None, None, pool, (
        f"TARGET NOT SET: {why}; candidates: {', '.join(pool) or 'none'}. Set `target: "
        "{column: NAME, positive: VALUE}` (two values), `{column: NAME, kind: multiclass}` "
        "(a few classes) or `{column: NAME, kind: numeric}` (a measured quantity), and remove "
        "that column from its group; the label column is published in clear in every release")


def _groups(features: list[str]) -> dict[str, list[str]]:
    """Groups by name prefix (before the first ``_``, ``.`` or ``-``) shared by two or more
    columns; the rest form ``other``; one group ``all`` when no prefix is shared."""
    prefix = {c: re.split(r"[_.\-]", c, maxsplit=1)[0].lower() for c in features}
    shared = {p for p, n in Counter(prefix.values()).items() if n >= 2}
    if not shared or (len(shared) == 1 and all(prefix[c] in shared for c in features)):
        return {"all": list(features)}
    out: dict[str, list[str]] = {}
    for c in features:
        key = prefix[c] if prefix[c] in shared else "other"
        key = re.sub(r"\W", "_", key)
        key = key if key.isidentifier() else f"g_{key}"
        out.setdefault(key, []).append(c)
    return out


def draft_profile(path: str | Path, name: str | None = None,
                  separator: str | None = None, encoding: str | None = None) -> Draft:
    """Draft a profile for the table at ``path`` (CSV or Parquet, as its first bytes say).

    Args:
        path: the table.
        name: dataset name (default: the file name's stem, made a valid name).
        separator: CSV separator (default: sniffed from the first lines).
        encoding: a CSV's text encoding (default: UTF-8 if it decodes, else cp1252 or latin-1,
            noted in the draft).

    Returns:
        The draft, validated against the profile contract.

    Raises:
        DraftError: the file cannot be read, has no rows, or has no feature column.
    """
    path = Path(path)
    if not path.is_file():
        raise DraftError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise DraftError(f"{path}: file is empty")
    with open(path, "rb") as f:
        fmt = "parquet" if f.read(4) == b"PAR1" else "csv"
    enc, enc_note = text_encoding(path, encoding) if fmt == "csv" else ("utf8", None)
    sep = separator or (sniff_separator(path) if fmt == "csv" else ",")
    frame = _read(path, fmt, sep, enc)
    # as ingest reads it: spaces stripped, numbers with missing-value markers read as numbers
    frame, tidied = kinds.tidy_text(frame, {}, path.name)
    try:
        return _draft(path, frame, fmt, sep, name, ([enc_note] if enc_note else []) + tidied,
                      enc)
    except kinds.KindError as exc:
        raise DraftError(f"{path}: {exc}") from exc


def _draft(path: Path, frame: pl.DataFrame, fmt: str, sep: str, name: str | None,
           read_notes: list[str] | None = None, encoding: str = "utf8") -> Draft:
    distinct_rows = frame.unique().height
    cols = {c: _classify(frame.get_column(c), distinct_rows) for c in frame.columns}
    target, positive, candidates, target_note = _target(frame, cols)
    features = [c for c, col in cols.items() if col.role == "feature" and c != target]
    if not features:
        raise DraftError(f"{path}: no feature column is left besides the target {target!r}")
    notes = [n for col in cols.values() for n in col.notes if col.name != target]
    notes.insert(0, target_note)
    notes[1:1] = read_notes or []
    with_nulls = [c for c in features if frame.get_column(c).null_count()
                  or (frame.schema[c].is_float() and frame.get_column(c).is_nan().any())]
    if with_nulls:
        notes.append(f"nulls in {', '.join(with_nulls)}: missing: impute (filled from training "
                     "rows); set missing: error to refuse them instead")
    quasi = [c for c in features if re.search(QUASI_NAMES, c)]
    label_kind = {} if target is None else {
        target: "boolean" if frame.schema[target] == pl.Boolean else cols[target].kind}
    target_kind = ("binary" if positive is not None else
                   "numeric" if target is not None and cols[target].kind == "numeric"
                   else "multiclass")
    doc: dict[str, Any] = {
        "version": PROFILE_VERSION,
        "name": name or (re.sub(r"[^A-Za-z0-9_.-]", "-", path.stem).strip("-.") or "table"),
        "format": fmt,
        **({"separator": sep} if fmt == "csv" else {}),
        **({"encoding": encoding} if encoding not in ("utf8", "utf-8") else {}),
        "target": None if target is None else (
            {"column": target, "positive": positive} if target_kind == "binary"
            else {"column": target, "kind": target_kind}),
        **({"target_candidates": candidates} if target is None else {}),
        "drop": [c for c, col in cols.items() if col.role == "drop" and c != target],
        "identifiers": [c for c, col in cols.items() if col.role == "identifier"
                        and c != target],
        "groups": _groups(features),
        "quasi_identifiers": quasi,
        "missing": "impute" if with_nulls else "error",
        "nullable": with_nulls,
        # the target's kind too: a DP synthetic release models it and needs it declared
        "columns": {**{c: cols[c].kind for c in features}, **label_kind},
        **({"date_formats": formats} if (formats := {
            c: cols[c].date_format for c in features if cols[c].date_format}) else {}),
        "privacy": {"sensitive": []},
        # the target's categories too (a DP synthetic release needs them public)
        "bounds": _bounds(frame, {**{c: cols[c].kind for c in features}, **label_kind},
                          {c: cols[c].date_format for c in features}),
    }
    if not doc["name"][0].isalnum():
        doc["name"] = "t" + doc["name"]
    rules = _inequalities(frame, {c: cols[c].kind for c in features},
                          {c: cols[c].date_format for c in features})
    if rules:
        doc["constraints"] = rules
        notes.append(f"{len(rules)} inequalities held on every row (constraints:, origin: data): "
                     "keep the ones that are rules of the domain and set origin: public, "
                     "remove the coincidences")
    profile = DatasetProfile.model_validate(doc)
    return Draft(profile, _text(doc, notes, path), notes)


def _bounds(frame: pl.DataFrame, kinds_: dict[str, str],
            formats: dict[str, str | None]) -> dict[str, dict]:
    """Ranges, category sets and the value lists of numeric columns with at most
    ``DISCRETE_LEVELS`` values, measured on the table, marked ``origin: data``."""
    out: dict[str, dict] = {}
    for c, kind in kinds_.items():
        series = frame.get_column(c).drop_nulls()
        if kind in ("date", "datetime") and series.dtype == pl.String:
            series = kinds.parse_dates(series, kind, formats.get(c), "draft")
        if kind == "numeric" and series.dtype.is_numeric() and \
                1 < series.n_unique() <= DISCRETE_LEVELS:
            # few values: the list a synthetic release models exactly (a value list)
            out[c] = {"categories": sorted(_value(v) for v in series.unique().to_list()),
                      "origin": "data"}
        elif kinds.FAMILY[kind] == "numeric":
            low, high = _value(series.min()), _value(series.max())
            if low != high:
                whole = kind == "numeric" and series.dtype.is_integer()
                out[c] = {"min": low, "max": high, **({"integer": True} if whole else {}),
                          "origin": "data"}
        elif kind == "categorical":
            cats = sorted(series.cast(pl.String).unique().to_list())
            if len(cats) <= BOUND_CATEGORIES:
                out[c] = {"categories": cats, "origin": "data"}
    return out


def _inequalities(frame: pl.DataFrame, kinds_: dict[str, str],
                  formats: dict[str, str | None]) -> list[dict]:
    """Proposed constraints: ``low <= high`` for each pair of date, datetime or numeric
    columns of one kind that holds on every row where both are present, where their ranges
    overlap (otherwise the rule says nothing the bounds do not) and where it would often
    break with the rows' pairing shuffled (``_by_chance`` at most ``MAX_CHANCE_SHARE``: else
    it follows from the two distributions, not a rule), the first one found per high
    column (the profile allows one per high side) and at most ``MAX_RULES``;
    marked ``origin: data`` (the rows say it: review before a DP run)."""
    numbers: dict[str, np.ndarray] = {}
    for c, kind in kinds_.items():
        if kinds.FAMILY[kind] != "numeric":
            continue
        series = frame.get_column(c)
        if kind in ("date", "datetime") and series.dtype == pl.String:
            series = kinds.parse_dates(series, kind, formats.get(c), "draft")
        try:
            numbers[c] = kinds.to_numbers(series, kind)
        except kinds.KindError:
            continue
    out, highs = [], set()
    names = list(numbers)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            if kinds_[a] != kinds_[b]:
                continue
            x, y = numbers[a], numbers[b]
            both = ~(np.isnan(x) | np.isnan(y))
            if both.sum() < MIN_RULE_ROWS:
                continue
            x, y = x[both], y[both]
            for low, high, lo, hi in ((a, b, x, y), (b, a, y, x)):
                if (lo <= hi).all() and (lo < hi).any() and lo.max() > hi.min() \
                        and high not in highs \
                        and _by_chance(lo, hi) <= MAX_CHANCE_SHARE:  # a rule, not the ranges
                    highs.add(high)
                    out.append({"type": "inequality", "low": low, "high": high,
                                "origin": "data"})
    return out[:MAX_RULES]


def _by_chance(low: np.ndarray, high: np.ndarray, seed: int = 0) -> float:
    """The share of rows on which ``low <= high`` would hold if the two columns were unrelated:
    ``high`` against a random permutation of its rows. Near 1, the inequality follows from the
    two distributions alone (a small count below a large amount) and says nothing of the
    rows; a rule of the domain (discharge on or after admission) breaks often when the
    pairing is shuffled."""
    shuffled = np.random.default_rng(seed).permutation(high)
    return float((low <= shuffled).mean())


def _text(doc: dict[str, Any], notes: list[str], path: Path) -> str:
    head = [f"# cloakflow profile drafted from {path.name}: review it before use.",
            "# Notes:", *(f"#  - {n}" for n in notes),
            "# privacy.sensitive is empty: the inversion limits then cover every non-target",
            "# column; list the attributes to protect to narrow them.",
            "# quasi_identifiers are guesses by column name: list what an attacker can look up.",
            "# bounds were measured on this table (origin: data): a DP run refuses them as",
            "# public; replace them with domain bounds (origin: public) or remove them first.",
            "# nullable lists the columns with nulls in this table: a DP synthetic run takes it as",
            "# public knowledge; keep only columns known to be optional without looking.",
            "# constraints (if any) are inequalities that held on every row (origin: data):",
            "# keep the rules of the domain (origin: public), remove coincidences.",
            ""]
    return "\n".join(head) + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)
