"""Membership inference (Prefect-free): threshold a row's reconstruction loss under the trained
model (training rows vs held-out control rows); ROC AUC and TPR at low FPR, as in Carlini et
al. 2022, "Membership Inference Attacks From First Principles"."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def reconstruction_losses(model: Callable[[np.ndarray], np.ndarray], x: np.ndarray,
                          chunk_rows: int = 8192) -> np.ndarray:
    """Per-row mean squared reconstruction error of an autoencoder."""
    out = np.empty(len(x), dtype=np.float64)
    for i in range(0, len(x), chunk_rows):
        part = x[i:i + chunk_rows]
        out[i:i + chunk_rows] = ((np.asarray(model(part)) - part) ** 2).mean(axis=1)
    return out


def membership_inference(member_losses: np.ndarray, non_member_losses: np.ndarray) -> dict:
    """Loss-threshold attack: a lower loss says "member". ROC AUC and TPR at 1% FPR, and the
    TPR at 1% FPR of the reversed rule (a *higher* loss says "member"): a loss that separates
    members in either direction reveals membership, so the policy reads the AUC two-sided,
    max(AUC, 1 - AUC)."""
    from sklearn.metrics import roc_auc_score, roc_curve

    labels = np.r_[np.ones(len(member_losses)), np.zeros(len(non_member_losses))]
    scores = -np.r_[member_losses, non_member_losses]
    fpr, tpr, _ = roc_curve(labels, scores)
    rfpr, rtpr, _ = roc_curve(labels, -scores)
    return {"auc": float(roc_auc_score(labels, scores)),
            "tpr_at_1pct_fpr": float(tpr[fpr <= 0.01].max(initial=0.0)),
            "tpr_at_1pct_fpr_reversed": float(rtpr[rfpr <= 0.01].max(initial=0.0)),
            "members": int(len(member_losses)), "non_members": int(len(non_member_losses)),
            "median_loss_members": float(np.median(member_losses)),
            "median_loss_non_members": float(np.median(non_member_losses))}
