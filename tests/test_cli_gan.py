"""``measureflow gan``: train -> sample round trips in process (typer's CliRunner), the data's own
units, the mode diagnostics, resume (a finished run, and exactly after Ctrl-C), and bad input.

Everything is tiny (tens of steps, small batches): the generators are crude, so the tests check
the plumbing (files, shapes, units, determinism, errors) and compare with the library where an
exact answer exists, never with the data law.
"""

from __future__ import annotations

import json
import math
import shutil
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

import measureflow.generative.gan.training as gan_training
from measureflow._core import make_generator
from measureflow.data import MODE_STD, Standardizer, load_dataset, toy_mixture
from measureflow.generative import TrainedModel
from measureflow.generative.gan import LOSS_NAMES, mode_diagnostics
from measureflow.generative.train import CHECKPOINT_NAME, load_checkpoint, save_checkpoint

FAST = ["--batch-size", "32", "--n-data", "1000", "--no-progress"]
TRAIN_FILES = {"checkpoint.pt", "history.json", "loss.png", "result.json"}


def other_kind_checkpoint(path: Path) -> Path:
    """A well-formed checkpoint of another model kind, as the shared loop writes it."""
    return save_checkpoint(path, {"kind": "diffusion", "step": 3, "config": {}, "model": {}})


RING = ["gan", "train", "--data", "8gaussians", "--loss", "js", "--steps", "20", "--checkpoint-every", "20",
        "--figure-samples", "200", *FAST]


@pytest.fixture(scope="module")
def ring_run(tmp_path_factory) -> tuple[Path, str]:
    """20 js steps on 8gaussians, one checkpoint (with its sample figure) at the end; the folder
    and the printed output."""
    out = tmp_path_factory.mktemp("ring") / "run"
    result = invoke(*RING, "--out", out)
    assert result.exit_code == 0, result.output
    return out, result.stdout


@pytest.fixture(scope="module")
def shifted(tmp_path_factory) -> tuple[np.ndarray, Path]:
    """600 points far from the origin with unequal scales (a .csv) and a 20-step run on them."""
    folder = tmp_path_factory.mktemp("shifted")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 2)) * np.array([1.0, 5.0]) + np.array([100.0, -50.0])
    path = write_csv(folder / "shifted.csv", x)
    out = folder / "run"
    result = invoke("gan", "train", "--data", path, "--loss", "ns", "--steps", "20", "--figure-samples", "0",
                    "--batch-size", "32", "--no-progress", "--out", out)
    assert result.exit_code == 0, result.output
    return x, out


def test_train_writes_the_run_and_the_mode_diagnostics(ring_run):
    run, stdout = ring_run
    assert {path.name for path in run.iterdir()} == TRAIN_FILES | {"samples_step0000020.png"}
    assert (run / "samples_step0000020.png").read_bytes()[:4] == b"\x89PNG"
    data = json.loads((run / "result.json").read_text())
    assert data["command"] == "gan train" and data["steps"] == 20 and data["standardized"]
    assert math.isfinite(data["final_generator_loss"]) and math.isfinite(data["final_critic_loss"])
    assert data["figures"] == ["loss.png", "samples_step0000020.png"]
    # The resolved defaults of js are recorded as trained.
    assert data["config"]["loss"] == "js" and data["config"]["generator_lr"] == 2e-4
    assert data["config"]["n_critic"] == 1
    payload = torch.load(run / CHECKPOINT_NAME, weights_only=True)
    assert payload["kind"] == "gan" and payload["step"] == 20
    config = payload["config"]
    assert config["data"]["spec"] == "8gaussians" and config["seed"] == 0
    standardizer = Standardizer.from_dict(config["standardizer"])
    points = load_dataset("8gaussians", n=1000, generator=make_generator(0)).x
    # The stored map is the training data's own (fitted on the same 1000 draws of seed 0).
    torch.testing.assert_close(standardizer.mean, points.double().mean(0))
    # Mode diagnostics: the library's on 2500 EMA samples (latent draws seeded by --seed) mapped
    # back to the data's units, where the ring's centres live.
    samples = TrainedModel.load(run).sample(2500, generator=make_generator(0))
    expected = mode_diagnostics(samples, toy_mixture("8gaussians").means, MODE_STD)
    modes = data["modes"]
    assert modes["n_modes"] == 8 and modes["n_samples"] == 2500
    assert modes["counts"] == expected.counts.tolist() and modes["n_covered"] == expected.n_covered
    assert modes["high_quality_fraction"] == expected.high_quality_fraction
    assert "modes covered" in stdout and f"{expected.n_covered} / 8" in stdout


def test_sample_writes_npz_figure_and_modes(ring_run, tmp_path):
    run, _ = ring_run
    out = tmp_path / "samples"
    result = invoke("gan", "sample", "--ckpt", run, "--n", "300", "--seed", "3", "--out", out)
    assert result.exit_code == 0, result.output
    assert {path.name for path in out.iterdir()} == {"samples.npz", "samples.png", "result.json"}
    with np.load(out / "samples.npz") as stored:
        samples = stored["samples"]
    assert samples.shape == (300, 2) and np.isfinite(samples).all()
    data = json.loads((out / "result.json").read_text())
    assert data["units"] == "data" and data["checkpoint"]["step"] == 20 and data["checkpoint"]["loss"] == "js"
    # The diagnostics describe the samples written, in the data's units.
    expected = mode_diagnostics(torch.from_numpy(samples), toy_mixture("8gaussians").means, MODE_STD)
    assert data["modes"]["n_samples"] == 300 and data["modes"]["counts"] == expected.counts.tolist()


def test_samples_are_in_the_data_units(shifted, tmp_path):
    x, run = shifted
    out = tmp_path / "samples"
    result = invoke("gan", "sample", "--ckpt", run / CHECKPOINT_NAME, "--n", "400", "--seed", "1",
                    "--out", out)
    assert result.exit_code == 0, result.output
    with np.load(out / "samples.npz") as stored:
        samples = torch.from_numpy(stored["samples"])
    assert samples.shape == (400, 2) and bool(torch.isfinite(samples).all())
    # Exact: the file holds the library's EMA samples (same latent draws) mapped back through the
    # checkpoint's standardizer.
    loaded = TrainedModel.load(run)
    standardizer = loaded.standardizer
    torch.testing.assert_close(samples, loaded.sample(400, generator=make_generator(1)))
    # On the units alone: the standardizer is the data's (means (100, -50), stds (1, 5)), so samples
    # left in standardized units would have a first coordinate of order one, not near 100.
    torch.testing.assert_close(standardizer.mean, torch.from_numpy(x.mean(0)))
    assert float(samples[:, 0].mean()) > 50.0


# One loss per code path of the command (f-GAN family, weight clipping, gradient penalty, no critic,
# feature critic); every loss of the library is trained in tests/test_gan.py.
CLI_LOSSES = ("kl", "wgan", "wgan-gp", "gmmn", "mmd-gan")


def test_the_cli_offers_every_loss_of_the_library():
    result = invoke("gan", "train", "--help")
    assert result.exit_code == 0 and all(name in result.stdout for name in LOSS_NAMES)
    assert set(CLI_LOSSES) <= set(LOSS_NAMES)


@pytest.mark.parametrize("loss", CLI_LOSSES)
def test_every_kind_of_loss_trains_through_the_cli(tmp_path, loss):
    out = tmp_path / "run"
    result = invoke("gan", "train", "--data", "moons", "--loss", loss, "--steps", "3",
                    "--figure-samples", "0", *FAST, "--out", out)
    assert result.exit_code == 0, result.output
    data = json.loads((out / "result.json").read_text())
    assert data["config"]["loss"] == loss and data["steps"] == 3 and data["modes"] is None
    assert math.isfinite(data["final_generator_loss"])
    assert (data["final_critic_loss"] is None) == (loss == "gmmn")


def test_stability_with_the_theoretical_learning_rate(tmp_path):
    out = tmp_path / "run"
    result = invoke("gan", "train", "--data", "moons", "--loss", "ns", "--stability", "1,2,3", "--g-lr",
                    "theory", "--d-lr", "1e-3", "--n-critic", "2", "--steps", "3", "--figure-samples", "0",
                    *FAST, "--out", out)
    assert result.exit_code == 0, result.output
    config = json.loads((out / "result.json").read_text())["config"]
    # gamma_0 = 1 / (7 alpha + beta2) = 1 / (7 + 3).
    assert config["generator_lr"] == pytest.approx(0.1, rel=1e-12)
    assert config["critic_lr"] == 1e-3 and config["n_critic"] == 2 and config["spectral_norm"]
    stability = config["stability"]
    assert (stability["alpha"], stability["beta1"], stability["beta2"]) == (1, 2, 3)


def test_resume_of_a_finished_run_changes_nothing(ring_run):
    run, _ = ring_run
    before = (run / CHECKPOINT_NAME).read_bytes()
    result = invoke(*RING, "--out", run, "--resume")
    assert result.exit_code == 0, result.output
    assert "resumed from 20" in result.stdout
    assert (run / CHECKPOINT_NAME).read_bytes() == before


def test_resume_refuses_other_settings_and_a_fresh_run_refuses_an_old_checkpoint(ring_run):
    run, _ = ring_run
    before = (run / CHECKPOINT_NAME).read_bytes()
    result = invoke(*RING, "--d-lr", "1e-3", "--resume", "--out", run)
    assert result.exit_code == 2 and "another config" in one_error_line(result), result.output
    result = invoke(*RING, "--out", run)
    line = one_error_line(result)
    assert result.exit_code == 2 and "--resume" in line and "--overwrite" in line, result.output
    assert (run / CHECKPOINT_NAME).read_bytes() == before


def test_resume_with_more_steps_trains_a_finished_run_further(ring_run, tmp_path):
    # GANs have no learning-rate schedule, so --steps is not part of the run's config.
    run = tmp_path / "longer"
    shutil.copytree(ring_run[0], run)
    result = invoke(*RING, "--steps", "40", "--resume", "--out", run)
    assert result.exit_code == 0 and "resumed from 20" in result.stdout, result.output
    assert load_checkpoint(run / CHECKPOINT_NAME)["step"] == 40


@pytest.mark.parametrize(("content", "expected"), [("diffusion", "not a 'gan' model"),
                                                   ("garbage", "truncated or corrupt")])
def test_resume_refuses_a_checkpoint_of_another_kind_or_a_corrupt_one(tmp_path, content, expected):
    run = tmp_path / "run"
    run.mkdir()
    if content == "diffusion":
        other_kind_checkpoint(run / CHECKPOINT_NAME)
    else:
        (run / CHECKPOINT_NAME).write_bytes(b"PK\x03\x04 not a whole checkpoint")
    before = (run / CHECKPOINT_NAME).read_bytes()
    result = invoke("gan", "train", "--data", "moons", "--loss", "js", "--steps", "3", *FAST, "--resume",
                    "--out", run)
    assert result.exit_code == 2 and expected in one_error_line(result), result.output
    assert (run / CHECKPOINT_NAME).read_bytes() == before
    assert {path.name for path in run.iterdir()} == {CHECKPOINT_NAME}


def test_overwrite_starts_afresh(tmp_path):
    out = tmp_path / "run"
    base = ["gan", "train", "--data", "moons", "--loss", "js", *FAST, "--out", out]
    result = invoke(*base, "--steps", "4", "--figure-samples", "10", "--checkpoint-every", "4")
    assert result.exit_code == 0 and (out / "samples_step0000004.png").exists(), result.output
    result = invoke(*base, "--steps", "3", "--figure-samples", "0", "--overwrite")
    assert result.exit_code == 0, result.output
    assert {path.name for path in out.iterdir()} == TRAIN_FILES
    assert torch.load(out / CHECKPOINT_NAME, weights_only=True)["step"] == 3


def test_interrupted_training_resumes_bitwise(tmp_path, monkeypatch, python_sigint):
    command = ["gan", "train", "--data", "moons", "--loss", "js", "--steps", "30", "--checkpoint-every", "10",
               "--figure-samples", "0", *FAST]
    # Ctrl-C during generator step 13 (one GANTask.step call per step), between two checkpoints.
    whole, split = interrupt_and_resume(command, tmp_path, monkeypatch, gan_training.GANTask, "step", 13)
    assert split["step"] == 30
    for part in ("model", "critic"):
        assert_same_tensors(whole[part], split[part], part)
    assert_same_tensors(whole["ema"]["model"], split["ema"]["model"], "ema")


def test_digits_round_trip_keeps_images_and_pixels(tmp_path):
    run = tmp_path / "digits"
    result = invoke("gan", "train", "--data", "digits", "--loss", "ns", "--steps", "2", "--batch-size", "8",
                    "--figure-samples", "0", "--no-progress", "--out", run)
    assert result.exit_code == 0, result.output
    data = json.loads((run / "result.json").read_text())
    assert data["standardized"] is False and data["config"]["event_shape"] == [1, 8, 8]
    out = tmp_path / "samples"
    result = invoke("gan", "sample", "--ckpt", run, "--n", "6", "--out", out)
    assert result.exit_code == 0, result.output
    assert_digit_samples(out, 6)


def bad_files(folder: Path) -> dict[str, str]:
    nan = np.random.default_rng(1).normal(size=(20, 2))
    nan[7, 1] = np.nan
    np.save(folder / "cube.npy", np.zeros((10, 2, 2)))
    return {
        "nan": str(write_csv(folder / "nan.csv", nan)),
        "cube": str(folder / "cube.npy"),
        "one_row": str(write_csv(folder / "one.csv", np.ones((1, 2)))),
        "folder": str(folder),
    }


TRAIN_BAD = {
    "unknown loss": (["--loss", "wgan-div"], "--loss"),
    "spectral norm with weight clipping": (["--loss", "wgan", "--spectral-norm"], "--spectral-norm"),
    "spectral norm without a critic": (["--loss", "gmmn", "--spectral-norm"], "--spectral-norm"),
    "negative stability entry": (["--stability", "1,-1,1"], "positive"),
    "zero stability entry": (["--stability", "0,1,1"], "positive"),
    "nan stability entry": (["--stability", "1,nan,1"], "positive"),
    "infinite stability entry": (["--stability", "1,1,inf"], "positive"),
    "two stability entries": (["--stability", "1,2"], "three numbers"),
    "stability not numbers": (["--stability", "a,b,c"], "three numbers"),
    "stability with gmmn": (["--loss", "gmmn", "--stability", "1,1,1"], "--stability"),
    "stability with mmd-gan": (["--loss", "mmd-gan", "--stability", "1,1,1"], "--stability"),
    "stability with wgan": (["--loss", "wgan", "--stability", "1,1,1"], "--stability"),
    "theory rate without stability": (["--g-lr", "theory"], "--stability"),
    "g-lr not a number": (["--g-lr", "fast"], "--g-lr"),
    "zero g-lr": (["--g-lr", "0"], "--g-lr"),
    "negative d-lr": (["--d-lr", "-1e-3"], "--d-lr"),
    "nan d-lr": (["--d-lr", "nan"], "--d-lr"),
    "d-lr without a critic": (["--loss", "gmmn", "--d-lr", "1e-3"], "--d-lr"),
    "zero n-critic": (["--n-critic", "0"], "--n-critic"),
    "zero steps": (["--steps", "0"], "--steps"),
    "negative steps": (["--steps", "-5"], "--steps"),
    "zero batch size": (["--batch-size", "0"], "--batch-size"),
    "resume and overwrite": (["--resume", "--overwrite"], "--overwrite"),
    "resume without a run": (["--resume"], "does not exist"),
    "csv with NaN": (["--data", "{nan}"], "NaN"),
    "3-D .npy": (["--data", "{cube}"], "must be 2-D"),
    "one row": (["--data", "{one_row}"], "at least 2"),
    "missing file": (["--data", "{folder}/absent.csv"], "does not exist"),
    "unknown data name": (["--data", "spirals"], "unknown data"),
    "bad device": (["--device", "tpu"], "--device"),
}


@pytest.mark.parametrize("case", list(TRAIN_BAD))
def test_train_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, case):
    names = bad_files(tmp_path)
    args, expected = TRAIN_BAD[case]
    defaults = {"--data": "moons", "--loss": "js", "--steps": "3", "--batch-size": "16"}
    given = [arg.format(**names) for arg in args]
    for flag, value in defaults.items():
        if flag not in given:
            given += [flag, value]
    out = tmp_path / "out"
    result = invoke("gan", "train", *given, "--no-progress", "--out", out)
    assert result.exit_code == 2, result.output
    line = one_error_line(result)
    assert line.startswith("error: ") and expected in line, result.stderr
    assert result.stdout == "" and not out.exists()


SAMPLE_BAD = {
    "missing checkpoint": (["--ckpt", "{folder}/nowhere"], "does not exist"),
    "truncated checkpoint": (["--ckpt", "{truncated}"], "truncated or corrupt"),
    "checkpoint of another model": (["--ckpt", "{other}"], "not a 'gan' model"),
    "zero samples": (["--ckpt", "{run}", "--n", "0"], "--n"),
    "negative seed": (["--ckpt", "{run}", "--seed", "-1"], "--seed"),
    "bad device": (["--ckpt", "{run}", "--device", "gpu"], "--device"),
}


@pytest.mark.parametrize("case", list(SAMPLE_BAD))
def test_sample_bad_input_exits_2_with_one_line_and_writes_nothing(ring_run, tmp_path, case):
    run, _ = ring_run
    truncated = tmp_path / "truncated.pt"
    whole = (run / CHECKPOINT_NAME).read_bytes()
    truncated.write_bytes(whole[: len(whole) // 2])
    names = {"folder": str(tmp_path), "truncated": str(truncated), "run": str(run),
             "other": str(other_kind_checkpoint(tmp_path / "diffusion.pt"))}
    args, expected = SAMPLE_BAD[case]
    out = tmp_path / "out"
    result = invoke("gan", "sample", *[arg.format(**names) for arg in args], "--out", out)
    assert result.exit_code == 2, result.output
    line = one_error_line(result)
    assert line.startswith("error: ") and expected in line, result.stderr
    assert result.stdout == "" and not out.exists()


def test_help_lists_the_commands():
    result = invoke("gan", "--help")
    assert result.exit_code == 0 and "train" in result.stdout and "sample" in result.stdout
    result = invoke("gan", "sample", "--help")
    assert result.exit_code == 0 and "data's own units" in result.stdout
