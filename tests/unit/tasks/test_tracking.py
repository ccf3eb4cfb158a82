import importlib
from pathlib import Path

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


def test_a_manifest_records_the_store_without_a_path_of_this_machine(tmp_path):
    inside = f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}"
    assert tracking.portable_uri(inside, tmp_path) == "sqlite:///runs/mlflow.db"
    elsewhere = "sqlite:////srv/stores/team.db"
    assert tracking.portable_uri(elsewhere, tmp_path) == "sqlite:///team.db"
    assert tracking.portable_uri("sqlite:///mlflow.db", Path.cwd()) == "sqlite:///mlflow.db"
    assert tracking.portable_uri("http://127.0.0.1:5000", tmp_path) == "http://127.0.0.1:5000"


def test_a_model_with_two_inputs_is_logged_with_a_named_tensor_each(monkeypatch):
    import keras

    logged = {}
    monkeypatch.setattr(importlib.import_module("mlflow.keras"), "log_model",
                        lambda model, **kw: logged.update(model=model, **kw))
    monkeypatch.setattr(tracking, "_resumed", lambda run_id: _nothing())
    z, c = keras.Input((3,), name="z"), keras.Input((2,), name="condition")
    model = keras.Model([z, c], keras.layers.Dense(4)(keras.layers.Concatenate()([z, c])))
    rng = np.random.default_rng(0)
    sample = [rng.random((5, 3)).astype(np.float32), rng.random((5, 2)).astype(np.float32)]
    tracking.log_keras_model("run", model, sample, name="decoder")
    inputs = logged["signature"].inputs.to_dict()
    assert [(i["name"], list(i["tensor-spec"]["shape"])) for i in inputs] == [
        ("z", [-1, 3]), ("condition", [-1, 2])]
    assert '"shape": [-1, 4]' in logged["signature"].to_dict()["outputs"]
