from __future__ import annotations

import pytest

from schemas.privacy import Pseudonymizer


@pytest.fixture
def ids() -> Pseudonymizer:
    return Pseudonymizer("test-key")
