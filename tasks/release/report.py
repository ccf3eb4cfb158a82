"""The one report renderer of every release kind: a title, what the release is, the gate's
verdict (the same section for every kind), then the kind's own sections (``Section``: a
heading and its markdown lines) and its closing lines. ``tasks.privacy.report`` (codes) and
``tasks.release.synthetic`` (synthetic rows) give their sections; a new kind gives its own."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass
class Section:
    """One ``## heading`` of a report and its markdown lines (None: lines without heading)."""

    heading: str | None
    lines: list[str] = field(default_factory=list)


def _fmt(value, digits: int = 4) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def policy_section(verdict: str, crossed: Sequence[str], measured: dict[str, dict],
                   limits: dict[str, float], accepted_risk: str | None = None,
                   covered: dict[str, list[str]] | None = None,
                   not_measured: Sequence[str] = ()) -> Section:
    """The gate's section: the verdict, the risk accepted on record, every crossed limit, one
    table of each limit measured per released table beside what is allowed (— not measured),
    what each limit covered and what had nothing to measure.

    Args:
        measured: released table -> limit -> value (``PolicyOutcome.measured``).
        limits: limit -> allowed bound (``min_utility``: the smallest allowed).
    """
    lines = [f"**Policy verdict: {verdict}**"
             + (f" (risk accepted on record: \"{accepted_risk}\")" if accepted_risk else ""),
             ""]
    lines += [f"- {c}" for c in crossed] or ["- every limit holds"]
    tables = list(measured)
    keys = list(dict.fromkeys(k for values in measured.values() for k in values))
    if keys:
        lines += ["", "| limit | " + " | ".join(tables) + " | allowed |",
                  "|---|" + "---|" * (len(tables) + 1)]
        lines += [f"| {k} | " + " | ".join(_fmt(measured[t].get(k)) for t in tables)
                  + f" | {limits.get(k, '—')} |" for k in keys]
    if covered:
        lines += ["", "Limits and what they covered: " + "; ".join(
            f"{k} <= {limits[k]:g} over {', '.join(v) or 'nothing'}"
            for k, v in covered.items() if k in limits) + "."]
    if not_measured:
        lines += ["", "Not measured: " + "; ".join(not_measured) + "."]
    return Section("Verdict", lines)


def render(title: str, intro: Sequence[str], policy: Section, sections: Sequence[Section],
           closing: Sequence[str] = ()) -> str:
    """The report's markdown: ``# title``, the intro lines, the verdict, the kind's sections,
    the closing lines."""
    lines = [f"# {title}", "", *intro]
    for section in (policy, *sections):
        if section.heading:
            lines += [f"## {section.heading}", ""]
        lines += [*section.lines, ""]
    lines += list(closing)
    return "\n".join(lines).rstrip("\n") + "\n"
