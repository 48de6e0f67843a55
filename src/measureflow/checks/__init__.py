"""Theory checks: each states a claim of the source texts, predicts a value, measures it and
gives a verdict with a figure. ``names()`` lists them; ``run(name, size)`` runs one."""

from __future__ import annotations

import time
from pathlib import Path

from measureflow.checks.base import SIZES, CheckResult, CheckSpec
from measureflow.checks.registry import CHECKS

__all__ = ["CHECKS", "SIZES", "CheckResult", "CheckSpec", "names", "run"]


def names() -> list[str]:
    """The names of all registered checks, in the demo's order."""
    return list(CHECKS)


def run(
    name: str,
    size: str = "quick",
    seed: int = 0,
    device: str = "cpu",
    out_dir: str | Path | None = None,
) -> CheckResult:
    """Run the check ``name`` at ``size`` ("quick" for the demo, "full" for the published figure).

    Figures go to ``out_dir`` (default ``runs/check/<name>``).
    """
    if name not in CHECKS:
        raise ValueError(f"unknown check {name!r}; choose one of {', '.join(CHECKS)}")
    if size not in SIZES:
        raise ValueError(f"size must be one of {', '.join(SIZES)}, got {size!r}")
    folder = Path(out_dir) if out_dir is not None else Path("runs") / "check" / name
    folder.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    result = CHECKS[name].run(size, int(seed), str(device), folder)
    return CheckResult(**{**result.to_dict_fields(), "wall_time": time.perf_counter() - start})
