import numpy as np
import pytest

from cloakflow.tasks.data.split import split, split_rows


def test_stratified_seeded_and_disjoint():
    y = np.array([0] * 90 + [1] * 10)
    train, control = split_rows(y, 0.2, seed=1)
    assert len(control) == 20 and y[control].sum() == 2
    assert not set(train) & set(control) and len(train) + len(control) == 100
    assert (np.diff(train) > 0).all()  # file order kept
    again = split.fn(y, 0.2, 1)
    np.testing.assert_array_equal(again[1], control)
    assert not np.array_equal(split_rows(y, 0.2, seed=2)[1], control)


def test_zero_fraction_keeps_everything():
    train, control = split_rows(np.zeros(10), 0.0, seed=0)
    assert len(train) == 10 and len(control) == 0


def test_fraction_bounds():
    with pytest.raises(ValueError, match="control_fraction"):
        split_rows(np.zeros(10), 0.9, seed=0)
