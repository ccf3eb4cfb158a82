#!/usr/bin/env python
"""One release budget, two designs: the joint DP-SGD mechanism against the budget split.

    python -m benchmarks.dp_designs [--epsilons 1,3,8] [--repeats 3] [--dp-epochs 30]
        [--folds 10] [--csv PATH] [--out benchmarks/reports]

Prepares the table once as a DP run does (seeded split, preprocessing from the profile's
public bounds), then for every epsilon, design and repeat trains all autoencoders (whole table
and every group) to a *release total* of epsilon (replace-one adjacency, PLD), encodes the
training rows and cross-validates ENCODED and GROUP_ENCODED with the flow's forest and folds
(test ROC AUC). One non-private run (the flow's plain training) is the reference. Each DP run
draws its own secret randomness, so the repeats differ by the noise, not by a seed. No attacks:
the flow measures those on every release.

Prints the table and the medians, writes markdown and JSON under ``--out``. Default data:
``$CLOAKFLOW_DATA_DIR/bank-additional-full.csv`` (the UCI Bank Marketing table).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def prepare(csv: str, seed: int):
    from cloakflow.tasks.data.ingest import load_table
    from cloakflow.tasks.data.preprocess import TablePreprocessor
    from cloakflow.tasks.data.profile import load_profile
    from cloakflow.tasks.data.split import feature_groups, positive_labels, split_reported

    profile = load_profile("bank-marketing")
    frame = load_table(csv, profile)
    y_all = positive_labels(frame, profile)
    # the product's split (tasks.data.steps.prepare): grouped on the modelled features
    train_idx, _ = split_reported(y_all, 0.1, seed, feature_groups(frame, profile.features))
    train = frame[train_idx]
    pre = TablePreprocessor(profile, public_bounds=True).fit(train, Path(csv).name)
    return pre.transform(train, Path(csv).name), y_all[train_idx], pre.group_slices()


def roc(codes, y, folds: int, seed: int) -> float:
    from cloakflow.tasks.evaluation.utility import cross_validate_forest

    return cross_validate_forest(codes, y, folds=folds, seed=seed)["mean"]["test_roc_auc"]


def run(x, y, slices, epsilon: float | None, design: str, args) -> dict:
    """One release trained as the flow trains it (``tasks.training.fit``'s plain functions, no
    MLflow), then both code tables cross-validated."""
    import numpy as np

    from cloakflow.models.autoencoder import AutoencoderConfig
    from cloakflow.tasks.privacy.dp import plan_dp
    from cloakflow.tasks.training.fit import fit_and_encode, fit_and_encode_joint

    config = AutoencoderConfig()
    members = {"whole": None, **slices}
    columns = [f"c{i}" for i in range(x.shape[1])]
    plan = (plan_dp(epsilon, None, None, args.dp_epochs, len(x), config.batch_size,
                    list(members), design) if epsilon is not None else None)
    t = time.perf_counter()
    if plan is not None and design == "joint":
        models = fit_and_encode_joint(x, members, columns, config, None, plan)
    else:  # plain, or the split design: each model its own mechanism and secret streams
        models = {n: fit_and_encode(n, x if c is None else x[:, c],
                                    columns if c is None else [columns[i] for i in c],
                                    config, args.seed, dp=plan)
                  for n, c in members.items()}
    train_s = time.perf_counter() - t
    group = np.hstack([models[g].codes for g in slices])
    return {"epsilon": epsilon, "design": design if epsilon is not None else "non-private",
            "release_epsilon": plan.total_epsilon if plan else None,
            "sigma": plan.mechanism.noise_multiplier if plan else None,
            "train_seconds": round(train_s, 1),
            "ENCODED": roc(models["whole"].codes, y, args.folds, args.seed),
            "GROUP_ENCODED": roc(group, y, args.folds, args.seed)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epsilons", default="1,3,8")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dp-epochs", type=int, default=30)
    ap.add_argument("--folds", type=int, default=10)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--csv", default=str(Path(os.environ.get("CLOAKFLOW_DATA_DIR", "."))
                                         / "bank-additional-full.csv"))
    ap.add_argument("--out", default=str(Path(__file__).parent / "reports"))
    args = ap.parse_args()
    x, y, slices = prepare(args.csv, args.seed)
    print(f"{len(x)} training rows x {x.shape[1]} columns, groups {list(slices)}", flush=True)
    rows = [run(x, y, slices, None, "non-private", args)]
    print(rows[-1], flush=True)
    for eps in [float(e) for e in args.epsilons.split(",")]:
        for rep in range(args.repeats):
            for design in ("joint", "split"):  # interleaved: machine noise hits both alike
                rows.append({**run(x, y, slices, eps, design, args), "repeat": rep})
                print(rows[-1], flush=True)
    lines = ["| setting | design | runs | release epsilon | sigma | GROUP_ENCODED ROC AUC "
             "(median; runs) | ENCODED ROC AUC (median; runs) | train s (median) |",
             "|---|---|---|---|---|---|---|---|"]
    keys = sorted({(r["epsilon"] or 0, r["design"]) for r in rows})
    summary = []
    for eps, design in keys:
        rs = [r for r in rows if (r["epsilon"] or 0) == eps and r["design"] == design]
        med = {k: statistics.median(r[k] for r in rs) for k in ("GROUP_ENCODED", "ENCODED",
                                                                  "train_seconds")}
        summary.append({"epsilon": eps or None, "design": design, **med})
        each = {k: ", ".join(f"{r[k]:.4f}" for r in rs) for k in ("GROUP_ENCODED", "ENCODED")}
        release = f"{rs[0]['release_epsilon']:.4g}" if eps else "-"
        sigma = f"{rs[0]['sigma']:.3f}" if eps else "-"
        lines.append(
            f"| {'non-private' if not eps else f'epsilon {eps:g}'} | {design} | {len(rs)} | "
            f"{release} | {sigma} | "
            f"{med['GROUP_ENCODED']:.4f} ({each['GROUP_ENCODED']}) | "
            f"{med['ENCODED']:.4f} ({each['ENCODED']}) | "
            f"{med['train_seconds']:.0f} |")
    table = "\n".join(lines)
    print(table)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d")
    note = (f"`python -m benchmarks.dp_designs --epsilons {args.epsilons} --repeats "
            f"{args.repeats} --dp-epochs {args.dp_epochs} --folds {args.folds}`, "
            f"{len(x)} training rows, {datetime.now(UTC).isoformat(timespec='minutes')}")
    (out / f"{stamp}-dp-designs.md").write_text(f"{note}\n\n{table}\n")
    (out / f"{stamp}-dp-designs.json").write_text(json.dumps({"note": note, "runs": rows,
                                                              "medians": summary}, indent=1))


if __name__ == "__main__":
    main()
