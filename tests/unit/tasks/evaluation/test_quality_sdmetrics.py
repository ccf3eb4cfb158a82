"""Our SDMetrics-style quality equals SDMetrics 0.32 QualityReport on stored tables.

CI cannot install SDMetrics (it needs pandas < 3), so the figures below were computed by
SDMetrics itself on exactly the tables ``benchmarks.quality_check.generated_tables()`` builds
(seeded numpy/polars: numbers with nulls, an integer code scored as categories, Int64 against
Float64, text with nulls and a synthetic-only value, booleans with nulls, dates, datetimes with
microseconds and nulls, datetimes a few seconds apart in milliseconds, and independent
columns whose pairs fall below the thresholds):

    python3.11 -m venv /tmp/sdv-env
    /tmp/sdv-env/bin/pip install "sdmetrics==0.32.*" polars pyarrow
    /tmp/sdv-env/bin/python benchmarks/quality_check.py stored

(sdmetrics 0.32.0, pandas 2.3.3, numpy 2.4.6, scipy 1.17.1, polars 2.1.0; 2026-12-06).
"""

from __future__ import annotations

import pytest

from benchmarks.quality_check import GENERATED_CATEGORICAL, generated_tables
from cloakflow.tasks.evaluation.fidelity import quality_report

SDMETRICS = {
    "score": 0.8627271777162717,
    "column_shapes": 0.9154200878206336,
    "column_pair_trends": 0.8100342676119099,
}
SDMETRICS_SHAPES = {
    "age": 0.9608333333333333,
    "amount": 0.7982965543941154,
    "visits": 0.9183333333333333,
    "segment": 0.8878574414212489,
    "member": 0.9804878048780488,
    "joined": 0.945,
    "last_seen": 0.9517257441795884,
    "clicked": 0.83,
    "noise": 0.8975,
    "channel": 0.9841666666666666,
}
SDMETRICS_PAIRS_COUNTED, SDMETRICS_PAIRS_BELOW = 21, 24
# the lowest of the counted pairs (SDMetrics' "Meets Threshold?" rows)
SDMETRICS_WORST_PAIRS = {
    "segment|joined": 0.6091666666666666,
    "segment|last_seen": 0.6258333333333334,
    "visits|joined": 0.6491666666666667,
    "visits|last_seen": 0.6808333333333334,
    "member|joined": 0.7008333333333334,
}


@pytest.fixture(scope="module")
def ours() -> dict:
    real, synthetic, _ = generated_tables()
    return quality_report(real, synthetic, GENERATED_CATEGORICAL)


def test_generated_tables_are_the_stored_ones():
    real, synthetic, metadata = generated_tables()
    assert (real.height, synthetic.height) == (300, 400)
    assert list(metadata["columns"]) == real.columns == synthetic.columns
    assert real.null_count().sum_horizontal().item() > 0


def test_quality_equals_sdmetrics(ours):
    for key, value in SDMETRICS.items():
        assert ours[key] == pytest.approx(value, abs=1e-6), key


def test_pairs_counted_as_sdmetrics_counts_them(ours):
    assert (ours["pairs"], ours["pairs_below_threshold"]) == (SDMETRICS_PAIRS_COUNTED,
                                                              SDMETRICS_PAIRS_BELOW)
    assert dict(ours["worst_pairs"]) == pytest.approx(SDMETRICS_WORST_PAIRS, abs=1e-6)


def test_worst_column_shapes_equal_sdmetrics(ours):
    assert ours["columns"] == len(SDMETRICS_SHAPES)
    for name, value in ours["worst_shapes"]:
        assert value == pytest.approx(SDMETRICS_SHAPES[name], abs=1e-6), name
