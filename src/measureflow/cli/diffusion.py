"""``measureflow diffusion``: train a score-based diffusion model on data, sample it, and measure
its exact likelihood through the probability-flow ODE.

``train`` standardizes vector data per feature (images stay in [-1, 1]) and stores the
standardization and the data specification in the checkpoint's config, so ``sample`` and ``nll``
report everything in the data's own units from the checkpoint alone.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import torch
import typer
from rich.console import Console
from rich.table import Table
from torch import Tensor

from measureflow._core import atomic_write_json, make_generator, new_figure, save_figure, save_npz
from measureflow.cli._common import (
    check_choice,
    check_count,
    check_device,
    check_out,
    check_positive_number,
    check_seed,
    interruptible,
    json_safe,
    user_errors,
)
from measureflow.data import (
    DATASET_NAMES,
    MIXTURE_NAMES,
    TOY_NAMES,
    Dataset,
    Standardizer,
    digits_to_pixels,
    load_dataset,
    toy_mixture,
)
from measureflow.generative.diffusion import (
    SDE_NAMES,
    WEIGHTINGS,
    ReverseResult,
    log_likelihood,
    make_sde,
    probability_flow,
    reverse_process,
)
from measureflow.generative.diffusion.sde import SDE
from measureflow.generative.diffusion.training import LoadedDiffusion, load_diffusion, train_diffusion
from measureflow.generative.train import CHECKPOINT_NAME

__all__ = [
    "SAMPLERS",
    "NLLSettings",
    "SampleSettings",
    "SamplerChoice",
    "TrainSettings",
    "check_run_folder",
    "data_label",
    "data_spec",
    "diffusion_app",
    "load_points",
    "load_training_data",
    "nll",
    "print_table",
    "sample",
    "samples_figure",
    "train",
]

diffusion_app = typer.Typer(
    name="diffusion",
    help="Score-based diffusion models: train on data, sample, exact likelihood.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

SCHEDULES = ("linear", "cosine")  # the beta schedules of VPSDE / SubVPSDE
_SCHEDULED_SDES = ("vp", "subvp")
_DATA_HELP = (f"Data: one of {', '.join(DATASET_NAMES)}, or a path to a .csv/.npy file of shape (n, d)")
_PREVIEW_STEPS = 25  # Heun steps (50 network calls) for the sample figures written at checkpoints
_PREVIEW_DIGITS = 64  # an 8 x 8 grid
_MAX_POINTS = 3000  # points drawn per scatter
_TRAJECTORIES = 60  # paths drawn per trajectory panel
_TRAJECTORY_RECORDS = 50  # about this many snapshots along each path


@dataclass(frozen=True)
class SamplerChoice:
    """A ``--sampler`` name: what it runs (with its cost in network evaluations) and its default
    ``--steps`` (None: an adaptive solver chooses its own)."""

    description: str
    default_steps: int | None


SAMPLERS: dict[str, SamplerChoice] = {
    "sde": SamplerChoice("reverse-time SDE, Euler-Maruyama (1 evaluation per step)", 500),
    "ode": SamplerChoice("probability-flow ODE, Heun (2 evaluations per step)", 100),
    "ode-adaptive": SamplerChoice("probability-flow ODE, adaptive Dormand-Prince (dopri5 with "
                                  "rtol = atol = --tolerance; it chooses its own steps)", None),
    "pc": SamplerChoice("predictor-corrector: reverse SDE + one Langevin corrector (2 evaluations "
                        "per step)", 500),
    "als": SamplerChoice("annealed Langevin over noise levels, NCSN (10 steps per level; made for "
                         "--sde ve: with vp/subvp each level also rescales the mean and it is biased "
                         "unless given many more steps)", 500),
}
DEFAULT_TOLERANCE = 1e-5


def _run_sampler(name: str, score: Callable[[Tensor, Tensor], Tensor], sde: SDE, x_T: Tensor,  # noqa: N803
                 steps: int | None, generator: torch.Generator, record: bool, progress: bool,
                 tolerance: float) -> ReverseResult:
    """Run the reverse process ``name`` from ``x_T``, recording snapshots of the first paths when
    ``record`` (ten report times for the adaptive solver, which steps onto them)."""
    options: dict[str, Any] = {"rtol": tolerance, "atol": tolerance} if name == "ode-adaptive" else {}
    n_records = (10 if name == "ode-adaptive" else _TRAJECTORY_RECORDS) if record else 0
    return reverse_process(score, sde, x_T, steps or 1, method=name, generator=generator, n_records=n_records,
                           n_keep=_TRAJECTORIES, progress=progress, **options)


# ----------------------------------------------------------------------------- checkpoint contents


@dataclass(frozen=True)
class _Model:
    """A trained model and what the CLI stored beside it: the data's specification and kind, the
    event shape, and the standardizer (None: the model works in the data's own units)."""

    loaded: LoadedDiffusion
    data_spec: str | None
    kind: str
    event_shape: tuple[int, ...]
    standardizer: Standardizer | None

    def to_data_units(self, x: Tensor) -> Tensor:
        return x if self.standardizer is None else self.standardizer.inverse(x)

    def to_model_units(self, x: Tensor) -> Tensor:
        return x if self.standardizer is None else self.standardizer.forward(x)

    @property
    def log_std_sum(self) -> float:
        """sum_i log std_i: log p_data(x) = log p_model((x - mean)/std) - this."""
        return 0.0 if self.standardizer is None else self.standardizer.log_abs_det()


def _event_shape(net: dict[str, Any]) -> tuple[int, ...]:
    if net.get("name") == "mlp" and "dim" in net:
        return (int(net["dim"]),)
    if net.get("name") == "unet":
        return (int(net.get("channels", 1)), 8, 8)
    raise ValueError(f"the checkpoint's network {net.get('name')!r} has no known sample shape")


def _load_model(ckpt: Path, device: str) -> _Model:
    if not ckpt.exists():
        raise ValueError(f"--ckpt {os.fspath(ckpt)!r} does not exist")
    loaded = load_diffusion(ckpt, device)
    config = loaded.config
    data = config.get("data") or {}
    shape = tuple(data["event_shape"]) if "event_shape" in data else _event_shape(config.get("net", {}))
    stored = config.get("standardizer")
    standardizer = Standardizer.from_dict(stored) if stored is not None else None
    kind = data.get("kind", "image" if len(shape) == 3 else "vector")
    return _Model(loaded, data.get("spec"), kind, shape, standardizer)


# ----------------------------------------------------------------------------- figures


def _scatter_axes(axis: Any, points: np.ndarray, color: str, label: str, size: float, alpha: float) -> None:
    shown = points[:_MAX_POINTS]
    axis.scatter(shown[:, 0], shown[:, 1], s=size, alpha=alpha, color=color, linewidths=0, label=label)


def samples_figure(samples: Tensor, data: Tensor | None, title: str) -> Any:
    """Vectors: samples over the data (first two coordinates; a histogram for d = 1)."""
    figure, axes = new_figure(1, 1, width=5.0, height=4.6)
    axis = axes[0, 0]
    points = samples.detach().cpu().double().numpy()
    reference = None if data is None else data.detach().cpu().double().numpy()
    if points.shape[1] == 1:
        if reference is not None:
            axis.hist(reference[:, 0], bins=60, density=True, alpha=0.5, color="tab:gray", label="data")
        axis.hist(points[:, 0], bins=60, density=True, alpha=0.5, color="tab:blue", label="model")
        axis.set_xlabel("x")
    else:
        if reference is not None:
            _scatter_axes(axis, reference, "tab:gray", "data", size=2.0, alpha=0.3)
        _scatter_axes(axis, points, "tab:blue", "model", size=3.0, alpha=0.6)
        axis.set_xlabel("x1")
        axis.set_ylabel("x2")
        axis.set_aspect("equal", adjustable="datalim")
        if points.shape[1] > 2:
            title += f" (first two of {points.shape[1]} coordinates)"
    axis.legend(loc="upper right", fontsize=7, markerscale=4)
    axis.set_title(title, fontsize=9)
    return figure


def _digits_figure(images: Tensor, title: str) -> Any:
    """An 8 x 8 grid of the first 64 images (values in [-1, 1])."""
    shown = images[:_PREVIEW_DIGITS].detach().cpu().double().clamp(-1, 1).numpy()
    columns = 8
    rows = max(1, math.ceil(shown.shape[0] / columns))
    figure, axes = new_figure(columns, rows, width=0.8, height=0.8)
    for index, axis in enumerate(axes.flat):
        axis.set_axis_off()
        if index < shown.shape[0]:
            axis.imshow(shown[index, 0], cmap="gray_r", vmin=-1, vmax=1, interpolation="nearest")
    figure.suptitle(title, fontsize=8)
    return figure


def _trajectory_figure(forward_times: Tensor, forward: Tensor, reverse_times: Tensor, reverse: Tensor,
                       title: str) -> Any:
    """Left: paths of data points under the forward SDE; right: the sampler's reverse paths.
    ``forward`` ``(k, m, 2)`` and ``reverse`` ``(k', m', 2)``, in the model's (standardized) units."""
    figure, axes = new_figure(2, 1, width=4.8, height=4.6)
    panels = (
        (axes[0, 0], forward_times, forward, "forward: data -> noise"),
        (axes[0, 1], reverse_times, reverse, "reverse: noise -> samples"),
    )
    for axis, times, paths, label in panels:
        path = paths.detach().cpu().double().numpy()
        if path.shape[0] == 0:
            axis.set_title(f"{label} (nothing recorded)", fontsize=9)
            continue
        for j in range(path.shape[1]):
            axis.plot(path[:, j, 0], path[:, j, 1], color="tab:gray", alpha=0.4, linewidth=0.6)
        axis.scatter(path[0, :, 0], path[0, :, 1], s=9, color="tab:blue", linewidths=0, zorder=3,
                     label=f"t = {float(times[0]):.3g}")
        axis.scatter(path[-1, :, 0], path[-1, :, 1], s=9, color="tab:red", linewidths=0, zorder=3,
                     label=f"t = {float(times[-1]):.3g}")
        axis.set_aspect("equal", adjustable="datalim")
        axis.legend(loc="upper right", fontsize=7, markerscale=2)
        axis.set_title(label, fontsize=9)
        axis.set_xlabel("z1 (standardized)")
        axis.set_ylabel("z2 (standardized)")
    figure.suptitle(title, fontsize=9)
    return figure


# ----------------------------------------------------------------------------- train


@dataclass(frozen=True)
class TrainSettings:
    """The settings of ``diffusion train``, validated on construction (ValueError naming the flag)."""

    data: str
    steps: int
    seed: int
    out: str
    resume: bool
    sde: str
    schedule: str | None
    weighting: str
    batch_size: int
    lr: float
    n_data: int | None
    checkpoint_every: int | None
    figure_samples: int
    device: str
    progress: bool

    def __post_init__(self) -> None:
        check_count(self.steps, "--steps")
        check_seed(self.seed)
        check_choice(self.sde, SDE_NAMES, "--sde")
        if self.schedule is not None:
            check_choice(self.schedule, SCHEDULES, "--schedule")
            if self.sde not in _SCHEDULED_SDES:
                raise ValueError(f"--schedule applies to --sde {'/'.join(_SCHEDULED_SDES)}, not {self.sde}")
        check_choice(self.weighting, WEIGHTINGS, "--weighting")
        check_count(self.batch_size, "--batch-size")
        check_positive_number(self.lr, "--lr")
        if self.n_data is not None:
            check_count(self.n_data, "--n-data", minimum=2)
        if self.checkpoint_every is not None:
            check_count(self.checkpoint_every, "--checkpoint-every")
        check_count(self.figure_samples, "--figure-samples", minimum=0)

    def sde_options(self) -> dict[str, Any]:
        return {} if self.schedule is None else {"schedule": self.schedule}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def data_label(spec: str | None) -> str:
    """A short name for titles: the data set's name, or a file's name without its folder."""
    if spec is None:
        return "model"
    return spec if spec in DATASET_NAMES else Path(spec).name


def data_spec(data: str) -> str:
    """A file is recorded by its absolute path, so ``sample``/``nll``/``--resume`` find it from
    any folder; names stay as they are."""
    if data in DATASET_NAMES:
        return data
    return str(Path(data).expanduser().resolve())


def load_training_data(data: str, n_data: int | None, seed: int,
                       device: str) -> tuple[Dataset, Standardizer | None, torch.Generator]:
    """The training data (toys drawn, digits/files subsampled with a generator seeded by --seed),
    the per-feature standardizer of vector data (None for images) and the generator the training
    continues with (seeded from the same stream, on the training device). A resumed run calls
    this again with the same options and gets the same data."""
    generator = make_generator(seed)
    dataset = load_dataset(data_spec(data), n=n_data, generator=generator)
    if dataset.n < 2:
        raise ValueError(f"--data {data!r} has {dataset.n} sample(s); training needs at least 2")
    standardizer = Standardizer.fit(dataset.x) if dataset.kind == "vector" else None
    train_seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    return dataset, standardizer, make_generator(train_seed, device)


def check_run_folder(folder: Path, resume: bool) -> None:
    checkpoint = folder / CHECKPOINT_NAME
    if resume and not checkpoint.is_file():
        raise ValueError(f"--resume: {os.fspath(checkpoint)!r} does not exist; start without --resume")
    if not resume and checkpoint.exists():
        raise ValueError(f"{os.fspath(checkpoint)!r} exists; pass --resume to continue that run, or choose "
                         "another --out")


def _write_preview(folder: Path, step: int, settings: TrainSettings, dataset: Dataset,
                   standardizer: Standardizer | None) -> None:
    """The figure written after each checkpoint: samples of the checkpoint's EMA model by the
    probability-flow ODE (25 Heun steps) drawn over the data (vectors) or as an 8 x 8 grid
    (images). Its own generator, seeded with --seed every time (so the figures show one set of
    prior draws improving), leaves the training's random stream untouched."""
    if settings.figure_samples == 0:
        return
    loaded = load_diffusion(folder, settings.device)
    generator = make_generator(settings.seed, settings.device)
    n = _PREVIEW_DIGITS if dataset.kind == "image" else settings.figure_samples
    x_T = loaded.sde.prior_sample((n, *dataset.event_shape), generator, device=settings.device)  # noqa: N806
    try:
        x = probability_flow(loaded.score, loaded.sde, x_T, _PREVIEW_STEPS).x
    except ValueError as error:
        # An unstable early model must not stop a training whose checkpoint is fine.
        typer.echo(f"warning: no sample figure at step {step}: {error}", err=True)
        return
    title = f"{data_label(dataset.name)}: probability-flow samples at step {step}"
    if dataset.kind == "image":
        figure = _digits_figure(x, title)
    else:
        x = standardizer.inverse(x) if standardizer is not None else x
        figure = samples_figure(x, dataset.x, title)
    save_figure(figure, folder / f"samples_step{step:07d}.png")


_TRAIN_HELP = (
    "Train a score model on data by denoising score matching.\n\n"
    "Writes checkpoint.pt (and history.json, loss.png) every --checkpoint-every steps with a figure "
    "of samples, and result.json at the end. Vector data are standardized per feature (the "
    "standardization is stored in the checkpoint); images stay in [-1, 1]. --resume continues an "
    "interrupted run exactly."
)


@diffusion_app.command("train", help=_TRAIN_HELP)
def train(
    data: Annotated[str, typer.Option(help=_DATA_HELP + ".")],
    steps: Annotated[int, typer.Option(help="Training steps (one minibatch each).")] = 3000,
    seed: Annotated[int, typer.Option(help="Random seed (data draws, initialization, batches, noise).")] = 0,
    out: Annotated[Path | None, typer.Option(help="Run folder (default runs/diffusion/DATA).")] = None,
    resume: Annotated[bool, typer.Option(
        "--resume", help="Continue the run in --out from its checkpoint, exactly where it stopped "
                         "(give the same options).")] = False,
    sde: Annotated[str, typer.Option(help=f"Forward SDE: {', '.join(SDE_NAMES)}.")] = "vp",
    schedule: Annotated[str | None, typer.Option(
        help="Beta schedule of vp/subvp: linear (default) or cosine.")] = None,
    weighting: Annotated[str, typer.Option(
        help="DSM weighting lambda(t): sigma2 (noise prediction) or likelihood (g^2).")] = "sigma2",
    batch_size: Annotated[int, typer.Option(help="Minibatch size.")] = 512,
    lr: Annotated[float, typer.Option(help="Peak learning rate of Adam (warm-up, then cosine decay).")]
    = 2e-3,
    n_data: Annotated[int | None, typer.Option(
        help="Toys: number of draws (default 100,000); digits/files: a random subset of this many rows.")]
    = None,
    checkpoint_every: Annotated[int | None, typer.Option(
        help="Write the checkpoint (and a sample figure) every this many steps (default: the loop's).")]
    = None,
    figure_samples: Annotated[int, typer.Option(
        help="Samples drawn for each checkpoint's figure (vectors; 0: no such figures).")] = 2000,
    device: Annotated[str, typer.Option(help="cpu, cuda or cuda:N.")] = "cpu",
    no_progress: Annotated[bool, typer.Option("--no-progress", help="Hide the progress bar.")] = False,
) -> None:
    """Train a score model on data by denoising score matching."""
    with user_errors():
        default_out = Path("runs") / "diffusion" / (Path(data).stem or data)
        settings = TrainSettings(
            data=data, steps=steps, seed=seed, out=str(out if out is not None else default_out),
            resume=resume, sde=sde, schedule=schedule, weighting=weighting, batch_size=batch_size, lr=lr,
            n_data=n_data, checkpoint_every=checkpoint_every, figure_samples=figure_samples,
            device=check_device(device), progress=not no_progress,
        )
        folder = check_out(settings.out)
        check_run_folder(folder, settings.resume)
        dataset, standardizer, generator = load_training_data(settings.data, settings.n_data, settings.seed,
                                                              settings.device)
        x = standardizer.forward(dataset.x) if standardizer is not None else dataset.x
        process = make_sde(settings.sde, **settings.sde_options())
        extra_config = {
            "data": {"spec": data_spec(settings.data), "n_data": settings.n_data, **dataset.summary()},
            "standardizer": None if standardizer is None else standardizer.to_dict(),
            "seed": settings.seed,
        }
        with interruptible(folder):
            _, history = train_diffusion(
                x.to(settings.device), n_steps=settings.steps, generator=generator, sde=process,
                batch_size=settings.batch_size, learning_rate=settings.lr, weighting=settings.weighting,
                out_dir=folder, resume=settings.resume, progress=settings.progress,
                checkpoint_every=settings.checkpoint_every, extra_config=extra_config,
                on_checkpoint=lambda step, run: _write_preview(run, step, settings, dataset, standardizer),
            )
        losses = history.losses.get("loss", [])
        summary = {
            "command": "diffusion train",
            "settings": settings.to_dict(),
            "data": extra_config["data"],
            "standardized": standardizer is not None,
            "sde": process.config(),
            "steps": history.final_step,
            "final_loss": losses[-1] if losses else None,
            "wall_time_s": history.wall_time,
            "history": history.to_dict(),
            "figures": ["loss.png", *sorted(path.name for path in folder.glob("samples_step*.png"))],
            "files": {"checkpoint": CHECKPOINT_NAME, "history": "history.json"},
        }
        atomic_write_json(folder / "result.json", json_safe(summary))
    print_table(f"diffusion train: {data_label(dataset.name)}", [
        ("data", f"{dataset.n} samples of shape {dataset.event_shape} ({dataset.kind}"
                 f"{', standardized' if standardizer is not None else ''})"),
        ("SDE", repr(process)),
        ("steps", str(history.final_step) + (f" (resumed from {history.resumed_from})"
                                             if history.resumed_from is not None else "")),
        ("final loss", _format(summary["final_loss"])),
        ("wall time", f"{history.wall_time:.2f} s (training, all sessions)"),
        ("written to", str(folder)),
    ])


def _format(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def print_table(title: str, rows: list[tuple[str, str]]) -> None:
    table = Table(title=title, show_header=False)
    table.add_column("quantity", style="bold")
    table.add_column("value")
    for name, value in rows:
        table.add_row(name, value)
    Console().print(table)


# ----------------------------------------------------------------------------- sample


@dataclass(frozen=True)
class SampleSettings:
    """The settings of ``diffusion sample``, validated on construction (ValueError naming the flag)."""

    ckpt: str
    sampler: str
    steps: int | None
    tolerance: float | None
    n: int
    seed: int
    out: str
    device: str
    progress: bool

    def __post_init__(self) -> None:
        if self.sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {self.sampler!r}; choose one of {', '.join(SAMPLERS)}")
        adaptive = SAMPLERS[self.sampler].default_steps is None
        if self.steps is not None:
            check_count(self.steps, "--steps")
            if adaptive:
                raise ValueError(f"--steps does not apply to --sampler {self.sampler} (the adaptive solver "
                                 "chooses its own steps; see --tolerance)")
        if self.tolerance is not None:
            check_positive_number(self.tolerance, "--tolerance")
            if not adaptive:
                raise ValueError(f"--tolerance applies to --sampler ode-adaptive, not {self.sampler}")
        check_count(self.n, "--n")
        check_seed(self.seed)

    @property
    def n_steps(self) -> int | None:
        return self.steps if self.steps is not None else SAMPLERS[self.sampler].default_steps

    @property
    def solver_tolerance(self) -> float:
        return self.tolerance if self.tolerance is not None else DEFAULT_TOLERANCE

    def to_dict(self) -> dict[str, Any]:
        adaptive = SAMPLERS[self.sampler].default_steps is None
        return {**dataclasses.asdict(self), "steps": self.n_steps,
                "tolerance": self.solver_tolerance if adaptive else None}


def _run_folder(ckpt: Path) -> Path:
    return ckpt.parent if ckpt.suffix == ".pt" else ckpt


def load_points(spec: str, n: int, generator: torch.Generator) -> Dataset:
    """``n`` points of the data ``spec``: fresh draws of a toy; of digits or a file a random subset
    of ``n`` rows, or all of them when there are no more than ``n``."""
    if spec in TOY_NAMES:
        return load_dataset(spec, n=n, generator=generator)
    dataset = load_dataset(spec)
    return dataset if dataset.n <= n else load_dataset(spec, n=n, generator=generator)


def _reference_data(model: _Model, n: int, generator: torch.Generator) -> tuple[Tensor | None, str]:
    """Up to ``n`` points of the training data in data units, for figures; (None, why) when the
    data cannot be read any more (e.g. a moved file)."""
    if model.data_spec is None:
        return None, "the checkpoint names no data"
    try:
        dataset = load_points(model.data_spec, n, generator)
    except (ValueError, OSError) as error:
        return None, str(error)
    if dataset.event_shape != model.event_shape:
        return None, f"the data now have shape {dataset.event_shape}, the model {model.event_shape}"
    return dataset.x, ""


_SAMPLE_HELP = (
    "Sample a trained diffusion model by running its SDE backward.\n\n"
    "Writes samples.npz in the data's own units (the standardization is undone; digits as (n, 1, 8, "
    "8) clipped to [-1, 1], plus 'pixels' 0..16), samples.png, trajectories.png (2-D data: forward "
    "and reverse paths) and result.json."
)


@diffusion_app.command("sample", help=_SAMPLE_HELP)
def sample(
    ckpt: Annotated[Path, typer.Option(help="A diffusion checkpoint: the run folder or its .pt file.")],
    sampler: Annotated[str, typer.Option(
        help="; ".join(f"{name}: {choice.description}" for name, choice in SAMPLERS.items()))] = "sde",
    steps: Annotated[int | None, typer.Option(
        help="Steps of the sampler (default: sde/pc/als 500, ode 100; not for ode-adaptive).")] = None,
    tolerance: Annotated[float | None, typer.Option(
        help=f"ode-adaptive: rtol = atol of the solver (default {DEFAULT_TOLERANCE:g}).")] = None,
    n: Annotated[int, typer.Option(help="Number of samples.")] = 10_000,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    out: Annotated[Path | None, typer.Option(
        help="Output folder (default: RUN/samples-SAMPLER beside the checkpoint).")] = None,
    device: Annotated[str, typer.Option(help="cpu, cuda or cuda:N.")] = "cpu",
    no_progress: Annotated[bool, typer.Option("--no-progress", help="Hide the progress bar.")] = False,
) -> None:
    """Sample a trained diffusion model by running its SDE backward."""
    with user_errors():
        default_out = _run_folder(ckpt) / f"samples-{sampler}"
        settings = SampleSettings(ckpt=str(ckpt), sampler=sampler, steps=steps, tolerance=tolerance, n=n,
                                  seed=seed,
                                  out=str(out if out is not None else default_out),
                                  device=check_device(device), progress=not no_progress)
        folder = check_out(settings.out)
        model = _load_model(ckpt, settings.device)
        score, process = model.loaded.score, model.loaded.sde
        generator = make_generator(settings.seed, settings.device)
        planar = model.kind == "vector" and model.event_shape == (2,)
        x_T = process.prior_sample((settings.n, *model.event_shape), generator, device=settings.device)
        started = time.perf_counter()
        result = _run_sampler(settings.sampler, score, process, x_T, settings.n_steps, generator,
                              record=planar, progress=settings.progress,
                              tolerance=settings.solver_tolerance)
        wall_time = time.perf_counter() - started
        samples = model.to_data_units(result.x)
        arrays: dict[str, Any] = {}
        title = f"{data_label(model.data_spec)}: {settings.sampler}, {result.n_evaluations} evaluations"
        figures = ["samples.png"]
        if model.kind == "image":
            arrays["samples"] = samples.clamp(-1.0, 1.0).cpu().numpy()
            if model.data_spec == "digits":
                pixels = digits_to_pixels(samples, clamp=True).round().to(torch.uint8)
                arrays["pixels"] = pixels.cpu().numpy()
            figure = _digits_figure(samples, title)
            trajectory_figure = None
        else:
            arrays["samples"] = samples.cpu().numpy()
            reference, missing = _reference_data(model, _MAX_POINTS, make_generator(settings.seed))
            figure = samples_figure(samples, reference, title)
            trajectory_figure = None
            if planar:
                starts = reference[:_TRAJECTORIES] if reference is not None else samples[:_TRAJECTORIES]
                starts = model.to_model_units(starts.to(device=settings.device, dtype=x_T.dtype))
                forward_times = torch.linspace(0.0, process.T, _TRAJECTORY_RECORDS + 1, dtype=torch.float64)
                forward = process.forward_path(starts, forward_times, generator)
                note = "" if reference is not None else " (forward paths start at model samples: " \
                    f"{missing})"
                trajectory_figure = _trajectory_figure(forward_times, forward, result.times,
                                                       result.trajectory, title + note)
                figures.append("trajectories.png")
        data = {
            "command": "diffusion sample",
            "settings": settings.to_dict(),
            "checkpoint": {"path": str(ckpt), "step": model.loaded.step,
                           "data": model.loaded.config.get("data"), "sde": process.config()},
            "n_samples": settings.n,
            "event_shape": list(model.event_shape),
            "n_evaluations": result.n_evaluations,
            "wall_time_s": wall_time,
            "units": "data" if model.standardizer is not None else "model (no standardization stored)",
            "images_clipped_to": [-1.0, 1.0] if model.kind == "image" else None,
            "mean": samples.reshape(settings.n, -1).mean(0).tolist() if model.kind == "vector" else None,
            "figures": figures,
            "files": {"samples": "samples.npz"},
        }
        (folder / "result.json").unlink(missing_ok=True)
        save_figure(figure, folder / "samples.png")
        if trajectory_figure is not None:
            save_figure(trajectory_figure, folder / "trajectories.png")
        save_npz(folder / "samples.npz", **arrays)
        atomic_write_json(folder / "result.json", json_safe(data))
    print_table(f"diffusion sample: {settings.sampler}", [
        ("checkpoint", f"{ckpt} (step {model.loaded.step})"),
        ("samples", f"{settings.n} of shape {model.event_shape}"),
        ("network evaluations", str(result.n_evaluations)),
        ("wall time", f"{wall_time:.2f} s"),
        ("written to", str(folder)),
    ])


# ----------------------------------------------------------------------------- nll


@dataclass(frozen=True)
class NLLSettings:
    """The settings of ``diffusion nll``, validated on construction (ValueError naming the flag)."""

    ckpt: str
    data: str | None
    n: int
    seed: int
    tolerance: float
    out: str
    device: str

    def __post_init__(self) -> None:
        check_count(self.n, "--n")
        check_seed(self.seed)
        check_positive_number(self.tolerance, "--tolerance")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _mean_and_error(values: Tensor) -> tuple[float, float | None]:
    """Mean and its standard error s / sqrt(n) (None for a single value)."""
    wide = values.detach().double().cpu()
    n = wide.shape[0]
    error = float(wide.std(unbiased=True) / math.sqrt(n)) if n > 1 else None
    return float(wide.mean()), error


_NLL_HELP = (
    "Exact negative log-likelihood of data under a trained model, in the data's own units.\n\n"
    "log p is computed through the probability-flow ODE (instantaneous change of variables; exact "
    "divergence for d <= 10, Hutchinson's estimator above) and reported in nats in the data's own "
    "units: for standardized vector data NLL_data = NLL_standardized + sum_i log std_i. Prints the "
    "mean and its standard error over the points and writes nll.json; for 8gaussians and 25gaussians "
    "also the true density's NLL of the same points and the paired gap."
)


@diffusion_app.command("nll", help=_NLL_HELP)
def nll(
    ckpt: Annotated[Path, typer.Option(help="A diffusion checkpoint: the run folder or its .pt file.")],
    data: Annotated[str | None, typer.Option(
        help=_DATA_HELP + " (default: the training data; toys are fresh draws with --seed).")] = None,
    n: Annotated[int, typer.Option(help="Number of data points (toys: draws; files: a random subset).")]
    = 1000,
    seed: Annotated[int, typer.Option(
        help="Random seed (toy draws, subsets, divergence probes); toys: a seed other than training's "
             "gives held-out draws.")] = 1,
    tolerance: Annotated[float, typer.Option(
        help="rtol = atol of the adaptive ODE solver (dopri5).")] = DEFAULT_TOLERANCE,
    out: Annotated[Path | None, typer.Option(help="Folder for nll.json (default: the run folder).")] = None,
    device: Annotated[str, typer.Option(help="cpu, cuda or cuda:N.")] = "cpu",
) -> None:
    """Exact negative log-likelihood of data under a trained model, in the data's own units."""
    with user_errors():
        settings = NLLSettings(ckpt=str(ckpt), data=data, n=n, seed=seed, tolerance=tolerance,
                               out=str(out if out is not None else _run_folder(ckpt)),
                               device=check_device(device))
        folder = check_out(settings.out)
        model = _load_model(ckpt, settings.device)
        spec = settings.data if settings.data is not None else model.data_spec
        if spec is None:
            raise ValueError("the checkpoint names no training data; pass --data")
        generator = make_generator(settings.seed)
        spec = data_spec(spec)
        dataset = load_points(spec, settings.n, generator)
        if dataset.event_shape != model.event_shape:
            raise ValueError(f"--data {spec!r} has samples of shape {dataset.event_shape}, the model was "
                             f"trained on {model.event_shape}")
        x = model.to_model_units(dataset.x.to(settings.device))
        started = time.perf_counter()
        result = log_likelihood(model.loaded.score, model.loaded.sde, x,
                                generator=make_generator(settings.seed, settings.device),
                                rtol=settings.tolerance, atol=settings.tolerance)
        wall_time = time.perf_counter() - started
        values = -result.log_prob.double() + model.log_std_sum
        mean, error = _mean_and_error(values)
        dim = int(np.prod(model.event_shape))
        report: dict[str, Any] = {
            "command": "diffusion nll",
            "settings": settings.to_dict(),
            "data": dataset.summary(),
            "checkpoint": {"path": str(ckpt), "step": model.loaded.step},
            "units": "nats, in the data's own units" + (
                " (NLL_standardized + sum log std)" if model.standardizer is not None else ""),
            "nll_mean": mean,
            "nll_standard_error": error,
            "nll_per_dim": mean / dim,
            "log_std_sum": model.log_std_sum,
            "exact_divergence": result.exact,
            "n_evaluations": result.n_evaluations,
            "wall_time_s": wall_time,
            "true_nll_mean": None,
            "true_nll_standard_error": None,
            "gap_mean": None,
            "gap_standard_error": None,
        }
        if dataset.name in MIXTURE_NAMES:
            true_values = -toy_mixture(dataset.name).log_prob(dataset.x.double()).cpu()
            report["true_nll_mean"], report["true_nll_standard_error"] = _mean_and_error(true_values)
            # Paired over the same points: the gap's error is far below either mean's.
            report["gap_mean"], report["gap_standard_error"] = _mean_and_error(values.cpu() - true_values)
        atomic_write_json(folder / "nll.json", json_safe(report))
    rows = [
        ("data", f"{dataset.n} points of {dataset.name}"),
        ("NLL (nats)", f"{mean:.4f} +- {error if error is not None else float('nan'):.4f}"),
        ("NLL per dimension", f"{mean / dim:.4f}"),
    ]
    if report["true_nll_mean"] is not None:
        rows.append(("true NLL (nats)", f"{report['true_nll_mean']:.4f} +- "
                                        f"{report['true_nll_standard_error']:.4f}"))
        rows.append(("model - true", f"{report['gap_mean']:.4f} +- {report['gap_standard_error']:.4f}"))
    rows += [("ODE evaluations", str(result.n_evaluations)), ("wall time", f"{wall_time:.2f} s"),
             ("written to", str(folder / "nll.json"))]
    print_table("diffusion nll", rows)
