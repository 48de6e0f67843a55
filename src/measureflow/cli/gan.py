"""``measureflow gan``: train an implicit generative model X = f_theta(Z), Z ~ N(0, I), against a
divergence between the model and the data (the original GAN, its non-saturating variant, f-GANs,
WGAN, WGAN-GP, GMMN, MMD-GAN, with the stability regularizers of Chu, Minami & Fukumizu), and
sample it.

As for diffusion models, vector data are standardized per feature before training (images stay
in [-1, 1]); the standardization and the data specification live in the checkpoint's config, so
``sample`` writes its samples in the data's own units from the checkpoint alone. For the
Gaussian-mixture toys (8gaussians, 25gaussians) both commands report the mode diagnostics of the
EMA generator in the data's units: modes covered, high-quality fraction, and the KL divergence
between the mode histogram and the uniform one.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import torch
import typer
from torch import Tensor

from measureflow._core import make_generator
from measureflow.cli import _common as common
from measureflow.data import MIXTURE_NAMES, MODE_STD, toy_mixture
from measureflow.generative import TrainedModel
from measureflow.generative.gan import (
    LOSS_NAMES,
    OBJECTIVES,
    ModeReport,
    Stability,
    mode_diagnostics,
    parse_stability,
    theory_learning_rate,
    train_gan,
)
from measureflow.report import save_figure
from measureflow.report.generative import model_samples_figure

__all__ = ["GANSampleSettings", "GANTrainSettings", "gan_app", "mode_table", "sample", "train"]

gan_app = typer.Typer(name="gan", help="Adversarial and kernel generative models X = f(Z): train on data, "
                      "sample.", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)

_NO_CRITIC = ("gmmn",)  # trained on MMD^2 between samples directly
# The stability regularizers constrain a scalar critic; wgan's weight clipping already bounds its
# Lipschitz constant, and gmmn/mmd-gan have no scalar critic.
_NO_STABILITY = ("wgan", "gmmn", "mmd-gan")
_MODE_SAMPLES = 2500  # generator samples behind the mode diagnostics
# A mode counts as covered with this many high-quality samples (mode_diagnostics' default; of
# 2500 samples a balanced generator puts about 312 in each mode of the ring, 100 of the grid).
_MODE_MIN_COUNT = 20
_MODE_N_STD = 3.0
_PREVIEWS = "samples_step*.png"
_DEFAULT_SAMPLES = 10_000


def _defaults_help(value: str) -> str:
    """Each loss's default of a training setting (``generator_lr``, ``critic_lr``, ``n_critic``),
    grouped: "2e-4 for js/ns/kl, 5e-5 for wgan, ..." (losses without a critic left out)."""
    groups: dict[str, list[str]] = {}
    for name in LOSS_NAMES:
        if value != "generator_lr" and name in _NO_CRITIC:
            continue
        groups.setdefault(f"{getattr(OBJECTIVES[name]().defaults, value):g}", []).append(name)
    return ", ".join(f"{shown} for {'/'.join(names)}" for shown, names in groups.items())


@dataclass(frozen=True, kw_only=True)
class GANTrainSettings(common.TrainRunSettings):
    """The settings of ``gan train``, validated on construction (ValueError naming the flag)."""

    loss: str
    spectral_norm: bool
    stability: str | None
    g_lr: str | None
    d_lr: float | None
    n_critic: int | None
    figure_samples: int

    def __post_init__(self) -> None:
        common.check_choice(self.loss, LOSS_NAMES, "--loss")
        super().__post_init__()
        if self.spectral_norm and self.loss == "wgan":
            raise ValueError("--spectral-norm cannot be combined with --loss wgan, whose weight clipping "
                             "already bounds the critic's Lipschitz constant; use --loss wgan-gp")
        if self.spectral_norm and self.loss in _NO_CRITIC:
            raise ValueError(f"--spectral-norm: --loss {self.loss} has no critic to normalize")
        if self.stability is not None and self.loss == "wgan":
            raise ValueError("--stability cannot be combined with --loss wgan, whose weight clipping already "
                             "bounds the critic's Lipschitz constant; use --loss wgan-gp")
        if self.stability is not None and self.loss in _NO_STABILITY:
            raise ValueError(f"--stability acts on a scalar critic, and --loss {self.loss} has none (use js, "
                             "ns, an f-GAN loss or wgan-gp)")
        _ = self.stability_triple  # parse now: a malformed triple fails before anything is read
        if self.g_lr is not None and self.g_lr.strip().lower() == "theory" and self.stability is None:
            raise ValueError("--g-lr theory (gamma_0 = 1/(7 alpha + beta2)) needs "
                             "--stability alpha,beta1,beta2")
        _ = self.generator_lr
        if self.d_lr is not None:
            if self.loss in _NO_CRITIC:
                raise ValueError(f"--d-lr: --loss {self.loss} has no critic (use --g-lr)")
            common.check_positive_number(self.d_lr, "--d-lr")
        if self.n_critic is not None:
            if self.loss in _NO_CRITIC:
                raise ValueError(f"--n-critic: --loss {self.loss} has no critic")
            common.check_count(self.n_critic, "--n-critic")
        common.check_count(self.figure_samples, "--figure-samples", minimum=0)

    @property
    def stability_triple(self) -> Stability | None:
        if self.stability is None:
            return None
        try:
            return parse_stability(self.stability)
        except ValueError as error:
            raise ValueError(f"--stability {self.stability!r}: {error}") from None

    @property
    def generator_lr(self) -> float | None:
        """None (the loss's default), gamma_0 = 1/(7 alpha + beta2) for ``theory``, or --g-lr."""
        if self.g_lr is None:
            return None
        text = self.g_lr.strip().lower()
        if text == "theory":
            return theory_learning_rate(self.stability_triple)
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"--g-lr must be a positive number or 'theory', got {self.g_lr!r}") from None
        return common.check_positive_number(value, "--g-lr")


def _mode_report(samples: Tensor, spec: str | None) -> ModeReport | None:
    """Mode diagnostics of ``samples`` (data units) for the mixture toys (None otherwise)."""
    if spec not in MIXTURE_NAMES or tuple(samples.shape[1:]) != (2,):
        return None
    return mode_diagnostics(samples, toy_mixture(spec).means, MODE_STD, n_std=_MODE_N_STD,
                            min_count=_MODE_MIN_COUNT)


def mode_table(report: ModeReport) -> list[tuple[str, str]]:
    """The rows of the printed mode-diagnostics table."""
    return [
        ("modes covered", f"{report.n_covered} / {report.counts.numel()} (>= {_MODE_MIN_COUNT} samples "
                          f"within {_MODE_N_STD:g} std of the centre)"),
        ("high-quality fraction", f"{report.high_quality_fraction:.3f}"),
        ("KL(mode histogram || uniform)", f"{report.kl_to_uniform:.3f}"),
    ]


def _modes_dict(report: ModeReport | None, n_samples: int) -> dict[str, Any] | None:
    if report is None:
        return None
    return {**report.to_dict(), "n_samples": n_samples, "n_std": _MODE_N_STD,
            "min_count": _MODE_MIN_COUNT, "mode_std": MODE_STD}


@gan_app.command("train", help=(
    "Train an implicit generative model X = f(Z) against a divergence to the data.\n\n"
    "Writes checkpoint.pt (with history.json, loss.png) every --checkpoint-every steps with a figure "
    "of generator samples, and result.json at the end; for 8gaussians and 25gaussians it prints and "
    "stores the mode diagnostics (modes covered, high-quality fraction, KL to uniform). Vector data "
    "are standardized per feature (stored in the checkpoint); images stay in [-1, 1]. Unset learning "
    "rates and --n-critic take the loss's defaults. --resume continues an interrupted run exactly "
    "(give the same options); with a larger --steps it trains a finished run further; --overwrite "
    "replaces the run in --out."
))
def train(
    data: Annotated[str, typer.Option(help=common.DATA_HELP + ".")],
    loss: Annotated[str, typer.Option(
        help="Objective: js (original minimax GAN), ns (non-saturating), kl, rkl, pearson, hellinger "
             "(f-GAN), wgan (weight clipping), wgan-gp, gmmn (MMD^2, no critic), mmd-gan.")],
    steps: Annotated[int, typer.Option(help="Generator steps (each after --n-critic critic steps).")] = 5000,
    seed: Annotated[int, typer.Option(help="Random seed (data draws, initialization, batches, noise).")] = 0,
    out: Annotated[str | None, typer.Option(help="Run folder (default runs/gan/DATA-LOSS).")] = None,
    resume: common.ResumeOption = False,
    overwrite: common.OverwriteOption = False,
    spectral_norm: Annotated[bool, typer.Option(
        "--spectral-norm", help="Spectrally normalize the critic's layers (not with wgan or gmmn; "
                                "mmd-gan's feature map always is).")] = False,
    stability: Annotated[str | None, typer.Option(
        help="alpha,beta1,beta2: the critic's Lipschitz bound, smoothness bound and RKHS-norm penalty "
             "weight of Chu, Minami & Fukumizu (2020); each > 0 (js, ns, f-GAN losses, wgan-gp).")] = None,
    g_lr: Annotated[str | None, typer.Option(
        help="Generator learning rate, or 'theory' for gamma_0 = 1/(7 alpha + beta2) (needs "
             "--stability; the theory is about gradient descent, with the loss's Adam it only sets "
             "the scale); default: the loss's, " + _defaults_help("generator_lr") + ".")] = None,
    d_lr: Annotated[float | None, typer.Option(
        help="Critic learning rate; default: the loss's, " + _defaults_help("critic_lr") + ".")] = None,
    n_critic: Annotated[int | None, typer.Option(
        help="Critic steps per generator step; default: the loss's, " + _defaults_help("n_critic") + ".")]
    = None,
    batch_size: Annotated[int, typer.Option(help="Samples per critic step and per generator step.")] = 256,
    n_data: common.NDataOption = None,
    checkpoint_every: common.CheckpointEveryOption = None,
    figure_samples: common.FigureSamplesOption = 2000,
    device: common.DeviceOption = "cpu",
    no_progress: common.NoProgressOption = False,
) -> None:
    """Train an implicit generative model X = f(Z) against a divergence to the data."""
    with common.user_errors({**common.TRAIN_FLAGS, "generator_lr": "--g-lr", "critic_lr": "--d-lr",
                             "n_critic": "--n-critic"}):
        settings = GANTrainSettings(
            data=data, loss=loss, steps=steps, seed=seed,
            out=str(Path("runs") / "gan" / f"{Path(data).stem or data}-{loss}" if out is None else out),
            resume=resume, overwrite=overwrite,
            spectral_norm=spectral_norm, stability=stability, g_lr=g_lr, d_lr=d_lr, n_critic=n_critic,
            batch_size=batch_size, n_data=n_data, checkpoint_every=checkpoint_every,
            figure_samples=figure_samples, device=common.check_device(device), progress=not no_progress,
        )
        run = common.start_training(settings, _PREVIEWS, command="gan train",
                                    batch_rows=settings.batch_size * max(settings.n_critic or 5, 1))
        with common.interruptible(run.folder):
            _, history = train_gan(
                run.x, loss=settings.loss, n_steps=settings.steps, generator=run.generator,
                batch_size=settings.batch_size, n_critic=settings.n_critic,
                generator_lr=settings.generator_lr, critic_lr=settings.d_lr,
                spectral_norm=settings.spectral_norm, stability=settings.stability_triple, out_dir=run.folder,
                resume=settings.resume, overwrite=settings.overwrite, progress=settings.progress,
                checkpoint_every=settings.checkpoint_every, extra_config=run.config,
                on_checkpoint=lambda step, _: common.write_preview(
                    run, step, "gan", f"{settings.loss} generator (EMA)", settings.figure_samples,
                    settings.seed, settings.device),
            )
        # The model as trained, with the resolved options (the loss's default rates, n_critic).
        model = TrainedModel.load(run.folder, family="gan", device=settings.device)
        config = model.config
        modes = None
        if run.dataset.name in MIXTURE_NAMES:
            shown = model.sample(_MODE_SAMPLES, generator=make_generator(settings.seed, settings.device))
            modes = _mode_report(shown, run.dataset.name)
        last = common.last_losses(history)
        options = [settings.loss]
        if config.get("spectral_norm"):
            options.append("spectral norm")
        if settings.stability is not None:
            options.append(f"stability {settings.stability}")
        critic = (f", critic lr {config['critic_lr']:.3g}, n_critic {config['n_critic']}"
                  if settings.loss not in _NO_CRITIC else "")
        common.finish_training("gan train", settings, run, history, _PREVIEWS, [
            ("loss", ", ".join(options)),
            ("optimizer", f"{config['optimizer']}, generator lr {config['generator_lr']:.3g}{critic}"),
            ("final generator / critic loss", f"{common.format_number(last.get('generator_loss'))} / "
                                              f"{common.format_number(last.get('critic_loss'))}"),
        ], config={key: value for key, value in config.items() if key not in run.config},
            final_generator_loss=last.get("generator_loss"), final_critic_loss=last.get("critic_loss"),
            final_penalty=last.get("penalty"), modes=_modes_dict(modes, _MODE_SAMPLES))
    if modes is not None:
        common.print_table(f"mode diagnostics: {_MODE_SAMPLES} samples", mode_table(modes))


@dataclass(frozen=True, kw_only=True)
class GANSampleSettings(common.SampleRunSettings):
    """The settings of ``gan sample``, validated on construction (ValueError naming the flag)."""


@gan_app.command("sample", help=(
    "Sample a trained generator (its EMA weights): X = f(Z), Z ~ N(0, I).\n\n"
    "Writes samples.npz in the data's own units (the standardization is undone; digits as (n, 1, 8, "
    "8) clipped to [-1, 1], plus 'pixels' 0..16), samples.png and result.json (with the mode "
    "diagnostics for 8gaussians and 25gaussians)."
))
def sample(
    ckpt: Annotated[Path, typer.Option(help="A GAN checkpoint: the run folder or its .pt file.")],
    n_samples: Annotated[int | None, typer.Option(
        "--n-samples", show_default=str(_DEFAULT_SAMPLES), help="Number of samples.")] = None,
    n: Annotated[int | None, typer.Option("--n", hidden=True, help="Old name of --n-samples.")] = None,
    seed: Annotated[int, typer.Option(help="Random seed (the latent draws).")] = 0,
    out: Annotated[str | None, typer.Option(
        help="Output folder (default: RUN/samples beside the checkpoint).")] = None,
    overwrite: common.SampleOverwriteOption = False,
    device: common.DeviceOption = "cpu",
    no_progress: Annotated[bool, typer.Option(
        "--no-progress", help="Accepted for uniformity: this command shows no progress bar.")] = False,
) -> None:
    """Sample a trained generator (its EMA weights): X = f(Z), Z ~ N(0, I)."""
    with common.user_errors():
        settings = GANSampleSettings(
            ckpt=str(ckpt), n=common.merge_alias(n_samples, n, "--n-samples", "--n", _DEFAULT_SAMPLES),
            seed=seed, device=common.check_device(device), overwrite=overwrite, progress=not no_progress,
            out=str(common.run_folder(ckpt) / "samples" if out is None else out))
        folder = common.check_out(settings.out, "gan sample", overwrite=settings.overwrite)
        model = common.load_trained(ckpt, "gan", settings.device)
        common.check_sample_memory(settings.n, model.event_shape, "samples")
        started = time.perf_counter()
        samples = model.sample(settings.n, generator=make_generator(settings.seed, settings.device))
        wall_time = time.perf_counter() - started
        if not bool(torch.isfinite(samples).all()):
            raise ValueError(f"the generator in {os.fspath(ckpt)!r} produced NaN or infinite samples")
        loss = model.config.get("loss")
        title = f"{common.data_label(model.data_spec)}: {loss or 'gan'} generator (EMA), step {model.step}"
        # The training file may have moved: then the samples are drawn alone.
        reference = common.reference_points(model, settings.seed)[0] if model.data_kind == "vector" else None
        figure = model_samples_figure(samples, model.data_kind, reference, title)
        figures = {"samples.png": partial(save_figure, figure)}
        modes = _mode_report(samples, model.data_spec)
        summary = common.sample_summary("gan sample", settings, ckpt, model, samples, wall_time, figures,
                                        modes=_modes_dict(modes, settings.n))
        summary["checkpoint"]["loss"] = loss
        common.write_sample_run(folder, summary, samples, model, figures)
    common.print_table("gan sample", common.sample_rows(ckpt, model, settings.n, wall_time, folder,
                                                        ("loss", str(loss))))
    if modes is not None:
        common.print_table(f"mode diagnostics: {settings.n} samples", mode_table(modes))
