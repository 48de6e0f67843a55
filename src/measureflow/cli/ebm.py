"""``measureflow ebm``: train an energy-based model p(x) ∝ exp(-E(x)) on vector data by maximum
likelihood with persistent Langevin chains, and sample it with MALA.

As for diffusion models, vector data are standardized per feature before training; the
standardization and the data specification live in the checkpoint's config, so ``sample`` writes
its samples in the data's own units. The energy (and its landscape figure) is a function of the
standardized coordinates.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from torch import Tensor, nn

from measureflow._core import atomic_write_json, make_generator, save_figure, save_npz
from measureflow.cli._common import (
    check_count,
    check_device,
    check_out,
    check_positive_number,
    check_seed,
    interruptible,
    json_safe,
    user_errors,
)
from measureflow.cli.diffusion import (
    check_run_folder,
    data_label,
    data_spec,
    load_points,
    load_training_data,
    print_table,
    samples_figure,
)
from measureflow.data import DATASET_NAMES, Standardizer
from measureflow.generative.ebm import energy_landscape_figure, load_ebm, sample_ebm, train_ebm
from measureflow.generative.train import CHECKPOINT_NAME

__all__ = ["EBMSampleSettings", "EBMTrainSettings", "ebm_app", "sample", "train"]

ebm_app = typer.Typer(
    name="ebm",
    help="Energy-based models exp(-E) on vector data: train by maximum likelihood, sample with MALA.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_IMAGE_SETS = ("digits",)
_DATA_HELP = (f"Vector data: one of {', '.join(name for name in DATASET_NAMES if name not in _IMAGE_SETS)}, "
              "or a path to a .csv/.npy file of shape (n, d)")
_FIGURE_POINTS = 2000  # data points drawn on a landscape


def _refuse_images(data: str) -> None:
    if data in _IMAGE_SETS:
        raise ValueError(f"--data {data}: the EBMs here are for vector data, and {data} is an image set; "
                         "train a diffusion model on it (measureflow diffusion train)")


@dataclass(frozen=True)
class EBMTrainSettings:
    """The settings of ``ebm train``, validated on construction (ValueError naming the flag)."""

    data: str
    steps: int
    seed: int
    out: str
    resume: bool
    batch_size: int
    lr: float
    n_data: int | None
    hidden: int
    depth: int
    alpha: float
    langevin_steps: int
    langevin_step_size: float
    buffer_size: int
    checkpoint_every: int | None
    device: str
    progress: bool

    def __post_init__(self) -> None:
        _refuse_images(self.data)
        check_count(self.steps, "--steps")
        check_seed(self.seed)
        check_count(self.batch_size, "--batch-size")
        check_positive_number(self.lr, "--lr")
        if self.n_data is not None:
            check_count(self.n_data, "--n-data", minimum=2)
        check_count(self.hidden, "--hidden")
        check_count(self.depth, "--depth")
        if not (math.isfinite(self.alpha) and self.alpha >= 0):
            raise ValueError(f"--alpha must be finite and >= 0, got {self.alpha!r}")
        check_count(self.langevin_steps, "--langevin-steps")
        check_positive_number(self.langevin_step_size, "--langevin-step-size")
        check_count(self.buffer_size, "--buffer-size")
        if self.checkpoint_every is not None:
            check_count(self.checkpoint_every, "--checkpoint-every")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _standardized(points: Tensor, standardizer: Standardizer | None) -> Tensor:
    return points if standardizer is None else standardizer.forward(points)


def _write_landscape(folder: Path, step: int, device: str, data: Tensor) -> None:
    """After each checkpoint (2-D data): the checkpoint's EMA energy and density over ``data``
    (standardized units)."""
    energy, _ = load_ebm(folder, map_location=device)
    energy_landscape_figure(energy, data, folder / f"landscape_step{step:07d}.png",
                            title=f"learned energy at step {step} (standardized units)")


_TRAIN_HELP = (
    "Train an energy-based model on vector data by maximum likelihood (persistent Langevin chains).\n\n"
    "Writes checkpoint.pt (with history.json, loss.png) every --checkpoint-every steps, for 2-D data "
    "an energy-landscape figure with each, and result.json at the end. The data are standardized per "
    "feature (stored in the checkpoint). --resume continues an interrupted run exactly."
)


@ebm_app.command("train", help=_TRAIN_HELP)
def train(
    data: Annotated[str, typer.Option(help=_DATA_HELP + ".")],
    steps: Annotated[int, typer.Option(help="Training steps (one minibatch each).")] = 4000,
    seed: Annotated[int, typer.Option(help="Random seed (data draws, initialization, batches, chains).")] = 0,
    out: Annotated[Path | None, typer.Option(help="Run folder (default runs/ebm/DATA).")] = None,
    resume: Annotated[bool, typer.Option(
        "--resume", help="Continue the run in --out from its checkpoint, exactly where it stopped "
                         "(give the same options).")] = False,
    batch_size: Annotated[int, typer.Option(help="Data rows and replay-buffer chains per step.")] = 256,
    lr: Annotated[float, typer.Option(help="Learning rate of Adam.")] = 2e-3,
    n_data: Annotated[int | None, typer.Option(
        help="Toys: number of draws (default 100,000); files: a random subset of this many rows.")] = None,
    hidden: Annotated[int, typer.Option(help="Width of the energy MLP.")] = 64,
    depth: Annotated[int, typer.Option(help="Hidden layers of the energy MLP.")] = 3,
    alpha: Annotated[float, typer.Option(
        help="Weight of the energy-magnitude regularizer alpha (E(data)^2 + E(samples)^2).")] = 0.01,
    langevin_steps: Annotated[int, typer.Option(
        help="Langevin (ULA) steps per training step for the persistent chains.")] = 10,
    langevin_step_size: Annotated[float, typer.Option(
        help="Step size h of those chains (standardized units).")] = 1e-2,
    buffer_size: Annotated[int, typer.Option(
        help="Chains kept in the replay buffer (persistent, never restarted: restarted chains fall "
             "into modes by basin size, not weight).")] = 256,
    checkpoint_every: Annotated[int | None, typer.Option(
        help="Write the checkpoint (and, for 2-D data, a landscape figure) every this many steps "
             "(default: a tenth of --steps).")] = None,
    device: Annotated[str, typer.Option(help="cpu, cuda or cuda:N.")] = "cpu",
    no_progress: Annotated[bool, typer.Option("--no-progress", help="Hide the progress bar.")] = False,
) -> None:
    """Train an energy-based model on vector data by maximum likelihood."""
    with user_errors():
        default_out = Path("runs") / "ebm" / (Path(data).stem or data)
        settings = EBMTrainSettings(
            data=data, steps=steps, seed=seed, out=str(out if out is not None else default_out),
            resume=resume, batch_size=batch_size, lr=lr, n_data=n_data, hidden=hidden, depth=depth,
            alpha=alpha, langevin_steps=langevin_steps, langevin_step_size=langevin_step_size,
            buffer_size=buffer_size, checkpoint_every=checkpoint_every, device=check_device(device),
            progress=not no_progress,
        )
        folder = check_out(settings.out)
        check_run_folder(folder, settings.resume)
        dataset, standardizer, generator = load_training_data(settings.data, settings.n_data, settings.seed,
                                                              settings.device)
        if dataset.kind != "vector":
            _refuse_images(dataset.name)
        x = _standardized(dataset.x, standardizer).to(settings.device)
        config = {
            "data": {"spec": data_spec(settings.data), "n_data": settings.n_data, **dataset.summary()},
            "standardizer": None if standardizer is None else standardizer.to_dict(),
            "seed": settings.seed,
        }
        shown = x[:_FIGURE_POINTS]

        def on_checkpoint(step: int, run: Path) -> None:
            if dataset.event_shape == (2,):
                _write_landscape(run, step, settings.device, shown)

        with interruptible(folder):
            _, history = train_ebm(
                x, n_steps=settings.steps, batch_size=settings.batch_size, generator=generator,
                out_dir=folder, resume=settings.resume, progress=settings.progress, config=config,
                hidden=settings.hidden, depth=settings.depth, lr=settings.lr, alpha=settings.alpha,
                buffer_size=settings.buffer_size, n_langevin=settings.langevin_steps,
                step_size=settings.langevin_step_size, checkpoint_every=settings.checkpoint_every,
                on_checkpoint=on_checkpoint,
            )
        last = {key: values[-1] for key, values in history.losses.items() if values}
        summary = {
            "command": "ebm train",
            "settings": settings.to_dict(),
            "data": config["data"],
            "standardized": standardizer is not None,
            "steps": history.final_step,
            "final_loss": last.get("loss"),
            "final_gap": last.get("gap"),
            "wall_time_s": history.wall_time,
            "history": history.to_dict(),
            "figures": ["loss.png", *sorted(path.name for path in folder.glob("landscape_step*.png"))],
            "files": {"checkpoint": CHECKPOINT_NAME, "history": "history.json"},
        }
        atomic_write_json(folder / "result.json", json_safe(summary))
    print_table(f"ebm train: {data_label(dataset.name)}", [
        ("data", f"{dataset.n} samples of dimension {dataset.dim} (standardized)"),
        ("steps", str(history.final_step) + (f" (resumed from {history.resumed_from})"
                                             if history.resumed_from is not None else "")),
        ("final loss / gap", f"{last.get('loss', float('nan')):.4g} / {last.get('gap', float('nan')):.4g}"),
        ("wall time", f"{history.wall_time:.2f} s (training, all sessions)"),
        ("written to", str(folder)),
    ])


@dataclass(frozen=True)
class EBMSampleSettings:
    """The settings of ``ebm sample``, validated on construction (ValueError naming the flag)."""

    ckpt: str
    n: int
    steps: int
    step_size: float
    seed: int
    out: str
    device: str
    progress: bool

    def __post_init__(self) -> None:
        check_count(self.n, "--n")
        check_count(self.steps, "--steps")
        check_positive_number(self.step_size, "--step-size")
        check_seed(self.seed)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _load(ckpt: Path, device: str) -> tuple[nn.Module, dict[str, Any], Standardizer | None]:
    if not ckpt.exists():
        raise ValueError(f"--ckpt {os.fspath(ckpt)!r} does not exist")
    energy, config = load_ebm(ckpt, map_location=device)
    stored = config.get("standardizer")
    return energy, config, Standardizer.from_dict(stored) if stored is not None else None


_SAMPLE_HELP = (
    "Sample a trained EBM with MALA chains started from N(0, I) (standardized units).\n\n"
    "Writes samples.npz in the data's own units (the standardization is undone), samples.png (over "
    "the data), for 2-D data landscape.png (the learned energy and density with the samples), and "
    "result.json. Chains stay in the basin they start in: mode weights reflect the starting points "
    "more than exp(-E) when barriers are high."
)


@ebm_app.command("sample", help=_SAMPLE_HELP)
def sample(
    ckpt: Annotated[Path, typer.Option(help="An EBM checkpoint: the run folder or its .pt file.")],
    n: Annotated[int, typer.Option(help="Number of samples (independent MALA chains).")] = 1000,
    steps: Annotated[int, typer.Option(
        help="MALA steps per chain; the first half adapts the step size.")] = 1000,
    step_size: Annotated[float, typer.Option(
        help="Initial MALA step size (standardized units), adapted toward acceptance 0.574.")] = 0.01,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    out: Annotated[Path | None, typer.Option(
        help="Output folder (default: RUN/samples beside the checkpoint).")] = None,
    device: Annotated[str, typer.Option(help="cpu, cuda or cuda:N.")] = "cpu",
    no_progress: Annotated[bool, typer.Option("--no-progress", help="Hide the progress bar.")] = False,
) -> None:
    """Sample a trained EBM with MALA chains started from N(0, I) (standardized units)."""
    with user_errors():
        run = ckpt.parent if ckpt.suffix == ".pt" else ckpt
        settings = EBMSampleSettings(ckpt=str(ckpt), n=n, steps=steps, step_size=step_size, seed=seed,
                                     out=str(out if out is not None else run / "samples"),
                                     device=check_device(device), progress=not no_progress)
        folder = check_out(settings.out)
        energy, config, standardizer = _load(ckpt, settings.device)
        generator = make_generator(settings.seed, settings.device)
        started = time.perf_counter()
        z = sample_ebm(energy, settings.n, n_steps=settings.steps, step_size=settings.step_size,
                       generator=generator, progress=settings.progress)
        wall_time = time.perf_counter() - started
        samples = z if standardizer is None else standardizer.inverse(z)
        spec = (config.get("data") or {}).get("spec")
        reference = None
        if spec is not None:
            try:
                reference = load_points(spec, _FIGURE_POINTS, make_generator(settings.seed)).x
            except (ValueError, OSError):
                reference = None  # the training file moved: draw the samples alone
        figure = samples_figure(samples, reference, f"{data_label(spec)}: {settings.n} MALA chains, "
                                                    f"{settings.steps} steps")
        figures = ["samples.png"]
        planar = z.shape[1] == 2
        if planar:
            figures.append("landscape.png")
        summary = {
            "command": "ebm sample",
            "settings": settings.to_dict(),
            "checkpoint": {"path": str(ckpt), "data": config.get("data")},
            "n_samples": settings.n,
            "dim": int(z.shape[1]),
            "wall_time_s": wall_time,
            "units": "data" if standardizer is not None else "model (no standardization stored)",
            "mean": samples.double().mean(0).tolist(),
            "std": samples.double().std(0).tolist() if settings.n > 1 else None,
            "figures": figures,
            "files": {"samples": "samples.npz"},
        }
        (folder / "result.json").unlink(missing_ok=True)
        save_figure(figure, folder / "samples.png")
        if planar:
            shown = _standardized(reference, standardizer) if reference is not None else z
            energy_landscape_figure(energy, shown.to(z), folder / "landscape.png", samples=z,
                                    title="learned energy with MALA samples (standardized units)")
        save_npz(folder / "samples.npz", samples=samples.cpu().numpy())
        atomic_write_json(folder / "result.json", json_safe(summary))
    print_table("ebm sample", [
        ("checkpoint", str(ckpt)),
        ("samples", f"{settings.n} of dimension {int(z.shape[1])}"),
        ("wall time", f"{wall_time:.2f} s"),
        ("written to", str(folder)),
    ])
