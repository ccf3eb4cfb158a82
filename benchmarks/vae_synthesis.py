#!/usr/bin/env python
"""Benchmark: the tabular VAE (``models/vae.py``) as a synthesizer of the bank table, on the
synthetic-data anchors' protocol (issue "Synthetic data release with a tabular VAE").

    python -m benchmarks.vae_synthesis [--epochs 100] [--rows N] [--dp-epsilon E] [--seed 0]

Protocol: the UCI Bank Marketing table (``$CLOAKFLOW_DATA_DIR/bank-additional-full.csv``,
``duration`` dropped by the profile), split by scikit-learn ``train_test_split(arange(n),
test_size=0.2, stratify=y, random_state=42)`` in file order; the VAE (conditional on ``y``,
quantile-scaled numerics, missing values as a state) trains on the 80%; as many synthetic rows
as the table has are sampled with the label drawn at the training rate (a non-private run) or
from a DP histogram (``--dp-epsilon``; its cost is composed into E). Printed, per run:

- fit wall and CPU seconds (``time.process_time``, this process), seconds per epoch;
- fidelity: univariate, bivariate and three-way accuracy (1 - TVD, ``tasks/evaluation/fidelity``)
  against the 80%, beside the same for the 20% (the holdout maximum);
- TSTR ROC AUC on the 20% with the tutorial's forest (500 trees, depth 2) and LightGBM,
  beside train-on-real;
- DCR ratio, DCR share, exact copies (and the holdout's own rate), membership inference
  (distance and DOMIAS density ratio: AUC, TPR at 1% FPR), the synthetic positive rate.

SDMetrics' QualityReport and SDV's TVAE (the anchors' other columns) are not run here yet.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

DATA_DIR = os.environ.get("CLOAKFLOW_DATA_DIR", "/work/shared/data")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--batch-size", type=int, default=500)
    ap.add_argument("--rows", type=int, default=None, help="synthetic rows (default: n)")
    ap.add_argument("--dp-epsilon", type=float, default=None)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from sklearn.model_selection import train_test_split

    from cloakflow.models.vae import VaeConfig, train_vae
    from cloakflow.tasks.data.ingest import read_table
    from cloakflow.tasks.data.preprocess import DISCRETE_LEVELS, TablePreprocessor
    from cloakflow.tasks.data.profile import load_profile
    from cloakflow.tasks.evaluation.fidelity import fidelity_report
    from cloakflow.tasks.evaluation.tstr import tstr
    from cloakflow.tasks.privacy.attacks.synthetic import (
        distance_privacy,
        membership_of_synthetic,
    )

    profile = load_profile("bank-marketing")
    frame = read_table(f"{DATA_DIR}/bank-additional-full.csv", profile)
    target = profile.target.column
    y_all = (frame[target].cast(str) == str(profile.target.positive)).to_numpy().astype(int)
    train_idx, test_idx = train_test_split(np.arange(frame.height), test_size=0.2,
                                           stratify=y_all, random_state=42)
    train, test = frame[np.sort(train_idx)], frame[np.sort(test_idx)]
    pre = TablePreprocessor(profile, numeric="quantile", with_target=True,
                            missing_state=True, public_bounds=args.dp_epsilon is not None,
                            discrete_levels=DISCRETE_LEVELS)
    pre.fit(train, "train")
    x_train, x_test = pre.transform(train, "train"), pre.transform(test, "test", "ignore")
    names = [s.name for s in pre.specs]
    label = names.index(target)
    spec = pre.specs[label]
    yes = spec.categories.index(str(profile.target.positive))
    label_cols = slice(*pre.column_blocks()[label][1:])  # the label's one-hot block
    cfg = VaeConfig(heads=pre.heads(), condition=label, epochs=args.epochs,
                    batch_size=args.batch_size)
    rows = args.rows or frame.height
    start, cpu = time.perf_counter(), time.process_time()
    if args.dp_epsilon is None:
        result = train_vae(x_train, cfg, seed=args.seed)
        rate = float((train[target].cast(str) == spec.categories[yes]).mean())
        dp_note = "non-private"
    else:
        from cloakflow.models.training import accounting
        from cloakflow.models.training.dp_counts import noisy_distribution
        from cloakflow.models.training.dp_sgd import DEFAULT_CLIP_NORM

        delta = accounting.default_delta(len(x_train))
        q = args.batch_size / len(x_train)
        steps = int(args.epochs / q)
        hist_sigma = accounting.histogram_noise_for(0.05 * args.dp_epsilon, delta,
                                                    adjacency="add_remove")
        budget = accounting.noise_multiplier_for(
            args.dp_epsilon, delta, q, steps, "rdp",
            extra_events=(accounting.histogram_event(hist_sigma),))
        result = train_vae(x_train, cfg, budget=budget, clip_norm=DEFAULT_CLIP_NORM)
        counts = x_train[:, label_cols].sum(0)
        rate = float(noisy_distribution(counts, hist_sigma)[yes])
        dp_note = (f"DP eps {budget.epsilon:.3f} at delta {delta:g} (add/remove, RDP), "
                   f"sigma {budget.noise_multiplier:.3f}, histogram sigma {hist_sigma:.1f}")
    fit_wall, fit_cpu = time.perf_counter() - start, time.process_time() - cpu
    rng = np.random.default_rng(args.seed + 1)
    condition = np.where(rng.random(rows) < rate, yes, 1 - yes)
    x_syn = result.vae.sample(rows, rng, condition)
    synthetic = pre.reverse_transform(x_syn)

    feats = [i for i, c in enumerate(pre.output_columns)
             if not c.startswith(f"{target}_")]
    fid = fidelity_report(train.select(synthetic.columns), synthetic,
                          test.select(synthetic.columns), seed=args.seed)

    def labels(x):
        return (x[:, label_cols].argmax(axis=1) == yes).astype(int)

    ts = tstr(x_syn[:, feats], labels(x_syn), x_train[:, feats], labels(x_train),
              x_test[:, feats], labels(x_test), seed=42)
    dist = distance_privacy(x_syn, x_train, x_test, seed=args.seed)
    mia = membership_of_synthetic(x_syn, x_train, x_test, seed=args.seed)
    epochs = len(result.history["loss"])
    print(f"VAE {dp_note}: {epochs} epochs, fit {fit_wall:.0f} s wall, {fit_cpu:.0f} CPU s "
          f"({fit_wall / max(epochs, 1):.2f} s/epoch); final loss "
          f"{result.history['loss'][-1]:.3f}")
    for k in ("univariate", "bivariate", "three_way"):
        f = fid[k]
        print(f"  {k} accuracy {f['synthetic']:.3f} (holdout maximum {f['holdout_maximum']:.3f})"
              f"; worst {f['worst'][:2]}")
    print(f"  TSTR ROC AUC forest {ts['forest']['tstr']:.4f} (real {ts['forest']['trtr']:.4f}),"
          f" lightgbm {ts['lightgbm']['tstr']:.4f} (real {ts['lightgbm']['trtr']:.4f}); "
          f"positive rate synthetic {ts['positive_rate']['synthetic']:.3f}, training "
          f"{ts['positive_rate']['training']:.3f}")
    print(f"  DCR ratio {dist['dcr_ratio']:.2f}, DCR share {dist['dcr_share']:.3f}, exact "
          f"copies {dist['exact_copies']:.2%} (holdout {dist['exact_copies_control']:.2%}), "
          f"NNDR median {dist['nndr_median']:.2f}")
    print(f"  membership: distance AUC {mia['distance']['auc']:.3f} TPR@1%FPR "
          f"{mia['distance']['tpr_at_1pct_fpr']:.3f}; density ratio AUC "
          f"{mia['density_ratio']['auc']:.3f} TPR@1%FPR "
          f"{mia['density_ratio']['tpr_at_1pct_fpr']:.3f}")


if __name__ == "__main__":
    main()
