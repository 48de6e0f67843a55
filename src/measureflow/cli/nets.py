"""``measureflow nets``: train a two-layer network f(x) = s(M) sum_j a_j sigma(w_j . x) in the lazy
(NTK, s = M^{-1/2}) or mean-field (s = 1/M) regime on a labelled toy set or the user's own file,
recording the risk, the weight movement and the NTK drift (:func:`measureflow.nets.train`).

The settings, their validation and the learning-rate convention of the mean-field scaling are in
:mod:`measureflow.cli._common.nets` (``OPTIMIZER_CHOICES``, ``NetsTrainSettings``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any

import torch
import typer

from measureflow._core import atomic_write_json, make_generator
from measureflow.cli._common import (
    DEFAULT_NETS_N,
    OPTIMIZER_CHOICES,
    DeviceOption,
    NetsTrainSettings,
    NoProgressOption,
    OptimizerChoice,
    OverwriteOption,
    check_device,
    check_memory,
    check_out,
    check_run_folder,
    format_number,
    interruptible,
    json_safe,
    merge_alias,
    print_table,
    user_errors,
)
from measureflow.data import SupervisedData, load_supervised, supervised_dataset, train_test_split
from measureflow.data.supervised import SUPERVISED_SETS
from measureflow.generative.train import CHECKPOINT_NAME
from measureflow.nets import ACTIVATIONS, OPTIMIZERS, Monitor, NetTrainResult, TwoLayer, train
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
        data = supervised_dataset(name, settings.n or DEFAULT_NETS_N, generator, noise=settings.noise,
                                  device=settings.device)
    else:
        data = load_supervised(name, "classification" if settings.classification else "regression",
                               n=settings.n, generator=generator, device=settings.device)
    try:
        return train_test_split(data, settings.test_fraction, generator)
    except ValueError as error:
        raise ValueError(f"--test-fraction: {error}") from None


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
    n_data: Annotated[int | None, typer.Option(
        "--n-data", help="Named sets: points drawn (default 200, train and test together); files: a random "
                         "subset of this many rows (default all).")] = None,
    n: Annotated[int | None, typer.Option("--n", hidden=True, help="Old name of --n-data.")] = None,
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
    out: Annotated[str | None, typer.Option(help="Run folder (default runs/nets/DATA-SCALING).")] = None,
    resume: Annotated[bool, typer.Option(
        "--resume", help="Continue the run in --out from its checkpoint (give the same options).")] = False,
    overwrite: OverwriteOption = False,
    device: DeviceOption = "cpu",
    no_progress: NoProgressOption = False,
) -> None:
    """Train a two-layer network in the NTK or mean-field scaling."""
    with user_errors({"n_steps": "--steps", "batch_size": "--batch-size",
                      "checkpoint_every": "--checkpoint-every", "test_fraction": "--test-fraction",
                      "record_every": "--record-every"}):
        settings = NetsTrainSettings(
            scaling=scaling, width=width, data=data, n=merge_alias(n_data, n, "--n-data", "--n", None),
            noise=noise, activation=activation, loss=loss,
            optimizer=optimizer, lr=lr, steps=steps, batch_size=batch_size, regularization=regularization,
            beta=beta, test_fraction=test_fraction, record_every=record_every,
            checkpoint_every=checkpoint_every,
            seed=seed,
            out=None if out is None else str(out), resume=resume, overwrite=overwrite,
            device=check_device(device), progress=not no_progress,
        )
        # The raw --out, not settings.folder (Path('') is '.'): an empty --out is refused there.
        folder = check_out(settings.out if settings.out is not None else settings.folder, "nets train",
                           overwrite=settings.overwrite)
        check_run_folder(folder, settings.resume, settings.overwrite)
        generator = make_generator(settings.seed, settings.device)
        if settings.data_name in SUPERVISED_SETS:  # a named set is drawn: check before drawing it
            _check_sizes(settings.n or DEFAULT_NETS_N, settings.width, 3)
        train_data, test_data = _load_data(settings, generator)
        n_points = train_data.x.shape[0] + (0 if test_data is None else test_data.x.shape[0])
        _check_sizes(n_points, settings.width, train_data.dim)
        model = TwoLayer(train_data.dim, settings.width, settings.activation, settings.scaling,
                         generator=generator, device=settings.device)
        monitor = Monitor(x_test=None if test_data is None else test_data.x,
                          y_test=None if test_data is None else test_data.y, every=settings.record_every)
        if settings.overwrite:  # what the new run does not replace at once
            for name in ("result.json", "nets.png"):
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


def _print_summary(summary: dict[str, Any], folder: Path) -> None:
    settings, data = summary["settings"], summary["data"]
    resumed = summary["history"]["resumed_from"]
    print_table(f"nets train: {data['name']}", [
        ("data", f"{data['n_train']} train / {data['n_test']} test points, d = {data['dim']} "
                 f"({data['task']})"),
        ("network", f"width {settings['width']}, {settings['activation']}, {settings['scaling']} scaling"),
        ("optimizer", f"{settings['optimizer']}, --lr {settings['lr']:.4g} (optimizer lr "
                      f"{summary['optimizer_lr']:.4g}), {settings['loss']} loss"),
        ("steps", str(summary["steps"]) + (f" (resumed from {resumed})" if resumed is not None else "")),
        ("train / test loss", f"{format_number(summary['initial_train_loss'])} -> "
                              f"{format_number(summary['final_train_loss'])} / "
                              f"{format_number(summary['final_test_loss'])}"),
        ("movement / NTK drift", f"{format_number(summary['final_movement'])} / "
                                 f"{format_number(summary['final_ntk_drift'])}"),
        ("wall time", f"{summary['wall_time_s']:.2f} s (training, all sessions)"),
        ("written to", str(folder)),
    ])
