"""The known-plaintext and leaked-decoder inversion (``tasks.privacy.attacks.inversion``)."""

from __future__ import annotations

import numpy as np
import pytest

from cloakflow.tasks.data.preprocess import TablePreprocessor
from cloakflow.tasks.privacy import attacks as A
from tests.helpers import make_tiny_frame


def test_identity_encoding_is_fully_inverted(encoded_tiny):
    pre, x = encoded_tiny
    blocks = A.blocks_of(pre)
    run = A.known_plaintext_inversion(x.copy(), x, blocks, 0.01, seed=0)
    assert run["known_rows"] == 30
    scores = run["linear"]["scores"]
    for name in ("city", "owns"):
        assert scores[name]["accuracy"] == 1.0 and scores[name]["baseline"] < 0.75
    for name in ("age", "income"):
        assert scores[name]["r2"] > 0.999 and scores[name]["mae"] < 0.5
    # the reconstruction of every row also links every row that is unique on its identifiers
    qi = [c for b in blocks if b.name in ("age", "income") for c in range(b.start, b.stop)]
    targets = np.setdiff1d(np.arange(len(x)), run["known_index"])
    unique = A.unique_share(x[:, qi])
    perfect = A.reidentification(x, x, qi, targets)
    assert unique > 0.9 and perfect["linked"] >= unique and perfect["targets"] == len(targets)
    assert A.reidentification(x, run["linear"]["x_hat"], qi, targets)["linked"] > 0.95


def test_noise_codes_give_baseline_accuracy(encoded_tiny):
    pre, x = encoded_tiny
    codes = np.random.default_rng(5).normal(size=(len(x), 3)).astype(np.float32)
    run = A.known_plaintext_inversion(codes, x, A.blocks_of(pre), 0.1, seed=0)
    for regressor in ("linear", "mlp"):
        scores = run[regressor]["scores"]
        for name in ("city", "owns"):
            assert scores[name]["accuracy"] <= scores[name]["baseline"] + 0.03, (regressor, name)
        for name in ("age", "income"):
            assert scores[name]["r2"] < 0.03
            assert scores[name]["mae"] >= 0.95 * scores[name]["baseline_mae"]


def test_score_skips_rows_of_unseen_categories(encoded_tiny):
    pre, x = encoded_tiny
    x = x.copy()
    city = next(b for b in A.blocks_of(pre) if b.name == "city")
    x[:10, city.start:city.stop] = 0  # rows whose category was unseen in training
    scores = A.score_reconstruction(x, x, [city])
    assert scores["city"]["accuracy"] == 1.0


def test_inversion_errors_are_in_original_units_under_quantile_scaling(tiny_profile):
    from cloakflow.tasks.privacy.attacks import blocks_of
    from cloakflow.tasks.privacy.attacks.inversion import score_reconstruction

    frame = make_tiny_frame(n=300)
    pre = TablePreprocessor(tiny_profile, numeric="quantile").fit(frame, "t.csv")
    x = pre.transform(frame, "t.csv")
    x_hat = x.copy()
    col = pre.output_columns.index("income")
    x_hat[:, col] = np.clip(x_hat[:, col] + 0.05, 0, 1)
    got = score_reconstruction(x, x_hat, blocks_of(pre))["income"]["mae"]
    decoded = pre.reverse_transform(x_hat)["income"].to_numpy()
    want = np.abs(decoded - pre.reverse_transform(x)["income"].to_numpy()).mean()
    assert got == pytest.approx(want, rel=1e-4)
