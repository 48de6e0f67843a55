"""The command line: real subprocess runs of ``sample``, in-process runs of check/demo/report.

``check`` and ``demo`` run against fake checks registered in place of the real ones (so these
tests do not depend on the real checks' runtime).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from typer.testing import CliRunner

import measureflow as mf
from measureflow.checks import CheckResult, CheckSpec, registry
from measureflow.cli import app
from measureflow.cli._common.targets import load_user_target, resolve_target

# One intra-op thread: on a shared, oversubscribed 2-core machine torch's thread pool makes
# small kernels up to 100x slower, and these tests are about the CLI, not speed.
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
SMALL = ["--n-chains", "50", "--steps", "200", "--burn-in", "50", "--no-progress"]
USER_FILE = """
import torch
import measureflow as mf

def energy(x):
    return 0.5 * (x ** 2).sum(-1)

def quartic(x):
    return (x ** 4).sum(-1)
quartic.dim = 2

def banana():
    return mf.targets.Banana()

def not_a_target():
    return 3

def wrong_shape(x):
    return x

def crashes(x):
    return x @ torch.ones(7)

constant = 1.5
"""


def start_cli(*args, cwd):
    return subprocess.Popen(
        [sys.executable, "-m", "measureflow", *map(str, args)],
        cwd=cwd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def run_cli(*args, cwd):
    process = start_cli(*args, cwd=cwd)
    stdout, stderr = process.communicate(timeout=300)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def no_partial_files(folder: Path) -> bool:
    return not folder.exists() or not any(folder.iterdir())


@pytest.fixture
def user_file(tmp_path):
    path = tmp_path / "my_target.py"
    path.write_text(USER_FILE)
    return path


def read_run(folder: Path):
    data = json.loads((folder / "result.json").read_text())
    arrays = np.load(folder / "samples.npz")
    assert (folder / "sample.png").read_bytes()[:4] == b"\x89PNG"
    assert sorted(p.name for p in folder.iterdir()) == ["result.json", "sample.png",
                                                        "samples.npz"]
    return data, arrays


# --- sample: real runs -----------------------------------------------------------------------

def test_sample_double_well_mala(tmp_path):
    out = tmp_path / "runs" / "x"
    done = run_cli("sample", "--target", "double-well", "--sampler", "mala", "--step-size", "0.05",
                   "--beta", "4", *SMALL, "--out", out, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    data, arrays = read_run(out)
    # Nothing on stderr but the convergence warnings (50 chains of 200 steps in a double well at
    # beta 4 do not mix between the wells), each one line and recorded in result.json.
    assert done.stderr.splitlines() == [f"warning: {line}" for line in data["warnings"]]
    assert data["target"] == "double-well" and data["sampler"] == "mala"
    assert data["settings"]["beta"] == 4.0 and data["settings"]["n_chains"] == 50
    assert data["settings"]["step_size"] == 0.05 and data["params"]["beta"] == 4.0
    assert (data["n_kept"], data["n_chains"], data["dim"], data["burn_in"]) == (200, 50, 1, 50)
    assert 0.2 < data["acceptance_rate"] < 0.9  # adapted toward 0.574 during burn-in
    assert data["figures"] == ["sample.png"]
    # Chain first, as ArviZ, NumPyro and Stan store draws.
    assert arrays["samples"].shape == (50, 200, 1)
    assert arrays["energy"].shape == arrays["acceptance_rate"].shape == (50, 200)
    assert arrays["acceptance"].shape == (50,)
    np.testing.assert_allclose(arrays["acceptance"].mean(), data["acceptance_rate"], rtol=1e-6)


def test_sample_ring_ula(tmp_path):
    done = run_cli("sample", "--target", "ring", "--sampler", "ula", "--step-size", "0.05",
                   *SMALL, "--out", "ring", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    data, arrays = read_run(tmp_path / "ring")
    assert data["dim"] == 2 and data["acceptance_rate"] is None
    assert arrays["samples"].shape == (50, 200, 2)
    assert "acceptance" not in arrays.files


def test_sample_user_energy_file(tmp_path, user_file):
    done = run_cli("sample", "--target", f"{user_file}:energy", "--dim", "3", "--sampler", "ula",
                   "--step-size", "0.1", *SMALL, "--out", "user", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    data, arrays = read_run(tmp_path / "user")
    assert data["target"] == f"{user_file}:energy" and data["settings"]["dim"] == 3
    assert arrays["samples"].shape == (50, 200, 3)


def test_sample_annealed_rastrigin(tmp_path):
    done = run_cli("sample", "--target", "rastrigin", "--sampler", "annealed", "--step-size",
                   "0.002", "--beta", "20", "--beta-start", "0.5", "--schedule", "linear",
                   *SMALL, "--out", "anneal", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    data, _ = read_run(tmp_path / "anneal")
    assert data["params"]["schedule"] == "linear" and data["params"]["beta_start"] == 0.5
    assert data["params"]["horizon"] == 250  # the whole run, burn-in included
    assert data["best_energy_min"] <= data["mean_energy"]


def test_sample_sgld_logistic(tmp_path):
    done = run_cli("sample", "--target", "logistic", "--sampler", "sgld", "--step-size", "1e-4",
                   "--batch-size", "16", "--n-chains", "4", "--steps", "40", "--burn-in", "10",
                   "--no-progress", "--out", "logistic", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    data, arrays = read_run(tmp_path / "logistic")
    assert data["dim"] == 31 and data["params"]["batch_size"] == 16
    assert data["n_data_grads"] == 50 * 16  # per chain: every step draws one minibatch
    assert arrays["samples"].shape == (4, 40, 31)


# --- sample: bad input -----------------------------------------------------------------------

BAD_INPUT = {
    "unknown target": (["--target", "no-such-target"], "unknown target"),
    "unknown sampler": (["--sampler", "no-such-sampler"], "unknown sampler"),
    "negative step size": (["--step-size", "-0.1"], "--step-size"),
    "zero beta": (["--beta", "0"], "--beta"),
    "nan beta": (["--beta", "nan"], "--beta"),
    "missing file": (["--target", "absent.py:energy"], "not found"),
    "file without the function": (["--target", "{user_file}:no_such"], "no attribute"),
    "energy without dim": (["--target", "{user_file}:energy"], "--dim"),
    "wrong energy shape": (["--target", "{user_file}:wrong_shape", "--dim", "2"], "(n,)"),
    "diverging chains": (["--sampler", "ula", "--step-size", "10"], "--step-size=10"),
}


@pytest.mark.parametrize("case", ["unknown target", "missing file", "diverging chains"])
def test_sample_bad_input_in_a_real_process(tmp_path, user_file, case):
    """The real process: one line on stderr (no traceback, no warning, no progress bar)."""
    args, expected = BAD_INPUT[case]
    args = [arg.format(user_file=user_file) for arg in args]
    done = run_cli("sample", *args, *SMALL, "--out", tmp_path / "out", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], done.stderr
    assert done.stdout == ""
    assert no_partial_files(tmp_path / "out")


# --- in-process ------------------------------------------------------------------------------

runner = CliRunner()


@pytest.mark.parametrize("case", [case for case in BAD_INPUT if case != "diverging chains"])
def test_sample_bad_input_exits_2_with_one_line(tmp_path, user_file, monkeypatch, case):
    monkeypatch.setattr(sys, "path", sys.path[:])  # loading a user file prepends its folder
    args, expected = BAD_INPUT[case]
    args = [arg.format(user_file=user_file) for arg in args]
    out = tmp_path / "out"
    result = runner.invoke(app, ["sample", *args, *SMALL, "--out", str(out)])
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], lines
    assert result.stdout == ""
    assert no_partial_files(out)


@pytest.mark.parametrize("command", [[], ["sample"], ["check"], ["demo"], ["report"]])
def test_help_of_every_command(command):
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.stdout
    if command and command != ["report"]:
        assert all(flag in result.stdout for flag in ("--seed", "--out", "--device"))


def test_import_star():
    namespace = {}
    exec("from measureflow.cli import *", namespace)
    assert {"app", "main"} <= set(namespace)


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
@pytest.mark.parametrize("command", [["sample"], ["check", "fake-pass"], ["demo"]])
def test_cuda_unavailable_is_bad_input(tmp_path, fake_checks, command):
    result = runner.invoke(app, [*command, "--device", "cuda", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: --device cuda") and result.stderr.count("\n") == 1
    assert not (tmp_path / "o").exists()


def test_option_for_another_sampler_is_rejected(tmp_path):
    result = runner.invoke(app, ["sample", "--sampler", "mala", "--friction", "1",
                                 "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "--friction applies to --sampler sghmc" in result.stderr


def test_resolve_targets():
    assert resolve_target("funnel")[0].dim == 10
    assert resolve_target("gaussian", dim=3)[0].dim == 3
    with pytest.raises(ValueError, match="2-dimensional"):
        resolve_target("ring", dim=3)
    with pytest.raises(ValueError, match="unknown target"):
        resolve_target("nope")


def test_user_file_attribute_kinds(user_file, monkeypatch):
    monkeypatch.setattr(sys, "path", sys.path[:])
    assert load_user_target(f"{user_file}:quartic").dim == 2  # dim from the function attribute
    assert isinstance(load_user_target(f"{user_file}:banana"), mf.targets.Banana)
    with pytest.raises(TypeError, match="not a measureflow Target"):
        load_user_target(f"{user_file}:not_a_target")
    with pytest.raises(TypeError, match="is a float"):
        load_user_target(f"{user_file}:constant")
    with pytest.raises(ValueError, match="RuntimeError"):
        load_user_target(f"{user_file}:crashes", dim=2)
    with pytest.raises(ValueError, match="path/to/file.py:function"):
        load_user_target(str(user_file))
    broken = user_file.with_name("broken.py")
    broken.write_text("raise ImportError('no such dependency')\n")
    with pytest.raises(ValueError, match="ImportError: no such dependency"):
        load_user_target(f"{broken}:energy", dim=1)


# --- check, demo, report with fake checks ---------------------------------------------------

def _fake_run(passed, raises=False):
    def run(size, seed, device, out_dir):
        if raises:
            raise RuntimeError("the check broke")
        name = "fake-pass" if passed else "fake-fail"
        figure = Figure(figsize=(1, 1))
        figure.subplots().plot([0, 1], [0, 1])
        figure.savefig(out_dir / f"{name}.png", dpi=20)
        return CheckResult(
            name=name, claim=f"{name} <claim>", predicted="x <= 1", measured="x = 0.5",
            tolerance="1 MC error", passed=passed, details={"x": 0.5, "size": size},
            figures=(str(out_dir / f"{name}.png"),),
        )
    return run


@pytest.fixture
def fake_checks(monkeypatch):
    """Replace the registered checks (the dict is shared, so edit it in place)."""
    for name in list(registry.CHECKS):
        monkeypatch.delitem(registry.CHECKS, name)
    monkeypatch.setitem(registry.CHECKS, "fake-pass", CheckSpec("fake-pass", "passes", _fake_run(True)))
    monkeypatch.setitem(registry.CHECKS, "fake-fail", CheckSpec("fake-fail", "fails", _fake_run(False)))
    monkeypatch.setitem(registry.CHECKS, "fake-error",
                        CheckSpec("fake-error", "raises", _fake_run(False, raises=True)))


def test_check_pass_and_fail(tmp_path, fake_checks):
    result = runner.invoke(app, ["check", "fake-pass", "--out", str(tmp_path / "p")])
    assert result.exit_code == 0, result.output
    assert "fake-pass <claim>" in result.stdout and "PASS" in result.stdout
    data = json.loads((tmp_path / "p" / "result.json").read_text())
    assert data["verdict"] == "PASS" and data["details"] == {"x": 0.5, "size": "quick"}
    assert data["figures"] == ["fake-pass.png"]  # relative to the result's folder

    result = runner.invoke(app, ["check", "fake-fail", "--size", "full", "--out", str(tmp_path / "f")])
    assert result.exit_code == 1 and "FAIL" in result.stdout
    assert json.loads((tmp_path / "f" / "result.json").read_text())["passed"] is False


@pytest.mark.parametrize("args", [["no-such-check"], ["fake-pass", "--size", "huge"],
                                  ["fake-pass", "--seed", "-3"]])
def test_check_bad_input(tmp_path, fake_checks, args):
    result = runner.invoke(app, ["check", *args, "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert not (tmp_path / "o").exists()


def test_demo_all_pass_writes_summary_and_index(tmp_path, fake_checks):
    out = tmp_path / "demo"
    result = runner.invoke(app, ["demo", "--checks", "fake-pass", "--out", str(out)])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["passed"] is True and summary["n_checks"] == summary["n_passed"] == 1
    assert summary["checks"][0]["figures"] == ["fake-pass/fake-pass.png"]
    assert json.loads((out / "fake-pass" / "result.json").read_text())["verdict"] == "PASS"
    page = (out / "index.html").read_text()
    assert '<img src="fake-pass/fake-pass.png"' in page
    assert "fake-pass &lt;claim&gt;" in page


def test_demo_with_a_failing_and_a_broken_check(tmp_path, fake_checks):
    out = tmp_path / "demo"
    result = runner.invoke(app, ["demo", "--out", str(out)])
    assert result.exit_code == 1, result.output
    summary = json.loads((out / "summary.json").read_text())
    verdicts = {check["name"]: check["verdict"] for check in summary["checks"]}
    assert verdicts == {"fake-pass": "PASS", "fake-fail": "FAIL", "fake-error": "ERROR"}
    assert summary["n_passed"] == 1 and summary["passed"] is False
    broken = json.loads((out / "fake-error" / "result.json").read_text())
    assert broken["error"] == "RuntimeError: the check broke"
    page = (out / "index.html").read_text()
    for name in verdicts:
        assert f'id="check-{name}"' in page
    assert "1 of 3 checks passed" in page

    # report regenerates the same index from the result files alone.
    (out / "index.html").unlink()
    result = runner.invoke(app, ["report", str(out)])
    assert result.exit_code == 0, result.output
    assert '<img src="fake-fail/fake-fail.png"' in (out / "index.html").read_text()


def test_demo_unknown_check_and_report_of_nothing(tmp_path, fake_checks):
    result = runner.invoke(app, ["demo", "--checks", "fake-pass,nope", "--out", str(tmp_path / "d")])
    assert result.exit_code == 2 and "'nope'" in result.stderr
    assert not (tmp_path / "d").exists()
    result = runner.invoke(app, ["report", str(tmp_path / "absent")])
    assert result.exit_code == 2 and result.stderr.startswith("error: ")
    (tmp_path / "empty").mkdir()
    result = runner.invoke(app, ["report", str(tmp_path / "empty")])
    assert result.exit_code == 2 and "no result.json" in result.stderr
