from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings

from schemas.privacy import Pseudonymizer

# The suite runs on busy two-core machines: no property test may fail for being slow.
settings.register_profile("busy-machine", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("busy-machine")


@pytest.fixture
def ids() -> Pseudonymizer:
    return Pseudonymizer("test-key")
