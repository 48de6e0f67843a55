"""The shared training loop: EMA arithmetic, bitwise-exact resume (after a crash, Ctrl-C or a
second Ctrl-C), log windows, atomic checkpoint files and every refusal to resume wrongly."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
import torch
from torch import nn

from measureflow.generative.train import (
    CHECKPOINT_NAME,
    EMA,
    TrainHistory,
    TrainTask,
    load_checkpoint,
    save_checkpoint,
    train,
)

DATA = torch.randn(64, 2, generator=torch.Generator().manual_seed(123))
CONFIG = {"net": {"hidden": 8, "depth": 1}, "learning_rate": 0.05, "sizes": (1, 2)}


class Crash(Exception):
    """Stands in for a process dying mid-run."""


class NoisyRegression(TrainTask):
    """Fits a small MLP to denoise x + 0.3 z (z from the generator) with Adam and an EMA; reports
    the loss and the index of the step (so window means are known exactly). ``fail_at`` makes
    step k raise ``fail_with`` (an exception, or a signal number raised at the process) midway."""

    def __init__(self, fail_at: int | None = None, fail_with=Crash, seed: int = 0) -> None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.model = nn.Sequential(nn.Linear(2, 8), nn.SiLU(), nn.Linear(8, 2))
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=0.05)
        self.ema = EMA(self.model, decay=0.9)
        self.done = 0
        self.fail_at, self.fail_with = fail_at, fail_with

    def step(self, batch, generator):
        noise = torch.randn(batch.shape, generator=generator)
        loss = (self.model(batch + 0.3 * noise) - batch).square().sum(1).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        if self.fail_at == self.done + 1:
            if isinstance(self.fail_with, int):
                signal.raise_signal(self.fail_with)  # held by the loop until the step ends
            else:
                raise self.fail_with("interrupted mid-step")
        self.ema.update(self.model)
        self.done += 1
        return {"loss": loss.detach(), "index": torch.tensor(float(self.done))}

    def state_dict(self):
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "ema": self.ema.state_dict(), "extras": {"done": self.done}}

    def load_state_dict(self, state):
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.ema.load_state_dict(state["ema"])
        self.done = state["extras"]["done"]


def run(task, out_dir, n_steps=40, seed=7, **options):
    """Train ``task`` on DATA with a generator seeded by ``seed``; returns (history, generator)."""
    generator = torch.Generator().manual_seed(seed)
    settings = {"batch_size": 16, "checkpoint_every": 20, "log_every": 15, "progress": False,
                "config": CONFIG, "kind": "toy"}
    settings.update(options)
    history = train(task, DATA, n_steps=n_steps, generator=generator, out_dir=out_dir, **settings)
    return history, generator


def leaves(value, prefix=""):
    """Flatten nested dicts/lists of a state into {path: leaf}."""
    if isinstance(value, dict):
        items = [(f"{prefix}/{name}", item) for name, item in value.items()]
    elif isinstance(value, (list, tuple)):
        items = [(f"{prefix}[{index}]", item) for index, item in enumerate(value)]
    else:
        return {prefix: value}
    return {key: leaf for path, item in items for key, leaf in leaves(item, path).items()}


def state_differences(first: TrainTask, second: TrainTask) -> list[str]:
    """Paths at which the two tasks' states differ (tensors compared bitwise with torch.equal)."""
    a, b = leaves(first.state_dict()), leaves(second.state_dict())
    if a.keys() != b.keys():
        return sorted(a.keys() ^ b.keys())
    return [key for key in a if not (torch.equal(a[key], b[key]) if isinstance(a[key], torch.Tensor)
                                     else a[key] == b[key])]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted 40-step run (checkpoints at 20 and 40)."""
    task = NoisyRegression()
    history, generator = run(task, tmp_path_factory.mktemp("reference"))
    return task, history, generator


# ---------------------------------------------------------------------------------------------
# EMA


def test_ema_matches_a_hand_computation():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = nn.Linear(3, 2).double()
    ema = EMA(model, decay=0.8)
    expected = [parameter.detach().clone() for parameter in model.parameters()]
    generator = torch.Generator().manual_seed(1)
    for k in range(40):
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.copy_(torch.randn(parameter.shape, generator=generator, dtype=torch.float64))
        decay = min(0.8, (1 + k) / (10 + k))  # 0.1, 0.18, ..., 35/44; then 0.8 from k = 35 on
        expected = [decay * old + (1 - decay) * new.detach()
                    for old, new in zip(expected, model.parameters(), strict=True)]
        ema.update(model)
        for shadow, value in zip(ema.model.parameters(), expected, strict=True):
            torch.testing.assert_close(shadow, value, rtol=1e-14, atol=1e-14)
    assert ema.n_updates == 40 and ema.current_decay() == 0.8
    assert not ema.model.training and all(not p.requires_grad for p in ema.model.parameters())


def test_ema_copies_buffers_and_restores_its_state():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3))
    ema = EMA(model, decay=0.99)
    model.train()
    model(torch.randn(8, 2, generator=torch.Generator().manual_seed(0)))  # moves the running statistics
    ema.update(model)
    assert torch.equal(ema.model[1].running_mean, model[1].running_mean)
    assert int(ema.model[1].num_batches_tracked) == 1
    state = ema.state_dict()
    other = EMA(model, decay=0.99)
    other.load_state_dict(state)
    assert other.n_updates == 1
    assert all(torch.equal(a, b) for a, b in zip(other.model.state_dict().values(),
                                                 ema.model.state_dict().values(), strict=True))
    with pytest.raises(ValueError, match="decay"):
        EMA(model, decay=1.0)
    with pytest.raises(ValueError, match="parameter tensors"):
        ema.update(nn.Linear(2, 3))
    with pytest.raises(TypeError, match="nn.Module"):
        EMA(lambda x: x)


# ---------------------------------------------------------------------------------------------
# Exact resume


def test_resume_after_a_crash_equals_the_uninterrupted_run_bitwise(reference, tmp_path):
    task_a, history_a, generator_a = reference
    with pytest.raises(Crash):
        run(NoisyRegression(fail_at=27), tmp_path)
    assert load_checkpoint(tmp_path)["step"] == 20  # the last periodic checkpoint
    task_b = NoisyRegression(seed=99)  # a different initialization: all of it must be overwritten
    history_b, generator_b = run(task_b, tmp_path, resume=True)
    assert state_differences(task_a, task_b) == []
    assert torch.equal(generator_a.get_state(), generator_b.get_state())
    # The window 16..30 straddles the checkpoint at 20; its partial sum was saved with it.
    assert history_b.steps == history_a.steps == [15, 30, 40]
    assert history_b.losses == history_a.losses
    assert history_b.resumed_from == 20 and history_a.resumed_from is None and history_b.final_step == 40


def test_ctrl_c_checkpoints_the_finished_step_and_resume_is_exact(reference, tmp_path, python_sigint):
    task_a, history_a, generator_a = reference
    handler = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        run(NoisyRegression(fail_at=13, fail_with=signal.SIGINT), tmp_path)
    assert signal.getsignal(signal.SIGINT) is handler  # the loop's handler is gone again
    assert load_checkpoint(tmp_path, kind="toy")["step"] == 13
    task_b = NoisyRegression()
    history_b, generator_b = run(task_b, tmp_path, resume=True)
    assert state_differences(task_a, task_b) == []
    assert torch.equal(generator_a.get_state(), generator_b.get_state())
    assert history_b.losses == history_a.losses and history_b.resumed_from == 13


def test_sigterm_is_held_to_the_step_end_then_delivered_to_the_previous_handler(tmp_path):
    def terminate(signum, frame):
        raise Crash("terminated")

    previous = signal.signal(signal.SIGTERM, terminate)  # instead of the default, which ends pytest
    try:
        with pytest.raises(Crash, match="terminated"):
            run(NoisyRegression(fail_at=33, fail_with=signal.SIGTERM), tmp_path)
        assert signal.getsignal(signal.SIGTERM) is terminate
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert load_checkpoint(tmp_path)["step"] == 33


def test_keyboard_interrupt_inside_a_step_keeps_the_last_consistent_checkpoint(reference, tmp_path):
    task_a, _, _ = reference
    # A KeyboardInterrupt raised inside step 27 (as a second Ctrl-C would) leaves that step half
    # done (optimizer stepped, EMA not): no checkpoint of it may be written.
    with pytest.raises(KeyboardInterrupt):
        run(NoisyRegression(fail_at=27, fail_with=KeyboardInterrupt), tmp_path)
    assert load_checkpoint(tmp_path)["step"] == 20
    task_b = NoisyRegression()
    run(task_b, tmp_path, resume=True)
    assert state_differences(task_a, task_b) == []


def test_resume_of_a_finished_run_changes_nothing(reference, tmp_path):
    task_a, history_a, _ = reference
    run(NoisyRegression(), tmp_path)
    before = {path.name: (path.read_bytes(), path.stat().st_mtime_ns) for path in tmp_path.iterdir()}
    task_b = NoisyRegression(seed=5)
    history_b, _ = run(task_b, tmp_path, resume=True)
    after = {path.name: (path.read_bytes(), path.stat().st_mtime_ns) for path in tmp_path.iterdir()}
    assert after == before
    assert state_differences(task_a, task_b) == []  # the trained state is loaded nonetheless
    assert history_b.losses == history_a.losses and history_b.final_step == 40
    with pytest.raises(ValueError, match="beyond n_steps=30; pass n_steps >= 40"):
        run(NoisyRegression(), tmp_path, n_steps=30, resume=True)


# ---------------------------------------------------------------------------------------------
# Refusals


def test_resume_refuses_a_checkpoint_that_does_not_belong_to_the_run(tmp_path):
    with pytest.raises(ValueError, match="no checkpoint at"):
        run(NoisyRegression(), tmp_path / "empty", resume=True)
    with pytest.raises(ValueError, match="needs out_dir"):
        run(NoisyRegression(), None, resume=True)
    run(NoisyRegression(), tmp_path, n_steps=20)
    with pytest.raises(ValueError, match="holds a 'toy' model, not a 'ebm' model"):
        run(NoisyRegression(), tmp_path, resume=True, kind="ebm")
    other = {**CONFIG, "net": {"hidden": 16, "depth": 1}}
    with pytest.raises(ValueError, match=r"net\.hidden \(checkpoint has 8, given 16\)"):
        run(NoisyRegression(), tmp_path, resume=True, config=other)
    with pytest.raises(ValueError, match=r"extra \(not in the checkpoint"):
        run(NoisyRegression(), tmp_path, resume=True, config={**CONFIG, "extra": 1})
    with pytest.raises(ValueError, match="batch_size=16, not 8"):
        run(NoisyRegression(), tmp_path, resume=True, batch_size=8)
    with pytest.raises(ValueError, match="other data"):
        train(NoisyRegression(), DATA + 1, n_steps=40, batch_size=16, generator=torch.Generator(),
              out_dir=tmp_path, resume=True, config=CONFIG, kind="toy", progress=False)
    with pytest.raises(ValueError, match="already holds a checkpoint; pass resume=True"):
        run(NoisyRegression(), tmp_path)
    with pytest.raises(ValueError, match="pass one"):
        run(NoisyRegression(), tmp_path, resume=True, overwrite=True)
    history, _ = run(NoisyRegression(), tmp_path, n_steps=10, overwrite=True)
    assert history.final_step == 10 and load_checkpoint(tmp_path)["step"] == 10


def test_broken_checkpoint_files_are_refused_with_one_line(tmp_path):
    run(NoisyRegression(), tmp_path, n_steps=20)
    path = tmp_path / CHECKPOINT_NAME
    content = path.read_bytes()
    path.write_bytes(content[: len(content) // 2])
    cases = {"truncated": (content[: len(content) // 2], "truncated or corrupt")}
    torch.save({"weights": torch.ones(2)}, tmp_path / "foreign.pt")
    cases["foreign"] = ((tmp_path / "foreign.pt").read_bytes(), "is not a measureflow checkpoint")
    torch.save({"format": "measureflow-checkpoint", "version": 1, "kind": "toy", "step": 1, "config": {},
                "object": Crash("x")}, tmp_path / "objects.pt")
    cases["objects"] = ((tmp_path / "objects.pt").read_bytes(), "holds Python objects other than tensors")
    cases["text"] = (b"not a checkpoint at all\n", "truncated or corrupt")
    cases["empty"] = (b"", "truncated or corrupt")
    messages = {}
    for name, (data, pattern) in cases.items():
        path.write_bytes(data)
        with pytest.raises(ValueError, match=pattern) as caught:
            run(NoisyRegression(), tmp_path, resume=True)
        messages[name] = str(caught.value)
    assert all("\n" not in message and CHECKPOINT_NAME in message for message in messages.values())
    # save_checkpoint stamps the current version (whatever the payload says); forge a newer one.
    save_checkpoint(path, {"kind": "toy", "step": 1, "config": {}, "version": 99})
    assert load_checkpoint(path)["version"] == 1
    torch.save({**torch.load(path, weights_only=True), "version": 2}, path)
    with pytest.raises(ValueError, match="versions up to 1"):
        load_checkpoint(path)


# ---------------------------------------------------------------------------------------------
# Files, history and the loop's bookkeeping


def test_run_folder_holds_checkpoint_history_and_curve_only(tmp_path):
    calls = []
    history, _ = run(NoisyRegression(), tmp_path,
                     on_checkpoint=lambda step, folder: calls.append((step, folder)))
    assert sorted(path.name for path in tmp_path.iterdir()) == ["checkpoint.pt", "history.json", "loss.png"]
    assert calls == [(20, tmp_path), (40, tmp_path)]
    assert json.loads((tmp_path / "history.json").read_text()) == history.to_dict()
    assert (tmp_path / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The window means of the step index are exact: mean(1..15) = 8, mean(16..30) = 23, mean(31..40) = 35.5.
    assert history.losses["index"] == [8.0, 23.0, 35.5]
    assert isinstance(history, TrainHistory) and history.wall_time > 0
    payload = load_checkpoint(tmp_path)
    for key in ("model", "optimizer", "ema", "step", "rng", "config", "kind", "history"):
        assert key in payload
    assert payload["config"]["sizes"] == [1, 2]  # tuples are stored as JSON-like lists


def test_a_failed_write_keeps_the_old_checkpoint_and_leaves_no_temporary_file(tmp_path, monkeypatch):
    path = tmp_path / "run" / CHECKPOINT_NAME
    save_checkpoint(path, {"kind": "toy", "step": 1, "config": {}, "weights": torch.ones(3)})
    original = path.read_bytes()

    def half_written(payload, file):
        Path(file).write_bytes(b"PK\x03\x04partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", half_written)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, {"kind": "toy", "step": 2, "config": {}, "weights": torch.zeros(3)})
    assert path.read_bytes() == original
    assert [item.name for item in path.parent.iterdir()] == [CHECKPOINT_NAME]


def test_save_checkpoint_refuses_what_weights_only_cannot_read(tmp_path):
    with pytest.raises(ValueError, match=r"entry extras\.callback is a builtins\.function"):
        save_checkpoint(tmp_path / "c.pt", {"kind": "toy", "step": 0, "extras": {"callback": lambda: None}})
    with pytest.raises(ValueError, match="needs 'kind'"):
        save_checkpoint(tmp_path / "c.pt", {"step": 0})
    assert list(tmp_path.iterdir()) == []

    class Unsaveable(NoisyRegression):
        def state_dict(self):
            return {**super().state_dict(), "scheduler": {"lr_lambda": lambda step: 1.0}}

    with pytest.raises(ValueError, match="scheduler.lr_lambda"):
        run(Unsaveable(), tmp_path / "run")
    assert not (tmp_path / "run" / CHECKPOINT_NAME).exists()

    class Clashing(NoisyRegression):
        def state_dict(self):
            return {**super().state_dict(), "step": 3}

    with pytest.raises(ValueError, match="the training loop owns"):
        run(Clashing(), tmp_path / "clash")


def test_divergence_and_bad_metrics_stop_training(tmp_path):
    class Diverging(NoisyRegression):
        def step(self, batch, generator):
            metrics = super().step(batch, generator)
            return {**metrics, "loss": metrics["loss"] * (float("nan") if self.done > 5 else 1.0)}

    with pytest.raises(ValueError, match=r"diverged: metric 'loss' is nan in steps 1\.\.15"):
        run(Diverging(), tmp_path)
    assert not (tmp_path / CHECKPOINT_NAME).exists()

    class Renaming(NoisyRegression):
        def step(self, batch, generator):
            metrics = super().step(batch, generator)
            return metrics if self.done < 3 else {"other": metrics["loss"]}

    with pytest.raises(ValueError, match="same keys every step"):
        run(Renaming(), None)

    class Floats(NoisyRegression):
        def step(self, batch, generator):
            return {"loss": float(super().step(batch, generator)["loss"])}

    with pytest.raises(TypeError, match="0-dim tensor"):
        run(Floats(), None)


def test_train_validates_its_arguments(tmp_path):
    generator = torch.Generator().manual_seed(0)
    base = {"n_steps": 5, "batch_size": 4, "generator": generator, "progress": False}
    bad = [
        ({"n_steps": 0}, ValueError, "n_steps must be a positive integer"),
        ({"batch_size": 0}, ValueError, "batch_size must be a positive integer"),
        ({"log_every": 0}, ValueError, "log_every"),
        ({"checkpoint_every": 0}, ValueError, "checkpoint_every"),
        ({"generator": None}, TypeError, "torch.Generator"),
        ({"kind": ""}, ValueError, "kind"),
        ({"config": {"f": print}}, TypeError, "config entry f"),
        ({"on_checkpoint": 3}, TypeError, "on_checkpoint"),
    ]
    for options, error, message in bad:
        with pytest.raises(error, match=message):
            train(NoisyRegression(), DATA, **{**base, **options})
    nan_data = DATA.clone()
    nan_data[3, 1] = float("nan")
    with pytest.raises(ValueError, match="1 NaN or infinite"):
        train(NoisyRegression(), nan_data, **base)
    with pytest.raises(ValueError, match="n >= 1 rows"):
        train(NoisyRegression(), DATA[:0], **base)
    with pytest.raises(TypeError, match="TrainTask"):
        train(object(), DATA, **base)
    # One row and a batch far larger than the data are fine: rows are drawn with replacement.
    history = train(NoisyRegression(), DATA[:1], **{**base, "batch_size": 100, "progress": True})
    assert history.final_step == 5 and history.steps == [5]


def test_public_names():
    import measureflow.generative as generative

    for module in ("measureflow.generative", "measureflow.generative.train", "measureflow.generative.nets"):
        namespace: dict = {}
        exec(f"from {module} import *", namespace)
        assert all(name in namespace for name in __import__(module, fromlist=["__all__"]).__all__)
    assert generative.train.train is train and generative.nets.MLPScore.__name__ == "MLPScore"
