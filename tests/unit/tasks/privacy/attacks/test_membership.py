"""Membership inference on reconstruction losses (``tasks.privacy.attacks.membership``)."""

from __future__ import annotations

import numpy as np

from cloakflow.tasks.privacy import attacks as A


def test_membership_of_a_model_trained_on_a_handful_of_rows():
    from cloakflow.models.autoencoder import AutoencoderConfig, build_autoencoder

    rng = np.random.default_rng(0)
    data = rng.uniform(size=(216, 12)).astype(np.float32)
    members, others = data[:16], data[16:]
    config = AutoencoderConfig(hidden_ratio=4.0, code_ratio=0.25, learning_rate=1e-2)
    autoencoder, _, _ = build_autoencoder(12, config, seed=3)
    # 600 passes over the 16 members, as one epoch of 600 full batches: it memorises them
    repeated = np.tile(members, (600, 1))
    autoencoder.fit(repeated, repeated, epochs=1, batch_size=16, shuffle=False, verbose=0)
    model = lambda a: np.asarray(autoencoder(a, training=False))  # noqa: E731
    m = A.membership_inference(A.reconstruction_losses(model, members),
                               A.reconstruction_losses(model, others))
    assert m["auc"] > 0.9 and m["tpr_at_1pct_fpr"] > 0.2
    assert m["members"] == 16 and m["non_members"] == 200


def test_membership_metrics_on_known_scores():
    perfect = A.membership_inference(np.full(50, 0.01), np.full(500, 1.0))
    assert perfect["auc"] == 1.0 and perfect["tpr_at_1pct_fpr"] == 1.0
    same = A.membership_inference(np.linspace(0, 1, 400), np.linspace(0, 1, 400))
    assert abs(same["auc"] - 0.5) < 0.01 and same["tpr_at_1pct_fpr"] <= 0.02
