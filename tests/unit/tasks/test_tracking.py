import importlib

import numpy as np

from cloakflow.models.autoencoder import AutoencoderConfig, build_autoencoder
from cloakflow.tasks import tracking


def test_log_keras_model_signature_without_a_predict_function(monkeypatch):
    logged = {}
    monkeypatch.setattr(importlib.import_module("mlflow.keras"), "log_model",
                        lambda model, **kw: logged.update(model=model, **kw))
    monkeypatch.setattr(tracking, "_resumed", lambda run_id: _nothing())
    auto, _, _ = build_autoencoder(6, AutoencoderConfig(), seed=1)
    sample = np.random.default_rng(0).random((5, 6)).astype(np.float32)
    tracking.log_keras_model("run", auto, sample, name="autoencoder")
    sig = logged["signature"].to_dict()
    assert '"shape": [-1, 6]' in sig["inputs"] and '"shape": [-1, 6]' in sig["outputs"]
    assert '"dtype": "float32"' in sig["outputs"]
    # no tf.function traced to compute the outputs of five rows (see log_keras_model)
    assert auto.predict_function is None


def _nothing():
    from contextlib import nullcontext

    return nullcontext()
