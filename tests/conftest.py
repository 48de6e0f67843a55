"""Shared fixtures; the statistical helpers live in stats_helpers.py."""

from __future__ import annotations

import os

import matplotlib
import pytest
from hypothesis import settings

matplotlib.use("Agg")

# Fixed seeds everywhere, hypothesis included: its examples are derived from each test's source,
# so a run is reproducible and CI cannot go red on an example no earlier run saw. The property
# tests' coverage comes from their strategies; a counterexample found while developing (pass
# HYPOTHESIS_PROFILE=explore to search randomly) becomes an explicit @example.
settings.register_profile("fixed", derandomize=True)
settings.register_profile("explore", derandomize=False, max_examples=500)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "fixed"))


@pytest.fixture
def python_sigint():
    """Python's own SIGINT handler (KeyboardInterrupt) for one test: a test run started in the
    background inherits SIGINT ignored, and the training loop rightly leaves an ignored signal
    alone."""
    import signal

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)
