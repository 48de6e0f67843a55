"""Helpers shared by the CLI tests of the generative models: invoke the app, read its one error
line, write a .csv of samples, interrupt a training run and resume it."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import numpy as np
import torch
from typer.testing import CliRunner

from measureflow.cli import app
from measureflow.generative.train import CHECKPOINT_NAME

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


def interrupt_and_resume(command: list, tmp_path: Path, monkeypatch, module, function: str, at: int) -> tuple:
    """Train ``command`` once whole (into tmp_path/whole) and once interrupted by Ctrl-C during
    the ``at``-th call of ``module.function`` (one call per step), then resumed (tmp_path/split).

    Checks the interrupted run: it finishes the step, writes a checkpoint of it, names --resume
    and exits 130 (128 + SIGINT; 1 in older click, which prints "Aborted!"); and the resumed run:
    same history as the whole one, ``resumed_from`` recorded. Returns the two final checkpoints
    (whole, split) for the caller's bitwise comparison of its own state.
    """
    result = invoke(*command, "--out", tmp_path / "whole")
    assert result.exit_code == 0, result.output

    real, calls = getattr(module, function), []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == at:
            signal.raise_signal(signal.SIGINT)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, function, interrupted)
    result = invoke(*command, "--out", tmp_path / "split")
    assert result.exit_code in (1, 130) and len(calls) == at, result.output
    assert "--resume" in result.stderr
    assert torch.load(tmp_path / "split" / CHECKPOINT_NAME, weights_only=True)["step"] == at
    monkeypatch.setattr(module, function, real)

    result = invoke(*command, "--out", tmp_path / "split", "--resume")
    assert result.exit_code == 0, result.output
    whole = torch.load(tmp_path / "whole" / CHECKPOINT_NAME, weights_only=True)
    split = torch.load(tmp_path / "split" / CHECKPOINT_NAME, weights_only=True)
    assert whole["step"] == split["step"]
    assert whole["history"]["losses"] == split["history"]["losses"]
    assert json.loads((tmp_path / "split" / "result.json").read_text())["history"]["resumed_from"] == at
    return whole, split


def assert_same_tensors(a: dict, b: dict, label: str) -> None:
    """Two state dicts hold the same keys and bitwise equal tensors."""
    assert a.keys() == b.keys(), label
    assert all(torch.equal(a[key], b[key]) for key in a), label


def assert_digit_samples(out: Path, n: int) -> None:
    """``out`` holds what a sample command writes for digits: n images (n, 1, 8, 8) in [-1, 1] and
    their 0..16 pixels, p = round((x + 1) * 8)."""
    assert {path.name for path in out.iterdir()} == {"samples.npz", "samples.png", "result.json"}
    with np.load(out / "samples.npz") as stored:
        images, pixels = stored["samples"], stored["pixels"]
    assert images.shape == pixels.shape == (n, 1, 8, 8) and pixels.dtype == np.uint8
    assert images.min() >= -1.0 and images.max() <= 1.0
    np.testing.assert_array_equal(pixels, np.round((images.astype(np.float64) + 1.0) * 8.0))
