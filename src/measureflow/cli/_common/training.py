"""What the training commands of the generative models share (diffusion, gan, ebm, flow-model):
the options they all have, their data and its standardization, the run folder with --resume and
--overwrite, the figure drawn at each checkpoint, and the result.json and table they end with."""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import torch
import typer
from torch import Tensor

from measureflow._core import make_generator, remove_stale_temporaries
from measureflow.cli._common.base import (
    check_count,
    check_memory,
    check_out,
    check_seed,
    print_table,
    write_json,
)
from measureflow.cli._common.models import data_label, data_spec
from measureflow.data import DATASET_NAMES, Dataset, Standardizer, load_dataset
from measureflow.generative import TrainedModel
from measureflow.generative.train import CHECKPOINT_NAME
from measureflow.report import save_figure
from measureflow.report.generative import DIGIT_GRID, model_samples_figure

if TYPE_CHECKING:
    from measureflow.generative.train import TrainHistory

__all__ = [
    "DATA_HELP",
    "CheckpointEveryOption",
    "DeviceOption",
    "FigureSamplesOption",
    "NDataOption",
    "NoProgressOption",
    "OverwriteOption",
    "ResumeOption",
    "SampleOverwriteOption",
    "TRAIN_FLAGS",
    "TrainRun",
    "TrainRunSettings",
    "check_run_folder",
    "clear_run",
    "finish_training",
    "last_losses",
    "load_training_data",
    "start_training",
    "write_preview",
]

DATA_HELP = f"Data: one of {', '.join(DATASET_NAMES)}, or a path to a .csv/.npy file of shape (n, d)"
DeviceOption = Annotated[str, typer.Option(help="cpu, cuda or cuda:N.")]
NoProgressOption = Annotated[bool, typer.Option("--no-progress", help="Hide the progress bar.")]
ResumeOption = Annotated[bool, typer.Option(
    "--resume", help="Continue the run in --out from its checkpoint, exactly where it stopped "
                     "(give the same options).")]
OverwriteOption = Annotated[bool, typer.Option(
    "--overwrite", help="Start afresh in an --out that holds a run, of this command or another (its files "
                        "are replaced).")]
SampleOverwriteOption = Annotated[bool, typer.Option(
    "--overwrite", help="Write into an --out that holds another command's run (its summary file is "
                        "replaced).")]
# The library's argument names in the training loops' messages, as the commands' options.
TRAIN_FLAGS = {"n_steps": "--steps", "batch_size": "--batch-size", "checkpoint_every": "--checkpoint-every",
               "learning_rate": "--lr", "n_data": "--n-data"}
NDataOption = Annotated[int | None, typer.Option(
    help="Toys: number of draws (default 100,000); digits/files: a random subset of this many rows.")]
CheckpointEveryOption = Annotated[int | None, typer.Option(
    help="Write the checkpoint (and a sample figure) every this many steps (default: a tenth of --steps).")]
FigureSamplesOption = Annotated[int, typer.Option(
    help="Samples drawn for each checkpoint's figure (vectors; 0: no such figures).")]


def load_training_data(data: str, n_data: int | None, seed: int, device: str, *,
                       vectors_only: bool = False) -> tuple[Dataset, Standardizer | None, torch.Generator]:
    """The training data (toys drawn, digits/files subsampled with a generator seeded by --seed),
    the per-feature standardizer of vector data (None for images) and the generator the training
    continues with (seeded from the same stream, on the training device). A resumed run calls
    this again with the same options and gets the same data. ``vectors_only``: image data are
    refused (a model of vectors (n, d))."""
    generator = make_generator(seed)
    dataset = load_dataset(data_spec(data), n=n_data, generator=generator)
    if vectors_only and dataset.kind != "vector":
        raise ValueError(f"--data {data!r} holds images {dataset.event_shape}; this model is for vectors "
                         "(n, d): use a toy or a .csv/.npy file")
    if dataset.n < 2:
        raise ValueError(f"--data {data!r} has {dataset.n} sample(s); training needs at least 2")
    standardizer = Standardizer.fit(dataset.x) if dataset.kind == "vector" else None
    train_seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    return dataset, standardizer, make_generator(train_seed, device)


def check_run_folder(folder: Path, resume: bool, overwrite: bool) -> None:
    """--resume needs the checkpoint in ``folder``; without --resume or --overwrite an existing
    checkpoint is refused (a fresh run would silently replace it)."""
    checkpoint = folder / CHECKPOINT_NAME
    if resume and not checkpoint.is_file():
        raise ValueError(f"--resume: {os.fspath(checkpoint)!r} does not exist; start without --resume")
    if not resume and not overwrite and checkpoint.exists():
        raise ValueError(f"{os.fspath(checkpoint)!r} exists; pass --resume to continue that run, --overwrite "
                         "to replace it, or choose another --out")


def clear_run(folder: Path, previews: str, names: Sequence[str] = ("result.json",)) -> None:
    """--overwrite: remove the files ``names`` and the figures matching ``previews`` that an
    earlier run wrote in ``folder`` and the new one does not replace at once (sample folders
    stay; the training loop replaces the checkpoint, history and loss curve itself)."""
    if not folder.is_dir():
        return
    for name in names:
        (folder / name).unlink(missing_ok=True)
    for path in folder.glob(previews):
        path.unlink()


@dataclass(frozen=True, kw_only=True)
class TrainRunSettings:
    """The options every training command of a generative model has, validated on construction
    (ValueError naming the flag); a command's settings subclass this and add its own."""

    data: str
    steps: int
    seed: int
    out: str
    resume: bool
    overwrite: bool
    batch_size: int
    n_data: int | None
    checkpoint_every: int | None
    device: str
    progress: bool

    def __post_init__(self) -> None:
        check_count(self.steps, "--steps")
        check_seed(self.seed)
        check_count(self.batch_size, "--batch-size")
        if self.resume and self.overwrite:
            raise ValueError("--resume continues the run in --out and --overwrite replaces it; pass one")
        if self.n_data is not None:
            check_count(self.n_data, "--n-data", minimum=2)
        if self.checkpoint_every is not None:
            check_count(self.checkpoint_every, "--checkpoint-every")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class TrainRun:
    """A training run about to start: its folder, the data (``x`` standardized, on the device),
    the standardizer (None for images), the training generator, and the ``config`` entries the
    checkpoint records so that sampling needs nothing but the checkpoint."""

    folder: Path
    dataset: Dataset
    standardizer: Standardizer | None
    generator: torch.Generator
    x: Tensor
    config: dict[str, Any]


def start_training(settings: TrainRunSettings, previews: str, replaced: Sequence[str] = ("result.json",), *,
                   vectors_only: bool = False, command: str | None = None,
                   batch_rows: int | None = None) -> TrainRun:
    """Check the run folder against --resume/--overwrite (and, with ``command``, refuse a folder
    of another command without --overwrite and remove the temporary files a killed run left),
    read and standardize the data (images refused when ``vectors_only``), refuse a batch of
    ``batch_rows`` rows (default --batch-size) the machine cannot hold, and with --overwrite
    remove what the earlier run wrote (:func:`clear_run` of ``previews`` and ``replaced``) once
    the data are known to be good."""
    folder = check_out(settings.out, command, overwrite=settings.overwrite)
    check_run_folder(folder, settings.resume, settings.overwrite)
    dataset, standardizer, generator = load_training_data(settings.data, settings.n_data, settings.seed,
                                                          settings.device, vectors_only=vectors_only)
    rows = settings.batch_size if batch_rows is None else batch_rows
    # A batch, with its gradients and about 2048 activations per row (the MLPs here).
    check_memory(4 * rows * (8 * math.prod(dataset.event_shape) + 2048),
                 f"a batch of {rows:,} rows of shape {dataset.event_shape}")
    if settings.overwrite:
        clear_run(folder, previews, replaced)
    x = standardizer.forward(dataset.x) if standardizer is not None else dataset.x
    config = {
        "data": {"spec": data_spec(settings.data), "n_data": settings.n_data, **dataset.summary()},
        "standardizer": None if standardizer is None else standardizer.to_dict(),
        "seed": settings.seed,
    }
    return TrainRun(folder, dataset, standardizer, generator, x.to(settings.device), config)


def write_preview(run: TrainRun, step: int, family: str, what: str, n_samples: int, seed: int, device: str,
                  *, figure_name: str | None = None, **options: Any) -> None:
    """The figure written after each checkpoint: samples of the checkpoint's EMA model (sampler
    ``options``) over the data in the data's units (vectors: ``n_samples`` of them, 0 for none)
    or an 8 x 8 grid (images), as ``figure_name`` in the run folder (default samples_stepSTEP.png).
    Its own generator, seeded with --seed every time (the figures show one set of draws
    improving), leaves the training's random stream untouched."""
    if n_samples == 0:
        return
    model = TrainedModel.load(run.folder, family=family, device=device)
    n = DIGIT_GRID if run.dataset.kind == "image" else n_samples
    try:
        x = model.sample(n, generator=make_generator(seed, device), **options)
    except ValueError as error:
        # An unstable early model must not stop a training whose checkpoint is fine.
        typer.echo(f"warning: no sample figure at step {step}: {error}", err=True)
        return
    title = f"{data_label(run.dataset.name)}: {what} at step {step}"
    figure = model_samples_figure(x, run.dataset.kind, run.dataset.x, title)
    save_figure(figure, run.folder / (figure_name or f"samples_step{step:07d}.png"))


def last_losses(history: TrainHistory) -> dict[str, float]:
    """The last recorded value of each loss series of ``history``."""
    return {key: values[-1] for key, values in history.losses.items() if values}


def finish_training(command: str, settings: TrainRunSettings, run: TrainRun, history: TrainHistory,
                    previews: str, rows: Sequence[tuple[str, str]] = (), **results: Any) -> dict[str, Any]:
    """Write the run's ``result.json`` (settings, data, the command's ``results``, history, figures
    matching ``previews``) and print its table (data, the command's ``rows``, steps, time, folder)."""
    summary = {
        "command": command, "settings": settings.to_dict(), "data": run.config["data"],
        "standardized": run.standardizer is not None, **results, "steps": history.final_step,
        "wall_time_s": history.wall_time, "history": history.to_dict(),
        "figures": ["loss.png", *sorted(path.name for path in run.folder.glob(previews))],
        "files": {"checkpoint": CHECKPOINT_NAME, "history": "history.json"},
    }
    write_json(run.folder / "result.json", summary)
    # A write killed just before this run started was too young to remove then (it might have been
    # another process's); by now it is stale.
    remove_stale_temporaries(run.folder)
    dataset = run.dataset
    data = (f"{dataset.n} samples of shape {dataset.event_shape} ({dataset.kind}"
            f"{', standardized' if run.standardizer is not None else ''})")
    resumed = f" (resumed from {history.resumed_from})" if history.resumed_from is not None else ""
    print_table(f"{command}: {data_label(dataset.name)}", [
        ("data", data), *rows, ("steps", f"{history.final_step}{resumed}"),
        ("wall time", f"{history.wall_time:.2f} s (training, all sessions)"), ("written to", str(run.folder)),
    ])
    return summary
