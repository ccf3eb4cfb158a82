#!/usr/bin/env python
"""The replay distinguisher against DP-SGD: can anything published reproduce the weights?

    python -m benchmarks.dp_replay [--trials 10] [--rows 300] [--features 10] [--epsilon 1]

The attack (found in review): whoever holds the trained weights retrains on each candidate
neighbouring table with the seed the manifest publishes and sees which retrain reproduces the
weights. When DP sampling and noise came from that seed, the retrain on the true table matched
exactly (distance 0) and one on a table with one row replaced did not: a perfect
distinguisher, epsilon effectively infinite.

Here the weights are trained as the flow trains them (``train_autoencoders_dp`` without an
injected generator: secret OS-entropy streams), then the attacker retrains with the published
seed on the true table and on a neighbour (row 0 replaced). Printed per trial: the L2 distance
of each retrain to the released weights, and at the end the medians and how often the true
table's retrain is the closer one (a working distinguisher: 100%; chance: about 50%). As a
control, the same retrains with the *secret* entropy (which the flow never records) reproduce
the weights exactly on the true table and not on the neighbour: the attack as it worked before,
now possible only for whoever holds a secret that is never written anywhere.
"""

from __future__ import annotations

import argparse
import os
import statistics

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main() -> None:
    import numpy as np

    from cloakflow.models.autoencoder import AutoencoderConfig, train_autoencoders_dp
    from cloakflow.models.training.dp_sgd import DpSgdConfig, plan

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--rows", type=int, default=300)
    ap.add_argument("--features", type=int, default=10)
    ap.add_argument("--epsilon", type=float, default=1.0)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=30)
    ap.add_argument("--seed", type=int, default=42, help="the run's published seed")
    args = ap.parse_args()

    config = AutoencoderConfig(batch_size=args.batch_size)
    budget = plan(args.rows, args.batch_size, args.epochs,
                  DpSgdConfig(target_epsilon=args.epsilon, adjacency="replace_one"))
    print(f"n = {args.rows}, {args.features} features, epsilon {budget.epsilon:.3g} at delta "
          f"{budget.delta:g} (replace-one), sigma {budget.noise_multiplier:.3f}, "
          f"{budget.steps} steps", flush=True)

    def weights(x, rng=None):
        r = train_autoencoders_dp(x, {"m": None}, config, budget, 0.1, rng=rng)["m"]
        return np.concatenate([np.ravel(w) for w in r.autoencoder.get_weights()])

    true_d, neighbour_d, closer, control = [], [], 0, []
    for trial in range(args.trials):
        data = np.random.default_rng(1000 + trial).random((args.rows, args.features),
                                                          dtype=np.float32)
        neighbour = data.copy()
        neighbour[0] = 1.0 - neighbour[0]
        secret = np.random.SeedSequence().entropy  # what the flow draws, never recorded
        released = weights(data, np.random.default_rng(secret))
        replay = weights(data, np.random.default_rng(args.seed))
        replay_neighbour = weights(neighbour, np.random.default_rng(args.seed))
        d_true = float(np.linalg.norm(released - replay))
        d_neighbour = float(np.linalg.norm(released - replay_neighbour))
        d_secret = float(np.linalg.norm(released - weights(data, np.random.default_rng(secret))))
        d_secret_neighbour = float(np.linalg.norm(
            released - weights(neighbour, np.random.default_rng(secret))))
        true_d.append(d_true)
        neighbour_d.append(d_neighbour)
        control.append(d_secret)
        closer += d_true < d_neighbour
        print(f"trial {trial}: distance to released weights: replay with the published seed "
              f"on the true table {d_true:.4f}, on the neighbour {d_neighbour:.4f}; with the "
              f"secret (never recorded) on the true table {d_secret:.1e}, on the neighbour "
              f"{d_secret_neighbour:.1e}", flush=True)
    print(f"median distance: true table {statistics.median(true_d):.4f}, neighbour "
          f"{statistics.median(neighbour_d):.4f}; the true table's replay was closer in "
          f"{closer}/{args.trials} trials; control max {max(control):.1e}")


if __name__ == "__main__":
    main()
