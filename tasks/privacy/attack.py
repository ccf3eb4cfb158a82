"""The attack step: every attack on one released table.

``attack_release`` is a plain function (``cloakflow attack`` calls it too); ``attack`` is its
Prefect task. The models behind the table arrive as config and weights (plain data) and are
rebuilt here; the attack maths (``attacks.suite.run_attacks``) runs in a worker process of
``tasks.runners.attack_workers`` when the caller opened one.
"""

from __future__ import annotations

import time
from functools import partial

import numpy as np
import polars as pl

from cloakflow.tasks.data.preprocess import TablePreprocessor
from cloakflow.tasks.data.profile import DatasetProfile
from cloakflow.tasks.privacy.attacks import predict_chunked, reconstruction_losses, run_attacks
from cloakflow.tasks.release.codes import CodeTable


def _call(model):
    return lambda a: np.asarray(model(a, training=False))


def model_views(table: CodeTable, x: np.ndarray,
                x_control: np.ndarray) -> tuple[np.ndarray, dict]:
    """The parts of the attacks that need the models: the leaked-decoder view of the table
    (rows x features of ``x``) and every row's reconstruction loss under each autoencoder
    (members, control)."""
    decoded = np.zeros((len(table.codes), x.shape[1]), dtype=np.float32)
    losses = {}
    for part in table.parts:
        autoencoder, _, decoder = part.models()
        decoded[:, part.features] = predict_chunked(_call(decoder),
                                                    table.codes[:, part.start:part.stop])
        if len(x_control):
            losses[part.name] = (reconstruction_losses(_call(autoencoder), x[:, part.features]),
                                 reconstruction_losses(_call(autoencoder),
                                                       x_control[:, part.features]))
    return decoded, losses


def attack_release(table: CodeTable, x: np.ndarray, x_control: np.ndarray,
                   train_records: pl.DataFrame, control_records: pl.DataFrame,
                   pre: TablePreprocessor, profile: DatasetProfile, seed: int,
                   pool=None) -> dict:
    """Run every attack on one released table; returns its JSON-ready report section.

    Args:
        table: the released codes (training-row order) and the models behind them.
        x, x_control: preprocessed training and held-out control rows.
        train_records, control_records: the same rows as source values (anonymeter).
        pool: an executor to run the attacks in (a process pool: the flow's attack pool,
            ``runners.attack_workers``), or None to run them here.
    """
    t = time.perf_counter()
    decoded, losses = model_views(table, x, x_control)
    seconds = time.perf_counter() - t
    job = partial(run_attacks, table.codes, decoded, losses, x, x_control, train_records,
                  control_records, pre, profile, seed)
    report = pool.submit(job).result() if pool is not None else job()
    report["seconds"]["model_calls"] = round(seconds, 2)
    return {"models": [p.name for p in table.parts], "noise": table.noise, **report}
