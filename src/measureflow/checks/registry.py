"""The table of theory checks by name, in the order the demo runs them."""

from __future__ import annotations

from measureflow.checks.base import CheckSpec

__all__ = ["CHECKS"]

CHECKS: dict[str, CheckSpec] = {}
