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


def check_condition(heads: Sequence[Head], condition: int | None, model: str) -> None:
    """Refuse no heads, or a condition that is not one categorical column among others.

    Raises:
        ValueError: naming ``model`` and the rule broken.
    """
    if not heads:
        raise ValueError(f"a {model} needs the heads of the table's columns")
    if condition is None:
        return
    if not 0 <= condition < len(heads):
        raise ValueError(f"condition index {condition} is not one of the {len(heads)} columns")
    if heads[condition].family == NUMERIC:
        raise ValueError("the condition must be a categorical or boolean column")
    if len(heads) == 1:
        raise ValueError(f"a {model} conditioned on its only column has nothing to model")


def block_noise(families: Sequence[tuple[str, int]], rng, rows: int):
    """Per block the noise of one draw from it, float32 (rows, total): one N(0, 1) value for
    a numeric block (a Gaussian draw mean + scale * e), standard Gumbel noise per level for a
    category block (a Gumbel-max or Gumbel-softmax sample). ``families``: (family, width) of
    each block, in order; ``rng``: a ``numpy.random.Generator``."""
    import numpy as np

    parts = [np.zeros((rows, 0), dtype=np.float32)]
    for family, width in families:
        if family == NUMERIC:
            parts.append(rng.standard_normal((rows, 1), dtype=np.float32))
        else:
            u = rng.random((rows, width), dtype=np.float32)
            parts.append(-np.log(-np.log(np.clip(u, 1e-7, 1 - 1e-7))))
    return np.concatenate(parts, axis=1).astype(np.float32)


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


def column_hidden(head: Head) -> int:
    """Width of a column's own decoder layer: 2 k, between 8 and 64 (a numeric: 8)."""
    return max(8, min(2 * head.width, 64))


def column_decoder(code_in, heads: Sequence[Head], seed: int):
    """The decoder's output, one column at a time: column j is decoded from its own block of
    the code only (``block_sizes``, in column order), as ``head_j([block_j, relu(W_j block_j)])``
    with W_j of width ``column_hidden`` (2 k_j, between 8 and 64) and a head per kind (linear
    for a numeric, softmax for a category block).

    The encoder still sees the whole row, but since nothing but column j reads block j, each
    block is pushed to carry its own column: the code's axes line up with the source columns
    (as one-hot or scaled columns do), where a shared decoder lets the signal of one column
    spread over every code dimension. Shallow axis-aligned models (the utility forest of depth
    2) then find in the code what they find in the source; an attacker who matches a few rows
    finds it too (see the README's inversion figures).

    Built as two Dense layers whose kernels keep only the within-column connections
    (``BlockConnectivity``, reapplied after every optimizer step; DP-SGD clips the gradient of
    exactly those entries, see ``models.training.dp_sgd``) and one ``HeadActivation``: the
    same function as one small decoder per column, in a handful of operations instead of a
    few per column (3x faster per epoch on a 19-column table).

    Args:
        code_in: code tensor, shape (batch, code_size(heads)).
        heads: the output blocks in column order.
        seed: seeds the two Dense layers' initializers.

    Returns:
        tensor (batch, total_width(heads)).
    """
    import keras
    import numpy as np
    from keras import layers

    heads = as_heads(heads)
    made = custom_layers()
    ids = np.arange(len(heads))
    code_blocks = np.repeat(ids, block_sizes(heads))
    hidden_blocks = np.repeat(ids, [column_hidden(h) for h in heads])
    out_blocks = np.repeat(ids, [h.width for h in heads])

    def connected(units, rows, cols, i, activation, name):
        layer = layers.Dense(
            units, activation=activation, name=name,
            kernel_initializer=keras.initializers.GlorotUniform(seed=seed + 7919 * i),
            kernel_constraint=made["BlockConnectivity"](rows.tolist(), cols.tolist()))
        return layer

    first = connected(len(hidden_blocks), code_blocks, hidden_blocks, 1, "relu",
                      "column_hidden")
    hidden = first(code_in)
    both = layers.Concatenate(name="column_features")([code_in, hidden])
    second = connected(len(out_blocks), np.concatenate([code_blocks, hidden_blocks]),
                       out_blocks, 2, None, "column_logits")
    logits = second(both)
    for layer in (first, second):  # start inside the constraint too
        layer.kernel.assign(layer.kernel_constraint(layer.kernel))
    return made["HeadActivation"]([[h.family, h.width] for h in heads],
                                  name="reconstruction")(logits)


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
    """The Keras layers and constraints this module defines, registered for loading saved
    models (call it before ``keras.models.load_model``)."""
    import keras
    import numpy as np
    from keras import ops

    @keras.saving.register_keras_serializable(package="cloakflow")
    class CodeBlock(keras.layers.Layer):
        """Columns ``[start, stop)`` of a rank-2 tensor (no weights)."""

        def __init__(self, start: int, stop: int, **kwargs):
            super().__init__(**kwargs)
            self.start, self.stop = int(start), int(stop)

        def call(self, x):
            return x[:, self.start:self.stop]

        def compute_output_shape(self, shape):
            return (shape[0], self.stop - self.start)

        def get_config(self):
            return {**super().get_config(), "start": self.start, "stop": self.stop}

    @keras.saving.register_keras_serializable(package="cloakflow")
    class BlockConnectivity(keras.constraints.Constraint):
        """Keeps a Dense kernel's entry (i, k) only where input i and output k belong to the
        same block (``input_blocks[i] == output_blocks[k]``), zeroing every other entry.

        ``blocks()`` gives the two block ids, which ``models.training.dp_sgd`` reads to clip
        each row's gradient of the kept entries exactly (the ghost norm per block)."""

        def __init__(self, input_blocks: list[int], output_blocks: list[int]):
            self.input_blocks = [int(b) for b in input_blocks]
            self.output_blocks = [int(b) for b in output_blocks]
            self._mask = (np.asarray(self.input_blocks)[:, None]
                          == np.asarray(self.output_blocks)[None, :]).astype("float32")

        def blocks(self) -> tuple[list[int], list[int]]:
            return self.input_blocks, self.output_blocks

        def mask(self):
            return self._mask

        def __call__(self, w):
            return w * ops.cast(self._mask, w.dtype)

        def get_config(self):
            return {"input_blocks": self.input_blocks, "output_blocks": self.output_blocks}

    @keras.saving.register_keras_serializable(package="cloakflow")
    class HeadActivation(keras.layers.Layer):
        """Per-head output activation over a (batch, total_width) tensor of logits: identity
        for a numeric column, a softmax within each category block (each block's largest
        logit subtracted first, so no block can overflow or underflow)."""

        def __init__(self, heads: list, **kwargs):
            super().__init__(**kwargs)
            self.heads = [[str(f), int(w)] for f, w in heads]
            parsed = as_heads(self.heads)
            width = total_width(parsed)
            member = np.zeros((width, len(parsed)), dtype="float32")
            for j, (h, start) in enumerate(zip(parsed, starts(parsed), strict=True)):
                member[start:start + h.width, j] = 1.0
            self._member, self._categorical = member, categorical_mask(parsed)
            self._ids = member.argmax(axis=1).astype("int32")  # each output's block

        def call(self, logits):
            member = ops.cast(self._member, logits.dtype)
            categorical = ops.cast(self._categorical, logits.dtype)
            block_max = ops.segment_max(ops.transpose(logits), self._ids,
                                        num_segments=len(self.heads))
            shift = ops.stop_gradient(ops.transpose(ops.take(block_max, self._ids, axis=0)))
            e = ops.exp(logits - shift)  # the block's largest is exp(0) = 1: no 0 / 0
            per_block = ops.matmul(ops.matmul(e, member), ops.transpose(member))
            return categorical * (e / per_block) + (1.0 - categorical) * logits

        def get_config(self):
            return {**super().get_config(), "heads": self.heads}

    return {"CodeBlock": CodeBlock, "BlockConnectivity": BlockConnectivity,
            "HeadActivation": HeadActivation}


def per_example_loss(heads: Sequence[Head]):
    """``loss(y, out) -> (batch,)``: squared error summed over numeric columns plus
    cross-entropy summed over category blocks (backend-agnostic ``keras.ops``, computed over
    the whole row at once with a constant mask of the category columns)."""
    from keras import ops

    heads = as_heads(heads)
    categorical = categorical_mask(heads)
    numeric = 1.0 - categorical
    eps = 1e-7

    def loss(y, out):
        squared = ops.sum(numeric * ops.square(y - out), axis=-1)
        cross = -ops.sum(categorical * y * ops.log(ops.clip(out, eps, 1.0)), axis=-1)
        return squared + cross

    return loss


def categorical_mask(heads: Sequence[Head]):
    """1.0 at every output of a category block, 0.0 at numerics, shape (total_width,)."""
    import numpy as np

    mask = np.zeros((total_width(heads),), dtype="float32")
    for h, start in zip(heads, starts(heads), strict=True):
        if h.family == CATEGORICAL:
            mask[start:start + h.width] = 1.0
    return mask


def starts(heads: Sequence[Head]) -> list[int]:
    """Where each head's block begins in the matrix."""
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
