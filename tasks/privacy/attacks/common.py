"""What every attack shares: attribute blocks of the preprocessed matrix, chunked model
calls, and the policy's known-row fraction."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import polars as pl

from cloakflow.tasks.data.preprocess import TablePreprocessor

CHUNK_ROWS = 1024
POLICY_FRACTION = 0.01


@dataclass(frozen=True)
class Block:
    """One source attribute and its columns in the preprocessed matrix."""

    name: str
    kind: str  # "numeric" or "categorical"
    start: int
    stop: int
    span: float = 1.0  # max - min of a numeric column (to report errors in original units)
    knots: tuple[float, ...] = ()  # quantile-scaled column: its knots (errors unscaled by them)

    def original_units(self, v: np.ndarray) -> np.ndarray:
        """Model-scale values of a numeric block in the column's own units, up to its minimum
        (differences of them are errors in original units)."""
        if self.knots:
            return np.interp(v, np.linspace(0, 1, len(self.knots)), np.asarray(self.knots))
        return v * self.span


def blocks_of(pre: TablePreprocessor) -> list[Block]:
    """Attribute blocks of a fitted preprocessor."""
    return [Block(s.name, s.family, a, b, (s.maximum - s.minimum) or 1.0,
                  tuple(s.knots) if s.transform == "quantile" else ())
            for s, a, b in pre.column_blocks()]


def predict_chunked(fn: Callable[[np.ndarray], np.ndarray], x: np.ndarray,
                    chunk_rows: int = CHUNK_ROWS) -> np.ndarray:
    """Apply ``fn`` to ``x`` in row chunks."""
    parts = [np.asarray(fn(x[i:i + chunk_rows]), dtype=np.float32)
             for i in range(0, len(x), chunk_rows)]
    return np.concatenate(parts, axis=0)


def as_records(pre: TablePreprocessor, matrix: np.ndarray, like: pl.DataFrame) -> pl.DataFrame:
    """Map a (reconstructed) matrix back to source records with the source's column types."""
    frame = pre.reverse_transform(matrix)
    return frame.with_columns(pl.col(name).cast(like.schema[name]) for name in frame.columns
                              if frame.schema[name] != like.schema[name])
