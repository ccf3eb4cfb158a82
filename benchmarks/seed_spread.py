#!/usr/bin/env python
"""How much does ENCODED / GROUP_ENCODED utility move with the autoencoder seed?

    python -m benchmarks.seed_spread [--seeds 1 2 3 4 5] [--views ENCODED GROUP_ENCODED]

Trains the autoencoders of the main flow (same code, same settings, all rows) with several seeds
and cross-validates each release view with the same folds (shuffled stratified, seed 42, LightGBM
forest). Prints test ROC AUC per seed, the mean and standard deviation, and how many output units
of each model never fire (ReLU outputs that stay 0 on every row: their columns shape no code).
"""

from __future__ import annotations

import argparse
import os
import statistics

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    ap.add_argument("--views", nargs="+", default=["ENCODED", "GROUP_ENCODED"])
    ap.add_argument("--folds", type=int, default=10)
    args = ap.parse_args()

    from cloakflow.models.autoencoder import AutoencoderConfig, encode, train_autoencoder
    from cloakflow.tasks.data.ingest import read_table
    from cloakflow.tasks.data.locate import locate_source
    from cloakflow.tasks.data.preprocess import TablePreprocessor
    from cloakflow.tasks.data.profile import load_profile
    from cloakflow.tasks.evaluation.utility import cross_validate_forest

    profile = load_profile("bank-marketing")
    frame = read_table(locate_source(profile), profile)
    y = (frame.get_column("y") == "yes").to_numpy().astype(np.int8)
    pre = TablePreprocessor(profile).fit(frame)
    x = pre.transform(frame)
    parts = {"ENCODED": {"whole": list(range(x.shape[1]))}, "GROUP_ENCODED": pre.group_slices()}
    scores: dict[str, list[float]] = {v: [] for v in args.views}
    for seed in args.seeds:
        for view in args.views:
            codes, dead = [], []
            for name, idx in parts[view].items():
                res = train_autoencoder(x[:, idx], AutoencoderConfig(), seed=seed)
                codes.append(encode(res.encoder, x[:, idx]))
                out = np.asarray(res.autoencoder.predict(x[:, idx], verbose=0, batch_size=8192))
                dead.append(f"{name} {int((out <= 0).all(axis=0).sum())}/{len(idx)}")
            auc = cross_validate_forest(np.hstack(codes), y, folds=args.folds, seed=42)[
                "mean"]["test_roc_auc"]
            scores[view].append(auc)
            print(f"seed {seed} {view}: test ROC AUC {auc:.4f}; dead outputs {', '.join(dead)}",
                  flush=True)
    for view, s in scores.items():
        print(f"{view}: mean {statistics.mean(s):.4f}, sd {statistics.stdev(s):.4f}, "
              f"min {min(s):.4f}, max {max(s):.4f} over seeds {args.seeds}")


if __name__ == "__main__":
    main()
