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

import functools
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


def block_sizes(heads: Sequence[Head]) -> list[int]:
    """Each column's share of the code: 1 for a numeric column, ceil(log2 k) (at least 1) for
    a k-category column, the bits that tell its categories apart."""
    return [1 if h.family == NUMERIC else max(1, math.ceil(math.log2(h.width))) for h in heads]


def code_size(heads: Sequence[Head]) -> int:
    """The code width: the sum of :func:`block_sizes` (never more than the input width, since
    ceil(log2 k) <= k). A group of three numerics gets 3 dimensions, not the 1 of ``n/2``."""
    return max(1, sum(block_sizes(heads)))


def hidden_size(heads: Sequence[Head]) -> int:
    """Encoder hidden width: the input width, at least twice the code and at least 8."""
    return max(total_width(heads), 2 * code_size(heads), 8)


def column_decoder(code_in, heads: Sequence[Head], seed: int):
    """The decoder's output, one column at a time: column j is decoded from its own block of
    the code only (``block_sizes``, in column order), through ``[block, Dense(h_j, relu)(block)]``
    (h_j = max(8, 2 k_j)) and its head (linear for a numeric, softmax for a category block).

    The encoder still sees the whole row, but since nothing but column j reads block j, each
    block is pushed to carry its own column: the code's axes line up with the source columns
    (as one-hot or scaled columns do), where a shared decoder lets the signal of one column
    spread over every code dimension. Shallow axis-aligned models (the utility forest of depth
    2) then find in the code what they find in the source; an attacker who matches a few rows
    finds it too (see the README's inversion figures).

    Args:
        code_in: code tensor, shape (batch, code_size(heads)).
        heads: the output blocks in column order.
        seed: seeds each Dense layer's initializer.

    Returns:
        tensor (batch, total_width(heads)).
    """
    import keras
    from keras import layers

    heads = as_heads(heads)
    code_block = custom_layers()["CodeBlock"]
    parts, start = [], 0
    for i, (h, size) in enumerate(zip(heads, block_sizes(heads), strict=True)):
        block = code_block(start, start + size, name=f"block_{i}")(code_in)
        start += size
        hidden = layers.Dense(max(8, 2 * h.width), activation="relu", name=f"hidden_{i}",
                              kernel_initializer=keras.initializers.GlorotUniform(
                                  seed=seed + 7919 * (i + 1) + 1))(block)
        both = layers.Concatenate(name=f"features_{i}")([block, hidden])
        parts.append(layers.Dense(
            h.width, activation=None if h.family == NUMERIC else "softmax",
            kernel_initializer=keras.initializers.GlorotUniform(seed=seed + 7919 * (i + 1)),
            name=f"head_{i}_{h.family}")(both))
    return parts[0] if len(parts) == 1 else layers.Concatenate(name="reconstruction")(parts)


def column_aligned_kernel(heads: Sequence[Head]):
    """A (total_width, code_size) kernel that copies each column into its own code block: a
    numeric column to its one dimension (weight 1), a k-category column's level i to the
    binary digits of i over its ceil(log2 k) dimensions. Used as the initial value of the
    encoder's linear path, it starts training from a lossless per-column code, so each block
    starts on its column instead of a random mix (no data is read: the kernel depends on the
    heads alone, which is what DP training needs from an initialisation)."""
    import numpy as np

    heads = as_heads(heads)
    sizes = block_sizes(heads)
    kernel = np.zeros((total_width(heads), sum(sizes)), dtype=np.float32)
    row = col = 0
    for h, size in zip(heads, sizes, strict=True):
        if h.family == NUMERIC:
            kernel[row, col] = 1.0
        else:
            for level in range(h.width):
                kernel[row + level, col:col + size] = [(level >> b) & 1 for b in range(size)]
        row, col = row + h.width, col + size
    return kernel


@functools.cache
def custom_layers() -> dict:
    """The Keras layers this module defines, registered for loading saved models (call it
    before ``keras.models.load_model``, or pass it as ``custom_objects``)."""
    import keras

    @keras.saving.register_keras_serializable(package="cloakflow")
    class CodeBlock(keras.layers.Layer):
        """Columns ``[start, stop)`` of a rank-2 tensor (no weights): one column's code block."""

        def __init__(self, start: int, stop: int, **kwargs):
            super().__init__(**kwargs)
            self.start, self.stop = int(start), int(stop)

        def call(self, x):
            return x[:, self.start:self.stop]

        def compute_output_shape(self, shape):
            return (shape[0], self.stop - self.start)

        def get_config(self):
            return {**super().get_config(), "start": self.start, "stop": self.stop}

    return {"CodeBlock": CodeBlock}


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


def dead_outputs(reconstruction, target=None) -> int:
    """Output units that never move on the given rows while their column does: a ReLU output
    that is 0 on every row (its column is never learned), or any unit whose value is constant
    over the rows. A unit whose source column is itself constant on these rows (a category
    level none of them has) is not counted: reproducing a constant is right, not dead.

    Args:
        reconstruction: model outputs on some rows, shape (rows, outputs).
        target: the model's inputs on the same rows, same shape; None counts every constant
            unit.
    """
    import numpy as np

    r = np.asarray(reconstruction)
    if len(r) < 2:
        return 0
    constant = np.ptp(r, axis=0) <= 1e-7
    if target is not None:
        constant &= np.ptp(np.asarray(target), axis=0) > 1e-7
    return int(constant.sum())
