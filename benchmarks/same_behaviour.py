"""Compare two tags of ``benchmarks/same_behaviour.sh``: whether the synthetic rows are equal
after sorting, the DP plans' mechanisms (sigma, q, steps, epsilon) side by side, and the codes
runs' figures per seed with their medians (ROC AUC per view, each model's best validation
loss and epochs, the gate's measured attack figures).

    python -m benchmarks.same_behaviour BEFORE AFTER [--dir /tmp/cloakflow-same]
"""

from __future__ import annotations

import argparse
import glob
import json
import statistics
from pathlib import Path


def _one(pattern: str) -> Path | None:
    found = sorted(glob.glob(pattern))
    return Path(found[0]) if found else None


def rows_equal(a: Path, b: Path) -> str:
    import polars as pl

    x, y = pl.read_parquet(a), pl.read_parquet(b)
    same = x.columns == y.columns and x.sort(x.columns).equals(y.sort(y.columns))
    return f"synthetic rows {x.shape} vs {y.shape}: {'equal' if same else 'DIFFER'} after sorting"


def dp_plans(a: Path, b: Path) -> list[str]:
    out = []
    for tag, path in (("before", a), ("after", b)):
        dp = json.loads(path.read_text())["dp"]
        out.append(f"{tag}: epsilon {dp['epsilon']} delta {dp['delta']}")
        out += [f"  {m['models']}: sigma {m['noise_multiplier']:.6g} q {m['sampling_rate']} "
                f"steps {m['steps']} epsilon {m['epsilon']}" for m in dp["mechanisms"]]
    return out


def codes_figures(folder: Path) -> dict[str, list[float]]:
    manifests = [json.loads(p.read_text()) for s in (0, 1, 2)
                 if (p := _one(f"{folder}/codes{s}/*/*/manifest.json"))]
    figures: dict[str, list[float]] = {}
    for m in manifests:
        for view in ("ENCODED", "GROUP_ENCODED"):
            roc = next(u[view] for u in m["utility"] if u["metric"] == "test_roc_auc")
            figures.setdefault(f"ROC AUC {view}", []).append(roc)
            for k, v in m["privacy"]["policy"]["measured"][view].items():
                if v is not None:
                    figures.setdefault(f"{k} {view}", []).append(v)
        for name, model in m["models"].items():
            figures.setdefault(f"best val loss {name}", []).append(model["best_val_loss"])
            figures.setdefault(f"epochs {name}", []).append(model["epochs_run"])
    return figures


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("before")
    ap.add_argument("after")
    ap.add_argument("--dir", default="/tmp/cloakflow-same")
    args = ap.parse_args()
    a, b = Path(args.dir) / args.before, Path(args.dir) / args.after
    rows = [_one(f"{t}/syn/*/*/synthetic.parquet") for t in (a, b)]
    if all(rows):
        print(rows_equal(*rows))
    plans = [_one(f"{t}/dp/*/*/manifest.json") for t in (a, b)]
    if all(plans):
        print("\n".join(dp_plans(*plans)))
    before, after = codes_figures(a), codes_figures(b)
    if before and after:
        print(f"\n| figure | {args.before} (seeds 0, 1, 2) | {args.after} (seeds 0, 1, 2) | "
              "median before / after |\n|---|---|---|---|")
        for key, vals in before.items():
            other = after.get(key, [])
            cell = ", ".join(f"{v:.4g}" for v in vals)
            cell2 = ", ".join(f"{v:.4g}" for v in other)
            med = (f"{statistics.median(vals):.4g} / {statistics.median(other):.4g}"
                   if other else "-")
            print(f"| {key} | {cell} | {cell2} | {med} |")


if __name__ == "__main__":
    main()
