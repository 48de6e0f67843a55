"""Helpers shared by the CLI tests of the generative models: invoke the app, read its one error
line, write a .csv of samples."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from measureflow.cli import app

runner = CliRunner()


def invoke(*args: object):
    return runner.invoke(app, [str(arg) for arg in args])


def one_error_line(result) -> str:
    """The single stderr line of a failed command ('' unless there is exactly one)."""
    lines = result.stderr.splitlines()
    return lines[0] if len(lines) == 1 else ""


def write_csv(path: Path, x: np.ndarray) -> Path:
    np.savetxt(path, x, delimiter=",", header=",".join(f"x{i}" for i in range(x.shape[1])), comments="")
    return path
