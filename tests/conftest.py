from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

# Deterministic property tests: the same examples on every run and machine.
settings.register_profile("repo", derandomize=True, deadline=None, max_examples=25,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("repo")

# One thread per xdist worker (and the stages it starts): with torch's default of one per core in each
# worker, the workers oversubscribe the cores and the training tests run several times slower.
if "PYTEST_XDIST_WORKER" in os.environ:
    os.environ.setdefault("OMP_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def fixtures() -> Path:
    """Samples written by the public CoT_benchmark generators (copied from ../shared/fixtures)."""
    return ROOT / "tests" / "fixtures" / "cot_benchmark"
