"""Distance to closest record (DCR, Prefect-free): how close released rows lie to training rows,
against how close unseen control rows lie to them."""

from __future__ import annotations

import numpy as np

from cloakflow.tasks.privacy.attacks.common import CHUNK_ROWS
from cloakflow.tasks.privacy.attacks.reidentification import nearest_rows


def distance_summary(d: np.ndarray) -> dict:
    return {"median": float(np.median(d)), "p5": float(np.percentile(d, 5)),
            "exact_match_share": float((d < 1e-6).mean()), "rows": int(len(d))}


def distance_to_closest_record(released: np.ndarray, control: np.ndarray, train: np.ndarray,
                               chunk_rows: int = CHUNK_ROWS) -> dict:
    """DCR of decoded released rows and of control rows, both against all training rows.

    Control rows are taken once per distinct row (a repeated control row would weigh as many
    times); the split keeps duplicate feature rows on one side, so none is a training row.
    """
    _, d_rel = nearest_rows(released, train, chunk_rows)
    out = {"release_to_train": distance_summary(d_rel)}
    if len(control):
        control = np.unique(control, axis=0)
        _, d_ctl = nearest_rows(control, train, chunk_rows)
        out["control_to_train"] = distance_summary(d_ctl)
    return out
