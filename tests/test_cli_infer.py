"""``measureflow infer``: the run folder it writes, the observation file, and bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from cli_helpers import invoke

SMALL = ["--budget", "200", "--n-samples", "50", "--no-progress"]


def run_cli(args: list[str]) -> tuple[int, str, str]:
    result = invoke(*args)
    return result.exit_code, result.stdout, result.stderr


def _files(folder) -> set[str]:
    return {path.name for path in folder.iterdir()} if folder.exists() else set()


def test_writes_posterior_figures_and_summary(tmp_path):
    out = tmp_path / "run"
    code, stdout, stderr = run_cli(["infer", "--simulator", "gaussian-linear", "--method", "abc", *SMALL,
                                    "--out", str(out)])
    assert code == 0, stderr
    assert _files(out) == {"posterior.npz", "corner.png", "predictive.png", "result.json"}
    theta = np.load(out / "posterior.npz")["theta"]
    assert theta.shape == (50, 2) and np.isfinite(theta).all()
    summary = json.loads((out / "result.json").read_text())
    assert summary["method"] == "abc" and summary["n_simulations"] == 200
    assert summary["true_parameters"] == [0.5, -0.3] and summary["amortized"] is False
    assert "posterior" in stdout


def test_reads_an_observation_file_with_a_header(tmp_path):
    csv = tmp_path / "y.csv"
    csv.write_text("y1,y2\n0.4,-0.2\n")
    out = tmp_path / "run"
    code, _, stderr = run_cli(["infer", "--simulator", "gaussian-linear", "--method", "abc", *SMALL,
                               "--observation", str(csv), "--out", str(out)])
    assert code == 0, stderr
    summary = json.loads((out / "result.json").read_text())
    assert summary["observation"] == [0.4, -0.2] and summary["true_parameters"] is None


def test_lotka_volterra_observation_file(tmp_path):
    """20 values, no header: the standard benchmark's layout (x_1..x_10, y_1..y_10)."""
    csv = tmp_path / "y.csv"
    csv.write_text(",".join(["30", "20", "10", "5", "8", "25", "30", "12", "6", "9",
                             "1", "3", "6", "2", "1", "2", "5", "4", "2", "1"]) + "\n")
    out = tmp_path / "run"
    code, _, stderr = run_cli(["infer", "--method", "abc", "--budget", "100", "--n-samples", "20",
                               "--no-progress", "--observation", str(csv), "--out", str(out)])
    assert code == 0, stderr
    theta = np.load(out / "posterior.npz")["theta"]
    assert theta.shape == (20, 4) and (theta > 0).all()


@pytest.mark.parametrize("content, message", [
    ("1,2,3\n", "must hold 2 values"),
    ("0.1,nan\n", "NaN or infinite"),
    ("a,b\n1,2\n3,4\n", "one row"),
    ("", "one row"),
    ("1,x\n", "not 2 comma-separated numbers"),
])
def test_bad_observation_files(tmp_path, content, message):
    csv = tmp_path / "y.csv"
    csv.write_text(content)
    out = tmp_path / "run"
    code, _, stderr = run_cli(["infer", "--simulator", "gaussian-linear", "--method", "abc", *SMALL,
                               "--observation", str(csv), "--out", str(out)])
    assert code == 2 and message in stderr and len(stderr.strip().splitlines()) == 1
    assert not out.exists()


@pytest.mark.parametrize("args, message", [
    (["--method", "nope"], "--method must be one of"),
    (["--simulator", "nope"], "--simulator must be one of"),
    (["--true-parameters", "1,2,3"], "--true-parameters must be 4"),
    (["--true-parameters", "-1,0.1,1,0.1"], "outside the prior's support"),
    (["--budget", "5"], "--budget must be an integer >= 20"),
    (["--method", "abc", "--steps", "10"], "--steps applies to"),
    (["--method", "npe", "--loss", "kl"], "--loss applies to --method lfvi"),
    (["--method", "lfvi", "--loss", "wgan"], "--loss must be one of"),
    (["--simulator", "stochastic-lotka-volterra", "--method", "mcmc"], "needs the likelihood"),
    (["--observation", "missing.csv"], "missing.csv"),
])
def test_bad_input_exits_2_with_one_line(tmp_path, args, message):
    out = tmp_path / "run"
    code, _, stderr = run_cli(["infer", *SMALL, *args, "--out", str(out)])
    assert code == 2, stderr
    assert message in stderr and len(stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_negative_counts_are_refused(tmp_path):
    csv = tmp_path / "y.csv"
    csv.write_text(",".join(["-3"] + ["1"] * 19) + "\n")
    code, _, stderr = run_cli(["infer", *SMALL, "--observation", str(csv), "--out", str(tmp_path / "run")])
    assert code == 2 and "positive" in stderr
