"""The holder's Flower ClientApp (Message API): forwards each message to the holder's warm
worker (``worker.py``) and returns its reply. It imports only Flower and NumPy, since Flower
starts a fresh process for every message; TensorFlow, the table and the models stay warm in the
worker. Node config (``flower-supernode --node-config``): ``worker`` (127.0.0.1:PORT) and
``key-file`` (the worker's HMAC key).

Messages: ``query`` (schema fingerprint and initial weights, before round 1) and ``train``
(FedAvg's: ``arrays`` and ``config`` in, ``arrays`` and ``metrics`` out, the metrics carrying
``weight``, the holder's FedAvg weight: its row count without DP, 1 or a declared public size
under DP).
"""

from __future__ import annotations

from multiprocessing.connection import Client
from pathlib import Path

import numpy as np
from flwr.app import (
    Array,
    ArrayRecord,
    ConfigRecord,
    Context,
    Message,
    MetricRecord,
    RecordDict,
)
from flwr.clientapp import ClientApp

app = ClientApp()


def _ask(context: Context, request: dict) -> dict:
    host, _, port = str(context.node_config["worker"]).rpartition(":")
    key = Path(str(context.node_config["key-file"])).read_bytes()
    with Client((host, int(port)), authkey=key) as conn:
        conn.send(request)
        reply = conn.recv()
    if "error" in reply:
        raise RuntimeError(f"holder worker: {reply['error']}")
    return reply


def _arrays(record: ArrayRecord) -> dict[str, np.ndarray]:
    return {k: v.numpy() for k, v in record.items()}


def _record(arrays: dict[str, np.ndarray]) -> ArrayRecord:
    """Named arrays (``model/index``), so FedAvg averages each tensor with its own kind."""
    return ArrayRecord({k: Array(np.asarray(v)) for k, v in arrays.items()})


def _config(msg: Message, context: Context) -> dict:
    """The server's config; a size this holder declared public (node config) joins it."""
    config = dict(msg.content["config"]) if "config" in msg.content else {}
    if "declared-size" in context.node_config:
        config["declared-size"] = float(context.node_config["declared-size"])
    return config


def _metrics(values: dict) -> MetricRecord:
    return MetricRecord({k: float(v) for k, v in values.items()
                         if isinstance(v, (int, float)) and not isinstance(v, bool)})


@app.query()
def query(msg: Message, context: Context) -> Message:
    reply = _ask(context, {"op": "query", "config": _config(msg, context)})
    import json

    content = RecordDict({
        "arrays": _record(reply["arrays"]),
        "schema": ConfigRecord({"fingerprint": reply["fingerprint"], "holder": reply["holder"],
                                "schema": json.dumps(reply["schema"], default=str)}),
    })
    return Message(content, reply_to=msg)


@app.train()
def train(msg: Message, context: Context) -> Message:
    reply = _ask(context, {"op": "train", "arrays": _arrays(msg.content["arrays"]),
                           "config": _config(msg, context)})
    metrics = dict(reply["metrics"])
    if "train-seconds" in metrics:  # without DP: timings go to the server too
        metrics["worker-seconds"] = reply["seconds"]
    return Message(RecordDict({"arrays": _record(reply["arrays"]),
                               "metrics": _metrics(metrics)}), reply_to=msg)
