"""The contract of a theory check: a claim, a predicted and a measured value, a verdict, a figure."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["SIZES", "CheckResult", "CheckSpec"]

SIZES = ("quick", "full")


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one theory check.

    ``predicted`` and ``measured`` are short human-readable statements of the numbers compared
    (e.g. ``"TV <= 0.021 (Monte Carlo floor x 1.5)"`` and ``"TV = 0.013"``); ``tolerance`` says
    how the verdict was decided; ``details`` holds the raw numbers (JSON-safe); ``figures`` the
    paths of the PNG files written under the run folder.
    """

    name: str
    claim: str
    predicted: str
    measured: str
    tolerance: str
    passed: bool
    details: dict[str, Any] = field(default_factory=dict)
    figures: tuple[str, ...] = ()
    wall_time: float = 0.0

    @property
    def verdict(self) -> str:
        return "PASS" if self.passed else "FAIL"

    def to_dict_fields(self) -> dict[str, Any]:
        """The constructor's fields, for rebuilding with changes."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["figures"] = list(self.figures)
        data["verdict"] = self.verdict
        return data


@dataclass(frozen=True)
class CheckSpec:
    """A registry entry: ``run(size, seed, device, out_dir) -> CheckResult``."""

    name: str
    title: str
    run: Callable[[str, int, str, Path], CheckResult]
