"""``measureflow diffusion`` and ``measureflow ebm``: train -> sample -> nll round trips in process
(typer's CliRunner), the data's own units, exact resume after an interruption, and bad input.

Everything is tiny (tens of steps, batches of 64, a few hundred samples): the models are crude,
so the tests check the plumbing (files, shapes, units, determinism, errors), and compare with
the library where an exact answer exists rather than with the data law.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import (
    assert_digit_samples,
    assert_same_tensors,
    interrupt_and_resume,
    invoke,
    one_error_line,
    write_csv,
)

import measureflow.generative.diffusion.training as diffusion_training
from measureflow._core import make_generator
from measureflow.cli import diffusion as diffusion_cli
from measureflow.cli._common import held_out_generator
from measureflow.data import Standardizer, load_dataset, toy_mixture
from measureflow.generative import TrainedModel
from measureflow.generative.diffusion import log_likelihood, probability_flow, score_model
from measureflow.generative.ebm import sample_ebm
from measureflow.generative.train import CHECKPOINT_NAME, save_checkpoint

FAST = ["--batch-size", "64", "--n-data", "1000", "--no-progress"]
TRAIN_FILES = {"checkpoint.pt", "history.json", "loss.png", "result.json"}


@pytest.fixture(scope="module")
def moons_run(tmp_path_factory) -> Path:
    """30 DSM steps on moons, checkpoints at 15 and 30 with their sample figures."""
    out = tmp_path_factory.mktemp("moons") / "run"
    result = invoke("diffusion", "train", "--data", "moons", "--steps", "30", "--checkpoint-every", "15",
                    "--figure-samples", "100", *FAST, "--out", out)
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def shifted(tmp_path_factory) -> tuple[Path, np.ndarray, Path]:
    """A .csv of 600 points far from the origin with unequal scales, and a 30-step run on it."""
    folder = tmp_path_factory.mktemp("shifted")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 2)) * np.array([1.0, 5.0]) + np.array([100.0, -50.0])
    path = write_csv(folder / "shifted.csv", x)
    out = folder / "run"
    result = invoke("diffusion", "train", "--data", path, "--steps", "30", "--figure-samples", "0",
                    "--batch-size", "64", "--no-progress", "--out", out)
    assert result.exit_code == 0, result.output
    return path, x, out


def test_train_writes_the_run_and_stores_the_data_spec(moons_run):
    names = {path.name for path in moons_run.iterdir()}
    assert names == TRAIN_FILES | {"samples_step0000015.png", "samples_step0000030.png"}
    assert (moons_run / "samples_step0000030.png").read_bytes()[:4] == b"\x89PNG"
    data = json.loads((moons_run / "result.json").read_text())
    assert data["command"] == "diffusion train" and data["steps"] == 30 and data["standardized"]
    assert math.isfinite(data["final_loss"]) and data["wall_time_s"] > 0
    assert data["figures"] == ["loss.png", "samples_step0000015.png", "samples_step0000030.png"]
    payload = torch.load(moons_run / CHECKPOINT_NAME, weights_only=True)
    assert payload["kind"] == "diffusion" and payload["step"] == 30
    assert {"model", "optimizer", "ema", "rng"} <= set(payload)
    config = payload["config"]
    assert config["data"]["spec"] == "moons" and config["data"]["event_shape"] == [2]
    standardizer = Standardizer.from_dict(config["standardizer"])
    data_points = load_dataset("moons", n=1000, generator=make_generator(0)).x
    # The stored map is the training data's own (fitted on the same 1000 draws of seed 0).
    torch.testing.assert_close(standardizer.mean, data_points.double().mean(0))


# Expected network evaluations for --steps 10: sde 1 per step, ode (Heun) and pc (one corrector)
# 2 per step, als 10 // 10 = 1 level of 10 steps plus the final denoising call.
EVALUATIONS = {"sde": 10, "ode": 20, "pc": 20, "als": 11}


@pytest.mark.parametrize("sampler", ["sde", "ode", "ode-adaptive", "pc", "als"])
def test_every_sampler_writes_samples_and_figures(moons_run, tmp_path, sampler):
    out = tmp_path / "samples"
    steps = ["--tolerance", "1e-3"] if sampler == "ode-adaptive" else ["--steps", "10"]
    result = invoke("diffusion", "sample", "--ckpt", moons_run, "--sampler", sampler, *steps, "--n", "200",
                    "--seed", "3", "--no-progress", "--out", out)
    assert result.exit_code == 0, result.output
    assert {path.name for path in out.iterdir()} == {"samples.npz", "samples.png", "trajectories.png",
                                                      "result.json"}
    with np.load(out / "samples.npz") as stored:
        samples = stored["samples"]
    assert samples.shape == (200, 2) and np.isfinite(samples).all()
    data = json.loads((out / "result.json").read_text())
    assert data["units"] == "data" and data["checkpoint"]["step"] == 30
    if sampler in EVALUATIONS:
        assert data["n_evaluations"] == EVALUATIONS[sampler]
    else:
        assert data["n_evaluations"] > 0 and data["settings"]["tolerance"] == 1e-3


def test_samples_are_in_the_data_units(shifted, tmp_path):
    path, x, run = shifted
    out = tmp_path / "samples"
    result = invoke("diffusion", "sample", "--ckpt", run / CHECKPOINT_NAME, "--sampler", "ode",
                    "--steps", "20", "--n", "1000", "--seed", "1", "--no-progress", "--out", out)
    assert result.exit_code == 0, result.output
    with np.load(out / "samples.npz") as stored:
        samples = torch.from_numpy(stored["samples"])
    # Exact: the file holds the library's probability-flow samples (same prior draws) mapped back
    # through the checkpoint's standardizer.
    trained = TrainedModel.load(run)
    model = score_model(trained)
    x_T = model.sde.prior_sample((1000, 2), make_generator(1))  # noqa: N806
    expected = trained.standardizer.inverse(probability_flow(model, model.sde, x_T, 20).x)
    torch.testing.assert_close(samples, expected)
    # Loose, on the units alone: the data sit at (100, -50) with stds (1, 5). A crude 30-step
    # model's samples, in standardized units, have a mean of order one at most (they start from
    # N(0, I) and the score pulls toward the standardized data, whose mean is 0; with training
    # seeds 0, 1, 2 the offsets measured 0.15 to 0.82 data stds) and spreads within a few times
    # the data's (1.7 to 2.9). Two data stds for the mean and a spread ratio above 2 between the
    # coordinates (the data's is 5; measured 3.6 to 5.5) leave room for that crudeness, while
    # samples left standardized would sit 100 and 10 data stds away with a ratio near 1.
    mean, spread = samples.double().mean(0), samples.double().std(0)
    data_mean, data_std = torch.from_numpy(x.mean(0)), torch.from_numpy(x.std(0))
    assert ((mean - data_mean).abs() < 2.0 * data_std).all(), (mean, data_mean)
    assert spread[1] > 2.0 * spread[0], spread


def test_nll_is_reported_in_the_data_units(shifted, tmp_path):
    path, x, run = shifted
    out = tmp_path / "nll"
    result = invoke("diffusion", "nll", "--ckpt", run, "--data", path, "--n", "40", "--seed", "2",
                    "--tolerance", "1e-3", "--out", out)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "nll.json").read_text())
    assert report["data"]["n"] == 40 and report["exact_divergence"] and report["true_nll_mean"] is None
    # The identity log p_data(x) = log p_std((x - m)/s) - sum log s, against the library run on
    # the same 40 rows (the CLI's subset: 40 of 600 drawn with the held-out generator of --seed).
    trained = TrainedModel.load(run)
    model, standardizer = score_model(trained), trained.standardizer
    points = load_dataset(path, n=40, generator=held_out_generator(2)).x
    log_p = log_likelihood(model, model.sde, standardizer.forward(points), rtol=1e-3,
                           atol=1e-3).log_prob
    nll_values = -log_p.double() + torch.log(standardizer.std).sum()
    assert report["log_std_sum"] == pytest.approx(math.log(5.0), abs=0.2)  # stds about (1, 5)
    assert report["nll_mean"] == pytest.approx(float(nll_values.mean()), rel=1e-6)
    assert report["nll_standard_error"] == pytest.approx(float(nll_values.std() / math.sqrt(40)), rel=1e-6)


def test_nll_against_the_true_density_of_a_mixture_toy(moons_run, tmp_path):
    out = tmp_path / "nll"
    result = invoke("diffusion", "nll", "--ckpt", moons_run, "--data", "8gaussians", "--n", "30",
                    "--tolerance", "1e-3", "--out", out)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "nll.json").read_text())
    points = load_dataset("8gaussians", n=30, generator=held_out_generator(0)).x  # the default --seed 0
    true_values = -toy_mixture("8gaussians").log_prob(points.double())
    assert report["true_nll_mean"] == pytest.approx(float(true_values.mean()), rel=1e-9)
    assert report["gap_mean"] == pytest.approx(report["nll_mean"] - report["true_nll_mean"], rel=1e-9)
    assert "true NLL" in result.stdout


def test_interrupted_training_resumes_bitwise(tmp_path, monkeypatch, python_sigint):
    command = ["diffusion", "train", "--data", "moons", "--steps", "40", "--checkpoint-every", "20",
               "--figure-samples", "0", *FAST]
    # Ctrl-C during step 27 (one dsm_loss call per step), between two checkpoints.
    whole, split = interrupt_and_resume(command, tmp_path, monkeypatch, diffusion_training, "dsm_loss", 27)
    assert split["step"] == 40
    assert_same_tensors(whole["model"], split["model"], "model")
    assert_same_tensors(whole["ema"]["model"], split["ema"]["model"], "ema")
    moments = zip(whole["optimizer"]["state"].values(), split["optimizer"]["state"].values(), strict=True)
    assert all(torch.equal(a["exp_avg_sq"], b["exp_avg_sq"]) for a, b in moments)


def test_resume_refuses_other_settings_and_a_fresh_run_refuses_an_old_checkpoint(moons_run):
    base = ["diffusion", "train", "--data", "moons", "--steps", "30", "--figure-samples", "0", *FAST]
    before = (moons_run / CHECKPOINT_NAME).read_bytes()
    result = invoke(*base, "--lr", "1e-3", "--resume", "--out", moons_run)
    assert result.exit_code == 2 and "another config" in one_error_line(result), result.output
    result = invoke(*base, "--out", moons_run)
    line = one_error_line(result)
    assert result.exit_code == 2 and "--resume" in line and "--overwrite" in line, result.output
    assert (moons_run / CHECKPOINT_NAME).read_bytes() == before


def test_overwrite_starts_afresh_and_only_after_the_data_are_read(tmp_path):
    out = tmp_path / "run"
    base = ["diffusion", "train", "--data", "moons", *FAST, "--out", out]
    result = invoke(*base, "--steps", "4", "--figure-samples", "10", "--checkpoint-every", "4")
    assert result.exit_code == 0 and (out / "samples_step0000004.png").exists(), result.output
    before = (out / CHECKPOINT_NAME).read_bytes()
    # Bad data: refused before anything of the old run is removed.
    result = invoke("diffusion", "train", "--data", tmp_path / "absent.csv", *FAST, "--out", out,
                    "--steps", "3", "--overwrite")
    assert result.exit_code == 2 and "does not exist" in one_error_line(result), result.output
    assert (out / CHECKPOINT_NAME).read_bytes() == before and (out / "samples_step0000004.png").exists()
    result = invoke(*base, "--steps", "3", "--figure-samples", "0", "--overwrite")
    assert result.exit_code == 0, result.output
    assert {path.name for path in out.iterdir()} == TRAIN_FILES
    payload = torch.load(out / CHECKPOINT_NAME, weights_only=True)
    assert payload["step"] == 3
    data = json.loads((out / "result.json").read_text())
    assert data["steps"] == 3 and data["history"]["resumed_from"] is None and data["settings"]["overwrite"]


def bad_files(folder: Path) -> dict[str, Path]:
    nan = np.random.default_rng(1).normal(size=(20, 2))
    nan[7, 1] = np.nan
    np.save(folder / "cube.npy", np.zeros((10, 2, 2)))
    return {
        "nan": write_csv(folder / "nan.csv", nan),
        "cube": folder / "cube.npy",
        "one_row": write_csv(folder / "one.csv", np.ones((1, 2))),
        "three_columns": write_csv(folder / "wide.csv", np.ones((30, 3))),
    }


TRAIN_BAD = {
    "csv with NaN": (["--data", "{nan}"], "NaN"),
    "3-D .npy": (["--data", "{cube}"], "must be 2-D"),
    "one row": (["--data", "{one_row}"], "at least 2"),
    "missing file": (["--data", "{folder}/absent.csv"], "does not exist"),
    "unknown data name": (["--data", "spirals"], "unknown data"),
    "negative steps": (["--data", "moons", "--steps", "-5"], "--steps"),
    "unknown sde": (["--data", "moons", "--sde", "vpp"], "--sde"),
    "schedule of ve": (["--data", "moons", "--sde", "ve", "--schedule", "cosine"], "--schedule"),
    "zero lr": (["--data", "moons", "--lr", "0"], "--lr"),
    "resume without a run": (["--data", "moons", "--resume"], "does not exist"),
    "resume and overwrite": (["--data", "moons", "--resume", "--overwrite"], "--overwrite"),
    "bad device": (["--data", "moons", "--device", "tpu"], "--device"),
}


@pytest.mark.parametrize("case", list(TRAIN_BAD))
def test_train_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, case):
    names = {**{key: str(value) for key, value in bad_files(tmp_path).items()}, "folder": str(tmp_path)}
    args, expected = TRAIN_BAD[case]
    out = tmp_path / "out"
    steps = [] if "--steps" in args else ["--steps", "3"]
    result = invoke("diffusion", "train", *[arg.format(**names) for arg in args], *steps, *FAST, "--out", out)
    assert result.exit_code == 2, result.output
    line = one_error_line(result)
    assert line.startswith("error: ") and expected in line, result.stderr
    assert result.stdout == "" and not out.exists()


def ebm_kind_checkpoint(folder: Path) -> Path:
    """A well-formed checkpoint of another model kind, as the shared loop writes it."""
    return save_checkpoint(folder / "ebm.pt", {"kind": "ebm", "step": 3, "config": {}, "model": {}})


SAMPLE_BAD = {
    "missing checkpoint": (["--ckpt", "{folder}/nowhere"], "does not exist"),
    "truncated checkpoint": (["--ckpt", "{truncated}"], "truncated or corrupt"),
    "checkpoint of another model": (["--ckpt", "{ebm}"], "not a 'diffusion' model"),
    "unknown sampler": (["--ckpt", "{run}", "--sampler", "euler"], "unknown sampler"),
    "steps of the adaptive solver": (["--ckpt", "{run}", "--sampler", "ode-adaptive", "--steps", "5"],
                                     "--steps"),
    "tolerance of a fixed-step sampler": (["--ckpt", "{run}", "--tolerance", "1e-3"], "--tolerance"),
    "zero samples": (["--ckpt", "{run}", "--n", "0"], "--n"),
    "negative steps": (["--ckpt", "{run}", "--steps", "-1"], "--steps"),
}


@pytest.mark.parametrize("case", list(SAMPLE_BAD))
def test_sample_bad_input_exits_2_with_one_line_and_writes_nothing(moons_run, tmp_path, case):
    truncated = tmp_path / "truncated.pt"
    whole = (moons_run / CHECKPOINT_NAME).read_bytes()
    truncated.write_bytes(whole[: len(whole) // 2])
    names = {"folder": str(tmp_path), "truncated": str(truncated), "run": str(moons_run),
             "ebm": str(ebm_kind_checkpoint(tmp_path))}
    args, expected = SAMPLE_BAD[case]
    out = tmp_path / "out"
    result = invoke("diffusion", "sample", *[arg.format(**names) for arg in args], "--no-progress",
                    "--out", out)
    assert result.exit_code == 2, result.output
    line = one_error_line(result)
    assert line.startswith("error: ") and expected in line, result.stderr
    assert result.stdout == "" and not out.exists()


def test_nll_refuses_data_of_another_dimension(moons_run, tmp_path):
    files = bad_files(tmp_path)
    out = tmp_path / "out"
    result = invoke("diffusion", "nll", "--ckpt", moons_run, "--data", files["three_columns"], "--out", out)
    assert result.exit_code == 2 and "shape (3,)" in one_error_line(result), result.output
    assert not out.exists()


def test_help_lists_the_commands_and_units():
    result = invoke("diffusion", "--help")
    assert result.exit_code == 0 and all(name in result.stdout for name in ("train", "sample", "nll"))
    result = invoke("diffusion", "nll", "--help")
    assert result.exit_code == 0 and "NLL_data" in result.stdout and "--tolerance" in result.stdout
    assert set(diffusion_cli.SAMPLERS) == {"sde", "ode", "ode-adaptive", "pc", "als"}


def test_digits_round_trip_keeps_images_and_pixels(tmp_path):
    run = tmp_path / "digits"
    result = invoke("diffusion", "train", "--data", "digits", "--steps", "2", "--batch-size", "8",
                    "--figure-samples", "0", "--no-progress", "--out", run)
    assert result.exit_code == 0, result.output
    assert json.loads((run / "result.json").read_text())["standardized"] is False
    out = tmp_path / "samples"
    result = invoke("diffusion", "sample", "--ckpt", run, "--sampler", "ode", "--steps", "2", "--n", "6",
                    "--no-progress", "--out", out)
    assert result.exit_code == 0, result.output
    assert_digit_samples(out, 6)


# ----------------------------------------------------------------------------- measureflow ebm


@pytest.fixture(scope="module")
def ebm_run(tmp_path_factory) -> Path:
    """30 maximum-likelihood steps on 8gaussians, one checkpoint (with its landscape) at the end."""
    out = tmp_path_factory.mktemp("ebm") / "run"
    result = invoke("ebm", "train", "--data", "8gaussians", "--steps", "30", "--checkpoint-every", "30",
                    "--batch-size", "64", "--buffer-size", "256", "--n-data", "1000", "--no-progress",
                    "--out", out)
    assert result.exit_code == 0, result.output
    return out


def test_ebm_train_then_sample_in_the_data_units(ebm_run, tmp_path):
    assert {path.name for path in ebm_run.iterdir()} == TRAIN_FILES | {"landscape_step0000030.png"}
    data = json.loads((ebm_run / "result.json").read_text())
    assert data["command"] == "ebm train" and data["steps"] == 30 and math.isfinite(data["final_loss"])
    out = tmp_path / "samples"
    # --burn-in 10 adapting steps, then --steps 10: the library's n_steps = 20 with burn_in 10.
    result = invoke("ebm", "sample", "--ckpt", ebm_run, "--n-samples", "100", "--burn-in", "10",
                    "--steps", "10", "--seed", "4", "--no-progress", "--out", out)
    assert result.exit_code == 0, result.output
    assert {path.name for path in out.iterdir()} == {"samples.npz", "samples.png", "landscape.png",
                                                      "result.json"}
    with np.load(out / "samples.npz") as stored:
        samples = torch.from_numpy(stored["samples"])
    # Exact: the library's MALA chains (same seed) mapped back through the stored standardizer.
    trained = TrainedModel.load(ebm_run)
    standardizer = trained.standardizer
    z = sample_ebm(trained.network, 100, n_steps=20, step_size=0.01, generator=make_generator(4))
    torch.testing.assert_close(samples, standardizer.inverse(z))


def test_a_checkpoint_of_the_other_kind_is_refused(ebm_run, moons_run, tmp_path):
    out = tmp_path / "out"
    result = invoke("diffusion", "sample", "--ckpt", ebm_run, "--no-progress", "--out", out)
    assert result.exit_code == 2 and "not a 'diffusion' model" in one_error_line(result), result.output
    result = invoke("ebm", "sample", "--ckpt", moons_run / CHECKPOINT_NAME, "--no-progress", "--out", out)
    assert result.exit_code == 2 and "not a 'ebm' model" in one_error_line(result), result.output
    assert not out.exists()


def test_ebm_overwrite_replaces_the_run_and_its_landscapes(tmp_path):
    out = tmp_path / "run"
    base = ["ebm", "train", "--data", "8gaussians", "--batch-size", "64", "--buffer-size", "64", "--n-data",
            "500", "--no-progress", "--out", out]
    result = invoke(*base, "--steps", "4", "--checkpoint-every", "4")
    assert result.exit_code == 0 and (out / "landscape_step0000004.png").exists(), result.output
    result = invoke(*base, "--steps", "3")
    line = one_error_line(result)
    assert result.exit_code == 2 and "--resume" in line and "--overwrite" in line, result.output
    result = invoke(*base, "--steps", "3", "--checkpoint-every", "3", "--overwrite")
    assert result.exit_code == 0, result.output
    assert {path.name for path in out.iterdir()} == TRAIN_FILES | {"landscape_step0000003.png"}
    assert torch.load(out / CHECKPOINT_NAME, weights_only=True)["step"] == 3
    data = json.loads((out / "result.json").read_text())
    assert data["steps"] == 3 and data["history"]["resumed_from"] is None
    assert data["figures"] == ["loss.png", "landscape_step0000003.png"]


EBM_BAD = {
    "digits": (["--data", "digits"], "vector data"),
    "negative steps": (["--data", "moons", "--steps", "-3"], "--steps"),
    "nan alpha": (["--data", "moons", "--alpha", "nan"], "--alpha"),
    "unknown data": (["--data", "spirals"], "unknown data"),
    "resume and overwrite": (["--data", "moons", "--resume", "--overwrite"], "--overwrite"),
}


@pytest.mark.parametrize("case", list(EBM_BAD))
def test_ebm_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, case):
    args, expected = EBM_BAD[case]
    out = tmp_path / "out"
    result = invoke("ebm", "train", *args, "--no-progress", "--out", out)
    assert result.exit_code == 2, result.output
    line = one_error_line(result)
    assert line.startswith("error: ") and expected in line, result.stderr
    assert result.stdout == "" and not out.exists()
