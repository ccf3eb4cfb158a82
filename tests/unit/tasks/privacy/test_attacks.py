"""Each attack on constructed data where the answer is known."""

from __future__ import annotations

import tracemalloc

import numpy as np
import polars as pl
import pytest

from cloakflow.tasks.data.preprocess import TablePreprocessor
from cloakflow.tasks.privacy import attacks as A
from cloakflow.tasks.release.noise import clip_and_noise
from tests.helpers import make_tiny_frame


@pytest.fixture
def encoded_tiny(tiny_profile):
    frame = make_tiny_frame(n=3000, seed=1)
    pre = TablePreprocessor(tiny_profile).fit(frame)
    return pre, pre.transform(frame)


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


def test_distance_to_closest_record():
    rng = np.random.default_rng(0)
    train = rng.uniform(size=(500, 6)).astype(np.float32)
    far = train[:100] + 10.0
    out = A.distance_to_closest_record(train.copy(), far, train, chunk_rows=64)
    assert out["release_to_train"]["exact_match_share"] == 1.0
    assert out["release_to_train"]["median"] == 0.0
    assert out["control_to_train"]["p5"] > 10.0 and out["control_to_train"]["rows"] == 100
    idx, dist = A.nearest_rows(train[:10] + 1e-3, train, chunk_rows=3)
    assert (idx == np.arange(10)).all() and np.allclose(dist, 1e-3 * np.sqrt(6), rtol=1e-3)


def test_chunked_distances_never_hold_a_rows_by_rows_matrix():
    rng = np.random.default_rng(0)
    a = rng.uniform(size=(4000, 8)).astype(np.float32)
    full_matrix = 4000 * 4000 * 4  # bytes of one float32 rows-by-rows matrix (64 MB)
    tracemalloc.start()
    A.nearest_rows(a, a, chunk_rows=128)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < full_matrix / 8


def test_score_skips_rows_of_unseen_categories(encoded_tiny):
    pre, x = encoded_tiny
    x = x.copy()
    city = next(b for b in A.blocks_of(pre) if b.name == "city")
    x[:10, city.start:city.stop] = 0  # rows whose category was unseen in training
    scores = A.score_reconstruction(x, x, [city])
    assert scores["city"]["accuracy"] == 1.0


def test_clip_and_noise():
    codes = np.random.default_rng(0).normal(size=(5000, 4)).astype(np.float32) * 3
    same, info = clip_and_noise(codes, 0.0, None, seed=1)
    assert same is codes and info.clip_source == "none"
    clipped, info = clip_and_noise(codes, 1e-9, 1.0, seed=1)
    assert np.linalg.norm(clipped, axis=1).max() <= 1.0 + 1e-5 and info.clipped_share > 0.9
    noised, info = clip_and_noise(codes, 0.5, None, seed=1)
    median = float(np.median(np.linalg.norm(codes, axis=1)))
    assert info.clip_norm == pytest.approx(median) and info.clip_source == "median code norm"
    scale = np.minimum(1, median / np.linalg.norm(codes, axis=1))[:, None]
    assert np.std(noised - codes * scale) == pytest.approx(0.5 * median, rel=0.03)
    again, _ = clip_and_noise(codes, 0.5, None, seed=1)
    assert np.array_equal(noised, again)
    with pytest.raises(ValueError):
        clip_and_noise(codes, -1.0, None, seed=1)


def test_anonymeter_runs_on_records(tiny_profile):
    from cloakflow.tasks.privacy.attacks import run_anonymeter

    profile = tiny_profile.model_copy(update={"privacy": tiny_profile.privacy.model_copy(
        update={"sensitive": ["owns"], "anonymeter_attacks": 50})})
    frame = make_tiny_frame(n=600, seed=2).select(profile.features)
    ori, control = frame[:400], frame[400:]
    out = run_anonymeter(ori, ori, control, profile, seed=0)  # a verbatim copy as "release"
    assert out["attacks"] == 50
    assert set(out) >= {"singling_out", "linkability", "inference"}
    link = out["linkability"]
    assert 0 <= link["risk"] <= 1 and link["ci"][0] <= link["risk"] <= link["ci"][1]
    assert link["attack_rate"] > link["control_rate"]  # a copy links its own rows


def test_decoded_records_keep_boolean_columns_boolean(tiny_profile):
    # anonymeter compares decoded records with the source rows: a bool column must come back
    # as bool, not as the text of its categories
    from cloakflow.tasks.privacy.attacks import as_records

    frame = make_tiny_frame(n=50).with_columns(pl.col("owns") == "yes")
    pre = TablePreprocessor(tiny_profile).fit(frame, "t.csv")
    back = as_records(pre, pre.transform(frame, "t.csv"), frame.select(tiny_profile.features))
    assert back.schema["owns"] == pl.Boolean
    assert back["owns"].to_list() == frame["owns"].to_list()


def test_anonymeter_says_when_singling_out_built_too_few_queries():
    # every row has many twins: no query can single one out, so a risk of 0 means nothing
    from cloakflow.tasks.data.profile import DatasetProfile
    from cloakflow.tasks.privacy.attacks import run_anonymeter

    rng = np.random.default_rng(0)
    frame = pl.DataFrame({"age": rng.choice([30, 40], 200), "city": rng.choice(["a", "b"], 200),
                          "income": rng.choice([1.0, 2.0], 200),
                          "owns": rng.choice(["yes", "no"], 200)})
    profile = DatasetProfile.model_validate({
        "name": "twins", "target": {"column": "label", "positive": "yes"},
        "groups": {"g": ["age", "city", "income", "owns"]}, "quasi_identifiers": ["age", "city"],
        "privacy": {"sensitive": ["owns"], "anonymeter_attacks": 40}})
    out = run_anonymeter(frame[:150], frame[:150], frame[150:], profile, seed=0)
    assert out["singling_out"]["queries"] == 0
    assert out["singling_out"]["note"].startswith("0 of 40 queries built: inconclusive")


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
