"""The tiny table, preprocessed, that the attack tests invert."""

from __future__ import annotations

import pytest

from cloakflow.tasks.data.preprocess import TablePreprocessor
from tests.helpers import make_tiny_frame


@pytest.fixture
def encoded_tiny(tiny_profile):
    frame = make_tiny_frame(n=3000, seed=1)
    pre = TablePreprocessor(tiny_profile).fit(frame)
    return pre, pre.transform(frame)
