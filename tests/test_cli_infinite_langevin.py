"""``measureflow sample --sampler infinite-langevin`` on the function-space targets."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from measureflow.cli import app

runner = CliRunner()
SMALL = ["--chains", "20", "--steps", "40", "--burn-in", "40", "--no-progress"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(("target", "dim"), [("sine-regression", 30), ("circle-regression", 21),
                                             ("network-regression", 20)])
def test_function_space_run_writes_the_posterior_figure(tmp_path, target, dim):
    out = tmp_path / target
    result = runner.invoke(app, ["sample", "--target", target, "--dim", str(dim), "--sampler",
                                 "infinite-langevin", "--decay", "2", "--lam", "0.01", "--beta", "50",
                                 "--step-size", "0.02", *SMALL, "--out", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads((out / "result.json").read_text())
    assert data["figures"] == ["sample.png", "posterior.png"] and data["settings"]["lam"] == 0.01
    assert (out / "posterior.png").read_bytes()[:8] == PNG_SIGNATURE
    samples = np.load(out / "samples.npz")["samples"]
    assert samples.shape == (20, 40, dim) and np.isfinite(samples).all()  # (chain, draw, dim)


@pytest.mark.parametrize(("args", "expected"), [
    (["--sampler", "ula", "--lam", "1"], "--lam applies to --sampler infinite-langevin"),
    (["--sampler", "infinite-langevin", "--lam", "-1"], "--lam must be finite and >= 0"),
    (["--sampler", "infinite-langevin", "--lam", "nan"], "--lam must be finite and >= 0"),
    (["--sampler", "infinite-langevin", "--decay", "0"], "--decay"),
    (["--target", "network-regression", "--dim", "7", "--sampler", "infinite-langevin"], "2 x the number"),
    (["--dim", "2000000000", "--sampler", "infinite-langevin"], "more than this machine's"),
    (["--sampler", "infinite-langevin", "--chains", "2000000000"], "more than this machine's"),
])
def test_bad_function_space_options_exit_2(tmp_path, args, expected):
    out = tmp_path / "out"
    result = runner.invoke(app, ["sample", "--target", "sine-regression", *SMALL, *args, "--out", str(out)])
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], lines
    assert not out.exists() or not any(out.iterdir())
