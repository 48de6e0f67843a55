"""``measureflow nets train`` in process (typer's CliRunner): the files of a run and what they hold
(checked against the library on the same data and weights), the mean-field learning-rate
convention, files with 0/1 labels, exact resume (after Ctrl-C, and of a finished run trained
further), --overwrite, bad input, and the figure's panels.

Everything is tiny (width 32, 20 steps, 40 points), so the tests check plumbing and exact
agreements, never how well a network learns.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import assert_same_tensors, interrupt_and_resume, invoke, one_error_line, write_csv

from measureflow._core import make_generator
from measureflow.cli.nets import OPTIMIZER_CHOICES, NetsTrainSettings
from measureflow.data import load_supervised, supervised_dataset, train_test_split
from measureflow.generative.train import CHECKPOINT_NAME, save_checkpoint
from measureflow.nets import LOSSES, OPTIMIZERS, NetTrainTask, TwoLayer
from measureflow.report.nets import nets_figure

FAST = ["--width", "32", "--steps", "20", "--n", "40", "--record-every", "5", "--no-progress"]
RUN_FILES = {"checkpoint.pt", "history.json", "loss.png", "nets.png", "result.json"}


def read_run(folder: Path) -> tuple[dict, dict]:
    assert {path.name for path in folder.iterdir()} == RUN_FILES
    assert (folder / "nets.png").read_bytes()[:4] == b"\x89PNG"
    payload = torch.load(folder / CHECKPOINT_NAME, weights_only=True)
    return json.loads((folder / "result.json").read_text()), payload


def trained_model(payload: dict) -> TwoLayer:
    model = TwoLayer.from_config(payload["config"]["model"], generator=torch.Generator())
    model.load_state_dict(payload["model"])
    return model


@pytest.fixture(scope="module")
def sine_run(tmp_path_factory) -> tuple[Path, str]:
    """The default command, only smaller: sine, ntk, relu, mse, sgd at lr 1, full batch."""
    out = tmp_path_factory.mktemp("sine") / "run"
    result = invoke("nets", "train", *FAST, "--out", out)
    assert result.exit_code == 0, result.output
    return out, result.stdout


def test_a_default_run_writes_its_files(sine_run):
    out, stdout = sine_run
    data, payload = read_run(out)
    settings = data["settings"]
    assert data["command"] == "nets train" and "nets train: sine" in stdout
    assert (settings["data"], settings["scaling"], settings["activation"], settings["loss"],
            settings["optimizer"], settings["lr"]) == ("sine", "ntk", "relu", "mse", "sgd", 1.0)
    assert settings["batch_size"] is None and settings["test_fraction"] == 0.25 and settings["seed"] == 0
    assert data["data"]["n"] == 40 and data["data"]["n_train"] == 30 and data["data"]["n_test"] == 10
    assert data["data"]["task"] == "regression" and data["data"]["dim"] == 2
    assert data["steps"] == 20 and data["optimizer_lr"] == 1.0 and data["model"]["width"] == 32
    assert data["trace"]["steps"] == [0, 5, 10, 15, 20]
    for key in ("train_loss", "test_loss", "movement", "ntk_drift"):
        assert data[f"final_{key}"] == data["trace"][key][-1] and math.isfinite(data[f"final_{key}"])
    assert data["final_train_loss"] < data["initial_train_loss"] and data["final_movement"] > 0
    assert data["figures"] == ["nets.png", "loss.png"] and data["history"]["resumed_from"] is None
    assert data["wall_time_s"] > 0
    assert payload["kind"] == "two-layer" and payload["step"] == 20 and payload["config"]["lr"] == 1.0
    # The recorded risks are those of the checkpoint's weights on the data the seed draws: the
    # command draws data, split and initialization from one generator seeded with --seed.
    generator = make_generator(0)
    train, test = train_test_split(supervised_dataset("sine", 40, generator), 0.25, generator)
    model = trained_model(payload)
    with torch.no_grad():
        train_risk = float(LOSSES["mse"].value(model(train.x), train.y).mean())
        test_risk = float(LOSSES["mse"].value(model(test.x), test.y).mean())
    assert train_risk == pytest.approx(data["final_train_loss"], rel=1e-6)
    assert test_risk == pytest.approx(data["final_test_loss"], rel=1e-6)
    initial = TwoLayer(2, 32, generator=generator)  # the generator's next draw is the initialization
    assert torch.equal(initial.w, payload["initial"][1]) and torch.equal(initial.a, payload["initial"][0])


def test_every_option_name_of_the_library_is_offered():
    assert set(OPTIMIZER_CHOICES) == set(OPTIMIZERS)


def settings(**given) -> NetsTrainSettings:
    defaults = {"scaling": "ntk", "width": 32, "data": None, "n": None, "noise": None, "activation": "relu",
                "loss": "mse", "optimizer": "sgd", "lr": None, "steps": 10, "batch_size": None,
                "regularization": 0.0, "beta": None, "test_fraction": 0.25, "record_every": 10,
                "checkpoint_every": None,
                "seed": 0, "out": None, "resume": False, "overwrite": False, "device": "cpu",
                "progress": False}
    return NetsTrainSettings(**{**defaults, **given})


@pytest.mark.parametrize(("scaling", "optimizer", "lr", "expected"), [
    ("mean-field", "sgd", 0.5, 16.0), ("mean-field", "averaged-sgd", None, 8.0),
    ("mean-field", "momentum", None, 0.8), ("mean-field", "nesterov", 0.1, 3.2),
    ("mean-field", "adam", 0.01, 0.01), ("mean-field", "adagrad", None, 0.1),
    ("mean-field", "rmsprop", None, 1e-3), ("ntk", "sgd", None, 1.0), ("ntk", "sgd", 0.3, 0.3),
    ("ntk", "momentum", None, 0.1), ("ntk", "adam", None, 0.01),
])
def test_learning_rate_convention(scaling, optimizer, lr, expected):
    # Mean field: gradient methods get lr = h M (M = 32), adaptive ones --lr as is.
    assert settings(scaling=scaling, optimizer=optimizer, lr=lr).optimizer_lr == pytest.approx(expected)


def test_default_data_follow_the_loss():
    assert settings().data_name == "sine"
    assert settings(loss="logistic").data_name == settings(loss="exp").data_name == "moons"
    assert settings(data="circle").folder == Path("runs/nets/circle-ntk")


def test_a_mean_field_run_trains_at_h_times_the_width(tmp_path):
    out = tmp_path / "run"
    result = invoke("nets", "train", "--scaling", "mean-field", "--lr", "0.5", "--loss", "logistic", *FAST,
                    "--steps", "5", "--out", out)
    assert result.exit_code == 0, result.output
    data, payload = read_run(out)
    assert data["settings"]["data"] == "moons" and data["data"]["task"] == "classification"
    assert data["optimizer_lr"] == 16.0 and payload["config"]["lr"] == 16.0 and data["settings"]["lr"] == 0.5
    assert payload["config"]["model"]["scaling"] == "mean-field" and payload["config"]["loss"] == "logistic"


def test_a_file_with_zero_one_labels_trains_a_classifier(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 2))
    path = write_csv(tmp_path / "labels.csv", np.c_[x, (x[:, 0] > 0).astype(float)])
    out = tmp_path / "file"
    result = invoke("nets", "train", "--data", path, "--loss", "exp", "--batch-size", "8", *FAST,
                    "--out", out)
    assert result.exit_code == 0, result.output
    data, payload = read_run(out)
    assert data["data"]["task"] == "classification" and data["data"]["n"] == 40
    assert data["data"]["noise"] is None
    assert data["settings"]["batch_size"] == 8 and payload["loop"]["batch_size"] == 8
    generator = make_generator(0)
    train, _ = train_test_split(load_supervised(path, "classification", n=40, generator=generator), 0.25,
                                generator)
    assert set(train.y.tolist()) == {-1.0, 1.0}
    with torch.no_grad():
        risk = float(LOSSES["exp"].value(trained_model(payload)(train.x), train.y).mean())
    assert risk == pytest.approx(data["final_train_loss"], rel=1e-6)


def test_interrupted_training_resumes_exactly(tmp_path, monkeypatch, python_sigint):
    command = ["nets", "train", "--data", "xor", "--batch-size", "8", "--optimizer", "averaged-sgd",
               "--regularization", "0.01", *FAST]
    # Ctrl-C during step 13 (one NetTrainTask.step call per step): the step finishes, is saved,
    # and --resume continues with the same minibatches, optimizer state and running average.
    whole, split = interrupt_and_resume(command, tmp_path, monkeypatch, NetTrainTask, "step", 13)
    assert split["step"] == 20
    assert_same_tensors(whole["model"], split["model"], "model")
    assert_same_tensors(whole["averaged"], split["averaged"], "averaged model")
    assert whole["trace"] == split["trace"]


def test_a_finished_run_trains_further_as_one_longer_run(sine_run, tmp_path):
    long = tmp_path / "long"
    assert invoke("nets", "train", *FAST, "--steps", "40", "--out", long).exit_code == 0
    short = Path(shutil.copytree(sine_run[0], tmp_path / "short"))
    result = invoke("nets", "train", *FAST, "--steps", "40", "--resume", "--out", short)
    assert result.exit_code == 0 and "resumed from 20" in result.stdout, result.output
    (long_data, long_payload), (short_data, short_payload) = read_run(long), read_run(short)
    assert_same_tensors(long_payload["model"], short_payload["model"], "model")
    assert long_data["trace"] == short_data["trace"] and short_data["history"]["resumed_from"] == 20


def test_resume_of_a_finished_run_changes_nothing(sine_run):
    out, _ = sine_run
    before = (out / CHECKPOINT_NAME).read_bytes()
    data = json.loads((out / "result.json").read_text())
    result = invoke("nets", "train", *FAST, "--resume", "--out", out)
    assert result.exit_code == 0 and "resumed from 20" in result.stdout, result.output
    assert (out / CHECKPOINT_NAME).read_bytes() == before
    again = json.loads((out / "result.json").read_text())
    assert again["trace"] == data["trace"] and again["final_train_loss"] == data["final_train_loss"]


def test_overwrite_starts_afresh(sine_run, tmp_path):
    out = Path(shutil.copytree(sine_run[0], tmp_path / "run"))
    result = invoke("nets", "train", *FAST, "--steps", "10", "--lr", "0.5", "--overwrite", "--out", out)
    assert result.exit_code == 0, result.output
    data, payload = read_run(out)
    assert payload["step"] == 10 and data["steps"] == 10 and data["history"]["resumed_from"] is None
    assert data["trace"]["steps"] == [0, 5, 10] and payload["config"]["lr"] == 0.5


def bad_files(folder: Path) -> dict[str, str]:
    x = np.random.default_rng(1).normal(size=(40, 2))  # FAST asks for --n 40 rows
    nan = np.c_[x, np.ones(40)]
    nan[7, 1] = np.nan
    (folder / "ragged.csv").write_text("a,b,y\n1,2,3\n4,5\n")
    return {
        "nan": str(write_csv(folder / "nan.csv", nan)),
        "ragged": str(folder / "ragged.csv"),
        "column": str(write_csv(folder / "column.csv", x[:, :1])),
        "three": str(write_csv(folder / "three.csv", np.c_[x, np.arange(40) % 3])),
        "folder": str(folder),
    }


BAD = {
    "unknown scaling": (["--scaling", "lazy"], "--scaling must be one of ntk, mean-field"),
    "zero width": (["--width", "0"], "--width"),
    "negative width": (["--width", "-3"], "--width"),
    "absurd width": (["--width", "2000000000"], "more than this machine's"),
    "absurd n": (["--n", "2000000000"], "more than this machine's"),
    "zero lr": (["--lr", "0"], "--lr"),
    "negative lr": (["--lr", "-1"], "--lr"),
    "nan lr": (["--lr", "nan"], "--lr"),
    "zero steps": (["--steps", "0"], "--steps"),
    "zero batch size": (["--batch-size", "0"], "--batch-size"),
    "negative regularization": (["--regularization", "-1"], "--regularization"),
    "beta without langevin": (["--beta", "2"], "--beta applies to --optimizer langevin"),
    "langevin without beta": (["--optimizer", "langevin"], "needs --beta"),
    "zero beta": (["--optimizer", "langevin", "--beta", "0"], "--beta"),
    "test fraction 1": (["--test-fraction", "1"], "--test-fraction"),
    "negative test fraction": (["--test-fraction", "-0.1"], "--test-fraction"),
    "test fraction without test rows": (["--test-fraction", "0.01"], "--test-fraction"),
    "unknown activation": (["--activation", "softsign"], "--activation"),
    "unknown loss": (["--loss", "hinge"], "--loss"),
    "unknown optimizer": (["--optimizer", "lbfgs"], "--optimizer"),
    "zero record interval": (["--record-every", "0"], "--record-every"),
    "zero checkpoint interval": (["--checkpoint-every", "0"], "--checkpoint-every"),
    "negative seed": (["--seed", "-1"], "--seed"),
    "one point": (["--n", "1"], "--n"),
    "negative noise": (["--noise", "-0.1"], "--noise"),
    "unknown data name": (["--data", "spirals"], "unknown --data 'spirals'"),
    "logistic on a regression set": (["--data", "sine", "--loss", "logistic"], "regression set"),
    "missing file": (["--data", "{folder}/absent.csv"], "does not exist"),
    "ragged file": (["--data", "{ragged}"], "line 3 has 2 values"),
    "NaN in the data": (["--data", "{nan}"], "NaN"),
    "no label column": (["--data", "{column}"], "needs the inputs x"),
    "labels not +-1 for logistic": (["--data", "{three}", "--loss", "logistic"], "-1/+1 or 0/1"),
    "noise for a file": (["--data", "{nan}", "--noise", "0.1"], "--noise applies"),
    "resume and overwrite": (["--resume", "--overwrite"], "--overwrite"),
    "resume without a checkpoint": (["--resume"], "does not exist"),
    "bad device": (["--device", "tpu"], "--device"),
}
if not torch.cuda.is_available():
    BAD["cuda without CUDA"] = (["--device", "cuda"], "CUDA is not available")


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, case):
    args, expected = BAD[case]
    out = tmp_path / "out"
    given = [arg.format(**bad_files(tmp_path)) for arg in args]
    result = invoke("nets", "train", *FAST, *given, "--out", out)  # the last of a repeated flag wins
    assert result.exit_code == 2, result.output
    line = one_error_line(result)
    assert line.startswith("error: ") and expected in line, result.stderr
    assert result.stdout == "" and not out.exists()


@pytest.mark.parametrize(("args", "expected"), [([], "--resume to continue"),
                                                (["--resume", "--lr", "0.5"], "another config"),
                                                (["--resume", "--n", "60"], "other data")])
def test_a_folder_with_a_run_is_left_alone(sine_run, args, expected):
    out, _ = sine_run
    before = {path.name: path.read_bytes() for path in out.iterdir()}
    result = invoke("nets", "train", *FAST, *args, "--out", out)
    assert result.exit_code == 2, result.output
    assert expected in one_error_line(result), result.stderr
    assert {path.name: path.read_bytes() for path in out.iterdir()} == before


def test_resume_refuses_a_checkpoint_of_another_kind(tmp_path):
    out = tmp_path / "gan"
    save_checkpoint(out / CHECKPOINT_NAME, {"kind": "gan", "step": 3, "config": {}, "model": {}})
    result = invoke("nets", "train", *FAST, "--resume", "--out", out)
    assert result.exit_code == 2 and "gan" in one_error_line(result), result.output
    assert {path.name for path in out.iterdir()} == {CHECKPOINT_NAME}


def test_help_names_the_options_and_the_learning_rate_convention():
    result = invoke("nets", "train", "--help")
    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.split())
    assert all(flag in text for flag in ("--scaling", "--width", "--data", "--seed", "--out", "--device",
                                         "--resume", "--overwrite"))
    assert "lr = h * width" in text
    assert "train" in invoke("nets", "--help").stdout


@pytest.mark.parametrize(("name", "dim", "title"), [("circle", 2, "fit: f against t"),
                                                    ("moons", 2, "sign f"),
                                                    ("regression file", 2, "fit: f over the inputs"),
                                                    ("wide file", 4, "outputs against labels")])
def test_the_figure_draws_the_fit_the_data_allow(tmp_path, name, dim, title):
    generator = torch.Generator().manual_seed(0)
    if name in ("circle", "moons"):
        data = supervised_dataset(name, 30, generator)
    else:
        values = np.random.default_rng(0).normal(size=(30, dim + 1))
        np.save(tmp_path / "data.npy", values)
        data = load_supervised(tmp_path / "data.npy")
    train, test = train_test_split(data, 0.2, generator)
    trace = {"steps": [0, 10, 20], "train_loss": [1.0, 0.5, 0.2], "test_loss": [1.1, 0.6, 0.3],
             "movement": [0.0, 0.1, 0.2], "ntk_drift": [0.0, 0.01, float("nan")]}
    figure = nets_figure(trace, TwoLayer(data.dim, 16, generator=generator), train, test, title=name)
    fit_axes = figure.axes[2]
    assert title in fit_axes.get_title() and figure.axes[0].get_yscale() == "log"
    with pytest.raises(ValueError, match="1-D of one length"):
        nets_figure({**trace, "movement": [0.0]}, TwoLayer(data.dim, 4), train)


def test_a_langevin_run_records_beta_and_its_noise_moves_the_weights(tmp_path):
    out = tmp_path / "langevin"
    result = invoke("nets", "train", *FAST, "--optimizer", "langevin", "--beta", "1e4", "--out", out)
    assert result.exit_code == 0, result.output
    data, payload = read_run(out)
    assert data["settings"]["beta"] == 1e4 and payload["config"]["beta"] == 1e4
    quiet = tmp_path / "sgd"
    assert invoke("nets", "train", *FAST, "--out", quiet).exit_code == 0
    # Same seed, data and initialization: the only difference is the Langevin noise.
    assert data["trace"]["movement"][-1] != read_run(quiet)[0]["trace"]["movement"][-1]
