"""One way to draw a figure to a PNG file (matplotlib, headless)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


@contextlib.contextmanager
def figure(path: str, rows: int = 1, cols: int = 1,
           size: tuple[float, float] = (9, 5), dpi: int = 110) -> Iterator:
    """Yield a (rows x cols) array of axes; on exit lay out, save to ``path`` and close."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(rows, cols, figsize=size, squeeze=False)
    try:
        yield axes
        fig.tight_layout()
        fig.savefig(path, dpi=dpi)
    finally:
        plt.close(fig)
