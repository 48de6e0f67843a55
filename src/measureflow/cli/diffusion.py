"""``measureflow diffusion``: train a score-based diffusion model on data, sample it, and measure
its exact likelihood through the probability-flow ODE.

``train`` standardizes vector data per feature (images stay in [-1, 1]) and stores the
standardization and the data specification in the checkpoint's config, so ``sample`` and ``nll``
report everything in the data's own units from the checkpoint alone.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import torch
import typer

from measureflow._core import make_generator
from measureflow.cli import _common as common
from measureflow.generative.diffusion import WEIGHTINGS, log_likelihood, reverse_process, score_model
from measureflow.generative.diffusion.sde import SDE_NAMES, make_sde
from measureflow.generative.diffusion.training import train_diffusion
from measureflow.report import save_figure
from measureflow.report.generative import model_samples_figure, trajectory_figure

__all__ = ["SAMPLERS", "NLLSettings", "SampleSettings", "SamplerChoice", "TrainSettings", "diffusion_app",
           "nll", "sample", "train"]

diffusion_app = typer.Typer(name="diffusion", help="Score-based diffusion models: train on data, sample, "
                            "exact likelihood.", no_args_is_help=True, add_completion=False,
                            pretty_exceptions_enable=False)

SCHEDULES = ("linear", "cosine")  # the beta schedules of VPSDE / SubVPSDE, the SDEs that have one
_SCHEDULED_SDES = ("vp", "subvp")
_CKPT_HELP = "A diffusion checkpoint: the run folder or its .pt file."
_PREVIEWS = "samples_step*.png"
_PREVIEW_STEPS = 25  # Heun steps (50 network calls) for the sample figures written at checkpoints
_TRAJECTORIES = 60  # paths drawn per trajectory panel
_TRAJECTORY_RECORDS = 50  # about this many snapshots along each path
DEFAULT_TOLERANCE = 1e-5
_DEFAULT_SAMPLES = 10_000
_DEFAULT_NLL_POINTS = 1000


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


@dataclass(frozen=True, kw_only=True)
class TrainSettings(common.TrainRunSettings):
    """The settings of ``diffusion train``, validated on construction (ValueError naming the flag)."""

    sde: str
    schedule: str | None
    weighting: str
    lr: float
    figure_samples: int

    def __post_init__(self) -> None:
        super().__post_init__()
        common.check_choice(self.sde, SDE_NAMES, "--sde")
        if self.schedule is not None:
            common.check_choice(self.schedule, SCHEDULES, "--schedule")
            if self.sde not in _SCHEDULED_SDES:
                raise ValueError(f"--schedule applies to --sde {'/'.join(_SCHEDULED_SDES)}, not {self.sde}")
        common.check_choice(self.weighting, WEIGHTINGS, "--weighting")
        common.check_positive_number(self.lr, "--lr")
        common.check_count(self.figure_samples, "--figure-samples", minimum=0)


@diffusion_app.command("train", help=(
    "Train a score model on data by denoising score matching.\n\n"
    "Writes checkpoint.pt (and history.json, loss.png) every --checkpoint-every steps with a figure "
    "of samples (probability-flow ODE, 25 Heun steps), and result.json at the end. Vector data are "
    "standardized per feature (the standardization is stored in the checkpoint); images stay in "
    "[-1, 1]. --resume continues an interrupted run exactly; --overwrite replaces the run in --out."
))
def train(
    data: Annotated[str, typer.Option(help=common.DATA_HELP + ".")],
    steps: Annotated[int, typer.Option(help="Training steps (one minibatch each).")] = 3000,
    seed: Annotated[int, typer.Option(help="Random seed (data draws, initialization, batches, noise).")] = 0,
    out: Annotated[str | None, typer.Option(help="Run folder (default runs/diffusion/DATA).")] = None,
    resume: common.ResumeOption = False,
    overwrite: common.OverwriteOption = False,
    sde: Annotated[str, typer.Option(help=f"Forward SDE: {', '.join(SDE_NAMES)}.")] = "vp",
    schedule: Annotated[str | None, typer.Option(
        help="Beta schedule of vp/subvp: linear (default) or cosine.")] = None,
    weighting: Annotated[str, typer.Option(
        help="DSM weighting lambda(t): sigma2 (noise prediction) or likelihood (g^2).")] = "sigma2",
    batch_size: Annotated[int, typer.Option(help="Minibatch size.")] = 512,
    lr: Annotated[float, typer.Option(help="Peak Adam learning rate (warm-up, then cosine decay).")] = 2e-3,
    n_data: common.NDataOption = None,
    checkpoint_every: common.CheckpointEveryOption = None,
    figure_samples: common.FigureSamplesOption = 2000,
    device: common.DeviceOption = "cpu",
    no_progress: common.NoProgressOption = False,
) -> None:
    """Train a score model on data by denoising score matching."""
    with common.user_errors(common.TRAIN_FLAGS):
        settings = TrainSettings(
            data=data, steps=steps, seed=seed, resume=resume, overwrite=overwrite, sde=sde, schedule=schedule,
            out=str(Path("runs") / "diffusion" / (Path(data).stem or data) if out is None else out),
            weighting=weighting,
            batch_size=batch_size, lr=lr, n_data=n_data, checkpoint_every=checkpoint_every,
            figure_samples=figure_samples, device=common.check_device(device), progress=not no_progress,
        )
        run = common.start_training(settings, _PREVIEWS, replaced=("result.json",), command="diffusion train")
        process = make_sde(settings.sde, **({} if schedule is None else {"schedule": schedule}))
        with common.interruptible(run.folder):
            _, history = train_diffusion(
                run.x, n_steps=settings.steps, generator=run.generator, sde=process,
                batch_size=settings.batch_size, learning_rate=settings.lr, weighting=settings.weighting,
                out_dir=run.folder, resume=settings.resume, overwrite=settings.overwrite,
                progress=settings.progress,
                checkpoint_every=settings.checkpoint_every, extra_config=run.config,
                on_checkpoint=lambda step, _: common.write_preview(
                    run, step, "diffusion", "probability-flow samples", settings.figure_samples,
                    settings.seed, settings.device, method="ode", n_steps=_PREVIEW_STEPS),
            )
        final_loss = common.last_losses(history).get("loss")
        common.finish_training("diffusion train", settings, run, history, _PREVIEWS,
                               [("SDE", repr(process)), ("final loss", common.format_number(final_loss))],
                               sde=process.config(), final_loss=final_loss)


@dataclass(frozen=True, kw_only=True)
class SampleSettings(common.SampleRunSettings):
    """The settings of ``diffusion sample``, validated on construction (ValueError naming the flag)."""

    sampler: str
    steps: int | None
    tolerance: float | None
    progress: bool

    def __post_init__(self) -> None:
        if self.sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {self.sampler!r}; choose one of {', '.join(SAMPLERS)}")
        if self.steps is not None:
            common.check_count(self.steps, "--steps")
            if self.adaptive:
                raise ValueError(f"--steps does not apply to --sampler {self.sampler} (the adaptive solver "
                                 "chooses its own steps; see --tolerance)")
        if self.tolerance is not None:
            common.check_positive_number(self.tolerance, "--tolerance")
            if not self.adaptive:
                raise ValueError(f"--tolerance applies to --sampler ode-adaptive, not {self.sampler}")
        super().__post_init__()

    @property
    def adaptive(self) -> bool:
        return SAMPLERS[self.sampler].default_steps is None

    def sampler_options(self, record: bool) -> dict[str, Any]:
        """reverse_process's options: the steps (or the tolerance of the adaptive solver, which
        steps onto ten report times), and snapshots of the first paths when ``record``."""
        tolerance = self.tolerance if self.tolerance is not None else DEFAULT_TOLERANCE
        steps = self.steps if self.steps is not None else SAMPLERS[self.sampler].default_steps
        options = {"rtol": tolerance, "atol": tolerance} if self.adaptive else {"n_steps": steps}
        n_records = (10 if self.adaptive else _TRAJECTORY_RECORDS) if record else 0
        return {**options, "method": self.sampler, "n_records": n_records, "n_keep": _TRAJECTORIES,
                "progress": self.progress}

    def to_dict(self) -> dict[str, Any]:
        options = self.sampler_options(record=False)
        return {**dataclasses.asdict(self), "steps": options.get("n_steps"), "tolerance": options.get("rtol")}


@diffusion_app.command("sample", help=(
    "Sample a trained diffusion model by running its SDE backward.\n\n"
    "Writes samples.npz in the data's own units (the standardization is undone; digits as (n, 1, 8, "
    "8) clipped to [-1, 1], plus 'pixels' 0..16), samples.png, trajectories.png (2-D data: forward "
    "and reverse paths) and result.json."
))
def sample(
    ckpt: Annotated[Path, typer.Option(help=_CKPT_HELP)],
    sampler: Annotated[str, typer.Option(
        help="; ".join(f"{name}: {choice.description}" for name, choice in SAMPLERS.items()))] = "sde",
    steps: Annotated[int | None, typer.Option(
        help="Steps of the sampler (default: sde/pc/als 500, ode 100; not for ode-adaptive).")] = None,
    tolerance: Annotated[float | None, typer.Option(
        help=f"ode-adaptive: rtol = atol of the solver (default {DEFAULT_TOLERANCE:g}).")] = None,
    n_samples: Annotated[int | None, typer.Option(
        "--n-samples", show_default=str(_DEFAULT_SAMPLES), help="Number of samples.")] = None,
    n: Annotated[int | None, typer.Option("--n", hidden=True, help="Old name of --n-samples.")] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    out: Annotated[str | None, typer.Option(
        help="Output folder (default: RUN/samples-SAMPLER beside the checkpoint).")] = None,
    overwrite: common.SampleOverwriteOption = False,
    device: common.DeviceOption = "cpu",
    no_progress: common.NoProgressOption = False,
) -> None:
    """Sample a trained diffusion model by running its SDE backward."""
    with common.user_errors({"n_steps": "--steps", "rtol": "--tolerance", "atol": "--tolerance"}):
        settings = SampleSettings(
            ckpt=str(ckpt), sampler=sampler, steps=steps, tolerance=tolerance,
            n=common.merge_alias(n_samples, n, "--n-samples", "--n", _DEFAULT_SAMPLES), seed=seed,
            out=str(common.run_folder(ckpt) / f"samples-{sampler}" if out is None else out),
            device=common.check_device(device), progress=not no_progress, overwrite=overwrite)
        folder = common.check_out(settings.out, "diffusion sample", overwrite=settings.overwrite)
        model = common.load_trained(ckpt, "diffusion", settings.device)
        common.check_sample_memory(settings.n, model.event_shape, "samples")
        score, vector = score_model(model), model.data_kind == "vector"
        planar = vector and model.event_shape == (2,)
        generator = make_generator(settings.seed, settings.device)
        x_T = score.sde.prior_sample((settings.n, *model.event_shape), generator, device=settings.device)  # noqa: N806
        started = time.perf_counter()
        options = settings.sampler_options(record=planar)
        result = reverse_process(score, score.sde, x_T, generator=generator, **options)
        wall_time = time.perf_counter() - started
        samples = model.to_data_units(result.x)
        label = common.data_label(model.data_spec)
        title = f"{label}: {settings.sampler}, {result.n_evaluations} evaluations"
        reference, missing = common.reference_points(model, settings.seed) if vector else (None, "")
        figure = model_samples_figure(samples, model.data_kind, reference, title)
        figures = {"samples.png": partial(save_figure, figure)}
        if planar:  # forward paths of data points (model samples when the data are gone), model units
            starts = (reference if reference is not None else samples)[:_TRAJECTORIES].to(x_T)
            times = torch.linspace(0.0, score.sde.T, _TRAJECTORY_RECORDS + 1, dtype=torch.float64)
            forward = score.sde.forward_path(model.to_model_units(starts), times, generator)
            note = "" if reference is not None else f" (forward paths start at model samples: {missing})"
            figures["trajectories.png"] = partial(save_figure, trajectory_figure(
                times, forward, result.times, result.trajectory, title + note))
        summary = common.sample_summary("diffusion sample", settings, ckpt, model, samples, wall_time,
                                        figures, n_evaluations=result.n_evaluations)
        summary["checkpoint"]["sde"] = score.sde.config()
        common.write_sample_run(folder, summary, samples, model, figures)
    common.print_table(f"diffusion sample: {settings.sampler}", common.sample_rows(
        ckpt, model, settings.n, wall_time, folder, ("network evaluations", str(result.n_evaluations))))


@dataclass(frozen=True, kw_only=True)
class NLLSettings(common.NLLRunSettings):
    """The settings of ``diffusion nll``, validated on construction (ValueError naming the flag)."""

    data: str | None
    tolerance: float

    def __post_init__(self) -> None:
        super().__post_init__()
        common.check_positive_number(self.tolerance, "--tolerance")


@diffusion_app.command("nll", help=(
    "Exact negative log-likelihood of data under a trained model, in the data's own units.\n\n"
    "log p is computed through the probability-flow ODE (instantaneous change of variables; exact "
    "divergence for d <= 10, Hutchinson's estimator above) and reported in nats in the data's own "
    "units: for standardized vector data NLL_data = NLL_standardized + sum_i log std_i. Prints the "
    "mean and its standard error over the points and writes nll.json; for 8gaussians and 25gaussians "
    "also the true density's NLL of the same points and the paired gap."
))
def nll(
    ckpt: Annotated[Path, typer.Option(help=_CKPT_HELP)],
    data: Annotated[str | None, typer.Option(
        help=common.DATA_HELP + " (default: the training data; toys are fresh draws with --seed).")] = None,
    n_data: Annotated[int | None, typer.Option(
        "--n-data", show_default=str(_DEFAULT_NLL_POINTS),
        help="Number of data points (toys: draws; files: a random subset).")] = None,
    n: Annotated[int | None, typer.Option("--n", hidden=True, help="Old name of --n-data.")] = None,
    seed: Annotated[int, typer.Option(
        help="Random seed (toy draws, subsets, divergence probes); the draws come from a stream of their "
             "own, held out from the training data whatever the seed.")] = 0,
    tolerance: Annotated[float, typer.Option(
        help="rtol = atol of the adaptive ODE solver (dopri5).")] = DEFAULT_TOLERANCE,
    out: Annotated[str | None, typer.Option(help="Folder for nll.json (default: the run folder).")] = None,
    overwrite: Annotated[bool, typer.Option(
        "--overwrite", help="Write into an --out whose nll.json another command wrote.")] = False,
    device: common.DeviceOption = "cpu",
    no_progress: Annotated[bool, typer.Option(
        "--no-progress", help="Accepted for uniformity: this command shows no progress bar.")] = False,
) -> None:
    """Exact negative log-likelihood of data under a trained model, in the data's own units."""
    with common.user_errors({"rtol": "--tolerance", "atol": "--tolerance"}):
        settings = NLLSettings(ckpt=str(ckpt), data=data,
                               n=common.merge_alias(n_data, n, "--n-data", "--n", _DEFAULT_NLL_POINTS),
                               seed=seed, tolerance=tolerance,
                               out=str(common.run_folder(ckpt) if out is None else out),
                               device=common.check_device(device), overwrite=overwrite,
                               progress=not no_progress)
        folder = common.check_out(settings.out, "diffusion nll", overwrite=settings.overwrite,
                                  marker="nll.json")
        model = common.load_trained(ckpt, "diffusion", settings.device)
        common.check_sample_memory(settings.n, model.event_shape, "data points")
        dataset = common.nll_data(model, settings.data, settings.n, settings.seed)
        score = score_model(model)
        started = time.perf_counter()
        # log_likelihood rather than model.log_prob: the report also gives its evaluations.
        result = log_likelihood(score, score.sde, model.to_model_units(dataset.x.to(settings.device)),
                                generator=make_generator(settings.seed, settings.device),
                                rtol=settings.tolerance, atol=settings.tolerance)
        wall_time = time.perf_counter() - started
        report = {"command": "diffusion nll", "settings": settings.to_dict(), "data": dataset.summary(),
                  "checkpoint": {"path": str(ckpt), "step": model.step},
                  **common.nll_summary(-result.log_prob.double() + model.log_std_sum, dataset, model),
                  "exact_divergence": result.exact, "n_evaluations": result.n_evaluations,
                  "wall_time_s": wall_time}
        common.write_json(folder / "nll.json", report)
    common.print_table("diffusion nll", [
        *common.nll_rows(dataset, report), ("ODE evaluations", str(result.n_evaluations)),
        ("wall time", f"{wall_time:.2f} s"), ("written to", str(folder / "nll.json"))])
