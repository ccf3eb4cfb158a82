"""Re-identification by quasi-identifiers (``tasks.privacy.attacks.reidentification``): a target
is linked when its own released row is the nearest reconstruction on its quasi-identifiers."""

from __future__ import annotations

import numpy as np

from cloakflow.tasks.privacy.attacks.reidentification import reidentification, unique_share


def test_rows_unique_on_their_identifiers_are_linked_and_shared_ones_are_not():
    # rows 0-3 unique on the two quasi-identifier columns, rows 4-7 one shared value pair
    x = np.array([[0.0, 0.0, 9], [1.0, 0.0, 9], [0.0, 1.0, 9], [1.0, 1.0, 9]]
                 + [[0.5, 0.5, k] for k in range(4)], dtype=np.float32)
    assert unique_share(x[:, :2]) == 0.5
    exact = reidentification(x, x, [0, 1], np.arange(4))
    assert exact == {"linked": 1.0, "targets": 4, "baseline": 1 / 8}
    # a reconstruction that swaps the unique rows' identifiers links none of them
    swapped = x.copy()
    swapped[[0, 1, 2, 3]] = x[[3, 2, 1, 0]]
    assert reidentification(x, swapped, [0, 1], np.arange(4))["linked"] == 0.0
    # no quasi-identifiers or no targets: nothing is linked, and nothing is divided by zero
    assert reidentification(x, x, [], np.arange(4))["linked"] == 0.0
    assert reidentification(x, x, [0, 1], np.array([], dtype=int))["targets"] == 0
