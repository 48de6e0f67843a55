r"""The one training loop shared by the generative models: batches, logging, EMA, checkpoints, resume.

A model plugs in as a :class:`TrainTask`: ``step(batch, generator)`` does one optimization step
and returns its metrics as 0-dim tensors, ``state_dict()``/``load_state_dict()`` expose
everything that step changes (model, optimizer, scheduler, :class:`EMA`, replay buffers...).
:func:`train` owns the rest:

- batches of ``batch_size`` rows drawn with replacement, ``data[randint(n, generator)]`` (or
  the whole data set every step with ``batch_size=None``: full-batch gradient descent), and
  the same ``generator`` handed to the task for its noise, so one seeded generator fixes a run;
- running averages of the metrics over windows of ``log_every`` steps (summed as tensors on
  the device, read back only at the end of a window, so the loop does not wait on the device
  every step); a non-finite average stops training with a ``ValueError`` (diverged);
- a progress bar (:func:`measureflow._core.progress_bar`) showing the latest averages;
- with ``out_dir``: ``checkpoint.pt`` every ``checkpoint_every`` steps and at the end, written
  atomically (temporary file + rename: a crash never leaves a truncated checkpoint), beside
  ``history.json`` and the loss curves ``loss.png``;
- ``resume=True`` restores the task, the generator state, the step and the partial log window
  from ``checkpoint.pt`` and continues to ``n_steps``: on the CPU the resumed run equals an
  uninterrupted one bitwise (same parameters, EMA, optimizer state and logged losses), provided
  the task draws all its randomness from the generator it is given (the global torch RNG is
  neither saved nor touched);
- Ctrl-C (SIGINT) or SIGTERM during training, in the main thread with ``out_dir`` set, is held
  until the current step has finished; then a checkpoint of that step is written and the
  signal acts as it would have (``KeyboardInterrupt``, or termination), so ``resume=True``
  loses nothing. A second signal acts at once (the last periodic checkpoint stays valid).

The checkpoint is a plain dict, loadable with ``torch.load(weights_only=True)``::

    {"format": "measureflow-checkpoint", "version": 1, "kind": kind, "config": config,
     "step": int, "rng": {"generator": ByteTensor, "device": str},
     "history": {...}, "loop": {"batch_size": int, "data_shape": [...], ...},
     **task.state_dict()}          # e.g. "model", "optimizer", "ema"

``config`` (JSON-like: dicts, lists, str, int, float, bool, None) records the settings that
define the run; resuming with a different config, another ``kind``, another batch size or other
data is refused with a ``ValueError`` naming the difference.
"""

from __future__ import annotations

import abc
import contextlib
import copy
import math
import signal
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from measureflow._core import (
    atomic_path,
    atomic_write_json,
    check_count,
    check_finite,
    new_figure,
    progress_bar,
    save_figure,
)

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_NAME",
    "CHECKPOINT_VERSION",
    "EMA",
    "Checkpointer",
    "Recorder",
    "TrainHistory",
    "TrainTask",
    "load_checkpoint",
    "save_checkpoint",
    "train",
]

CHECKPOINT_FORMAT = "measureflow-checkpoint"
CHECKPOINT_VERSION = 1
CHECKPOINT_NAME = "checkpoint.pt"
HISTORY_NAME = "history.json"
LOSS_FIGURE_NAME = "loss.png"
# Keys of a checkpoint owned by the loop; a task's state dict must not use them.
_LOOP_KEYS = ("format", "version", "kind", "config", "step", "rng", "history", "loop")


class EMA:
    r"""An exponential moving average of a model's parameters, kept in a shadow copy ``model``.

    After the k-th call of :meth:`update` (k = 0, 1, ...), every shadow parameter is

        theta_ema <- d_k theta_ema + (1 - d_k) theta,   d_k = min(decay, (1 + k) / (10 + k)),

    so the first averages are not dominated by the initialization (d_0 = 0.1, d_k -> decay;
    the warm-up of TensorFlow's ExponentialMovingAverage with num_updates). Buffers (e.g.
    normalization statistics) are copied, not averaged. The shadow model is a deep copy in
    eval mode with ``requires_grad=False``; use it for sampling.

    >>> net = nn.Linear(1, 1)
    >>> ema = EMA(net, decay=0.9)
    >>> with torch.no_grad():
    ...     _ = net.weight.fill_(1.0)
    >>> ema.update(net)   # d_0 = min(0.9, 1/10) = 0.1
    >>> ema.n_updates
    1
    """

    def __init__(self, model: nn.Module, decay: float = 0.999) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must be a number in [0, 1), got {decay!r}")
        self.decay = float(decay)
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        for parameter in self.model.parameters():
            parameter.grad = None
        self.n_updates = 0
        self._parameters = list(self.model.parameters())
        self._buffers = list(self.model.buffers())

    def current_decay(self) -> float:
        """d_k of the next update, k = ``n_updates``."""
        return min(self.decay, (1.0 + self.n_updates) / (10.0 + self.n_updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the shadow parameters toward ``model``'s (which must have the same architecture)."""
        parameters = list(model.parameters())
        if len(parameters) != len(self._parameters):
            raise ValueError(
                f"model has {len(parameters)} parameter tensors, the EMA copy {len(self._parameters)}; "
                "update the EMA with the model it was made from"
            )
        weight = 1.0 - self.current_decay()
        # One fused kernel over all tensors: theta_ema += weight (theta - theta_ema).
        torch._foreach_lerp_(self._parameters, parameters, weight)
        for shadow, buffer in zip(self._buffers, model.buffers(), strict=True):
            shadow.copy_(buffer)
        self.n_updates += 1

    def state_dict(self) -> dict[str, Any]:
        """``{"model": shadow state dict, "decay": float, "n_updates": int}``."""
        return {"model": self.model.state_dict(), "decay": self.decay, "n_updates": self.n_updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the shadow weights and the update count (the decay stays the constructor's)."""
        if not isinstance(state, dict) or "model" not in state or "n_updates" not in state:
            raise ValueError("an EMA state must be a dict with keys 'model' and 'n_updates'")
        self.model.load_state_dict(state["model"])
        self.n_updates = int(state["n_updates"])


class TrainTask(abc.ABC):
    """What :func:`train` trains: one optimization step and the state a checkpoint must hold.

    A task may set an attribute ``stop_requested = True`` (e.g. early stopping on a held-out
    loss): the loop then ends after that step, as if it were the last.

    ``step`` must draw all its randomness from the generator it is given (so that a resumed
    run is exact) and return a non-empty dict of 0-dim tensors (e.g. ``{"loss": loss.detach()}``),
    the same keys every step; returning tensors, not floats, lets the loop avoid a device
    synchronization per step. ``state_dict`` returns everything ``step`` changes, by convention
    at least ``"model"``, ``"optimizer"`` and ``"ema"``, made of tensors, dicts, lists, tuples,
    str, int, float, bool and None only (so it loads with ``weights_only=True``); its keys must
    not be one of the loop's (format, version, kind, config, step, rng, history, loop).
    ``load_state_dict`` receives that dict back with tensors on the CPU.
    """

    @abc.abstractmethod
    def step(self, batch: Tensor, generator: torch.Generator) -> dict[str, Tensor]:
        """One optimization step on ``batch`` ``(batch_size, ...)``; returns 0-dim detached metrics."""

    @abc.abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs, as plain data and tensors."""

    @abc.abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""


@dataclass(frozen=True)
class TrainHistory:
    """The logged metrics of a run: ``losses[key][i]`` is the mean of metric ``key`` over the
    steps of window i, which ended at step ``steps[i]``; ``wall_time`` is the training time in
    seconds summed over all sessions of the run; ``resumed_from`` is the step this session
    started from (None for a fresh run); ``final_step`` the step reached."""

    steps: list[int]
    losses: dict[str, list[float]]
    wall_time: float
    resumed_from: int | None
    final_step: int

    def to_dict(self) -> dict[str, Any]:
        losses = {key: list(values) for key, values in self.losses.items()}
        return {"steps": list(self.steps), "losses": losses, "wall_time": self.wall_time,
                "resumed_from": self.resumed_from, "final_step": self.final_step}


# ---------------------------------------------------------------------------------------------
# Checkpoint files


def _check_plain(value: Any, where: str) -> None:
    """Raise ``ValueError`` unless ``value`` is made of what ``torch.load(weights_only=True)`` reads."""
    if isinstance(value, Tensor) or type(value) in (str, int, float, bool, type(None), torch.dtype):
        return
    if type(value) in (dict, OrderedDict):
        for key, item in value.items():
            if type(key) not in (str, int):
                raise ValueError(f"checkpoint entry {where} has the key {key!r}; keys must be str or int")
            _check_plain(item, f"{where}.{key}" if where else str(key))
        return
    if type(value) in (list, tuple, torch.Size):
        for index, item in enumerate(value):
            _check_plain(item, f"{where}[{index}]")
        return
    raise ValueError(
        f"checkpoint entry {where or 'payload'} is a {type(value).__module__}.{type(value).__qualname__}; "
        "a checkpoint may hold only tensors, dicts, lists, tuples, str, int, float, bool and None "
        "(it is read back with weights_only=True)"
    )


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` to ``path`` atomically with ``torch.save``, stamped with the format and
    version. ``payload`` needs ``"kind"`` (str) and ``"step"`` (int) and may hold only tensors
    and plain data (checked first, naming the first offending entry)."""
    if not isinstance(payload, dict):
        raise TypeError(f"payload must be a dict, got {type(payload).__name__}")
    if not isinstance(payload.get("kind"), str) or type(payload.get("step")) is not int:
        raise ValueError("a checkpoint payload needs 'kind' (a str) and 'step' (an int)")
    stamped = {**payload, "format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION}
    _check_plain(stamped, "")
    path = Path(path)
    with atomic_path(path) as temporary:
        torch.save(stamped, temporary)
    return path


def load_checkpoint(path: str | Path, kind: str | None = None,
                    map_location: torch.device | str = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (``path`` is the file or the run folder
    holding ``checkpoint.pt``) with ``weights_only=True``; with ``kind`` given, refuse a checkpoint
    of another kind. Every failure (missing, truncated or corrupt file, not a measureflow
    checkpoint, newer version, other kind) is a ``ValueError`` with one line naming the file."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    if not path.is_file():
        raise ValueError(f"no checkpoint at {str(path)!r}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises RuntimeError, EOFError, KeyError, UnpicklingError...
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0][:160]
        # A well-formed file holding objects the safe unpickler refuses names an "Unsupported
        # global"; any other failure means the bytes themselves are damaged.
        if "unsupported global" in str(error).lower():
            raise ValueError(
                f"checkpoint {str(path)!r} holds Python objects other than tensors and plain data; "
                "refused (only weights_only=True loading is allowed)"
            ) from None
        raise ValueError(
            f"checkpoint {str(path)!r} is truncated or corrupt and cannot be read "
            f"({type(error).__name__}: {first_line})"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{str(path)!r} is not a measureflow checkpoint")
    version = payload.get("version")
    if type(version) is not int or version > CHECKPOINT_VERSION:
        raise ValueError(
            f"checkpoint {str(path)!r} has format version {version!r}; this measureflow reads versions "
            f"up to {CHECKPOINT_VERSION}"
        )
    missing = [key for key in ("kind", "step", "config") if key not in payload]
    if missing:
        raise ValueError(f"checkpoint {str(path)!r} is incomplete: it lacks {', '.join(missing)}")
    if not isinstance(payload["kind"], str) or not isinstance(payload["config"], dict):
        raise ValueError(f"checkpoint {str(path)!r} has a malformed kind or config (the file was altered)")
    step = payload["step"]
    if type(step) is not int or step < 0:
        raise ValueError(f"checkpoint {str(path)!r} records the step {step!r}; a step count is an integer "
                         ">= 0 (the file was altered)")
    if kind is not None and payload["kind"] != kind:
        raise ValueError(f"checkpoint {str(path)!r} holds a {payload['kind']!r} model, not a {kind!r} model")
    if "rng" in payload:
        _check_rng_entry(payload["rng"], repr(str(path)))
    return payload


def _check_rng_entry(rng: Any, where: str) -> None:
    """The ``rng`` entry must be ``{"generator": <state>, "device": <str>}`` with the state of a
    generator of that device type (checked when the checkpoint is read for any use, sampling
    included, not only when a run resumes)."""
    if not isinstance(rng, dict) or not isinstance(rng.get("generator"), Tensor) or \
            not isinstance(rng.get("device"), str):
        raise ValueError(f"checkpoint {where} has a malformed RNG entry (the file was altered); "
                         "start a new run")
    device = rng["device"]
    if device == "cpu":
        _check_generator_state(rng["generator"], torch.Generator(), where)
    elif rng["generator"].dtype != torch.uint8 or rng["generator"].ndim != 1:
        raise ValueError(f"checkpoint {where} holds a damaged {device} generator state "
                         "(the file was altered)")


def _plain_config(value: Any, where: str) -> Any:
    """A copy of ``value`` with tuples turned into lists, refusing anything not JSON-like."""
    if type(value) in (str, int, float, bool, type(None)):
        return value
    if isinstance(value, dict):
        result = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"config keys must be strings, got {key!r} in {where or 'config'}")
            result[key] = _plain_config(item, f"{where}.{key}" if where else key)
        return result
    if isinstance(value, (list, tuple)):
        return [_plain_config(item, f"{where}[{index}]") for index, item in enumerate(value)]
    raise TypeError(
        f"config entry {where or 'config'} is a {type(value).__name__}; config must be JSON-like "
        "(dicts, lists, str, int, float, bool, None)"
    )


def _differences(saved: Any, given: Any, where: str = "") -> list[str]:
    if isinstance(saved, dict) and isinstance(given, dict):
        found = []
        for key in sorted(set(saved) | set(given), key=str):
            name = f"{where}.{key}" if where else str(key)
            if key not in saved:
                found.append(f"{name} (not in the checkpoint; given {given[key]!r})")
            elif key not in given:
                found.append(f"{name} (checkpoint has {saved[key]!r}; not given)")
            else:
                found += _differences(saved[key], given[key], name)
        return found
    if type(saved) is not type(given) and not {type(saved), type(given)} <= {int, float}:
        return [f"{where or 'config'} (checkpoint has {saved!r}, given {given!r})"]
    if isinstance(saved, list) and len(saved) == len(given):
        return [item for index, (a, b) in enumerate(zip(saved, given, strict=True))
                for item in _differences(a, b, f"{where}[{index}]")]
    return [] if saved == given else [f"{where or 'config'} (checkpoint has {saved!r}, given {given!r})"]


# ---------------------------------------------------------------------------------------------
# The loop's bookkeeping


class Recorder:
    """The metrics of a run: window sums (tensors, on the metrics' device, read back only when a
    window of ``log_every`` steps ends), the logged window means, and the training wall time
    summed over sessions (:meth:`start_clock` at the start of a session, :meth:`tick` to update)."""

    def __init__(self) -> None:
        self.steps: list[int] = []
        self.losses: dict[str, list[float]] = {}
        self.window: dict[str, Tensor] = {}
        self.count = 0
        self.window_start = 0
        self.keys: tuple[str, ...] | None = None
        self.wall_time = 0.0
        self._wall_before = 0.0
        self._session_start: float | None = None

    def start_clock(self) -> None:
        self._wall_before, self._session_start = self.wall_time, time.perf_counter()

    def tick(self) -> None:
        if self._session_start is not None:
            self.wall_time = self._wall_before + (time.perf_counter() - self._session_start)

    def add(self, metrics: Any, step: int) -> None:
        if not isinstance(metrics, dict) or not metrics:
            raise TypeError(
                f"TrainTask.step must return a non-empty dict of 0-dim tensors, got {type(metrics).__name__}"
            )
        if self.keys is None:
            self.keys = tuple(metrics)
        elif len(metrics) != len(self.keys) or any(key not in metrics for key in self.keys):
            raise ValueError(
                f"TrainTask.step returned the metrics {sorted(metrics)} at step {step}, "
                f"earlier {sorted(self.keys)}; return the same keys every step"
            )
        for key, value in metrics.items():
            if not isinstance(value, Tensor) or value.numel() != 1:
                raise TypeError(f"metric {key!r} must be a 0-dim tensor, got {value!r}"[:200])
            value = value.detach().reshape(())
            total = self.window.get(key)
            # A window restored from a checkpoint lives on the CPU; follow the metrics' device.
            self.window[key] = value.clone() if total is None else total.to(value.device) + value
        self.count += 1

    def check_finite(self, step: int) -> None:
        for key, total in self.window.items():
            value = float(total)
            if not math.isfinite(value):
                steps = (f"in steps {self.window_start + 1}..{step}" if self.window_start + 1 < step
                         else f"at step {step}")
                raise ValueError(
                    f"training diverged: metric {key!r} is {value} {steps}; "
                    "lower the learning rate (the last checkpoint, if any, is kept)"
                )

    def flush(self, step: int) -> dict[str, float]:
        if not self.count:
            return {}
        self.check_finite(step)
        means = {key: float(total) / self.count for key, total in self.window.items()}
        self.steps.append(step)
        for key, value in means.items():
            self.losses.setdefault(key, []).append(value)
        self.window, self.count, self.window_start = {}, 0, step
        return means

    def state(self) -> dict[str, Any]:
        losses = {key: list(values) for key, values in self.losses.items()}
        return {"steps": list(self.steps), "losses": losses, "window": dict(self.window),
                "count": self.count, "window_start": self.window_start,
                "keys": list(self.keys) if self.keys is not None else None, "wall_time": self.wall_time}

    @classmethod
    def from_state(cls, state: Any, path: Path) -> Recorder:
        recorder = cls()
        try:
            recorder.steps = [int(step) for step in state["steps"]]
            recorder.losses = {str(key): [float(value) for value in values]
                               for key, values in state["losses"].items()}
            recorder.window = {str(key): value for key, value in state["window"].items()}
            if not all(isinstance(value, Tensor) for value in recorder.window.values()):
                raise TypeError("window sums must be tensors")
            recorder.count = int(state["count"])
            recorder.window_start = int(state["window_start"])
            recorder.keys = tuple(state["keys"]) if state["keys"] is not None else None
            recorder.wall_time = float(state["wall_time"])
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise ValueError(f"checkpoint {str(path)!r} has a malformed training history ({error})") from None
        return recorder

    def result(self, resumed_from: int | None, final_step: int) -> TrainHistory:
        return TrainHistory(list(self.steps), {key: list(values) for key, values in self.losses.items()},
                            self.wall_time, resumed_from, final_step)


class _DeferredSignals:
    """While active in the main thread, the first SIGINT/SIGTERM is only recorded (the loop acts
    on it between steps); a second one is delivered at once. Handlers set to ignore a signal are
    left alone, so is everything outside the main thread (Python delivers signals there only)."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _DeferredSignals:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                previous = signal.getsignal(signum)
                if previous in (signal.SIG_IGN, None):
                    continue
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.received is None:
            self.received = signum
            return
        self._restore()
        signal.raise_signal(signum)

    def _restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def deliver(self) -> None:
        """Restore the previous handlers and let the recorded signal act."""
        signum, self.received = self.received, None
        self._restore()
        if signum is not None:
            signal.raise_signal(signum)
            # A previous Python handler that returned instead of raising: stop anyway.
            raise KeyboardInterrupt if signum == signal.SIGINT else SystemExit(128 + signum)

    def __exit__(self, *exc_info: Any) -> None:
        self._restore()


def _plot_losses(path: Path, history: TrainHistory) -> None:
    keys = [key for key, values in history.losses.items() if values]
    if not keys:
        return
    figure, axes = new_figure(len(keys))
    for axis, key in zip(axes[0], keys, strict=True):
        values = history.losses[key]
        axis.plot(history.steps, values, color="C0", linewidth=1.2)
        if all(value > 0 for value in values):
            axis.set_yscale("log")
        axis.set_xlabel("step")
        axis.set_ylabel(f"{key} (window mean)")
        axis.set_title(key)
        axis.grid(alpha=0.3)
    save_figure(figure, path)


def _check_generator_state(state: Tensor, generator: torch.Generator, where: str) -> None:
    """A generator state must be what ``generator.get_state()`` returns: a 1-D CPU ByteTensor
    (uint8) of the same length (torch would otherwise accept some garbage, or crash later)."""
    expected = generator.get_state()
    if state.dtype != torch.uint8 or state.ndim != 1 or state.device.type != "cpu" or \
            state.numel() != expected.numel():
        raise ValueError(f"checkpoint {where} holds a damaged generator state (a {state.dtype} tensor of "
                         f"shape {tuple(state.shape)}, expected a torch.ByteTensor of {expected.numel()} "
                         "bytes); start a new run")


def _check_finite_state(state: Any, where: str, name: str = "") -> None:
    """Refuse a task state holding NaN or infinite floating-point tensors (weights, EMA, optimizer
    moments, chains): training from it can only produce NaN."""
    if isinstance(state, Tensor):
        if state.is_floating_point() and not bool(torch.isfinite(state).all()):
            raise ValueError(f"checkpoint {where} holds NaN or infinite values in {name!r}; it cannot be "
                             "resumed: start a new run (or resume from an earlier copy of the checkpoint)")
    elif isinstance(state, dict):
        for key, value in state.items():
            _check_finite_state(value, where, f"{name}.{key}" if name else str(key))
    elif isinstance(state, (list, tuple)):
        for index, value in enumerate(state):
            _check_finite_state(value, where, f"{name}[{index}]")


def _check_optimizer_states(task: TrainTask) -> None:
    """After loading: every optimizer of ``task`` (its attributes) must hold, for each parameter,
    state tensors of that parameter's shape (torch.optim loads any shapes and fails at the next
    step). Raises ``ValueError`` naming the first mismatch."""
    for attribute, optimizer in vars(task).items():
        if not isinstance(optimizer, torch.optim.Optimizer):
            continue
        for group in optimizer.param_groups:
            for parameter in group["params"]:
                for key, value in optimizer.state.get(parameter, {}).items():
                    if isinstance(value, Tensor) and value.ndim > 0 and value.shape != parameter.shape:
                        raise ValueError(f"{attribute} state {key!r} has shape {tuple(value.shape)} for a "
                                         f"parameter of shape {tuple(parameter.shape)}")


def _data_fingerprint(data: Tensor) -> list[float]:
    wide = data.detach().to(torch.float64)
    return [float(wide.sum()), float(wide.square().sum())]


class Checkpointer:
    """A run folder's checkpoint: written atomically every ``every`` steps and at the end (with
    ``history.json`` and ``loss.png``, then ``on_checkpoint(step, folder)``), refused over an
    existing run unless resuming or overwriting, and restored exactly on resume after checking
    that the run is the same (kind, config, batch size, data, generator device).

    ``loop_state`` is what the loop records about its own settings (batch size, data shape and
    float64 sums); ``recorder`` is set by :meth:`restore` or by the loop.
    """

    def __init__(self, out_dir: str | Path, task: TrainTask, generator: torch.Generator, *, kind: str,
                 config: dict[str, Any], loop_state: dict[str, Any], every: int,
                 on_checkpoint: Callable[[int, Path], None] | None = None) -> None:
        self.folder = Path(out_dir)
        self.path = self.folder / CHECKPOINT_NAME
        self.task, self.generator = task, generator
        self.kind, self.config, self.loop_state, self.every = kind, config, loop_state, every
        self.on_checkpoint = on_checkpoint
        self.recorder = Recorder()
        self.resumed_from: int | None = None
        self.saved_step: int | None = None

    def refuse_existing(self, overwrite: bool) -> None:
        if self.path.exists() and not overwrite:
            raise ValueError(
                f"{str(self.folder)!r} already holds a checkpoint; pass resume=True to continue that run, "
                "overwrite=True to replace it, or another out_dir"
            )

    def check_state(self) -> None:
        """Refuse a task state that could not be saved now, not after the first hour of training."""
        _check_task_state(self.task.state_dict())

    def restore(self, n_steps: int) -> int:
        """Load the task, the generator state and the history from the checkpoint; return its step."""
        where = repr(str(self.path))
        if not self.path.is_file():
            raise ValueError(f"resume=True but there is no checkpoint at {where}; start without resume")
        payload = load_checkpoint(self.path, kind=self.kind)
        differences = _differences(payload["config"], self.config)
        if differences:
            shown = "; ".join(differences[:3]) + ("; ..." if len(differences) > 3 else "")
            raise ValueError(f"checkpoint {where} was written with another config: {shown}; resume with the "
                             "same settings or start a new run")
        self._check_loop(payload.get("loop", {}), where)
        saved_step = int(payload["step"])
        if saved_step > n_steps:
            raise ValueError(f"checkpoint {where} is at step {saved_step}, beyond n_steps={n_steps}; "
                             f"pass n_steps >= {saved_step}")
        rng = payload.get("rng")
        if not isinstance(rng, dict) or not isinstance(rng.get("generator"), Tensor):
            raise ValueError(f"checkpoint {where} lacks the generator state")
        if rng.get("device") != self.generator.device.type:
            raise ValueError(f"checkpoint {where} holds the state of a {rng.get('device')} generator; pass a "
                             f"generator on {rng.get('device')}, not {self.generator.device.type}")
        _check_generator_state(rng["generator"], self.generator, where)
        recorder = Recorder.from_state(payload.get("history"), self.path)
        task_state = {key: value for key, value in payload.items() if key not in _LOOP_KEYS}
        _check_finite_state(task_state, where)
        try:
            self.task.load_state_dict(task_state)
            _check_optimizer_states(self.task)
        except (KeyError, RuntimeError, TypeError, ValueError, IndexError) as error:
            first_line = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
            raise ValueError(f"checkpoint {where} does not fit this task ({first_line}); resume with the "
                             "model settings it was written with") from None
        try:
            self.generator.set_state(rng["generator"])
        except (RuntimeError, TypeError, ValueError) as error:
            detail = str(error).strip().splitlines()[0][:160] if str(error).strip() else type(error).__name__
            raise ValueError(f"checkpoint {where} holds a damaged generator state ({detail}); start a new "
                             "run") from None
        self.recorder, self.resumed_from, self.saved_step = recorder, saved_step, saved_step
        return saved_step

    def _check_loop(self, saved: dict[str, Any], where: str) -> None:
        if saved.get("batch_size") != self.loop_state["batch_size"]:
            raise ValueError(f"checkpoint {where} was trained with batch_size={saved.get('batch_size')}, not "
                             f"{self.loop_state['batch_size']}; resume with the same batch size")
        saved_sums = saved.get("data_sums") or [math.nan, math.nan]
        same_data = saved.get("data_shape") == self.loop_state["data_shape"] and all(
            math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
            for a, b in zip(saved_sums, self.loop_state["data_sums"], strict=True))
        if not same_data:
            raise ValueError(f"checkpoint {where} was trained on other data (shape "
                             f"{saved.get('data_shape')}, now {self.loop_state['data_shape']}, or other "
                             "values); resume with the same data")

    def due(self, step: int, n_steps: int) -> bool:
        return step % self.every == 0 or step == n_steps

    def save(self, step: int, *, callback: bool = True) -> None:
        """Write the checkpoint of ``step`` (the task's state after that step), its history and
        loss figure; then call ``on_checkpoint`` (unless ``callback=False``)."""
        if self.saved_step == step:
            return
        self.recorder.check_finite(step)
        state = _check_task_state(self.task.state_dict())
        self.recorder.tick()
        payload = {"kind": self.kind, "config": self.config, "step": step,
                   "rng": {"generator": self.generator.get_state(), "device": self.generator.device.type},
                   "history": self.recorder.state(), "loop": self.loop_state, **state}
        save_checkpoint(self.path, payload)
        self.saved_step = step
        history = self.recorder.result(self.resumed_from, step)
        atomic_write_json(self.folder / HISTORY_NAME, history.to_dict())
        _plot_losses(self.folder / LOSS_FIGURE_NAME, history)
        if callback and self.on_checkpoint is not None:
            self.on_checkpoint(step, self.folder)

    def finish(self, history: TrainHistory) -> None:
        """Record the session's full wall time (the last checkpoint wrote history.json before its
        figure and callback)."""
        atomic_write_json(self.folder / HISTORY_NAME, history.to_dict())


def _batches(data: Tensor, batch_size: int | None, generator: torch.Generator) -> Iterator[Tensor]:
    """Batches of ``batch_size`` rows drawn with replacement (indices on the generator's device,
    moved to the data's), or the whole data set every time when ``batch_size`` is None."""
    while True:
        if batch_size is None:
            yield data
            continue
        rows = torch.randint(data.shape[0], (batch_size,), generator=generator, device=generator.device)
        yield data[rows if rows.device == data.device else rows.to(data.device)]


def _check_arguments(task: Any, data: Any, generator: Any, kind: Any, on_checkpoint: Any) -> None:
    if not isinstance(task, TrainTask):
        raise TypeError(f"task must be a TrainTask, got {type(task).__name__}")
    if not isinstance(data, Tensor):
        raise TypeError(f"data must be a torch tensor of shape (n, ...), got {type(data).__name__}")
    if data.ndim < 1 or data.shape[0] < 1:
        raise ValueError(f"data must have shape (n, ...) with n >= 1 rows, got {tuple(data.shape)}")
    if data.is_floating_point():
        check_finite(data, "data")
    if not isinstance(generator, torch.Generator):
        raise TypeError(
            f"generator must be a torch.Generator (seeded by the caller), got {type(generator).__name__}"
        )
    if not isinstance(kind, str) or not kind:
        raise ValueError(f"kind must be a non-empty string, got {kind!r}")
    if on_checkpoint is not None and not callable(on_checkpoint):
        raise TypeError(f"on_checkpoint must be callable or None, got {type(on_checkpoint).__name__}")


def train(
    task: TrainTask,
    data: Tensor,
    *,
    n_steps: int,
    batch_size: int | None,
    generator: torch.Generator,
    out_dir: str | Path | None = None,
    checkpoint_every: int | None = None,
    log_every: int = 50,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    config: dict[str, Any] | None = None,
    kind: str = "model",
    on_checkpoint: Callable[[int, Path], None] | None = None,
    description: str = "train",
) -> TrainHistory:
    r"""Run ``task`` for ``n_steps`` steps on batches of ``data`` ``(n, ...)`` (see the module docstring).

    Each step draws ``batch = data[randint(n, (batch_size,), generator)]`` (rows with
    replacement, indices drawn on the generator's device, then moved to the data's) and calls
    ``task.step(batch, generator)``; ``batch_size=None`` hands the whole ``data`` to every step.
    Metrics are averaged over windows of ``log_every`` steps.

    With ``out_dir``: ``checkpoint.pt`` after every ``checkpoint_every`` steps (default
    ``max(n_steps // 10, 1)``) and after the last, ``history.json`` and ``loss.png`` with it;
    ``on_checkpoint(step, out_dir)`` is called after each checkpoint (e.g. to draw samples).
    A folder that already holds a checkpoint is refused unless ``resume`` (continue it) or
    ``overwrite`` (start afresh over it) is set.

    ``resume=True`` continues the run in ``out_dir``: its checkpoint must exist, be of this
    ``kind``, have the same ``config``, batch size and data (shape and float64 sums); the
    task, generator state, step and partial log window are restored. If the checkpoint is
    already at ``n_steps`` the task is loaded and its history returned without training or
    writing anything; a checkpoint beyond ``n_steps`` is an error (pass a larger ``n_steps``).

    Returns the :class:`TrainHistory` of the whole run (all sessions).

    >>> class Mean(TrainTask):   # learns the data mean by SGD on |theta - x|^2 / 2
    ...     def __init__(self): self.theta = torch.zeros(2)
    ...     def step(self, batch, generator):
    ...         self.theta += 0.1 * (batch.mean(0) - self.theta)
    ...         return {"loss": 0.5 * (batch - self.theta).square().sum(1).mean()}
    ...     def state_dict(self): return {"model": {"theta": self.theta}}
    ...     def load_state_dict(self, state): self.theta = state["model"]["theta"].clone()
    >>> task = Mean()
    >>> history = train(task, torch.ones(10, 2), n_steps=100, batch_size=4,
    ...                 generator=torch.Generator().manual_seed(0), log_every=50, progress=False)
    >>> history.steps, round(float(task.theta[0]), 4)
    ([50, 100], 1.0)
    """
    _check_arguments(task, data, generator, kind, on_checkpoint)
    n_steps, log_every = check_count(n_steps, "n_steps"), check_count(log_every, "log_every")
    batch_size = None if batch_size is None else check_count(batch_size, "batch_size")
    every = max(n_steps // 10, 1)
    if checkpoint_every is not None:
        every = check_count(checkpoint_every, "checkpoint_every")
    config = _plain_config({} if config is None else config, "")
    if not isinstance(config, dict):
        raise TypeError(f"config must be a dict, got {type(config).__name__}")
    if resume and overwrite:
        raise ValueError("resume=True continues the run in out_dir and overwrite=True replaces it; pass one")
    if resume and out_dir is None:
        raise ValueError("resume=True needs out_dir, the folder of the run to continue")
    checkpointer = None
    if out_dir is not None:
        loop_state = {"batch_size": batch_size, "data_shape": list(data.shape),
                      "data_sums": _data_fingerprint(data)}
        checkpointer = Checkpointer(out_dir, task, generator, kind=kind, config=config, loop_state=loop_state,
                                    every=every, on_checkpoint=on_checkpoint)
    start = 0
    if resume:
        start = checkpointer.restore(n_steps)
        if start == n_steps:
            return checkpointer.recorder.result(start, start)
    elif checkpointer is not None:
        checkpointer.refuse_existing(overwrite)
    if checkpointer is not None:
        checkpointer.check_state()
    recorder = checkpointer.recorder if checkpointer is not None else Recorder()
    recorder.start_clock()
    batches = _batches(data, batch_size, generator)
    completed, in_step = start, False
    bar = progress_bar(n_steps, description, enabled=progress)
    bar.update(start)
    bar_every, bar_pending = max(1, min(log_every, 25), 0), 0
    try:
        with _DeferredSignals() if checkpointer is not None else contextlib.nullcontext() as signals:
            for step in range(start, n_steps):
                in_step = True
                recorder.add(task.step(next(batches), generator), step + 1)
                completed = step + 1
                # Early stopping: a task that sets stop_requested ends the run after this step.
                stop = bool(getattr(task, "stop_requested", False))
                if completed % log_every == 0 or completed == n_steps or stop:
                    means = recorder.flush(completed)
                    bar.set_postfix({key: f"{value:.4g}" for key, value in means.items()}, refresh=False)
                if checkpointer is not None and (checkpointer.due(completed, n_steps) or stop):
                    checkpointer.save(completed)
                bar_pending += 1
                if bar_pending >= bar_every:
                    bar.update(bar_pending)
                    bar_pending = 0
                in_step = False
                if signals is not None and signals.received is not None:
                    checkpointer.save(completed, callback=False)
                    signals.deliver()
                if stop:
                    break
    except KeyboardInterrupt:
        # Only between steps is the task's state that of a completed step; mid-step we keep the
        # last periodic checkpoint rather than save a half-updated model.
        if checkpointer is not None and not in_step:
            checkpointer.save(completed, callback=False)
        raise
    finally:
        bar.close()
    recorder.tick()
    history = recorder.result(start if resume else None, completed)
    if checkpointer is not None:
        checkpointer.finish(history)
    return history


def _check_task_state(state: Any) -> dict[str, Any]:
    if not isinstance(state, dict):
        raise TypeError(f"TrainTask.state_dict must return a dict, got {type(state).__name__}")
    clashes = sorted(set(state) & set(_LOOP_KEYS))
    if clashes:
        raise ValueError(
            f"TrainTask.state_dict uses the key(s) {', '.join(clashes)}, which the training loop owns; "
            "rename them"
        )
    _check_plain(state, "")
    return state
