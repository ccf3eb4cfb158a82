#!/usr/bin/env python
"""Benchmark: the tabular VAE (``models/vae.py``) as a synthesizer of the bank table, on the
synthetic-data anchors' protocol (issue "Synthetic data release with a tabular VAE").

    python -m benchmarks.vae_synthesis [--epochs 60] [--dp-epsilon E [--dp-epochs 30]] [--seed 0]
        [--save DIR] [--external NAME=FILE ...] [--json FILE]

Protocol: the UCI Bank Marketing table (``$CLOAKFLOW_DATA_DIR/bank-additional-full.csv``,
``duration`` dropped by the profile), split by scikit-learn ``train_test_split(arange(n),
test_size=0.2, stratify=y, random_state=42)`` in file order; the VAE trains on the 80% exactly
as ``cloakflow synthesize`` does (conditional on ``y``, quantile-scaled numerics, discrete
numerics as categories, missing values as a state; under ``--dp-epsilon`` the product's DP plan:
public bounds only, a DP histogram of ``y`` and DP-SGD at the public sampling rate, composed by
PLD under add/remove); as many synthetic rows as the table has (41,188) are sampled with the
label drawn at the training rate or from the DP histogram.

Every synthetic table (the VAE's, and each ``--external`` one, e.g. SDV TVAE's rows written by
``benchmarks/sdv_reference.py``) goes through one harness. Printed per table:

- fit wall and CPU seconds (``time.process_time``, all threads of this process), s per epoch;
- fidelity: univariate, bivariate and three-way accuracy (1 - TVD, ``tasks/evaluation/fidelity``)
  against the 80%, beside the same for the 20% (the holdout maximum);
- TSTR ROC AUC on the 20% with the tutorial's forest (500 trees, depth 2) and LightGBM, beside
  train-on-real; the synthetic positive rate;
- DCR ratio, DCR share, exact copies (and the holdout's own rate), membership inference
  (distance and DOMIAS density ratio: AUC, TPR at 1% FPR).

TSTR, distances and membership are computed in one evaluation space for every table (quantile-
scaled numerics and one-hot categories fitted on the 80%), not in a model's own space.
- quality: SDMetrics 0.32 QualityReport's score, column shapes and column pair trends with its
  default thresholds, all synthetic rows against the 80% (``quality_report`` of
  ``tasks/evaluation/fidelity``, SciPy). SDMetrics itself needs SDV's environment (pandas < 3):
  ``--save DIR`` writes ``vae*.parquet`` for ``benchmarks/sdv_reference.py --quality-only``,
  which gives the same figure from SDMetrics (checked: SDV TVAE's rows score 0.858619 in both).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

DATA_DIR = os.environ.get("CLOAKFLOW_DATA_DIR", "/work/shared/data")
SDV_DISCRETE = ("previous",)  # numeric columns SDV's Metadata.detect_from_dataframes calls ordinal


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", choices=["vae", "gan"], default="vae",
                    help="the synthesizer (models/vae.py or models/gan.py)")
    ap.add_argument("--epochs", type=int, default=60, help="non-DP epochs")
    ap.add_argument("--learning-rate", type=float, default=None,
                    help="Adam's rate (default: the model's; under DP the product's)")
    ap.add_argument("--pac", type=int, default=10, help="GAN: rows per critic input (non-DP)")
    ap.add_argument("--critic-steps", type=int, default=1, help="GAN: critic steps per "
                                                                "generator step")
    ap.add_argument("--classifier", type=float, default=None,
                    help="GAN: weight of the auxiliary classifier's term (default: the model's)")
    ap.add_argument("--mode-seeking", type=float, default=None,
                    help="GAN: weight of the mode-seeking term (default: the model's)")
    ap.add_argument("--dp-epochs", type=int, default=30, help="DP-SGD epochs")
    ap.add_argument("--batch-size", type=int, default=500, help="non-DP rows per step")
    ap.add_argument("--hidden", default="128,128", help="encoder widths, comma-separated")
    ap.add_argument("--latent", type=int, default=0, help="latent size (0: the rule)")
    ap.add_argument("--rows", type=int, default=None, help="synthetic rows (default: n)")
    ap.add_argument("--dp-epsilon", type=float, default=None)
    ap.add_argument("--dp-sampling-rate", type=float, default=None,
                    help="DP-SGD Poisson rate (default: the product's)")
    ap.add_argument("--no-dp-knots", action="store_true",
                    help="DP: min-max over public bounds instead of DP quantile knots")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-vae", action="store_true", help="evaluate --external tables only")
    ap.add_argument("--save", help="folder for the VAE's synthetic rows (parquet)")
    ap.add_argument("--external", nargs="*", default=[], help="NAME=FILE synthetic tables")
    ap.add_argument("--json", help="append the figures as one JSON line per table here")
    ap.add_argument("--tag", default="", help="suffix of the VAE table's name and file")
    ap.add_argument("--bound-states", action="store_true",
                    help="non-DP: bound states (a mass at a column's min/max as a category)")
    ap.add_argument("--split", choices=["anchors", "product"], default="anchors",
                    help="anchors: train_test_split(random_state=42); product: the product's "
                         "grouped split (tasks.data.split.train_control, 20%%, --split-seed)")
    ap.add_argument("--split-seed", type=int, default=None, help="product split seed "
                                                                 "(default: --seed)")
    args = ap.parse_args()

    import polars as pl
    from sklearn.model_selection import train_test_split

    from cloakflow.tasks.data.ingest import read_table
    from cloakflow.tasks.data.preprocess import TablePreprocessor
    from cloakflow.tasks.data.profile import load_profile

    profile = load_profile("bank-marketing")
    frame = read_table(f"{DATA_DIR}/bank-additional-full.csv", profile)
    target = profile.target.column
    y_all = (frame[target].cast(str) == str(profile.target.positive)).to_numpy().astype(int)
    if args.split == "product":
        from cloakflow.tasks.data.split import train_control

        seed = args.seed if args.split_seed is None else args.split_seed
        train_idx, test_idx = train_control(frame, profile, 0.2, seed)
    else:
        train_idx, test_idx = train_test_split(np.arange(frame.height), test_size=0.2,
                                               stratify=y_all, random_state=42)
    train, test = frame[np.sort(train_idx)], frame[np.sort(test_idx)]
    evaluation = TablePreprocessor(profile, numeric="quantile", with_target=True).fit(train)
    tables: dict[str, tuple[pl.DataFrame, dict]] = {}
    if not args.skip_vae:
        synthetic, fit = _fit_vae(args, profile, train, frame.height)
        name = (args.model if args.dp_epsilon is None else
                f"{args.model}-dp-eps{args.dp_epsilon:g}") + \
            (f"-{args.tag}" if args.tag else "") + (f"-seed{args.seed}" if args.seed else "")
        tables[name] = (synthetic, fit)
        if args.save:
            Path(args.save).mkdir(parents=True, exist_ok=True)
            synthetic.write_parquet(Path(args.save) / f"{name}.parquet")
            # the training rows and SDMetrics metadata from the profile's kinds, for
            # ``quality_check.py tables`` in SDMetrics' own environment
            train.select(synthetic.columns).write_parquet(Path(args.save) /
                                                          f"{name}.train.parquet")
            sdtype = {"boolean": "boolean", "categorical": "categorical", "date": "datetime",
                      "datetime": "datetime", "numeric": "numerical"}
            (Path(args.save) / f"{name}.metadata.json").write_text(json.dumps({
                "columns": {c: {"sdtype": sdtype[profile.columns.get(c, "categorical")]}
                            for c in synthetic.columns}}, indent=1))
    for spec in args.external:
        name, _, path = spec.partition("=")
        tables[name] = (pl.read_parquet(path).select(train.columns).cast(train.schema), {})
    for name, (synthetic, fit) in tables.items():
        figures = {"table": name, **fit, **_evaluate(evaluation, profile, train, test,
                                                     synthetic, args.seed)}
        _print(figures)
        if args.json:
            with open(args.json, "a") as fh:
                fh.write(json.dumps(figures, default=float) + "\n")


def _fit_vae(args, profile, train, n_rows: int):
    """Train the VAE as the synthesize flow does; (synthetic rows, fit figures)."""
    from cloakflow.models.training.dp_counts import noisy_counts, shares
    from cloakflow.models.vae import VaeConfig, train_vae
    from cloakflow.tasks.data.preprocess import DISCRETE_LEVELS, TablePreprocessor
    from cloakflow.tasks.privacy import dp_synthetic as dps
    from cloakflow.tasks.release.synthetic import block, draw_conditions, parse_condition

    private = args.dp_epsilon is not None
    pre = TablePreprocessor(profile, numeric="quantile", with_target=True, missing_state=True,
                            public_bounds=private, discrete_levels=DISCRETE_LEVELS,
                            bound_state=args.bound_states and not private,
                            value_support=not private)
    pre.fit(train, "train")
    # the model's rows with their point masses spread, as the synthesize flow trains on
    spread = np.random.default_rng() if private else np.random.default_rng([args.seed, 2])
    x = pre.transform(train, "train", spread=spread)
    cond = parse_condition(None, pre, "train")
    counts = x[:, block(pre, cond.index)].sum(axis=0)

    def config(pre, shares=None, expected=None):  # after DP values, a discrete numeric is
        # a one-hot block
        if args.model == "gan":
            from cloakflow.models.gan import GanConfig

            rate = args.learning_rate or (dps.DP_GAN_LEARNING_RATE if private else None)
            pac = 1 if private else args.pac
            return GanConfig(heads=pre.heads(), condition=cond.index, epochs=args.epochs,
                             shares=tuple(float(v) for v in shares), latent=args.latent,
                             pac=pac, critic_steps=args.critic_steps,
                             **({"mode_seeking": args.mode_seeking}
                                if args.mode_seeking is not None else {}),
                             **({"classifier": args.classifier}
                                if args.classifier is not None else {}),
                             batch_size=max(1, round(expected)) if private else
                             max(pac, args.batch_size // pac * pac),
                             **({"learning_rate": rate} if rate else {}))
        rate = args.learning_rate or (dps.DP_LEARNING_RATE if private else None)
        return VaeConfig(heads=pre.heads(), condition=cond.index, epochs=args.epochs,
                         batch_size=args.batch_size, latent=args.latent,
                         hidden=tuple(int(h) for h in args.hidden.split(",")),
                         **({"learning_rate": rate} if rate else {}))

    def fit_model(x, config, **kwargs):
        if args.model == "gan":
            from cloakflow.models.gan import train_gan

            return train_gan(x, config, **kwargs)
        return train_vae(x, config, **kwargs)
    start, cpu = time.perf_counter(), time.process_time()  # DP: the plan and knots included
    if not private:
        label_shares, note = counts / counts.sum(), "non-private"
        result = fit_model(x, config(pre, label_shares), seed=args.seed)
    else:
        dps.require_public_bounds(pre.specs, "train", profile)
        q = args.dp_sampling_rate or dps.DEFAULT_SAMPLING_RATE
        plan = dps.plan_synthesis_dp(args.dp_epsilon, None, None, args.dp_epochs, q,
                                     () if args.no_dp_knots else dps.knot_columns(pre.specs),
                                     () if args.no_dp_knots else dps.knot_levels(pre.specs),
                                     model=args.model)
        noisy = noisy_counts(counts, plan.histogram_sigma)
        if plan.knot_columns:
            knots, values, _ = dps.dp_quantile_knots(train, pre, plan,
                                                     max(1.0, float(noisy.sum())))
            pre = dps.refit_with_knots(pre, train, knots, values)
            x = pre.transform(train, "train", spread=spread)
        label_shares = shares(noisy)
        expected = q * max(1.0, float(noisy.sum()))
        result = fit_model(x, config(pre, label_shares, expected), budget=plan.sgd,
                           clip_norm=plan.clip_norm, expected_batch=expected)
        note = (f"DP eps {plan.total_epsilon:.3f} at delta {plan.delta:g} (add/remove, PLD), "
                f"DP knots for {len(plan.knot_columns)} columns, "
                f"sigma {plan.sgd.noise_multiplier:.3f}, q {q:g}, {plan.sgd.steps} steps, "
                f"histogram sigma {plan.histogram_sigma:.1f}")
    fit_wall, fit_cpu = time.perf_counter() - start, time.process_time() - cpu
    rows = args.rows or n_rows
    rng = np.random.default_rng(args.seed + 1)
    x_syn = result.synthesizer.sample(rows, rng, draw_conditions(rows, cond, label_shares, rng))
    synthetic = pre.reverse_transform(x_syn).select(train.columns)
    history = result.log.history["loss"]
    epochs = len(history)
    return synthetic, {"model": note, "epochs": epochs, "fit_wall_s": round(fit_wall, 1),
                       "fit_cpu_s": round(fit_cpu, 1),
                       "s_per_epoch": round(fit_wall / max(epochs, 1), 2),
                       "final_loss": history[-1]}


def _evaluate(pre, profile, train, test, synthetic, seed: int) -> dict:
    from cloakflow.tasks.evaluation.detection import detection
    from cloakflow.tasks.evaluation.fidelity import fidelity_report, quality_report
    from cloakflow.tasks.evaluation.tstr import tstr
    from cloakflow.tasks.privacy.attacks.synthetic import (
        distance_privacy,
        membership_of_synthetic,
    )
    from cloakflow.tasks.release.synthetic import feature_columns, positive_labels

    fid = fidelity_report(train, synthetic, test, seed=seed)
    x_syn, x_train, x_test = (pre.transform(f, "eval", "ignore")
                              for f in (synthetic, train, test))
    f = feature_columns(pre)
    ts = tstr(x_syn[:, f], positive_labels(x_syn, pre), x_train[:, f],
              positive_labels(x_train, pre), x_test[:, f], positive_labels(x_test, pre), seed=42)
    dist = distance_privacy(x_syn, x_train, x_test, seed=seed)
    det = detection(x_syn, x_test, seed, blocks=[(s.name, a, b) for s, a, b in
                                                 pre.column_blocks()])
    mia = membership_of_synthetic(x_syn, x_train, x_test, seed=seed)
    # the anchors' protocol: all synthetic rows against the 80%; SDV's metadata detection reads
    # `previous` as ordinal, so it is scored as a category, which makes the figure SDMetrics'
    quality = quality_report(train, synthetic, categorical=SDV_DISCRETE)
    return {"fidelity": {k: {"synthetic": v["synthetic"], "holdout_maximum":
                             v["holdout_maximum"], "worst": v["worst"][:2]}
                         for k, v in fid.items() if k != "quality"},
            "quality": {k: quality[k] for k in ("score", "column_shapes", "column_pair_trends")},
            "tstr": ts, "distance": dist,
            "detection": {k: det[k] for k in ("auc", "giveaways")},
            "membership": {k: mia[k] for k in ("distance", "density_ratio")}}


def _print(r: dict) -> None:
    print(f"== {r['table']}" + (f": {r['model']}, {r['epochs']} epochs, fit {r['fit_wall_s']:.0f}"
                               f" s wall, {r['fit_cpu_s']:.0f} CPU s ({r['s_per_epoch']} s/epoch)"
                               if "model" in r else " (external)"))
    for k, f in r["fidelity"].items():
        print(f"  {k} accuracy {f['synthetic']:.3f} (holdout maximum "
              f"{f['holdout_maximum']:.3f}); worst {f['worst']}")
    q = r["quality"]
    print(f"  quality (SDMetrics 0.32 QualityReport definitions) {q['score']:.4f} (column shapes "
          f"{q['column_shapes']:.4f}, column pair trends {q['column_pair_trends']:.4f})")
    ts = r["tstr"]
    print(f"  TSTR ROC AUC forest {ts['forest']['tstr']:.4f} (real {ts['forest']['trtr']:.4f}),"
          f" lightgbm {ts['lightgbm']['tstr']:.4f} (real {ts['lightgbm']['trtr']:.4f}); "
          f"positive rate synthetic {ts['positive_rate']['synthetic']:.3f}, training "
          f"{ts['positive_rate']['training']:.3f}")
    print(f"  detection AUC {r['detection']['auc']:.3f} (LightGBM, synthetic vs holdout; "
          f"giveaways {r['detection']['giveaways']})")
    d, m = r["distance"], r["membership"]
    ratio = float("nan") if d["dcr_ratio"] is None else d["dcr_ratio"]
    print(f"  DCR ratio {ratio:.2f}, DCR share {d['dcr_share']:.3f}, exact copies "
          f"{d['exact_copies']:.2%} (holdout {d['exact_copies_control']:.2%}), NNDR median "
          f"{d['nndr_median']:.2f}")
    print(f"  membership: distance AUC {m['distance']['auc']:.3f} TPR@1%FPR "
          f"{m['distance']['tpr_at_1pct_fpr']:.3f}; density ratio AUC "
          f"{m['density_ratio']['auc']:.3f} TPR@1%FPR {m['density_ratio']['tpr_at_1pct_fpr']:.3f}",
          flush=True)


if __name__ == "__main__":
    main()
