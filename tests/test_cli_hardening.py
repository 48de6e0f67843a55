"""The command line's one error boundary and its hardening (issue 17), in process and fast: exit
codes and one-line errors (usage errors, sizes beyond torch or the machine, refused allocations,
internal errors and --debug), the renamed options and their hidden old names, the run-folder rules
(--out '', another command's folder, --overwrite, temporary files of killed writes), altered
checkpoints, unreadable .npy files, and --format netcdf.

Nothing here trains or samples for long: every refusal happens before the work, and the few
successful runs are a handful of chains and steps.
"""

from __future__ import annotations

import inspect
import json
import os
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

import measureflow as mf
from measureflow._core import atomic_path, atomic_write_json, remove_stale_temporaries
from measureflow.cli import EXIT_INTERNAL, app, main
from measureflow.cli import diffusion as diffusion_cli
from measureflow.cli import flow_model as flow_model_cli
from measureflow.cli import sample as sample_cli
from measureflow.cli._common import check_out, merge_alias
from measureflow.data import load_array
from measureflow.generative.train import CHECKPOINT_NAME, EMA, TrainTask, load_checkpoint, train

runner = CliRunner()
HUGE = str(10**12)  # a size no machine holds
BEYOND_TORCH = "99999999999999999999999"  # > 2**63 - 1: torch cannot even unpack it
TINY_SAMPLE = ["--n-chains", "2", "--steps", "4", "--burn-in", "0", "--no-progress"]


def invoke(*args: object):
    return runner.invoke(app, [str(arg) for arg in args])


def one_line(result) -> str:
    """The one stderr line of a command, failing the test unless there is exactly one."""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


# --- the entry point and the boundary --------------------------------------------------------

def test_main_returns_the_exit_code_without_exiting(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("measureflow ")
    assert main(["sample", "--no-such-option"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("error: No such option") and "sample --help" in err[0]
    assert main(["sample", "--steps", "many"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "'--steps'" in err[0]


@pytest.mark.parametrize("args", [
    ["sample", "--seed", BEYOND_TORCH],
    ["sample", "--n-chains", BEYOND_TORCH],
    ["flow", "--steps", BEYOND_TORCH],
    ["diffusion", "train", "--data", "moons", "--batch-size", BEYOND_TORCH],
    ["nets", "train", "--width", BEYOND_TORCH],
])
def test_integers_beyond_torch_are_refused_by_flag(tmp_path, args):
    out = tmp_path / "out"
    result = invoke(*args, "--out", out)
    line = one_line(result)
    assert result.exit_code == 2 and line.startswith("error: ") and "at most" in line, line
    assert args[-2] in line and "Overflow" not in line
    assert not out.exists()


@pytest.mark.parametrize("args", [
    ["sample", "--n-chains", HUGE, "--steps", "1", "--burn-in", "0"],
    ["sample", "--steps", HUGE],
    ["flow", "--n-particles", HUGE],
    ["flow", "--functional", "aggregation", "--dim", HUGE],
    ["flow", "--steps", HUGE, "--record-every", "1"],
    ["nets", "train", "--width", HUGE],
    ["diffusion", "train", "--data", "moons", "--n-data", "100", "--batch-size", HUGE],
    ["ebm", "train", "--data", "moons", "--n-data", "100", "--buffer-size", HUGE],
    ["gan", "train", "--data", "moons", "--loss", "ns", "--n-data", "100", "--batch-size", HUGE],
    ["flow-model", "train", "--data", "moons", "--n-data", "100", "--batch-size", HUGE],
])
def test_absurd_sizes_are_refused_with_the_predicted_memory(tmp_path, args):
    out = tmp_path / "out"
    result = invoke(*args, "--no-progress", "--out", out)
    line = one_line(result)
    assert result.exit_code == 2 and line.startswith("error: ") and "GiB" in line, line
    assert not out.exists()


@pytest.mark.parametrize("raised", [
    MemoryError(),
    torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.50 GiB"),
    RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory: "
                 "you tried to allocate 4000000000000 bytes. Error code 12 (Cannot allocate memory)"),
    OverflowError("Python int too large to convert to C long"),
])
def test_allocation_failures_and_overflows_are_bad_input(tmp_path, monkeypatch, raised):
    def refuse(*args, **kwargs):
        raise raised

    monkeypatch.setattr(mf, "sample", refuse)
    result = invoke("sample", *TINY_SAMPLE, "--out", tmp_path / "out")
    line = one_line(result)
    assert result.exit_code == 2 and line.startswith("error: "), line
    if isinstance(raised, OverflowError):
        assert "too large" in line
    else:
        assert line.startswith("error: out of memory")
    if isinstance(raised, RuntimeError) and not isinstance(raised, torch.OutOfMemoryError):
        assert "3,725.3 GiB" in line  # 4e12 bytes / 2**30, read from torch's message


def test_an_internal_error_is_one_line_with_its_own_code_and_debug_shows_the_traceback(
        tmp_path, monkeypatch, capsys):
    def bug(*args, **kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(mf, "sample", bug)
    result = invoke("sample", *TINY_SAMPLE, "--out", tmp_path / "out")
    assert result.exit_code == EXIT_INTERNAL != 2
    assert one_line(result) == ("internal error: ZeroDivisionError: a bug (rerun with --debug for the "
                                "traceback; please report it)")
    result = invoke("--debug", "sample", *TINY_SAMPLE, "--out", tmp_path / "out")
    assert result.exit_code == EXIT_INTERNAL and "Traceback" in result.stderr
    assert "ZeroDivisionError: a bug" in result.stderr
    monkeypatch.setenv("MEASUREFLOW_DEBUG", "1")
    assert main(["sample", *TINY_SAMPLE, "--out", str(tmp_path / "out")]) == EXIT_INTERNAL
    assert "Traceback" in capsys.readouterr().err
    # --debug lasts one call: the next run in the same process prints one line again.
    monkeypatch.delenv("MEASUREFLOW_DEBUG")
    assert main(["sample", *TINY_SAMPLE, "--out", str(tmp_path / "out")]) == EXIT_INTERNAL
    assert len(capsys.readouterr().err.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_library_argument_names_are_shown_as_the_commands_options(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise ValueError("n_steps must be a positive integer; burn_in too large for n_chains")

    monkeypatch.setattr(mf, "sample", refuse)
    line = one_line(invoke("sample", *TINY_SAMPLE, "--out", tmp_path / "out"))
    assert line == "error: --steps must be a positive integer; --burn-in too large for --n-chains"


# --- one vocabulary ----------------------------------------------------------------------------

def test_merge_alias():
    assert merge_alias(None, None, "--n-chains", "--chains", 1000) == 1000
    assert merge_alias(5, None, "--n-chains", "--chains", 1000) == 5
    assert merge_alias(None, 7, "--n-chains", "--chains", 1000) == 7
    with pytest.raises(ValueError, match="--n-chains and --chains"):
        merge_alias(5, 7, "--n-chains", "--chains", 1000)


@pytest.mark.parametrize(("args", "new"), [
    (["sample", "--chains", "0"], "--n-chains"),
    (["flow", "--particles", "1"], "--n-particles"),
    (["nets", "train", "--n", "1"], "--n-data"),
    (["diffusion", "sample", "--ckpt", "absent", "--n", "0"], "--n-samples"),
    (["gan", "sample", "--ckpt", "absent", "--n", "0"], "--n-samples"),
    (["ebm", "sample", "--ckpt", "absent", "--n", "0"], "--n-samples"),
    (["flow-model", "sample", "--ckpt", "absent", "--n", "0"], "--n-samples"),
    (["flow-model", "nll", "--ckpt", "absent", "--n", "0"], "--n-data"),
    (["diffusion", "nll", "--ckpt", "absent", "--n", "0"], "--n-data"),
])
def test_old_option_names_still_work_and_both_names_are_refused(tmp_path, args, new):
    out = tmp_path / "out"
    # The value given under the old name reaches the new option's validation.
    result = invoke(*args, "--no-progress", "--out", out)
    assert result.exit_code == 2 and f"{new} must be an integer >=" in one_line(result)
    result = invoke(*args, new, "3", "--no-progress", "--out", out)
    assert result.exit_code == 2 and "(its old name) were both given" in one_line(result)
    assert not out.exists()


@pytest.mark.parametrize("command", [["sample"], ["flow"], ["nets", "train"], ["diffusion", "sample"],
                                     ["diffusion", "nll"], ["ebm", "sample"], ["gan", "sample"],
                                     ["flow-model", "sample"], ["flow-model", "nll"]])
def test_help_shows_the_new_names_only(command):
    result = invoke(*command, "--help")
    assert result.exit_code == 0
    text = result.stdout
    assert any(name in text for name in ("--n-chains", "--n-particles", "--n-samples", "--n-data"))
    assert not any(f" {old} " in text or f" {old}\n" in text for old in ("--chains", "--particles", "--n"))


@pytest.mark.parametrize("command", [
    ["sample"], ["flow"], ["nets", "train"], ["diffusion", "train"], ["diffusion", "sample"],
    ["diffusion", "nll"], ["ebm", "train"], ["ebm", "sample"], ["gan", "train"], ["gan", "sample"],
    ["flow-model", "train"], ["flow-model", "sample"], ["flow-model", "nll"]])
def test_every_writing_command_has_the_common_options(command):
    text = invoke(*command, "--help").stdout
    for option in ("--overwrite", "--no-progress", "--device", "--seed", "--out"):
        assert option in text, option


def help_text(*command: str) -> str:
    """The --help of ``command`` as one line of words (rich wraps it in boxes)."""
    return " ".join(re.sub("[│╭╮╰╯─]", " ", invoke(*command, "--help").stdout).split())


def test_seeds_default_to_zero_and_defaults_are_stated():
    for function in (diffusion_cli.nll, flow_model_cli.nll, sample_cli.sample):
        assert inspect.signature(function).parameters["seed"].default == 0
    text = help_text("sample")
    assert "default 32" in text and "default 1)" in text and "default geometric" in text
    assert "default 0.1" in text and "1000" in text  # --batch-size, --friction, --schedule, --beta-start
    text = help_text("flow")
    assert "median heuristic" in text and "gaussian (the default)" in text and "(default 0)" in text
    text = help_text("gan", "train")
    assert "0.0002 for js/ns" in text and "5 for wgan" in text


# --- run folders -------------------------------------------------------------------------------

@pytest.mark.parametrize("args", [
    ["sample", *TINY_SAMPLE], ["flow"], ["nets", "train"], ["diffusion", "train", "--data", "moons"],
    ["gan", "sample", "--ckpt", "absent"], ["diffusion", "nll", "--ckpt", "absent"]])
def test_an_empty_out_is_refused(args):
    result = invoke(*args, "--out", "")
    assert result.exit_code == 2 and "--out is empty" in one_line(result)


@pytest.mark.parametrize("args", [
    ["sample", *TINY_SAMPLE],
    ["flow", "--n-particles", "4", "--steps", "2", "--no-progress"],
    ["nets", "train", "--steps", "2", "--no-progress"],
    ["diffusion", "train", "--data", "moons", "--n-data", "100", "--steps", "2", "--no-progress"],
])
def test_a_folder_of_another_command_is_not_overwritten(tmp_path, args):
    out = tmp_path / "run"
    out.mkdir()
    summary = {"command": "gan train", "steps": 3}
    (out / "result.json").write_text(json.dumps(summary))
    result = invoke(*args, "--out", out)
    line = one_line(result)
    assert result.exit_code == 2 and "holds a run of 'gan train'" in line and "--overwrite" in line
    assert json.loads((out / "result.json").read_text()) == summary
    assert [path.name for path in out.iterdir()] == ["result.json"]


def test_overwrite_writes_into_another_commands_folder_and_netcdf_is_chain_first(tmp_path):
    arviz = pytest.importorskip("arviz")
    out = tmp_path / "run"
    out.mkdir()
    (out / "result.json").write_text(json.dumps({"command": "flow"}))
    (out / "samples.npz").write_bytes(b"an earlier run's samples")
    result = invoke("sample", "--target", "gaussian", "--dim", "3", "--sampler", "mala", "--n-chains", "3",
                    "--steps", "8", "--burn-in", "2", "--no-progress", "--format", "netcdf",
                    "--overwrite", "--out", out)
    assert result.exit_code == 0, result.output
    data = json.loads((out / "result.json").read_text())
    assert data["command"] == "sample" and data["files"]["samples"] == "samples.nc"
    assert sorted(path.name for path in out.iterdir()) == ["result.json", "sample.png", "samples.nc"]
    idata = arviz.from_netcdf(out / "samples.nc")
    assert idata.posterior["x"].shape == (3, 8, 3)  # (chain, draw, dim)
    assert idata.sample_stats["acceptance_rate"].shape == (3, 8)


def test_netcdf_without_arviz_is_one_line_and_writes_nothing(tmp_path, monkeypatch):
    def no_arviz(self):
        raise ImportError("to_inference_data needs ArviZ: pip install arviz")

    monkeypatch.setattr(mf.SampleResult, "to_inference_data", no_arviz)
    out = tmp_path / "run"
    result = invoke("sample", *TINY_SAMPLE, "--format", "netcdf", "--out", out)
    assert result.exit_code == 2 and "--format netcdf needs ArviZ" in one_line(result)
    assert not out.exists() or not any(out.iterdir())
    result = invoke("sample", *TINY_SAMPLE, "--format", "hdf5", "--out", out)
    assert result.exit_code == 2 and "--format must be one of npz, netcdf" in one_line(result)


def test_temporary_files_of_killed_writes_are_removed_at_the_next_run(tmp_path):
    with atomic_path(tmp_path / CHECKPOINT_NAME) as temporary:
        # The pattern is unambiguous: marker, 8 random characters, the final name's suffix.
        assert temporary.name.startswith(".checkpoint.pt.measureflow-tmp-") and temporary.suffix == ".pt"
        assert len(temporary.name) == len(".checkpoint.pt.measureflow-tmp-") + 8 + len(".pt")
        temporary.write_bytes(b"")
    ours = [".checkpoint.pt.measureflow-tmp-ab_d1234.pt",  # what a SIGKILL mid-write leaves
            ".result.json.measureflow-tmp-x1y2z3w4.json",
            ".checkpoint.pt.k2j4h6g8.tmp.pt"]  # the pattern of earlier versions
    others = [".notes.txt", "checkpoint.pt.tmp", ".checkpoint.pt.abcd1234.tmp.png",  # wrong suffix
              ".checkpoint.pt.measureflow-tmp-toolong123.pt", "samples.npz"]
    young = ".history.json.measureflow-tmp-abcd1234.json"  # maybe another process's write in progress
    for name in ours + others + [young]:
        (tmp_path / name).write_bytes(b"")
        if name != young:
            os.utime(tmp_path / name, (time.time() - 120, time.time() - 120))  # 2 minutes old
    (tmp_path / ".sub.pt.measureflow-tmp-abcd1234.pt").mkdir()  # a folder is never removed
    assert check_out(tmp_path, "sample") == tmp_path
    left = {path.name for path in tmp_path.iterdir()}
    assert left == {CHECKPOINT_NAME, *others, young, ".sub.pt.measureflow-tmp-abcd1234.pt"}
    assert remove_stale_temporaries(tmp_path, min_age_s=0.0) == [tmp_path / young]
    assert remove_stale_temporaries(tmp_path / "absent") == []


def test_a_training_run_removes_the_temporary_files_in_its_folder(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    stale = out / ".checkpoint.pt.measureflow-tmp-abcd1234.pt"
    stale.write_bytes(b"")
    os.utime(stale, (time.time() - 120, time.time() - 120))
    # Refused later (the data file is missing), but the folder was already checked and cleaned.
    result = invoke("diffusion", "train", "--data", tmp_path / "absent.csv", "--no-progress", "--out", out)
    assert result.exit_code == 2 and not stale.exists()


def test_batch_size_beyond_the_data_is_refused(tmp_path):
    out = tmp_path / "out"
    result = invoke("sample", "--target", "logistic", "--sampler", "sgld", "--batch-size", "1000000000",
                    *TINY_SAMPLE, "--out", out)
    line = one_line(result)
    assert result.exit_code == 2 and "exceeds the 398 data terms" in line and "at most 398" in line
    result = invoke("sample", "--target", "double-well", "--sampler", "sgld", "--batch-size", "8",
                    *TINY_SAMPLE, "--out", out)
    assert result.exit_code == 2 and "not a sum over data terms" in one_line(result)
    assert not out.exists()


def test_random_bytes_in_a_npy_file_are_not_a_valid_npy_file(tmp_path):
    path = tmp_path / "noise.npy"
    path.write_bytes(np.random.default_rng(0).bytes(300))
    with pytest.raises(ValueError, match="is not a valid .npy file"):
        load_array(path)
    result = invoke("diffusion", "train", "--data", path, "--no-progress", "--out", tmp_path / "out")
    assert result.exit_code == 2 and "not a valid .npy file" in one_line(result)


# --- altered checkpoints -------------------------------------------------------------------------

class Regression(TrainTask):
    """A linear map fitted by Adam (so the checkpoint holds optimizer moments) with an EMA."""

    def __init__(self) -> None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            self.model = nn.Linear(2, 2)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=0.01)
        self.ema = EMA(self.model, decay=0.9)

    def step(self, batch, generator):
        loss = (self.model(batch) - batch).square().mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.ema.update(self.model)
        return {"loss": loss.detach()}

    def state_dict(self):
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "ema": self.ema.state_dict()}

    def load_state_dict(self, state):
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.ema.load_state_dict(state["ema"])


DATA = torch.randn(32, 2, generator=torch.Generator().manual_seed(1))
# The size of a CPU generator's state, filled with random bytes: torch refuses it on set_state.
GARBAGE = torch.randint(0, 256, torch.Generator().get_state().shape, dtype=torch.uint8,
                        generator=torch.Generator().manual_seed(0))


def _train(out: Path, n_steps: int, resume: bool = False):
    return train(Regression(), DATA, n_steps=n_steps, batch_size=8, out_dir=out, resume=resume,
                 generator=torch.Generator().manual_seed(2), progress=False, kind="toy", log_every=2)


def _alter(path: Path, change) -> None:
    payload = torch.load(path, weights_only=True)
    change(payload)
    torch.save(payload, path)


def _nan_weight(payload):
    payload["model"]["weight"][0, 0] = float("nan")


def _wrong_moment_shape(payload):
    payload["optimizer"]["state"][0]["exp_avg"] = torch.zeros(5)


ALTERED = {
    "negative step": (lambda payload: payload.update(step=-3), "step -3"),
    "step not an int": (lambda payload: payload.update(step=2.5), "step 2.5"),
    "step a bool": (lambda payload: payload.update(step=True), "step True"),
    "rng of floats": (lambda payload: payload["rng"].update(generator=GARBAGE.float()),
                      "damaged generator state"),
    "rng of the wrong size": (lambda payload: payload["rng"].update(generator=GARBAGE[:7]),
                              "damaged generator state"),
    "rng garbage bytes": (lambda payload: payload["rng"].update(generator=GARBAGE),
                          "damaged generator state"),
    "nan weight": (_nan_weight, "NaN or infinite values in 'model.weight'"),
    "optimizer moment of another shape": (_wrong_moment_shape, "exp_avg"),
}


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    """One 4-step run (its checkpoint), copied by each test that alters it."""
    out = tmp_path_factory.mktemp("trained")
    _train(out, 4)
    return out


@pytest.mark.parametrize("case", list(ALTERED))
def test_every_checkpoint_field_is_validated_on_resume(trained_run, tmp_path, case):
    change, expected = ALTERED[case]
    shutil.copy(trained_run / CHECKPOINT_NAME, tmp_path / CHECKPOINT_NAME)
    _alter(tmp_path / CHECKPOINT_NAME, change)
    with pytest.raises(ValueError, match="checkpoint") as caught:
        _train(tmp_path, 6, resume=True)
    message = str(caught.value)
    assert expected in message and "\n" not in message, message


def test_loading_refuses_a_negative_step(trained_run, tmp_path):
    shutil.copy(trained_run / CHECKPOINT_NAME, tmp_path / CHECKPOINT_NAME)
    _alter(tmp_path / CHECKPOINT_NAME, lambda payload: payload.update(step=-1))
    with pytest.raises(ValueError, match="step -1; a step count is an integer >= 0"):
        load_checkpoint(tmp_path)


def test_cli_reports_an_altered_checkpoint_in_one_line(tmp_path):
    run = tmp_path / "run"
    result = invoke("flow-model", "train", "--data", "moons", "--n-data", "100", "--steps", "2",
                    "--batch-size", "16", "--transforms", "1", "--hidden", "4", "--flow", "maf",
                    "--no-progress", "--out", run)
    assert result.exit_code == 0, result.output
    _alter(run / CHECKPOINT_NAME, lambda payload: payload["rng"].update(generator=torch.rand(3)))
    result = invoke("flow-model", "train", "--data", "moons", "--n-data", "100", "--steps", "2",
                    "--batch-size", "16", "--transforms", "1", "--hidden", "4", "--flow", "maf",
                    "--no-progress", "--out", run, "--resume")
    assert result.exit_code == 2 and "damaged generator state" in one_line(result)
    # A sound generator state again (it is checked on every load), and a NaN weight instead.
    _alter(run / CHECKPOINT_NAME, lambda payload: (
        payload["rng"].update(generator=torch.Generator().get_state()), _nan_weight_of_the_ema(payload)))
    result = invoke("flow-model", "sample", "--ckpt", run, "--n-samples", "5", "--out", tmp_path / "s")
    assert result.exit_code == 2 and "NaN or infinite weights" in one_line(result)


def _nan_weight_of_the_ema(payload):
    state = payload["ema"]["model"]
    name = next(key for key, value in state.items() if value.is_floating_point())
    state[name].view(-1)[0] = float("nan")


def test_atomic_json_leaves_no_temporary_behind(tmp_path):
    atomic_write_json(tmp_path / "result.json", {"a": 1})
    assert [path.name for path in tmp_path.iterdir()] == ["result.json"]

