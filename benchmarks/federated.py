#!/usr/bin/env python
"""Benchmark: federated training (Flower deployment engine, FedAvg) against centralised
training of the same codes autoencoders on the UCI Bank Marketing table.

    python -m benchmarks.federated [--holders 3] [--rounds 10] [--local-epochs 2]
        [--partitions random,by=euribor3m] [--dp-epsilon 3] [--folds 5] [--rows N]
        [--out benchmarks/reports] [--tag T]

For each partition of the table into ``--holders`` holders (``random``: IID; ``by=COLUMN``:
sorted by a column, a skewed split) the federation runs as ``cloakflow federate`` does (warm
holder workers, a SuperLink and SuperNodes on 127.0.0.1), saving the global weights after every
round. The centralised reference trains the same models (``federated/task.py``: the ``kinds``
architecture, shared-schema preprocessing, plain or DP-SGD through the trainer seam) on all
rows for the same total epochs (rounds × local epochs), without early stopping on either side.

For this benchmark only, the holders' codes are pooled (in the table's row order) and
cross-validated with the flow's forest (test ROC AUC of GROUP_ENCODED and ENCODED), after every
round and at the end. Printed and written (JSON, markdown, one PNG of loss and ROC AUC per
round): ROC AUCs, the holders' training loss per round, wall time per round, the slowest
holder's training time and the round overhead (their difference; median over rounds), and the
centralised run's time. Under ``--dp-epsilon`` every holder spends epsilon on its own rows over
all rounds (add/remove, PLD: a DP row count and DP-SGD at the public ``--dp-sampling-rate``)
and the centralised run spends it on all rows with the same plan; holders are weighed
uniformly.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

DATA_DIR = os.environ.get("CLOAKFLOW_DATA_DIR", "/work/shared/data")


def _settings(args, rounds: int, local_epochs: int) -> dict:
    dp = args.dp_epsilon is not None
    return {"num-server-rounds": rounds, "local-epochs": local_epochs,
            "strategy": args.strategy,
            "proximal-mu": args.proximal_mu if args.strategy == "fedprox" else 0.0,
            "batch-size": args.batch_size, "learning-rate": args.learning_rate,
            "seed": args.seed, "dp-epsilon": args.dp_epsilon or 0.0, "dp-delta": 0.0,
            "dp-clip": 0.1, "dp-sampling-rate": args.dp_sampling_rate,
            "weighting": "uniform" if dp else "examples",
            "declared-size": 0.0, "run-name": "benchmark", "timeout": 3600.0,
            "save-rounds": True}


def _roc(codes: dict[str, np.ndarray], groups: list[str], y: np.ndarray, folds: int,
         seed: int) -> dict[str, float]:
    from cloakflow.tasks.evaluation.utility import cross_validate_forest

    group = np.hstack([codes[g] for g in groups])
    return {name: cross_validate_forest(x, y, folds=folds, seed=seed)["mean"]["test_roc_auc"]
            for name, x in (("GROUP_ENCODED", group), ("ENCODED", codes["whole"]))}


def federated(args, profile, frame, y, how: str, work: Path) -> dict:
    import polars as pl

    from cloakflow.flows.federate import partition
    from cloakflow.tasks.federation import Federation, merge_private_rounds

    parts = partition(frame, args.holders, how, args.seed)
    raw = pl.read_csv(args.csv, separator=profile.separator, infer_schema=False)
    if args.rows:
        raw = raw[: args.rows]
    files = {}
    for i, rows in enumerate(parts, start=1):
        files[f"holder{i}"] = str(work / f"{how.replace('=', '-')}-holder{i}.csv")
        raw[rows].write_csv(files[f"holder{i}"], separator=profile.separator)
    settings = _settings(args, args.rounds, args.local_epochs)
    rounds: list[dict] = []
    t0 = time.perf_counter()
    with Federation(work / f"run-{how.replace('=', '-')}", "bank-marketing", files) as fed:
        fed.start_workers()
        fed.start_flower()
        out = fed.run(settings, on_round=rounds.append, timeout=7200)
        wall = time.perf_counter() - t0
        per_round = []
        order = np.concatenate(parts)
        for r in range(1, args.rounds + 1):
            if r not in args.eval_rounds and r != args.rounds:
                continue
            weights = dict(np.load(out / f"global-round{r}.npz"))
            pooled: dict[str, list] = {}
            for h in files:
                codes = fed.ask_worker(h, {"op": "codes", "arrays": weights,
                                           "config": settings})["codes"]
                for name, c in codes.items():
                    pooled.setdefault(name, []).append(c)
            codes = {n: np.vstack(c)[np.argsort(order)] for n, c in pooled.items()}
            per_round.append({"round": r, **_roc(codes, list(profile.groups), y, args.folds,
                                                 args.seed)})
            print(f"  [{how}] round {r}: GROUP_ENCODED {per_round[-1]['GROUP_ENCODED']:.4f}, "
                  f"ENCODED {per_round[-1]['ENCODED']:.4f}", flush=True)
        reports = [fed.ask_worker(h, {"op": "report", "config": settings}) for h in files]
    rounds = merge_private_rounds(rounds, reports)  # DP: the holders' own losses and timings
    overhead = [r["overhead_seconds"] for r in rounds]
    return {"partition": how, "holders": [len(p) for p in parts], "wall_seconds": wall,
            "rounds": [{k: r[k] for k in ("round", "wall_seconds", "slowest_training_seconds",
                                          "overhead_seconds")}
                       | {"loss": float(np.mean([h["train-loss"] for h in r["holders"]]))}
                       for r in rounds],
            "median_round_seconds": statistics.median(r["wall_seconds"] for r in rounds),
            "median_overhead_seconds": statistics.median(overhead),
            "roc_auc_per_round": per_round, "final": per_round[-1],
            "dp": [r["dp"] for r in reports] if args.dp_epsilon else None}


def centralised(args, profile, y, work: Path) -> dict:
    from cloakflow.federated import task

    holder = task.load_holder(profile, args.csv if not args.rows else _head(args, work))
    total_epochs = args.rounds * args.local_epochs
    # plain centralised training: no proximal term (FedProx pulls towards a round's start)
    settings = {**_settings(args, 1, total_epochs), "strategy": "fedavg", "proximal-mu": 0.0}
    start = task.initial_weights(holder.pre, settings, args.seed)
    plan = dp_rows = None
    if args.dp_epsilon is not None:  # the same plan as a holder's: one round of every epoch
        plan = task.dp_plan(settings, len(task.members(holder.pre)))
        dp_rows = max(1.0, float(task.dp_counts(holder, settings, plan).sum()))
    t0 = time.perf_counter()
    weights, metrics = task.local_train(holder, start, settings, plan=plan, dp_rows=dp_rows,
                                        seed=args.seed)
    seconds = time.perf_counter() - t0
    roc = _roc(task.codes_of(holder, weights, settings), list(profile.groups), y, args.folds,
               args.seed)
    print(f"  [centralised] {total_epochs} epochs in {seconds:.1f} s: GROUP_ENCODED "
          f"{roc['GROUP_ENCODED']:.4f}, ENCODED {roc['ENCODED']:.4f}", flush=True)
    return {"epochs": total_epochs, "train_seconds": seconds, "loss": metrics["train-loss"],
            **roc}


def _head(args, work: Path) -> str:
    import polars as pl

    path = work / "head.csv"
    pl.read_csv(args.csv, separator=";", infer_schema=False)[: args.rows].write_csv(
        path, separator=";")
    return str(path)


def _plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (loss_ax, roc_ax) = plt.subplots(1, 2, figsize=(11, 4))
    for run in result["federated"]:
        loss_ax.plot([r["round"] for r in run["rounds"]], [r["loss"] for r in run["rounds"]],
                     marker="o", label=run["partition"])
        roc_ax.plot([r["round"] for r in run["roc_auc_per_round"]],
                    [r["GROUP_ENCODED"] for r in run["roc_auc_per_round"]], marker="o",
                    label=f"{run['partition']} GROUP_ENCODED")
    roc_ax.axhline(result["centralised"]["GROUP_ENCODED"], color="k", ls="--",
                   label="centralised GROUP_ENCODED")
    loss_ax.set(xlabel="round", ylabel="holders' training loss (mean, nats per row)",
                title="Loss per round")
    roc_ax.set(xlabel="round", ylabel="test ROC AUC (pooled codes)", title="ROC AUC per round")
    for ax in (loss_ax, roc_ax):
        ax.legend(fontsize=8)
    fig.suptitle(f"Federated vs centralised, {result['holders']} holders"
                 + (f", DP epsilon {result['dp_epsilon']}" if result["dp_epsilon"] else ""))
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--csv", default=f"{DATA_DIR}/bank-additional-full.csv")
    ap.add_argument("--holders", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--local-epochs", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--learning-rate", type=float, default=1e-3)
    ap.add_argument("--partitions", default="random,by=euribor3m")
    ap.add_argument("--dp-epsilon", type=float, default=None)
    ap.add_argument("--dp-sampling-rate", type=float, default=0.02)
    ap.add_argument("--strategy", choices=("fedavg", "fedprox"), default="fedavg")
    ap.add_argument("--proximal-mu", type=float, default=0.1)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--eval-rounds", default="1,2,5",
                    help="rounds whose pooled codes are cross-validated (and the last)")
    ap.add_argument("--rows", type=int, default=None, help="first N rows only (a quick look)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--out", default="benchmarks/reports")
    ap.add_argument("--tag", default="")
    args = ap.parse_args()
    args.eval_rounds = {int(r) for r in args.eval_rounds.split(",") if r}

    from cloakflow.tasks.data.ingest import load_table
    from cloakflow.tasks.data.profile import load_profile
    from cloakflow.tasks.data.split import positive_labels

    profile = load_profile("bank-marketing")
    frame = load_table(args.csv, profile)
    if args.rows:
        frame = frame[: args.rows]
    y = positive_labels(frame, profile)
    result = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "rows": frame.height,
              "holders": args.holders, "rounds": args.rounds, "local_epochs": args.local_epochs,
              "batch_size": args.batch_size, "dp_epsilon": args.dp_epsilon,
              "dp_sampling_rate": args.dp_sampling_rate if args.dp_epsilon else None,
              "strategy": args.strategy,
              "proximal_mu": args.proximal_mu if args.strategy == "fedprox" else None,
              "folds": args.folds, "federated": []}
    with tempfile.TemporaryDirectory(prefix="cloakflow-fed-bench-") as tmp:
        work = Path(tmp)
        # the holders' DP spends are a benchmark's, not a dataset's: a throwaway ledger
        os.environ["CLOAKFLOW_LEDGER_DIR"] = str(work / "ledger")
        print("centralised reference", flush=True)
        result["centralised"] = centralised(args, profile, y, work)
        for how in args.partitions.split(","):
            print(f"federated, {how} partition", flush=True)
            result["federated"].append(federated(args, profile, frame, y, how, work))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{datetime.now(UTC):%Y-%m-%d}-federated" + (f"-{args.tag}" if args.tag else "")
    (out / f"{stem}.json").write_text(json.dumps(result, indent=1, default=float))
    _plot(result, out / f"{stem}.png")
    c = result["centralised"]
    lines = ["| run | GROUP_ENCODED ROC AUC | ENCODED ROC AUC | median round s | median overhead "
             "s | total wall s |", "|---|---|---|---|---|---|",
             f"| centralised ({c['epochs']} epochs) | {c['GROUP_ENCODED']:.4f} | "
             f"{c['ENCODED']:.4f} | – | – | {c['train_seconds']:.0f} (training) |"]
    for run in result["federated"]:
        f = run["final"]
        lines.append(f"| federated, {run['partition']} ({run['holders']}) | "
                     f"{f['GROUP_ENCODED']:.4f} | {f['ENCODED']:.4f} | "
                     f"{run['median_round_seconds']:.1f} | {run['median_overhead_seconds']:.1f} "
                     f"| {run['wall_seconds']:.0f} |")
    (out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
