"""Per-kind output heads, their losses and the code-size rule, shared by every model that
reconstructs or generates table rows (the autoencoders here, the VAE synthesizer next).

A table's preprocessed matrix is a run of blocks, one per source column: a numeric-family
column (numeric, date, datetime) is one scaled number, a categorical-family column (categorical,
boolean) a one-hot block. Each block gets its own head:

- numeric: a linear unit, scored by squared error;
- categorical: a softmax over the block, scored by cross-entropy against the one-hot row.

The per-row loss is the sum over blocks, so every source column weighs alike whatever its
one-hot width (one MSE over all outputs weighs a 12-level categorical twelve times a numeric,
and a ReLU output can die and never learn its column). This follows the per-type output layers
of tabular VAEs/GANs (Xu et al. 2019, "Modeling Tabular data using Conditional GAN", and the
TVAE there).

This module imports Keras only inside functions and neither Prefect, MLflow nor polars.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

NUMERIC, CATEGORICAL = "numeric", "categorical"


@dataclass(frozen=True)
class Head:
    """One output block: its family and width (1 for numeric, k for a k-category block)."""

    family: str
    width: int

    def __post_init__(self):
        if self.family not in (NUMERIC, CATEGORICAL):
            raise ValueError(f"head family must be numeric or categorical, not {self.family!r}")
        if self.width < 1 or (self.family == NUMERIC and self.width != 1):
            raise ValueError(f"bad head width {self.width} for a {self.family} block")


def as_heads(spec: Sequence) -> tuple[Head, ...]:
    """Heads from ``[(family, width), ...]`` (plain data as stored in a config)."""
    return tuple(h if isinstance(h, Head) else Head(str(h[0]), int(h[1])) for h in spec)


def total_width(heads: Sequence[Head]) -> int:
    return sum(h.width for h in heads)


def code_size(heads: Sequence[Head]) -> int:
    """The code width: one dimension per numeric column plus ceil(log2 k) per k-category
    column (the bits that tell its categories apart), never more than the input width and
    at least 1. A group of three numerics gets 3 dimensions, not the 1 of ``n/2``."""
    need = sum(1 if h.family == NUMERIC else max(1, math.ceil(math.log2(h.width)))
               for h in heads)
    return max(1, min(need, total_width(heads)))


def hidden_size(heads: Sequence[Head]) -> int:
    """Hidden width: the input width, at least twice the code and at least 8."""
    return max(total_width(heads), 2 * code_size(heads), 8)


def output_layer(hidden, heads: Sequence[Head], seed: int):
    """The decoder's output: one Dense per head (linear for numeric, softmax for a category
    block) over the hidden tensor, concatenated in block order. Shape (batch, total_width)."""
    import keras
    from keras import layers

    parts = []
    for i, h in enumerate(heads):
        parts.append(layers.Dense(
            h.width, activation=None if h.family == NUMERIC else "softmax",
            kernel_initializer=keras.initializers.GlorotUniform(seed=seed + 7919 * (i + 1)),
            name=f"head_{i}_{h.family}")(hidden))
    return parts[0] if len(parts) == 1 else layers.Concatenate(name="reconstruction")(parts)


def per_example_loss(heads: Sequence[Head]):
    """``loss(y, out) -> (batch,)``: squared error summed over numeric columns plus
    cross-entropy summed over category blocks (backend-agnostic ``keras.ops``)."""
    from keras import ops

    heads = as_heads(heads)
    starts = _starts(heads)
    num_cols = [s for s, h in zip(starts, heads, strict=True) if h.family == NUMERIC]
    blocks = [(s, s + h.width) for s, h in zip(starts, heads, strict=True)
              if h.family == CATEGORICAL]
    eps = 1e-7

    def loss(y, out):
        total = 0.0
        if num_cols:
            idx = ops.convert_to_tensor(num_cols, dtype="int32")
            diff = ops.take(y, idx, axis=1) - ops.take(out, idx, axis=1)
            total = ops.sum(ops.square(diff), axis=-1)
        for a, b in blocks:
            p = ops.clip(out[:, a:b], eps, 1.0)
            total = total - ops.sum(y[:, a:b] * ops.log(p), axis=-1)
        return total

    return loss


def _starts(heads: Sequence[Head]) -> list[int]:
    out, s = [], 0
    for h in heads:
        out.append(s)
        s += h.width
    return out


def dead_outputs(reconstruction) -> int:
    """Output units that never move on the given rows: a ReLU output that is 0 on every row
    (its column is never learned), or any unit whose value is constant over the rows.

    Args:
        reconstruction: model outputs on some rows, shape (rows, outputs).
    """
    import numpy as np

    r = np.asarray(reconstruction)
    if len(r) < 2:
        return 0
    return int((np.ptp(r, axis=0) <= 1e-7).sum())
