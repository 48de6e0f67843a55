"""``measureflow nets``: train a two-layer network f(x) = s(M) sum_j a_j sigma(w_j . x) in the lazy
(NTK, s = M^{-1/2}) or mean-field (s = 1/M) regime on a labelled toy set or the user's own file,
recording the risk, the weight movement and the NTK drift (:func:`measureflow.nets.train`).

Learning rates: under the mean-field scaling every neuron's gradient is O(1/M), so for the
gradient methods (sgd, momentum, nesterov, averaged-sgd) ``--lr`` is the mean-field step h and
the optimizer gets lr = h M: the neurons then move at rate h whatever the width, and the run is
the forward-Euler discretization of the mean-field particle flow. Adaptive methods (adagrad,
rmsprop, adam) divide the gradient by its own scale, so they get ``--lr`` as it is.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import torch
import typer
from rich.console import Console
from rich.table import Table

from measureflow._core import atomic_write_json, make_generator
from measureflow.cli._common import (
    check_choice,
    check_count,
    check_device,
    check_memory,
    check_out,
    check_positive_number,
    check_seed,
    interruptible,
    json_safe,
    user_errors,
)
from measureflow.data import (
    DATA_SUFFIXES,
    SUPERVISED_NAMES,
    SupervisedData,
    load_supervised,
    supervised_dataset,
    train_test_split,
)
from measureflow.data.supervised import SUPERVISED_SETS
from measureflow.generative.train import CHECKPOINT_NAME
from measureflow.nets import (
    ACTIVATIONS,
    LOSSES,
    OPTIMIZERS,
    SCALINGS,
    Monitor,
    NetTrainResult,
    TwoLayer,
    train,
)
from measureflow.report import save_figure
from measureflow.report.nets import nets_figure

__all__ = ["OPTIMIZER_CHOICES", "NetsTrainSettings", "OptimizerChoice", "nets_app", "train_command"]

nets_app = typer.Typer(
    name="nets",
    help="Two-layer networks in the lazy (NTK) and mean-field regimes.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@dataclass(frozen=True)
class OptimizerChoice:
    """An ``--optimizer`` name: its default ``--lr`` in each scaling, and whether a mean-field run
    multiplies ``--lr`` by the width (gradient methods: yes; adaptive methods normalize the
    gradient by its own scale: no)."""

    ntk_lr: float
    mean_field_lr: float
    mean_field_times_width: bool

    def default_lr(self, scaling: str) -> float:
        return self.mean_field_lr if scaling == "mean-field" else self.ntk_lr


# Default rates, tried on every named set (width 512, 1000 full-batch steps, seed 0): gradient
# descent at lr 1 is stable in the NTK scaling (the mean risk's Hessian in function space is
# K/n, whose top eigenvalue is at most trace(K)/n = mean |x|^2, below 2 for these sets), while
# mean-field steps h >= 0.5 oscillate on the squared loss once the neurons have grown; h = 0.25
# does not. Momentum 0.9 multiplies the step by about 1/(1 - 0.9), hence a tenth of these rates.
OPTIMIZER_CHOICES: dict[str, OptimizerChoice] = {
    "sgd": OptimizerChoice(1.0, 0.25, True),
    "momentum": OptimizerChoice(0.1, 0.025, True),
    "nesterov": OptimizerChoice(0.1, 0.025, True),
    "averaged-sgd": OptimizerChoice(1.0, 0.25, True),
    "adagrad": OptimizerChoice(0.1, 0.1, False),
    "rmsprop": OptimizerChoice(1e-3, 1e-3, False),
    "adam": OptimizerChoice(1e-2, 1e-2, False),
    # Langevin SGD: the rates of SGD, plus sqrt(2 lr / beta) xi (for mean field lr = h M, the
    # mean-field Langevin dynamics at inverse temperature beta / M per neuron).
    "langevin": OptimizerChoice(1.0, 0.25, True),
}

_REGRESSION_DATA = "sine"
_CLASSIFICATION_DATA = "moons"
_DEFAULT_N = 200
_RUN_FILES = ("result.json", "nets.png")  # what --overwrite removes before the new run writes


@dataclass(frozen=True)
class NetsTrainSettings:
    """The settings of ``nets train``, validated on construction (ValueError naming the flag);
    recorded in ``result.json`` under ``settings``."""

    scaling: str
    width: int
    data: str | None
    n: int | None
    noise: float | None
    activation: str
    loss: str
    optimizer: str
    lr: float | None
    steps: int
    batch_size: int | None
    regularization: float
    beta: float | None
    test_fraction: float
    record_every: int
    checkpoint_every: int | None
    seed: int
    out: str | None
    resume: bool
    overwrite: bool
    device: str
    progress: bool

    def __post_init__(self) -> None:
        check_choice(self.scaling, SCALINGS, "--scaling")
        check_count(self.width, "--width")
        check_choice(self.activation, tuple(ACTIVATIONS), "--activation")
        check_choice(self.loss, tuple(LOSSES), "--loss")
        check_choice(self.optimizer, OPTIMIZERS, "--optimizer")
        if self.lr is not None:
            check_positive_number(self.lr, "--lr")
        check_count(self.steps, "--steps")
        if self.batch_size is not None:
            check_count(self.batch_size, "--batch-size")
        if not (math.isfinite(self.regularization) and self.regularization >= 0):
            raise ValueError(f"--regularization must be finite and >= 0, got {self.regularization!r}")
        if self.optimizer == "langevin":
            if self.beta is None:
                raise ValueError("--optimizer langevin needs --beta, the inverse temperature (> 0)")
            check_positive_number(self.beta, "--beta")
        elif self.beta is not None:
            raise ValueError(f"--beta applies to --optimizer langevin, not {self.optimizer}")
        if not (math.isfinite(self.test_fraction) and 0 <= self.test_fraction < 1):
            raise ValueError(f"--test-fraction must lie in [0, 1), got {self.test_fraction!r}")
        check_count(self.record_every, "--record-every")
        if self.checkpoint_every is not None:
            check_count(self.checkpoint_every, "--checkpoint-every")
        check_seed(self.seed)
        if self.n is not None:
            check_count(self.n, "--n", minimum=2)
        if self.resume and self.overwrite:
            raise ValueError("--resume continues the run in --out and --overwrite replaces it; pass one")
        name = self.data_name
        if name in SUPERVISED_SETS:
            if self.classification and SUPERVISED_SETS[name].task != "classification":
                sets = ", ".join(key for key, value in SUPERVISED_SETS.items()
                                 if value.task == "classification")
                raise ValueError(f"--loss {self.loss} needs labels +-1, and --data {name} is a regression "
                                 f"set; use {sets}, a labelled file, or --loss mse")
            if self.noise is not None and not (math.isfinite(self.noise) and self.noise >= 0):
                raise ValueError(f"--noise must be finite and >= 0, got {self.noise!r}")
        else:
            if Path(name).suffix.lower() not in DATA_SUFFIXES:
                raise ValueError(f"unknown --data {name!r}; use one of {', '.join(SUPERVISED_NAMES)} or a "
                                 f"path to a file ending in {' or '.join(DATA_SUFFIXES)}")
            if self.noise is not None:
                raise ValueError("--noise applies to the named data sets, not to a file")

    @property
    def classification(self) -> bool:
        return bool(LOSSES[self.loss].classification)

    @property
    def data_name(self) -> str:
        """--data, or the default set for the loss (sine for mse, moons for logistic and exp)."""
        if self.data is not None:
            return self.data
        return _CLASSIFICATION_DATA if self.classification else _REGRESSION_DATA

    @property
    def step_size(self) -> float:
        """--lr, or the optimizer's default."""
        return self.lr if self.lr is not None else OPTIMIZER_CHOICES[self.optimizer].default_lr(self.scaling)

    @property
    def optimizer_lr(self) -> float:
        """The learning rate the optimizer gets: h M for gradient methods in the mean-field
        scaling, --lr otherwise."""
        if self.scaling == "mean-field" and OPTIMIZER_CHOICES[self.optimizer].mean_field_times_width:
            return self.step_size * self.width
        return self.step_size

    @property
    def folder(self) -> Path:
        if self.out is not None:
            return Path(self.out)
        return Path("runs") / "nets" / f"{Path(self.data_name).stem or self.data_name}-{self.scaling}"

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "data": self.data_name, "lr": self.step_size,
                "out": str(self.folder)}


def _check_sizes(n_points: int, width: int, dim: int) -> None:
    """Refuse sizes the machine cannot hold: a step keeps about six (n, M) float32 arrays (pre-
    activations, activations, slopes and their gradients) besides the data and parameters."""
    check_memory(4 * (6 * n_points * width + width * (dim + 1) * 8) + 8 * n_points * (dim + 1),
                 f"--width {width:,} on {n_points:,} points")


def _load_data(settings: NetsTrainSettings,
               generator: torch.Generator) -> tuple[SupervisedData, SupervisedData | None]:
    """(train, test) of the settings' data on the run's device, drawn with ``generator``."""
    name = settings.data_name
    if name in SUPERVISED_SETS:
        data = supervised_dataset(name, settings.n or _DEFAULT_N, generator, noise=settings.noise,
                                  device=settings.device)
    else:
        data = load_supervised(name, "classification" if settings.classification else "regression",
                               n=settings.n, generator=generator, device=settings.device)
    try:
        return train_test_split(data, settings.test_fraction, generator)
    except ValueError as error:
        raise ValueError(f"--test-fraction: {error}") from None


def _check_run_folder(folder: Path, resume: bool, overwrite: bool) -> None:
    checkpoint = folder / CHECKPOINT_NAME
    if resume and not checkpoint.is_file():
        raise ValueError(f"--resume: {os.fspath(checkpoint)!r} does not exist; start without --resume")
    if not resume and not overwrite and checkpoint.exists():
        raise ValueError(f"{os.fspath(checkpoint)!r} exists; pass --resume to continue that run, --overwrite "
                         "to replace it, or choose another --out")


def _last(values: torch.Tensor) -> float | None:
    value = float(values[-1]) if values.numel() else math.nan
    return value if math.isfinite(value) else None


def _summary(settings: NetsTrainSettings, result: NetTrainResult, train_data: SupervisedData,
             test_data: SupervisedData | None, model: TwoLayer) -> dict[str, Any]:
    trace, history = result.trace, result.history
    return {
        "command": "nets train",
        "settings": settings.to_dict(),
        "data": {**train_data.summary(), "n": train_data.n + (test_data.n if test_data is not None else 0),
                 "n_train": train_data.n, "n_test": test_data.n if test_data is not None else 0},
        "model": model.config(),
        "optimizer_lr": settings.optimizer_lr,
        "steps": history.final_step,
        "final_train_loss": _last(trace["train_loss"]),
        "final_test_loss": _last(trace["test_loss"]),
        "final_movement": _last(trace["movement"]),
        "final_ntk_drift": _last(trace["ntk_drift"]),
        "initial_train_loss": float(trace["train_loss"][0]),
        "wall_time_s": history.wall_time,
        "trace": {key: value.tolist() for key, value in trace.items() if key != "projections"},
        "history": history.to_dict(),
        "figures": ["nets.png", "loss.png"],
        "files": {"checkpoint": CHECKPOINT_NAME, "history": "history.json"},
    }


def _format(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def _print_summary(summary: dict[str, Any], folder: Path) -> None:
    settings, data = summary["settings"], summary["data"]
    table = Table(title=f"nets train: {data['name']}", show_header=False)
    table.add_column("quantity", style="bold")
    table.add_column("value")
    table.add_row("data", f"{data['n_train']} train / {data['n_test']} test points, d = {data['dim']} "
                          f"({data['task']})")
    table.add_row("network", f"width {settings['width']}, {settings['activation']}, "
                             f"{settings['scaling']} scaling")
    table.add_row("optimizer", f"{settings['optimizer']}, --lr {settings['lr']:.4g} (optimizer lr "
                               f"{summary['optimizer_lr']:.4g}), {settings['loss']} loss")
    resumed = summary["history"]["resumed_from"]
    table.add_row("steps", str(summary["steps"])
                  + (f" (resumed from {resumed})" if resumed is not None else ""))
    table.add_row("train / test loss", f"{_format(summary['initial_train_loss'])} -> "
                                       f"{_format(summary['final_train_loss'])} / "
                                       f"{_format(summary['final_test_loss'])}")
    table.add_row("movement / NTK drift", f"{_format(summary['final_movement'])} / "
                                          f"{_format(summary['final_ntk_drift'])}")
    table.add_row("wall time", f"{summary['wall_time_s']:.2f} s (training, all sessions)")
    table.add_row("written to", str(folder))
    Console().print(table)


_TRAIN_HELP = (
    "Train a two-layer network f(x) = s(M) sum_j a_j sigma(w_j . x) (no bias; a_j = +-1, w_j ~ N(0, I) at "
    "the start; s = M^-1/2 for ntk, 1/M for mean-field) by full-batch gradient descent or SGD.\n\n"
    "Writes checkpoint.pt (with history.json and loss.png), nets.png (train/test risk, relative weight "
    "movement and NTK drift against the step, and the fitted function: f against the angle or u for circle "
    "and sine, decision regions for moons and xor) and result.json. For --scaling mean-field and the "
    "gradient methods (sgd, momentum, nesterov, averaged-sgd) --lr is the mean-field step h and the "
    "optimizer gets lr = h * width; adagrad, rmsprop and adam get --lr as is. --resume continues an "
    "interrupted run exactly (give the same options); with a larger --steps it trains a finished run further."
)


@nets_app.command("train", help=_TRAIN_HELP)
def train_command(
    scaling: Annotated[str, typer.Option(help="ntk (s = M^-1/2, lazy) or mean-field (s = 1/M).")] = "ntk",
    width: Annotated[int, typer.Option(help="Number of neurons M.")] = 512,
    data: Annotated[str | None, typer.Option(
        help="circle (regression on the unit circle: relu reaches Fourier modes 0, 1 and even ones), sine "
             "(regression, x = (u, 1)), moons or xor (classification, labels +-1, x = (z1, z2, 1)), or a "
             ".csv/.npy file whose last column is y (labels +-1 or 0/1 for logistic and exp; 0/1 become "
             "-1/+1) and whose other columns are x as they are (add a column of ones for a bias). "
             "Default: sine for --loss mse, moons otherwise.")] = None,
    n: Annotated[int | None, typer.Option(
        help="Named sets: points drawn (default 200, train and test together); files: a random subset of "
             "this many rows (default all).")] = None,
    noise: Annotated[float | None, typer.Option(
        help="Named sets: label noise (regression) or point noise (classification) std (default 0.1).")]
    = None,
    activation: Annotated[str, typer.Option(help=f"One of {', '.join(ACTIVATIONS)}.")] = "relu",
    loss: Annotated[str, typer.Option(help="mse, logistic or exp (the last two need labels +-1).")] = "mse",
    optimizer: Annotated[str, typer.Option(help=f"One of {', '.join(OPTIMIZERS)}.")] = "sgd",
    lr: Annotated[float | None, typer.Option(
        help="Step size; for mean-field with sgd/momentum/nesterov/averaged-sgd the mean-field step h "
             "(optimizer lr = h * width). Default (ntk / mean-field): " + ", ".join(
                 f"{name} {choice.ntk_lr:g} / {choice.mean_field_lr:g}"
                 for name, choice in OPTIMIZER_CHOICES.items()) + ".")] = None,
    steps: Annotated[int, typer.Option(help="Optimizer steps.")] = 1000,
    batch_size: Annotated[int | None, typer.Option(
        help="Minibatch size for SGD (rows drawn with replacement); default: full batch.")] = None,
    regularization: Annotated[float, typer.Option(
        help="lambda: adds lambda (theta - theta_0) to the gradient (decay toward the initialization).")]
    = 0.0,
    beta: Annotated[float | None, typer.Option(
        help="Inverse temperature of --optimizer langevin: each step adds sqrt(2 lr / beta) xi.")] = None,
    test_fraction: Annotated[float, typer.Option(
        help="Fraction of the points held out as a test set.")] = 0.25,
    record_every: Annotated[int, typer.Option(
        help="Record risk, movement and NTK drift (on 64 training inputs) every this many steps.")] = 10,
    checkpoint_every: Annotated[int | None, typer.Option(
        help="Write checkpoint.pt (with history.json and loss.png) every this many steps; default: at the "
             "end only (Ctrl-C still saves the last finished step).")] = None,
    seed: Annotated[int, typer.Option(help="Random seed (data, split, initialization, minibatches).")] = 0,
    out: Annotated[Path | None, typer.Option(help="Run folder (default runs/nets/DATA-SCALING).")] = None,
    resume: Annotated[bool, typer.Option(
        "--resume", help="Continue the run in --out from its checkpoint (give the same options).")] = False,
    overwrite: Annotated[bool, typer.Option(
        "--overwrite", help="Start afresh in an --out that holds a run (its files are replaced).")] = False,
    device: Annotated[str, typer.Option(help="cpu, cuda or cuda:N.")] = "cpu",
    no_progress: Annotated[bool, typer.Option("--no-progress", help="Hide the progress bar.")] = False,
) -> None:
    """Train a two-layer network in the NTK or mean-field scaling."""
    with user_errors():
        settings = NetsTrainSettings(
            scaling=scaling, width=width, data=data, n=n, noise=noise, activation=activation, loss=loss,
            optimizer=optimizer, lr=lr, steps=steps, batch_size=batch_size, regularization=regularization,
            beta=beta, test_fraction=test_fraction, record_every=record_every,
            checkpoint_every=checkpoint_every,
            seed=seed,
            out=None if out is None else str(out), resume=resume, overwrite=overwrite,
            device=check_device(device), progress=not no_progress,
        )
        folder = check_out(settings.folder)
        _check_run_folder(folder, settings.resume, settings.overwrite)
        generator = make_generator(settings.seed, settings.device)
        if settings.data_name in SUPERVISED_SETS:  # a named set is drawn: check before drawing it
            _check_sizes(settings.n or _DEFAULT_N, settings.width, 3)
        train_data, test_data = _load_data(settings, generator)
        n_points = train_data.x.shape[0] + (0 if test_data is None else test_data.x.shape[0])
        _check_sizes(n_points, settings.width, train_data.dim)
        model = TwoLayer(train_data.dim, settings.width, settings.activation, settings.scaling,
                         generator=generator, device=settings.device)
        monitor = Monitor(x_test=None if test_data is None else test_data.x,
                          y_test=None if test_data is None else test_data.y, every=settings.record_every)
        if settings.overwrite:
            for name in _RUN_FILES:
                (folder / name).unlink(missing_ok=True)
        with interruptible(folder):
            result = train(model, train_data.x, train_data.y, loss=settings.loss,
                           optimizer=settings.optimizer, lr=settings.optimizer_lr, n_steps=settings.steps,
                           batch_size=settings.batch_size, regularization=settings.regularization,
                           beta=settings.beta, monitor=monitor, generator=generator, out_dir=folder,
                           resume=settings.resume,
                           overwrite=settings.overwrite,
                           checkpoint_every=settings.checkpoint_every or settings.steps,
                           progress=settings.progress)
        title = (f"{train_data.name}: {settings.scaling} scaling, M = {settings.width}, "
                 f"{settings.activation}, {settings.optimizer} (lr {settings.optimizer_lr:.3g}), "
                 f"{result.history.final_step} steps")
        figure = nets_figure(result.trace, result.predictor, train_data, test_data, loss_name=settings.loss,
                             title=title)
        summary = _summary(settings, result, train_data, test_data, model)
        (folder / "result.json").unlink(missing_ok=True)
        save_figure(figure, folder / "nets.png")
        atomic_write_json(folder / "result.json", json_safe(summary))
    _print_summary(summary, folder)
