"""``measureflow flow-model``: train -> sample -> nll in process (typer's CliRunner), the data's own
units against the library, --resume/--overwrite, and bad input (one line, exit code 2).

The runs are tiny (20 steps of a small flow on a few hundred points): the tests check the
plumbing and the units, comparing with the library where the answer is exact.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import invoke, one_error_line, write_csv

from measureflow.data import Standardizer, load_dataset
from measureflow.generative import TrainedModel
from measureflow.generative.flow import flow_log_prob
from measureflow.generative.train import load_checkpoint, save_checkpoint

SMALL = ["--transforms", "2", "--hidden", "16", "--bins", "4", "--batch-size", "64", "--no-progress"]


@pytest.fixture(scope="module")
def shifted(tmp_path_factory) -> tuple[Path, np.ndarray, Path]:
    """A .csv of 400 points far from the origin with unequal scales, and a 20-step run on it."""
    folder = tmp_path_factory.mktemp("shifted")
    x = np.random.default_rng(0).normal(size=(400, 2)) * np.array([1.0, 5.0]) + np.array([100.0, -50.0])
    path = write_csv(folder / "shifted.csv", x)
    out = folder / "run"
    result = invoke("flow-model", "train", "--data", path, "--steps", "20", *SMALL, "--out", out)
    assert result.exit_code == 0, result.output
    return path, x, out


def test_train_writes_a_run_in_the_data_units(shifted):
    path, x, out = shifted
    assert {"checkpoint.pt", "history.json", "loss.png", "samples.png", "result.json"} <= {
        item.name for item in out.iterdir()}
    summary = json.loads((out / "result.json").read_text())
    assert summary["steps"] == 20 and summary["net"]["name"] == "nsf"
    assert summary["data"]["spec"] == str(path.resolve())
    model = TrainedModel.load(out, family="flow")
    standardizer = Standardizer.fit(torch.as_tensor(x, dtype=torch.float32))
    torch.testing.assert_close(model.standardizer.mean, standardizer.mean)


def test_sample_and_nll_agree_with_the_library(shifted, tmp_path):
    path, x, out = shifted
    result = invoke("flow-model", "sample", "--ckpt", out, "--n", "300", "--seed", "3",
                    "--out", tmp_path / "s")
    assert result.exit_code == 0, result.output
    samples = np.load(tmp_path / "s" / "samples.npz")["samples"]
    model = TrainedModel.load(out, family="flow")
    expected = model.sample(300, generator=torch.Generator().manual_seed(3))
    np.testing.assert_array_equal(samples, expected.numpy())
    assert abs(samples[:, 0].mean() - 100.0) < 20  # data units, not standardized ones

    result = invoke("flow-model", "nll", "--ckpt", out / "checkpoint.pt", "--n", "1000",
                    "--out", tmp_path / "n")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "n" / "nll.json").read_text())
    points = load_dataset(str(path)).x  # the file has 400 <= 1000 rows: all of them, in order
    standardizer = model.standardizer
    # log p_data(x) = log q(standardized x) - sum log std: the change of variables of the standardizer.
    values = -flow_log_prob(model.network, standardizer.forward(points)).double() + standardizer.log_abs_det()
    assert report["nll_mean"] == pytest.approx(float(values.mean()), rel=1e-6)
    assert report["nll_standard_error"] == pytest.approx(float(values.std()) / math.sqrt(400), rel=1e-6)
    assert report["gap_mean"] is None


def test_nll_of_a_mixture_reports_the_true_gap(tmp_path):
    out = tmp_path / "run"
    result = invoke("flow-model", "train", "--data", "8gaussians", "--n-data", "500", "--steps", "10",
                    *SMALL, "--flow", "maf", "--out", out)
    assert result.exit_code == 0, result.output
    result = invoke("flow-model", "nll", "--ckpt", out, "--n", "200")
    assert result.exit_code == 0, result.output
    report = json.loads((out / "nll.json").read_text())
    assert report["gap_mean"] == pytest.approx(report["nll_mean"] - report["true_nll_mean"], abs=1e-9)


def test_resume_and_overwrite(shifted, tmp_path):
    path, _, _ = shifted
    out = tmp_path / "run"
    common = ["flow-model", "train", "--data", path, *SMALL, "--out", out]
    assert invoke(*common, "--steps", "10").exit_code == 0
    result = invoke(*common, "--steps", "10")
    assert result.exit_code == 2 and "--overwrite" in one_error_line(result)
    result = invoke(*common, "--steps", "10", "--resume", "--overwrite")
    assert result.exit_code == 2 and "pass one" in one_error_line(result)
    # Another --steps changes the cosine schedule: refused on resume, allowed with --overwrite.
    result = invoke(*common, "--steps", "20", "--resume")
    assert result.exit_code == 2 and "another config" in one_error_line(result)
    assert invoke(*common, "--steps", "20", "--overwrite").exit_code == 0
    assert load_checkpoint(out)["step"] == 20


def test_image_data_are_refused_by_nll_and_resume_needs_a_checkpoint(shifted, tmp_path):
    _, _, out = shifted
    result = invoke("flow-model", "nll", "--ckpt", out, "--data", "digits", "--out", tmp_path / "n")
    assert result.exit_code == 2 and "shape (1, 8, 8)" in one_error_line(result)
    result = invoke("flow-model", "train", "--data", "moons", "--steps", "5", "--resume",
                    "--out", tmp_path / "r")
    assert result.exit_code == 2 and "start without --resume" in one_error_line(result)
    assert not (tmp_path / "n").exists() and not (tmp_path / "r").exists()


def test_bad_input_is_one_line_and_exit_2(tmp_path):
    nan_file = write_csv(tmp_path / "nan.csv", np.array([[0.0, 1.0], [math.nan, 2.0], [1.0, 0.5]]))
    cases = [
        (["train", "--data", nan_file, "--steps", "5"], "NaN"),
        (["train", "--data", tmp_path / "missing.csv", "--steps", "5"], "missing.csv"),
        (["train", "--data", "moons", "--steps", "0"], "--steps"),
        (["train", "--data", "moons", "--steps", "5", "--flow", "realnvp"], "--flow"),
        (["train", "--data", "moons", "--steps", "5", "--hidden", "64,x"], "--hidden"),
        (["train", "--data", "digits", "--steps", "5"], "vectors"),
        (["sample", "--ckpt", tmp_path / "nowhere"], "does not exist"),
        (["nll", "--ckpt", tmp_path / "nowhere"], "does not exist"),
    ]
    save_checkpoint(tmp_path / "other" / "checkpoint.pt", {
        "format": "measureflow-checkpoint", "version": 1, "kind": "diffusion", "config": {}, "step": 1})
    cases.append((["sample", "--ckpt", tmp_path / "other"], "'diffusion' model, not a 'flow'"))
    for args, expected in cases:
        result = invoke("flow-model", *args, "--out" if args[0] == "train" else "--seed", (
            tmp_path / "out" if args[0] == "train" else "0"))
        assert result.exit_code == 2, (args, result.output)
        line = one_error_line(result)
        assert line.startswith("error:") and expected in line, (args, result.stderr)
    assert not (tmp_path / "out").exists()
