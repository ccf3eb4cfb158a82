"""One training step (``tasks.training.fit``): an autoencoder trained and its rows encoded, as
plain data that crosses a task or process boundary (config, weights, codes, a summary), never a
live Keras object; the same seed gives the same codes."""

from __future__ import annotations

import pickle

import numpy as np

from cloakflow.models.autoencoder import AutoencoderConfig
from cloakflow.tasks.training.fit import TrainedModel, fit_and_encode


def test_a_training_step_returns_plain_data_and_is_seeded():
    x = np.random.default_rng(0).random((200, 6)).astype(np.float32)
    columns = [f"c{i}" for i in range(6)]
    config = AutoencoderConfig(epochs=3, batch_size=32)
    a = fit_and_encode("whole", x, columns, config, seed=1)
    b = pickle.loads(pickle.dumps(a))  # plain data: nothing Keras inside
    assert isinstance(b, TrainedModel) and b.columns == columns
    assert all(isinstance(w, np.ndarray) for w in b.weights)
    assert b.codes.shape == (200, b.summary["code_size"]) and b.summary["inputs"] == 6
    assert 1 <= b.summary["epochs_run"] <= 3 and b.run_id is None  # no MLflow run asked for
    again = fit_and_encode("whole", x, columns, config, seed=1)
    np.testing.assert_array_equal(a.codes, again.codes)
