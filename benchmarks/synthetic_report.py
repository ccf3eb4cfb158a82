#!/usr/bin/env python
"""Table and plot of synthetic-data benchmark runs: ``benchmarks/vae_synthesis.py --json``
lines joined with the SDMetrics quality files of ``benchmarks/sdv_reference.py``.

    python -m benchmarks.synthetic_report RESULTS.jsonl QUALITY_DIR [--plot FILE.png]

Prints one markdown row per table (fit CPU s, SDMetrics quality, fidelity accuracies, TSTR,
DCR ratio, exact copies, membership TPR at 1% FPR, positive rate) and, with ``--plot``, draws
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
        r["quality"] = json.loads(q.read_text()) if q.is_file() else None
        m = re.search(r"DP eps ([\d.]+)", r.get("model", ""))
        r["epsilon"] = float(m.group(1)) if m else None
        rows.append(r)
    return rows


def markdown(rows: list[dict]) -> str:
    head = ("| table | fit CPU s | quality (shapes / pairs) | 1-/2-/3-way accuracy | TSTR forest "
            "| TSTR LightGBM | DCR ratio | exact copies | MIA TPR@1%FPR (dist / DOMIAS) | "
            "positive rate |\n|---|---|---|---|---|---|---|---|---|---|")
    lines = [head]
    for r in rows:
        q = r["quality"]
        f, t, d, m = r["fidelity"], r["tstr"], r["distance"], r["membership"]
        lines.append(
            f"| {r['table']} | {r.get('fit_cpu_s') or (q or {}).get('fit_cpu_s', '—')} | "
            + (f"{q['score']:.3f} ({q['column_shapes']:.3f} / {q['column_pair_trends']:.3f})"
               if q else "—")
            + f" | {f['univariate']['synthetic']:.3f} / {f['bivariate']['synthetic']:.3f} / "
            f"{f['three_way']['synthetic']:.3f} | {t['forest']['tstr']:.4f} | "
            f"{t['lightgbm']['tstr']:.4f} | {d['dcr_ratio']:.2f} | {d['exact_copies']:.2%} | "
            f"{m['distance']['tpr_at_1pct_fpr']:.3f} / {m['density_ratio']['tpr_at_1pct_fpr']:.3f}"
            f" | {t['positive_rate']['synthetic']:.3f} |")
    return "\n".join(lines)


def plot(rows: list[dict], path: str) -> None:
    from cloakflow.tasks.plots import figure

    dp = sorted((r for r in rows if r["epsilon"] and r["quality"]
                 and not r["table"].endswith("-noknots") and r["table"].count("-") == 2),
                key=lambda r: r["epsilon"])
    refs = {r["table"]: r for r in rows if r["epsilon"] is None and r["quality"]}
    with figure(path, 1, 2, size=(10, 4)) as axes:
        for ax, key, label in ((axes[0, 0], "quality", "SDMetrics quality"),
                               (axes[0, 1], "tstr", "TSTR ROC AUC (forest)")):
            def value(r, key=key):
                return r["quality"]["score"] if key == "quality" else r["tstr"]["forest"]["tstr"]

            ax.plot([r["epsilon"] for r in dp], [value(r) for r in dp], "o-",
                    label="VAE, DP end to end")
            i = 0 if key == "quality" else 1
            ax.plot(list(MST), [v[i] for v in MST.values()], "s--", label="MST (anchors)")
            for name, style in (("vae", "k:"), ("tvae", "g:")):
                if name in refs:
                    ax.axhline(value(refs[name]), ls=style[1], color=style[0],
                               label=f"{name.upper()} non-private")
            ax.set_xscale("log")
            ax.set_xlabel("epsilon (delta 1e-6, add/remove)")
            ax.set_title(label)
            ax.legend(fontsize=7)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results")
    ap.add_argument("quality_dir")
    ap.add_argument("--plot")
    args = ap.parse_args()
    rows = load(args.results, args.quality_dir)
    print(markdown(rows))
    if args.plot:
        plot(rows, args.plot)
        print(f"plot: {args.plot}")


if __name__ == "__main__":
    main()
