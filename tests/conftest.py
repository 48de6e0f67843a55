"""Shared fixtures; the statistical helpers live in stats_helpers.py."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
