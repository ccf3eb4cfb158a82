#!/usr/bin/env python
"""Table and plot of synthetic-data benchmark runs: ``benchmarks/vae_synthesis.py --json``
lines joined with the SDMetrics quality files of ``benchmarks/sdv_reference.py``.

    python -m benchmarks.synthetic_report RESULTS.jsonl QUALITY_DIR [--plot FILE.png]

Prints one markdown row per table, seeds pooled (medians; min-max of quality and TSTR): fit
CPU s, SDMetrics quality and its two properties, fidelity accuracies, TSTR, DCR ratio, exact
copies, membership TPR at 1% FPR and AUC (the stronger attack), positive rate; with ``--plot``,
quality and TSTR ROC AUC against epsilon for the DP runs, with the non-private VAE, SDV TVAE and
the anchors' MST points (Private-PGM via dpmm, measured on this table and split by the issue's
authors; not rerun here).
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

# the anchors' MST (Private-PGM via dpmm) figures on this table and split: quality, TSTR forest
MST = {1.0: (0.667, 0.783), 3.0: (0.723, 0.785)}


def load(results: str, quality_dir: str) -> list[dict]:
    rows = []
    for line in Path(results).read_text().splitlines():
        r = json.loads(line)
        if "DP eps" in r.get("model", "") and "DP knots" not in r["model"]:
            r["table"] += "-noknots"  # runs made before DP quantile knots existed
        q = Path(quality_dir) / f"{r['table']}.quality.json"
        # SDMetrics' own file where benchmarks/sdv_reference.py scored the rows, else the
        # harness' figure (the same definitions)
        r["quality"] = json.loads(q.read_text()) if q.is_file() else r.get("quality")
        m = re.search(r"DP eps ([\d.]+)", r.get("model", ""))
        r["epsilon"] = float(m.group(1)) if m else None
        r["group"] = re.sub(r"-seed\d+$", "", r["table"])
        rows.append(r)
    return rows


FIGURES = {
    "fit CPU s": lambda r: r.get("fit_cpu_s") or (r["quality"] or {}).get("fit_cpu_s"),
    "quality": lambda r: r["quality"] and r["quality"]["score"],
    "shapes": lambda r: r["quality"] and r["quality"]["column_shapes"],
    "pairs": lambda r: r["quality"] and r["quality"]["column_pair_trends"],
    "1-way": lambda r: r["fidelity"]["univariate"]["synthetic"],
    "2-way": lambda r: r["fidelity"]["bivariate"]["synthetic"],
    "3-way": lambda r: r["fidelity"]["three_way"]["synthetic"],
    "TSTR forest": lambda r: r["tstr"]["forest"]["tstr"],
    "TSTR LightGBM": lambda r: r["tstr"]["lightgbm"]["tstr"],
    "DCR ratio": lambda r: r["distance"]["dcr_ratio"],
    "exact copies %": lambda r: 100 * r["distance"]["exact_copies"],
    "MIA TPR@1%FPR": lambda r: max(r["membership"]["distance"]["tpr_at_1pct_fpr"],
                                   r["membership"]["density_ratio"]["tpr_at_1pct_fpr"]),
    "MIA AUC": lambda r: max(max(a["auc"], 1 - a["auc"]) for a in r["membership"].values()),
    "positive %": lambda r: 100 * r["tstr"]["positive_rate"]["synthetic"],
}


def summarise(rows: list[dict]) -> dict[str, dict]:
    """Per table (seeds pooled): n runs, and the median, min and max of every figure."""
    import numpy as np

    out: dict[str, dict] = {}
    for group in dict.fromkeys(r["group"] for r in rows):
        runs = [r for r in rows if r["group"] == group]
        figures = {}
        for name, get in FIGURES.items():
            values = [v for v in (get(r) for r in runs) if v is not None]
            if values:
                figures[name] = (float(np.median(values)), min(values), max(values))
        out[group] = {"n": len(runs), "epsilon": runs[0]["epsilon"], "figures": figures}
    return out


def markdown(summary: dict[str, dict]) -> str:
    names = list(FIGURES)
    lines = ["| table | runs | " + " | ".join(names) + " |",
             "|---|---|" + "---|" * len(names)]
    for group, s in summary.items():
        cells = []
        for name in names:
            if name not in s["figures"]:
                cells.append("—")
                continue
            med, lo, hi = s["figures"][name]
            digits = 1 if name in ("fit CPU s",) or name.endswith("%") else \
                (2 if name == "DCR ratio" else 3)
            cells.append(f"{med:.{digits}f}" + (f" ({lo:.{digits}f}–{hi:.{digits}f})"
                                                if s["n"] > 1 and name in (
                                                    "quality", "TSTR forest") else ""))
        lines.append(f"| {group} | {s['n']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(summary: dict[str, dict], path: str) -> None:
    from cloakflow.tasks.plots import figure

    dp = sorted(((s["epsilon"], s) for g, s in summary.items()
                 if s["epsilon"] and not g.endswith("-noknots") and "quality" in s["figures"]
                 and re.fullmatch(r"vae-dp-eps[\d.]+", g)), key=lambda t: t[0])
    with figure(path, 1, 2, size=(10, 4)) as axes:
        for ax, key, label, i in ((axes[0, 0], "quality", "SDMetrics quality", 0),
                                  (axes[0, 1], "TSTR forest", "TSTR ROC AUC (forest)", 1)):
            eps = [e for e, _ in dp]
            med = [s["figures"][key][0] for _, s in dp]
            err = [[m - s["figures"][key][1] for m, (_, s) in zip(med, dp, strict=True)],
                   [s["figures"][key][2] - m for m, (_, s) in zip(med, dp, strict=True)]]
            ax.errorbar(eps, med, yerr=err, fmt="o-", capsize=3,
                        label="VAE, DP end to end (median, min-max)")
            ax.plot(list(MST), [v[i] for v in MST.values()], "s--", label="MST (anchors)")
            for name, colour in (("vae", "k"), ("tvae", "g")):
                if name in summary and key in summary[name]["figures"]:
                    ax.axhline(summary[name]["figures"][key][0], ls=":", color=colour,
                               label=f"{name.upper()} non-private")
            ax.set_xscale("log")
            ax.set_xticks(eps or [1, 3, 8], [f"{e:g}" for e in (eps or [1, 3, 8])])
            ax.set_xlabel("epsilon (delta 1e-6, add/remove one row)")
            ax.set_title(label)
            ax.legend(fontsize=7)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results")
    ap.add_argument("quality_dir")
    ap.add_argument("--plot")
    args = ap.parse_args()
    summary = summarise(load(args.results, args.quality_dir))
    print(markdown(summary))
    if args.plot:
        plot(summary, args.plot)
        print(f"plot: {args.plot}")


if __name__ == "__main__":
    main()
