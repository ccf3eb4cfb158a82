"""The codes release as plain data: tables from trained models, models rebuilt from config and
weights, published frames and manifest columns."""

from __future__ import annotations

import pickle

import numpy as np
import polars as pl
import pytest

from cloakflow.models.autoencoder import AutoencoderConfig, encode, train_autoencoder
from cloakflow.tasks.data.profile import CodeNoise
from cloakflow.tasks.release.codes import code_tables
from cloakflow.tasks.release.kinds import Release
from cloakflow.tasks.training.fit import TrainedModel, summarise


def _trained(name: str, x: np.ndarray, cols: list[int]) -> TrainedModel:
    config = AutoencoderConfig(epochs=2, batch_size=32)
    r = train_autoencoder(x[:, cols], config, seed=1)
    codes = encode(r.encoder, x[:, cols])
    return TrainedModel(name, [f"c{i}" for i in cols], config, r.autoencoder.get_weights(),
                        codes, r.history, summarise(r, len(cols), codes.shape[1], None), None)


# ~25 s (a fresh process imports TensorFlow); every flow test moves code tables between tasks
@pytest.mark.slow
def test_code_tables_cross_process_boundaries_and_rebuild_the_same_models():
    x = np.random.default_rng(0).random((120, 6), dtype=np.float32)
    slices = {"a": [0, 1, 2], "b": [3, 4, 5]}
    whole = _trained("whole", x, list(range(6)))
    groups = {g: _trained(g, x, s) for g, s in slices.items()}
    tables = code_tables(whole, groups, slices, 6, CodeNoise(multiplier=0.0), seed=None)
    # plain data: the whole table (models included) pickles, as a Dask worker would need
    enc, grp = pickle.loads(pickle.dumps(tables))
    assert enc.columns == ["latent_0", "latent_1", "latent_2"]
    assert grp.columns == ["a_0", "b_0"] and grp.codes.shape == (120, 2)
    for part in grp.parts:
        _, encoder, _ = part.models()  # rebuilt from config + weights
        np.testing.assert_array_equal(encode(encoder, x[:, part.features]),
                                      grp.codes[:, part.start:part.stop])

    release = Release("codes", [enc, grp], "label")
    labels = pl.Series("label", ["yes", "no"] * 60)
    order = np.random.default_rng(3).permutation(120)
    frames = release.frames(labels, order)
    assert set(frames) == {"encoded", "group_encoded"}
    np.testing.assert_array_equal(frames["encoded"].select(enc.columns).to_numpy(),
                                  enc.codes[order])
    assert frames["group_encoded"]["label"].to_list() == labels[order].to_list()
    entries = release.column_entries()
    assert {e["group"] for e in entries} == {"whole", "a", "b", "label"}
    assert "known_plaintext_inversion" in release.attacks and "utility" in release.evaluations


def test_the_kind_registry_resolves_and_refuses():
    import dataclasses

    from cloakflow.tasks.release import kinds

    assert kinds.names() == ("codes", "synthetic", "desensitized", "masked")
    codes, synthetic = kinds.get("codes"), kinds.get("synthetic")
    assert codes.label_in_clear and not synthetic.label_in_clear
    assert kinds.get("desensitized").label_in_clear
    assert synthetic.min_control_fraction > 0 and codes.command == "cloakflow run"
    with pytest.raises(ValueError, match=r"unknown release kind 'mixed'.*'codes', "
                                         r"'synthetic', 'desensitized', 'masked'"):
        kinds.get("mixed")
    with pytest.raises(ValueError, match="registered already"):
        kinds.register(dataclasses.replace(codes))
    with pytest.raises(ValueError, match="built in"):
        kinds.unregister("synthetic")
    toy = kinds.register(dataclasses.replace(synthetic, name="toy-kind"))
    try:
        assert kinds.get("toy-kind") is toy and kinds.names()[-1] == "toy-kind"
    finally:
        kinds.unregister("toy-kind")
    assert "toy-kind" not in kinds.names()
