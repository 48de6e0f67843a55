"""``measureflow ebm``: train an energy-based model p(x) ∝ exp(-E(x)) on vector data by maximum
likelihood with persistent Langevin chains, and sample it with MALA.

As for diffusion models, vector data are standardized per feature before training; the
standardization and the data specification live in the checkpoint's config, so ``sample`` writes
its samples in the data's own units. The energy (and its landscape figure) is a function of the
standardized coordinates.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Annotated

import typer
from torch import Tensor

from measureflow._core import make_generator
from measureflow.cli import _common as common
from measureflow.data import DATASET_NAMES
from measureflow.generative import TrainedModel
from measureflow.generative.ebm import energy_landscape_figure, train_ebm
from measureflow.report import save_figure
from measureflow.report.generative import samples_figure

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
_PREVIEWS = "landscape_step*.png"
_DEFAULT_SAMPLES = 1000


@dataclass(frozen=True, kw_only=True)
class EBMTrainSettings(common.TrainRunSettings):
    """The settings of ``ebm train``, validated on construction (ValueError naming the flag)."""

    lr: float
    hidden: int
    depth: int
    alpha: float
    langevin_steps: int
    langevin_step_size: float
    buffer_size: int

    def __post_init__(self) -> None:
        if self.data in _IMAGE_SETS:
            raise ValueError(f"--data {self.data}: the EBMs here are for vector data, and {self.data} is an "
                             "image set; train a diffusion model on it (measureflow diffusion train)")
        super().__post_init__()
        common.check_positive_number(self.lr, "--lr")
        common.check_count(self.hidden, "--hidden")
        common.check_count(self.depth, "--depth")
        if not (math.isfinite(self.alpha) and self.alpha >= 0):
            raise ValueError(f"--alpha must be finite and >= 0, got {self.alpha!r}")
        common.check_count(self.langevin_steps, "--langevin-steps")
        common.check_positive_number(self.langevin_step_size, "--langevin-step-size")
        common.check_count(self.buffer_size, "--buffer-size")


def _write_landscape(folder: Path, step: int, device: str, data: Tensor) -> None:
    """After each checkpoint (2-D data): the checkpoint's EMA energy and density over ``data``
    (standardized units)."""
    model = TrainedModel.load(folder, family="ebm", device=device)
    energy_landscape_figure(model.network, data, folder / f"landscape_step{step:07d}.png",
                            title=f"learned energy at step {step} (standardized units)")


@ebm_app.command("train", help=(
    "Train an energy-based model on vector data by maximum likelihood (persistent Langevin chains).\n\n"
    "Writes checkpoint.pt (with history.json, loss.png) every --checkpoint-every steps, for 2-D data "
    "an energy-landscape figure with each, and result.json at the end. The data are standardized per "
    "feature (stored in the checkpoint). --resume continues an interrupted run exactly; --overwrite "
    "replaces the run in --out."
))
def train(
    data: Annotated[str, typer.Option(help=_DATA_HELP + ".")],
    steps: Annotated[int, typer.Option(help="Training steps (one minibatch each).")] = 4000,
    seed: Annotated[int, typer.Option(help="Random seed (data draws, initialization, batches, chains).")] = 0,
    out: Annotated[str | None, typer.Option(help="Run folder (default runs/ebm/DATA).")] = None,
    resume: common.ResumeOption = False,
    overwrite: common.OverwriteOption = False,
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
    device: common.DeviceOption = "cpu",
    no_progress: common.NoProgressOption = False,
) -> None:
    """Train an energy-based model on vector data by maximum likelihood (persistent Langevin chains)."""
    with common.user_errors({**common.TRAIN_FLAGS, "n_langevin": "--langevin-steps",
                             "buffer_size": "--buffer-size"}):
        settings = EBMTrainSettings(
            data=data, steps=steps, seed=seed, resume=resume, overwrite=overwrite,
            out=str(Path("runs") / "ebm" / (Path(data).stem or data) if out is None else out),
            batch_size=batch_size, lr=lr,
            n_data=n_data, hidden=hidden, depth=depth, alpha=alpha, langevin_steps=langevin_steps,
            langevin_step_size=langevin_step_size, buffer_size=buffer_size, checkpoint_every=checkpoint_every,
            device=common.check_device(device), progress=not no_progress,
        )
        run = common.start_training(settings, _PREVIEWS, command="ebm train",
                                    batch_rows=max(settings.batch_size, settings.buffer_size))
        shown = run.x[:_FIGURE_POINTS]

        def on_checkpoint(step: int, folder: Path) -> None:
            if run.dataset.event_shape == (2,):
                _write_landscape(folder, step, settings.device, shown)

        with common.interruptible(run.folder):
            _, history = train_ebm(
                run.x, n_steps=settings.steps, batch_size=settings.batch_size, generator=run.generator,
                out_dir=run.folder, resume=settings.resume, overwrite=settings.overwrite,
                progress=settings.progress, config=run.config, hidden=settings.hidden, depth=settings.depth,
                lr=settings.lr, alpha=settings.alpha, buffer_size=settings.buffer_size,
                n_langevin=settings.langevin_steps, step_size=settings.langevin_step_size,
                checkpoint_every=settings.checkpoint_every, on_checkpoint=on_checkpoint,
            )
        last = common.last_losses(history)
        common.finish_training("ebm train", settings, run, history, _PREVIEWS, [
            ("final loss / gap", f"{common.format_number(last.get('loss'))} / "
                                 f"{common.format_number(last.get('gap'))}"),
        ], final_loss=last.get("loss"), final_gap=last.get("gap"))


@dataclass(frozen=True, kw_only=True)
class EBMSampleSettings(common.SampleRunSettings):
    """The settings of ``ebm sample``, validated on construction (ValueError naming the flag)."""

    steps: int
    burn_in: int
    step_size: float
    progress: bool

    def __post_init__(self) -> None:
        super().__post_init__()
        common.check_count(self.steps, "--steps")
        common.check_count(self.burn_in, "--burn-in", minimum=0)
        common.check_count(self.steps + self.burn_in, "--steps + --burn-in")
        common.check_positive_number(self.step_size, "--step-size")


@ebm_app.command("sample", help=(
    "Sample a trained EBM with MALA chains started from N(0, I) (standardized units).\n\n"
    "Each chain runs --burn-in steps that adapt the step size toward acceptance 0.574, then --steps "
    "steps with it fixed, and keeps its last state: one sample per chain. "
    "Writes samples.npz in the data's own units (the standardization is undone), samples.png (over "
    "the data), for 2-D data landscape.png (the learned energy and density with the samples), and "
    "result.json. Chains stay in the basin they start in: mode weights reflect the starting points "
    "more than exp(-E) when barriers are high."
))
def sample(
    ckpt: Annotated[Path, typer.Option(help="An EBM checkpoint: the run folder or its .pt file.")],
    n_samples: Annotated[int | None, typer.Option(
        "--n-samples", show_default=str(_DEFAULT_SAMPLES),
        help="Number of samples (independent MALA chains, one sample each).")] = None,
    n: Annotated[int | None, typer.Option("--n", hidden=True, help="Old name of --n-samples.")] = None,
    steps: Annotated[int, typer.Option(
        help="MALA steps per chain after --burn-in, with the adapted step size fixed.")] = 500,
    burn_in: Annotated[int, typer.Option(
        help="MALA steps first, adapting the step size toward acceptance 0.574.")] = 500,
    step_size: Annotated[float, typer.Option(
        help="Initial MALA step size (standardized units), adapted during --burn-in.")] = 0.01,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    out: Annotated[str | None, typer.Option(
        help="Output folder (default: RUN/samples beside the checkpoint).")] = None,
    overwrite: common.SampleOverwriteOption = False,
    device: common.DeviceOption = "cpu",
    no_progress: common.NoProgressOption = False,
) -> None:
    """Sample a trained EBM with MALA chains started from N(0, I) (standardized units)."""
    with common.user_errors({"step_size": "--step-size", "burn_in": "--burn-in"}):
        settings = EBMSampleSettings(
            ckpt=str(ckpt), n=common.merge_alias(n_samples, n, "--n-samples", "--n", _DEFAULT_SAMPLES),
            steps=steps, burn_in=burn_in, step_size=step_size, seed=seed,
            out=str(common.run_folder(ckpt) / "samples" if out is None else out),
            device=common.check_device(device), progress=not no_progress, overwrite=overwrite)
        folder = common.check_out(settings.out, "ebm sample", overwrite=settings.overwrite)
        model = common.load_trained(ckpt, "ebm", settings.device)
        common.check_sample_memory(settings.n, model.event_shape, "MALA chains")
        started = time.perf_counter()
        # sample_ebm's n_steps is the whole run, of which the first burn_in adapt the step size.
        z = model.sample_model_units(settings.n, generator=make_generator(settings.seed, settings.device),
                                     n_steps=settings.steps + settings.burn_in, burn_in=settings.burn_in,
                                     step_size=settings.step_size, progress=settings.progress)
        wall_time = time.perf_counter() - started
        samples = model.to_data_units(z)
        # The training file may have moved: then the samples are drawn alone.
        reference, _ = common.reference_points(model, settings.seed, _FIGURE_POINTS)
        title = (f"{common.data_label(model.data_spec)}: {settings.n} MALA chains, {settings.burn_in} + "
                 f"{settings.steps} steps")
        figures = {"samples.png": partial(save_figure, samples_figure(samples, reference, title))}
        if model.event_shape == (2,):
            shown = model.to_model_units(reference) if reference is not None else z
            figures["landscape.png"] = partial(
                energy_landscape_figure, model.network, shown.to(z), samples=z,
                title="learned energy with MALA samples (standardized units)")
        summary = common.sample_summary("ebm sample", settings, ckpt, model, samples, wall_time, figures,
                                        dim=int(z.shape[1]))
        common.write_sample_run(folder, summary, samples, model, figures)
    common.print_table("ebm sample", common.sample_rows(ckpt, model, settings.n, wall_time, folder))
