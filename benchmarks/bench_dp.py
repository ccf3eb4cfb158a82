#!/usr/bin/env python
"""Benchmark: the cost of a DP-SGD epoch against a plain epoch, and the per-example gradient
norms behind the default clip norm.

    python -m benchmarks.bench_dp [--csv PATH] [--epochs 5] [--blocks 2] [--batch 256]
    KERAS_BACKEND=jax python -m benchmarks.bench_dp   # the jax backend (GPU hosts)

On the bank table preprocessed as the flow does (all rows), with the tutorial autoencoder:

1. Per-example gradient norms (ghost norm, unclipped) of 4,096 rows at initialisation, after
   1 and 5 plain epochs: percentiles. The default clip norm is chosen from these.
2. Epoch time, alternating blocks: ``--epochs`` plain Keras epochs (``fit``, same batch size and
   ``steps_per_execution`` as the flow), then ``--epochs`` DP-SGD epochs (Poisson batches with
   q = batch / rows, clip, noise, Adam), repeated ``--blocks`` times. The first epoch of each
   kind is dropped (tracing/compilation). Prints per-epoch seconds, medians and the ratio.
3. Sampling in the claim: epsilon at the same sigma for Poisson and shuffled batches.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def load_matrix(csv: str | None) -> np.ndarray:
    from cloakflow.tasks.data.ingest import scan_table
    from cloakflow.tasks.data.preprocess import TablePreprocessor
    from cloakflow.tasks.data.profile import load_profile

    profile = load_profile("bank-marketing")
    path = csv or str(Path(os.environ.get("CLOAKFLOW_DATA_DIR", REPO.parent / "shared" / "data"))
                      / profile.source.file)
    frame = scan_table(path, profile).collect()
    return TablePreprocessor(profile).fit(frame, Path(path).name).transform(frame)


def percentiles(values: np.ndarray) -> str:
    p = np.percentile(values, [5, 25, 50, 75, 95])
    return " ".join(f"p{k}={v:.4f}" for k, v in zip((5, 25, 50, 75, 95), p, strict=True))


def sweep(x: np.ndarray, cfg) -> None:
    """Held-out reconstruction MSE after DP-SGD at epsilon 3 for a grid of C and epochs."""
    import keras

    from cloakflow.models.autoencoder import build_autoencoder
    from cloakflow.models.training.dp_sgd import DpSgdConfig, plan, train_dp

    order = np.random.default_rng(1).permutation(len(x))
    held, fit = x[order[:4000]], x[order[4000:]]
    plain, _, _ = build_autoencoder(x.shape[1], cfg, 3)
    plain.fit(fit, fit, batch_size=cfg.batch_size, epochs=20, verbose=0)
    print(f"held-out MSE, plain 20 epochs: {plain.evaluate(held, held, verbose=0):.5f}")
    for epochs in (10, 30):
        budget = plan(len(fit), cfg.batch_size, epochs, DpSgdConfig(target_epsilon=3.0))
        for clip in (0.02, 0.05, 0.1, 0.2, 0.5, 1.0):
            model, _, _ = build_autoencoder(x.shape[1], cfg, 3)
            log = train_dp(model, fit, budget, clip, rng=np.random.default_rng(3),
                           optimizers=keras.optimizers.Adam(cfg.learning_rate))
            print(f"epsilon 3, {epochs} epochs (sigma {budget.noise_multiplier:.3f}), C {clip}: "
                  f"held-out MSE {model.evaluate(held, held, verbose=0):.5f}, clipped in the "
                  f"last epoch {log.clipped_share[-1]:.2f}", flush=True)


def membership_demo(x: np.ndarray, rows: int = 200, epochs: int = 200) -> None:
    """Loss-threshold membership AUC (members vs 1,000 non-members) of a model that memorises
    its training rows, without DP and with DP-SGD at the same epochs (seeds fixed)."""
    from cloakflow.models.autoencoder import (
        AutoencoderConfig,
        build_autoencoder,
        train_autoencoder_dp,
    )
    from cloakflow.models.training.dp_sgd import DpSgdConfig, plan
    from cloakflow.tasks.privacy.attacks import membership_inference, reconstruction_losses

    order = np.random.default_rng(0).permutation(len(x))
    members, others = x[order[:rows]], x[order[rows:rows + 1000]]
    cfg = AutoencoderConfig(batch_size=32)

    def auc(model) -> float:
        return membership_inference(reconstruction_losses(model, members),
                                    reconstruction_losses(model, others))["auc"]

    plain, _, _ = build_autoencoder(x.shape[1], cfg, 1)
    plain.fit(members, members, batch_size=32, epochs=epochs, verbose=0)
    print(f"membership AUC, {rows} training rows, {epochs} epochs, batch 32: non-private "
          f"{auc(plain):.3f}", flush=True)
    for eps in (1.0, 3.0, 8.0):
        budget = plan(rows, 32, epochs, DpSgdConfig(target_epsilon=eps))
        result = train_autoencoder_dp(members, cfg, budget, 0.1, rng=np.random.default_rng(1))
        print(f"  epsilon {eps:g} (sigma {budget.noise_multiplier:.2f}): "
              f"{auc(result.autoencoder):.3f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--csv")
    ap.add_argument("--epochs", type=int, default=5, help="epochs per block and kind")
    ap.add_argument("--blocks", type=int, default=2)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--sigma", type=float, default=0.8)
    ap.add_argument("--clip", type=float, default=None, help="default: DEFAULT_CLIP_NORM")
    ap.add_argument("--membership", action="store_true",
                    help="also measure membership inference on a memorising setup (200 rows, "
                         "200 epochs, batch 32) without DP and at epsilon 1, 3, 8")
    ap.add_argument("--sweep", action="store_true",
                    help="also train at epsilon 3 for several clip norms and epoch counts and "
                         "print the held-out reconstruction MSE of each")
    args = ap.parse_args()

    import keras

    from cloakflow.models.autoencoder import AutoencoderConfig, build_autoencoder
    from cloakflow.models.training.accounting import default_delta, epsilon
    from cloakflow.models.training.dp_sgd import (
        DEFAULT_CLIP_NORM,
        DpSgd,
        DpSgdConfig,
        plan,
        train_dp,
    )

    x = load_matrix(args.csv)
    n = len(x)
    clip = args.clip or DEFAULT_CLIP_NORM
    print(f"backend {keras.backend.backend()}; table {x.shape[0]} x {x.shape[1]}; batch "
          f"{args.batch}; q = {args.batch / n:.5f}; clip {clip}", flush=True)
    cfg = AutoencoderConfig(batch_size=args.batch)
    rng = np.random.default_rng(0)
    sample = x[rng.choice(n, 4096, replace=False)]

    # 1. per-example gradient norms
    model, _, _ = build_autoencoder(x.shape[1], cfg, 42)
    probe = DpSgd(model, optimizers=keras.optimizers.Adam(1e-3))
    print(f"norms at init:        {percentiles(probe.per_example_norms(sample))}")
    for after in (1, 4):
        model.fit(x, x, batch_size=args.batch, epochs=after, shuffle=True, verbose=0)
        label = f"after {1 if after == 1 else 5} plain epoch{'s' if after > 1 else ''}:"
        print(f"norms {label:<15}{percentiles(probe.per_example_norms(sample))}", flush=True)

    # 2. epoch cost
    plain, _, _ = build_autoencoder(x.shape[1], cfg, 7)
    private, _, _ = build_autoencoder(x.shape[1], cfg, 7)
    optimizer = keras.optimizers.Adam(cfg.learning_rate)
    budget = plan(n, args.batch, args.epochs, DpSgdConfig(noise_multiplier=args.sigma,
                                                          clip_norm=clip))
    plain_s: list[float] = []
    dp_s: list[float] = []
    for block in range(args.blocks):
        times = []
        for _ in range(args.epochs):
            t = time.perf_counter()
            plain.fit(x, x, batch_size=args.batch, epochs=1, shuffle=True, verbose=0)
            times.append(time.perf_counter() - t)
        plain_s += times[1:] if block == 0 else times
        log = train_dp(private, x, budget, clip, rng=np.random.default_rng(block),
                       optimizers=optimizer)
        dp_s += log.seconds_per_epoch[1:]
        print(f"block {block + 1}: plain " + " ".join(f"{t:.3f}" for t in times)
              + " | dp " + " ".join(f"{t:.3f}" for t in log.seconds_per_epoch)
              + f" | dp loss {log.history['loss'][-1]:.5f}, clipped "
              f"{log.clipped_share[-1]:.2f}", flush=True)
    mp, md = statistics.median(plain_s), statistics.median(dp_s)
    print(f"median epoch: plain {mp:.3f} s ({len(plain_s)} epochs), DP-SGD {md:.3f} s "
          f"({len(dp_s)} epochs); ratio {md / mp:.2f}")
    print("(DP epochs after the first of each block; each block builds a fresh compiled step)")

    if args.sweep:
        sweep(x, cfg)
    if args.membership:
        membership_demo(x)

    # 3. sampling
    delta = default_delta(n)
    steps = int(round(10 * n / args.batch))
    e_p = epsilon(args.sigma, args.batch / n, steps, delta, "rdp", "poisson").epsilon
    e_s = epsilon(args.sigma, args.batch / n, steps, delta, "rdp", "shuffle").epsilon
    print(f"sigma {args.sigma}, 10 epochs, delta {delta:g}: epsilon Poisson {e_p:.2f}, "
          f"shuffled fixed batches {e_s:.2f} (RDP)")


if __name__ == "__main__":
    sys.exit(main())
