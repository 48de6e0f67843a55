"""``measureflow flow``: in-process runs with typer's CliRunner, and one real process."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from measureflow.cli import app

runner = CliRunner()
SMALL = ["--n-particles", "60", "--steps", "30", "--no-progress"]
FILES = ["flow.png", "particles.npz", "result.json"]


def read_run(folder: Path):
    assert sorted(p.name for p in folder.iterdir()) == FILES
    assert (folder / "flow.png").read_bytes()[:4] == b"\x89PNG"
    with np.load(folder / "particles.npz") as stored:
        arrays = {key: stored[key] for key in stored.files}
    return json.loads((folder / "result.json").read_text()), arrays


def test_kl_flow_on_the_ring(tmp_path):
    out = tmp_path / "kl"
    result = runner.invoke(app, ["flow", "--functional", "kl", "--step-size", "0.02", "--beta", "2",
                                 *SMALL, "--record-every", "10", "--out", str(out)])
    assert result.exit_code == 0, result.output
    data, arrays = read_run(out)
    assert data["command"] == "flow" and data["settings"]["functional"] == "kl" and data["target"] == "ring"
    assert data["functional"] == "KL(gaussian-mixture, beta=2, noise)"
    assert data["settings"]["beta"] == 2.0 and data["settings"]["dim"] == 2
    assert data["temperature"] == 0.5 and data["n_steps"] == 30
    assert data["times"] == pytest.approx([0.0, 0.2, 0.4, 0.6])
    assert len(data["values"]) == 4 and data["figures"] == ["flow.png"]
    assert arrays["particles"].shape == (60, 2)
    assert arrays["snapshots"].shape == (4, 60, 2)
    assert arrays["values"].shape == (4,) and arrays["steps"].tolist() == [0, 10, 20, 30]
    np.testing.assert_allclose(arrays["values"], data["values"])


@pytest.mark.parametrize(
    ("args", "label"),
    [
        (["--functional", "svgd", "--target", "gaussian", "--dim", "3"], "SVGD"),
        (["--functional", "kl", "--entropy", "blob", "--bandwidth", "0.5", "--target", "double-well"],
         "KL(double-well, beta=1, blob)"),
        (["--functional", "mmd", "--target", "ring", "--kernel", "imq", "--noise-level", "0.1",
          "--target-samples", "80"], "MMD(imq"),
        (["--functional", "descent", "--target", "banana"], "Potential(banana)"),
        (["--functional", "aggregation", "--repulsion", "0", "--dim", "2"], "Interaction"),
    ],
)
def test_every_functional_runs(tmp_path, args, label):
    out = tmp_path / "run"
    result = runner.invoke(app, ["flow", *args, *SMALL, "--step-size", "0.01", "--out", str(out)])
    assert result.exit_code == 0, result.output
    data, arrays = read_run(out)
    assert label in data["functional"]
    assert np.isfinite(arrays["particles"]).all()


def test_same_seed_same_particles(tmp_path):
    runs = []
    for name in ("a", "b"):
        result = runner.invoke(app, ["flow", "--functional", "kl", *SMALL, "--seed", "7",
                                     "--out", str(tmp_path / name)])
        assert result.exit_code == 0, result.output
        runs.append(read_run(tmp_path / name)[1]["particles"])
    np.testing.assert_array_equal(runs[0], runs[1])


BAD_INPUT = {
    "unknown functional": (["--functional", "wasserstein"], "unknown functional"),
    "unknown target": (["--target", "no-such-target"], "unknown target"),
    "negative step": (["--step-size", "-0.1"], "--step-size"),
    "nan beta": (["--beta", "nan"], "--beta"),
    "one particle": (["--n-particles", "1"], "--n-particles"),
    "zero steps": (["--steps", "0"], "--steps"),
    "bad entropy": (["--entropy", "kde"], "--entropy"),
    "option of another functional": (["--functional", "svgd", "--noise-level", "0.1"], "--noise-level"),
    "target with aggregation": (["--functional", "aggregation", "--target", "ring"], "--target"),
    "repulsion above attraction": (["--functional", "aggregation", "--repulsion", "3"], "b < a"),
    "mmd without a sampler": (["--functional", "mmd", "--target", "logistic"], "exact sampler"),
    "bandwidth with noise": (["--entropy", "noise", "--bandwidth", "0.3"], "--bandwidth"),
    "bandwidth with the default entropy": (["--functional", "kl", "--bandwidth", "0.3"], "--entropy blob"),
    "beta without a target": (["--functional", "aggregation", "--beta", "2"], "--beta"),
    "bad device": (["--device", "tpu"], "--device"),
    "diverging flow": (["--functional", "descent", "--target", "double-well", "--init-scale", "10",
                        "--step-size", "5"], "diverged at step"),
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, case):
    args, expected = BAD_INPUT[case]
    out = tmp_path / "out"
    result = runner.invoke(app, ["flow", *SMALL, *args, "--out", str(out)])
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], lines
    assert result.stdout == ""
    assert not out.exists()


def test_help():
    result = runner.invoke(app, ["flow", "--help"])
    assert result.exit_code == 0
    assert "--functional" in result.stdout and "aggregation" in result.stdout


def test_real_process_bad_input_is_one_line(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    done = subprocess.run(
        [sys.executable, "-m", "measureflow", "flow", "--functional", "svgd", "--step-size", "0",
         "--out", str(tmp_path / "out")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("error: --step-size") and len(done.stderr.splitlines()) == 1
    assert not (tmp_path / "out").exists()
