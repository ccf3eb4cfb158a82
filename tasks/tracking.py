"""MLflow tracking: a local sqlite store by default, one experiment per dataset.

Runs are addressed by id (never through a thread's "active run"), so tasks running in Prefect's
worker threads can log to the right run. A flow's parent run (``parent_run``) ends FINISHED
(``finish_parent``), FAILED on an error, or KILLED when the process is interrupted (Ctrl-C,
SIGTERM: ``kill_active_runs``, also its children still running).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
from mlflow.tracking import MlflowClient

# Logging a Keras model without explicit requirements makes MLflow infer them (~15 s a model).
KERAS_PIP_REQUIREMENTS = ["keras>=3.10,<4", "tensorflow>=2.21,<2.22", "numpy"]

# the parent runs open in this process (``parent_run``): run id -> its tags
_ACTIVE: dict[str, dict[str, str]] = {}
_ACTIVE_LOCK = threading.RLock()
_KILLED: list[dict[str, str]] = []  # the parent runs ``kill_active_runs`` ended


def configure(workdir: str | Path | None = None) -> str:
    """Point MLflow at ``$MLFLOW_TRACKING_URI`` or at ``sqlite:///<workdir>/mlflow.db``.

    Returns:
        The tracking URI in use.
    """
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        base = Path(workdir or os.getcwd()).resolve()
        uri = f"sqlite:///{base / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    from cloakflow.tasks.runtime import init_mlflow_store

    init_mlflow_store(uri)  # a fresh sqlite store is created once, under a file lock
    return uri


def artifact_root(workdir: str | Path | None = None) -> str:
    """Artifact folder used for experiments created here (beside the sqlite file)."""
    return (Path(workdir or os.getcwd()).resolve() / "mlartifacts").as_uri()


# the MLflow UI opens an experiment of this kind in its model-training view (runs, metrics,
# logged models), not its GenAI view (traces, evaluations)
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}


def experiment_id(dataset: str, workdir: str | Path | None = None) -> str:
    """The experiment ``cloakflow/<dataset>``, created on first use as a model-training
    experiment (``EXPERIMENT_KIND``; one made before that is tagged when it is found)."""
    name = f"cloakflow/{dataset}"
    client = MlflowClient()
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        if exp.tags.get("mlflow.experimentKind") is None:
            client.set_experiment_tag(exp.experiment_id, *next(iter(EXPERIMENT_KIND.items())))
        return exp.experiment_id
    location = None
    if mlflow.get_tracking_uri().startswith("sqlite:"):
        location = f"{artifact_root(workdir)}/{dataset}"
    return client.create_experiment(name, artifact_location=location, tags=EXPERIMENT_KIND)


def start_parent(dataset: str, run_name: str, tags: dict[str, str]) -> str:
    """Create the flow's parent run and return its id."""
    client = MlflowClient()
    run = client.create_run(experiment_id(dataset), run_name=run_name, tags=tags)
    return run.info.run_id


def start_child(parent_id: str, run_name: str, tags: dict[str, str] | None = None) -> str:
    """Create a child run nested under ``parent_id``."""
    client = MlflowClient()
    parent = client.get_run(parent_id)
    run = client.create_run(parent.info.experiment_id, run_name=run_name,
                            tags={"mlflow.parentRunId": parent_id, **(tags or {})})
    return run.info.run_id


def end_run(run_id: str, status: str = "FINISHED") -> None:
    MlflowClient().set_terminated(run_id, status=status)


def log_params(run_id: str, params: dict[str, Any]) -> None:
    from mlflow.entities import Param

    MlflowClient().log_batch(run_id, params=[Param(k, str(v)[:6000]) for k, v in params.items()])


def log_metrics(run_id: str, metrics: dict[str, float], step: int | None = None) -> None:
    from mlflow.entities import Metric

    ts = int(time.time() * 1000)
    MlflowClient().log_batch(run_id, metrics=[
        Metric(_metric_key(k), float(v), ts, step or 0) for k, v in metrics.items()])


def log_history(run_id: str, history: dict[str, list[float]]) -> None:
    """Per-epoch curves as stepped metrics (step = epoch, 1-based)."""
    from mlflow.entities import Metric

    ts = int(time.time() * 1000)
    metrics = [Metric(k, float(v), ts, i + 1) for k, vals in history.items()
               for i, v in enumerate(vals)]
    client = MlflowClient()
    for i in range(0, len(metrics), 900):  # log_batch accepts at most 1000 metrics
        client.log_batch(run_id, metrics=metrics[i:i + 900])


def log_dict(run_id: str, obj: Any, artifact_file: str) -> None:
    MlflowClient().log_text(run_id, json.dumps(obj, indent=1, default=str), artifact_file)


def log_text(run_id: str, text: str, artifact_file: str) -> None:
    MlflowClient().log_text(run_id, text, artifact_file)


def log_file(run_id: str, path: str | Path, artifact_path: str | None = None) -> None:
    MlflowClient().log_artifact(run_id, str(path), artifact_path)


def log_keras_model(run_id: str, model: Any, sample: Any, name: str = "model") -> None:
    """Log a Keras 3 model into a run with ``mlflow.keras``.

    Pip requirements are explicit (inferring them costs ~15 s a model) and the signature is
    inferred from ``sample`` rows, so the model can be served and checked against its input
    (a list of arrays, one per input, for a model with several inputs: one named tensor each,
    by the model's input names).
    The sample's outputs come from a plain (eager) call of the model, not ``model.predict``:
    ``predict`` builds and traces a ``tf.function`` for the model, which here would serve these
    few rows once and never again (a trace per logged model, and TensorFlow's "triggered
    tf.function retracing" warning once five models had been logged).
    """
    import keras
    import mlflow.keras
    from mlflow.models import infer_signature

    if isinstance(sample, (list, tuple)):  # several inputs (a conditional decoder: z, label)
        arrays = [np.asarray(s) for s in sample]
        outputs = keras.ops.convert_to_numpy(model(arrays, training=False))
        # one named tensor per input, by the model's input names (MLflow's tensor schema)
        names = [getattr(t, "name", None) or f"input_{i}" for i, t in enumerate(model.inputs)]
        signature = infer_signature(dict(zip(names, arrays, strict=True)), outputs)
    else:
        outputs = keras.ops.convert_to_numpy(model(np.asarray(sample), training=False))
        signature = infer_signature(sample, outputs)
    with _resumed(run_id):
        mlflow.keras.log_model(model, name=name, pip_requirements=KERAS_PIP_REQUIREMENTS,
                               signature=signature)


def load_keras_model(run_id: str, name: str = "autoencoder") -> Any:
    """Load the Keras model logged as ``name`` in run ``run_id``, uncompiled (for inference
    and its weights: the ``kinds`` architecture's loss is a closure over its heads)."""
    import mlflow.keras

    from cloakflow.models.vae import custom_layers

    custom_layers()  # registers the kinds architecture's and the VAE's layers before loading
    run = MlflowClient().get_run(run_id)
    found = MlflowClient().search_logged_models(
        [run.info.experiment_id], filter_string=f"source_run_id = '{run_id}'")
    found = [m for m in found if m.name == name]
    if not found:
        raise LookupError(f"MLflow run {run_id} holds no logged model named {name!r}")
    return mlflow.keras.load_model(f"models:/{found[0].model_id}",
                                   load_model_kwargs={"compile": False})


def load_text(run_id: str, artifact_file: str) -> str:
    """The text of an artifact of run ``run_id``."""
    return mlflow.artifacts.load_text(f"runs:/{run_id}/{artifact_file}")


def run_params(run_id: str) -> dict[str, str]:
    """The parameters logged to run ``run_id``."""
    return dict(MlflowClient().get_run(run_id).data.params)


def set_tags(run_id: str, tags: dict[str, str]) -> None:
    client = MlflowClient()
    for k, v in tags.items():
        client.set_tag(run_id, k, v)


@contextmanager
def _resumed(run_id: str):
    """Make ``run_id`` the active run of this thread for fluent-API calls, then detach."""
    with mlflow.start_run(run_id=run_id, nested=mlflow.active_run() is not None):
        yield


def _metric_key(key: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "_-./ " else "_" for ch in key)


@contextmanager
def scratch_dir():
    """A temporary folder for artifacts written before logging."""
    with tempfile.TemporaryDirectory(prefix="cloakflow-") as tmp:
        yield Path(tmp)


class Timings(dict):
    """Seconds per named step: ``with timings("train"): ...``."""

    @contextmanager
    def __call__(self, name: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self[name] = round(time.perf_counter() - start, 2)


@contextmanager
def parent_run(dataset: str, run_name: str, tags: dict[str, str], params: dict[str, Any]):
    """The flow's MLflow parent run for the block: parameters logged on entry; on an
    exception tagged ``failed`` with the error and ended FAILED, otherwise left to the caller's
    ``finish`` (so the outcome can be tagged). A Ctrl-C or SIGTERM (``KeyboardInterrupt``,
    Prefect's ``TerminationSignal``) or an earlier ``runners.interrupt`` ends it KILLED
    instead (``kill_active_runs``) and asks every task of the process to stop."""
    from cloakflow.tasks import runners

    run_id = start_parent(dataset, run_name, tags)
    with _ACTIVE_LOCK:
        _ACTIVE[run_id] = dict(tags)
    try:
        log_params(run_id, params)
        yield run_id
    except BaseException as exc:
        if _is_interrupt(exc):  # the run's tasks stop too (runners.interrupt)
            runners.interrupt(getattr(exc, "signal", 2))
        if runners.interrupted() is not None:
            kill_active_runs()
        else:
            set_tags(run_id, {"cloakflow.status": "failed",
                              "cloakflow.error": f"{type(exc).__name__}: {exc}"[:4000]})
            end_run(run_id, "FAILED")
        raise
    finally:
        with _ACTIVE_LOCK:
            _ACTIVE.pop(run_id, None)


def _is_interrupt(exc: BaseException) -> bool:
    """A Ctrl-C (``KeyboardInterrupt``) or Prefect's ``TerminationSignal`` (SIGTERM)."""
    return isinstance(exc, KeyboardInterrupt) or type(exc).__name__ == "TerminationSignal"


def kill_active_runs(timeout: float = -1) -> list[dict[str, str]]:
    """End every parent run open in this process KILLED (tagged ``cloakflow.status`` killed),
    and its child runs that are still running: the process was interrupted. Each run is
    ended once; an MLflow error is printed, not raised (the process is stopping). A call made
    while another thread is ending them waits for it, up to ``timeout`` seconds (-1: no limit).

    Returns:
        The tags of every run ended KILLED in this process so far, with ``mlflow_run_id``
        (``prefect.flow_run_id`` names each one's flow run).
    """
    if not _ACTIVE_LOCK.acquire(timeout=timeout):
        return list(_KILLED)
    try:
        runs = dict(_ACTIVE)
        _ACTIVE.clear()
        client = MlflowClient() if runs else None
        for run_id, tags in runs.items():
            try:
                client.set_tag(run_id, "cloakflow.status", "killed")
                parent = client.get_run(run_id)
                children = client.search_runs(
                    [parent.info.experiment_id],
                    filter_string=f"tags.mlflow.parentRunId = '{run_id}' and "
                                  "attributes.status = 'RUNNING'")
                for child in children:
                    client.set_terminated(child.info.run_id, status="KILLED")
                client.set_terminated(run_id, status="KILLED")
            except Exception as exc:  # noqa: BLE001 - reported; the process exits anyway
                print(f"could not mark MLflow run {run_id} KILLED: {type(exc).__name__}: "
                      f"{exc}", file=sys.stderr, flush=True)
            _KILLED.append({"mlflow_run_id": run_id, **tags})
        return list(_KILLED)
    finally:
        _ACTIVE_LOCK.release()


def finish_parent(run_id: str, release: str, timings: dict[str, float]) -> None:
    """End a flow's parent run after publishing: step timings, status and release folder."""
    log_metrics(run_id, {f"time.{k}": v for k, v in timings.items()})
    set_tags(run_id, {"cloakflow.status": "published", "cloakflow.release": release})
    end_run(run_id)


def tracking_uri() -> str:
    """The MLflow tracking URI this process logs to."""
    return mlflow.get_tracking_uri()


def portable_uri(uri: str | None = None, workdir: str | Path | None = None) -> str:
    """The tracking URI as a manifest records it, without a path of this machine: a sqlite
    store under ``workdir`` (default: the working directory) as a path relative to it
    (``sqlite:///mlflow.db``: where the run was started), one elsewhere by its file name
    only; a server's URI (``http://...``) as it is.

    ``cloakflow attack`` resolves a relative store against its own working directory, or
    uses ``MLFLOW_TRACKING_URI`` when that is set.
    """
    uri = uri or mlflow.get_tracking_uri()
    from cloakflow.tasks.runtime import sqlite_path

    path = sqlite_path(uri)
    if path is None:
        return uri
    base = Path(workdir or os.getcwd()).resolve()
    path = path.resolve()
    return f"sqlite:///{path.relative_to(base) if path.is_relative_to(base) else path.name}"
