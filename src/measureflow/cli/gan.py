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

import dataclasses
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import torch
import typer
from torch import Tensor

from measureflow._core import atomic_write_json, make_generator, save_figure, save_npz
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
from measureflow.cli.diffusion import (
    _MAX_POINTS,
    _PREVIEW_DIGITS,
    _digits_figure,
    _run_folder,
    check_run_folder,
    data_label,
    data_spec,
    load_points,
    load_training_data,
    print_table,
    samples_figure,
)
from measureflow.data import (
    DATASET_NAMES,
    MIXTURE_NAMES,
    MODE_STD,
    Dataset,
    Standardizer,
    digits_to_pixels,
    toy_mixture,
)
from measureflow.generative.gan import (
    LOSS_NAMES,
    ModeReport,
    Stability,
    load_gan,
    mode_diagnostics,
    parse_stability,
    train_gan,
)
from measureflow.generative.train import CHECKPOINT_NAME, load_checkpoint

__all__ = ["GANSampleSettings", "GANTrainSettings", "gan_app", "mode_table", "sample", "train"]

gan_app = typer.Typer(
    name="gan",
    help="Adversarial and kernel generative models X = f(Z): train on data, sample.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_DATA_HELP = f"Data: one of {', '.join(DATASET_NAMES)}, or a path to a .csv/.npy file of shape (n, d)"
_NO_CRITIC = ("gmmn",)  # trained on MMD^2 between samples directly
# The stability regularizers constrain a scalar critic; wgan's weight clipping already bounds its
# Lipschitz constant, and gmmn/mmd-gan have no scalar critic.
_NO_STABILITY = ("wgan", "gmmn", "mmd-gan")
_MODE_SAMPLES = 2500  # generator samples behind the mode diagnostics
# A mode counts as covered with this many high-quality samples (mode_diagnostics' default; of
# 2500 samples a balanced generator puts about 312 in each mode of the ring, 100 of the grid).
_MODE_MIN_COUNT = 20
_MODE_N_STD = 3.0
# Files of an earlier run that the new one does not rewrite at once (the shared loop replaces the
# checkpoint, history and loss curves itself); --overwrite removes them before a fresh start.
_RUN_FILES = ("result.json",)
_PREVIEW_GLOB = "samples_step*.png"


# ----------------------------------------------------------------------------- train


@dataclass(frozen=True)
class GANTrainSettings:
    """The settings of ``gan train``, validated on construction (ValueError naming the flag)."""

    data: str
    loss: str
    steps: int
    seed: int
    out: str
    resume: bool
    overwrite: bool
    spectral_norm: bool
    stability: str | None
    g_lr: str | None
    d_lr: float | None
    n_critic: int | None
    batch_size: int
    n_data: int | None
    checkpoint_every: int | None
    figure_samples: int
    device: str
    progress: bool

    def __post_init__(self) -> None:
        check_choice(self.loss, LOSS_NAMES, "--loss")
        check_count(self.steps, "--steps")
        check_seed(self.seed)
        check_count(self.batch_size, "--batch-size")
        if self.resume and self.overwrite:
            raise ValueError("--resume continues the run in --out and --overwrite replaces it; pass one")
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
            check_positive_number(self.d_lr, "--d-lr")
        if self.n_critic is not None:
            if self.loss in _NO_CRITIC:
                raise ValueError(f"--n-critic: --loss {self.loss} has no critic")
            check_count(self.n_critic, "--n-critic")
        if self.n_data is not None:
            check_count(self.n_data, "--n-data", minimum=2)
        if self.checkpoint_every is not None:
            check_count(self.checkpoint_every, "--checkpoint-every")
        check_count(self.figure_samples, "--figure-samples", minimum=0)

    @property
    def stability_triple(self) -> Stability | None:
        if self.stability is None:
            return None
        try:
            return parse_stability(self.stability)
        except ValueError as error:
            raise ValueError(f"--stability {self.stability!r}: {error}") from None

    @property
    def generator_lr(self) -> float | str | None:
        """None (the loss's default), ``"theory"`` (gamma_0) or a positive learning rate."""
        if self.g_lr is None:
            return None
        text = self.g_lr.strip().lower()
        if text == "theory":
            return "theory"
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"--g-lr must be a positive number or 'theory', got {self.g_lr!r}") from None
        return check_positive_number(value, "--g-lr")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _check_run_folder(folder: Path, resume: bool, overwrite: bool) -> None:
    if resume:
        check_run_folder(folder, resume)
    elif not overwrite and (folder / CHECKPOINT_NAME).exists():
        raise ValueError(f"{os.fspath(folder / CHECKPOINT_NAME)!r} exists; pass --resume to continue that "
                         "run, --overwrite to replace it, or choose another --out")


def _clear_run(folder: Path) -> None:
    """--overwrite: remove what an earlier ``gan train`` wrote here (sample folders stay)."""
    for name in _RUN_FILES:
        (folder / name).unlink(missing_ok=True)
    for path in folder.glob(_PREVIEW_GLOB):
        path.unlink()


def _to_data_units(x: Tensor, standardizer: Standardizer | None) -> Tensor:
    return x if standardizer is None else standardizer.inverse(x)


def _figure(samples: Tensor, kind: str, reference: Tensor | None, title: str) -> Any:
    """Images: an 8 x 8 grid; vectors: the samples over the data (both in the data's units)."""
    if kind == "image":
        return _digits_figure(samples, title)
    return samples_figure(samples, reference, title)


def _write_preview(folder: Path, step: int, settings: GANTrainSettings, dataset: Dataset,
                   standardizer: Standardizer | None) -> None:
    """The figure written after each checkpoint: samples of the checkpoint's EMA generator, over
    the data (vectors, in the data's units) or as an 8 x 8 grid (images). Its own generator,
    seeded with --seed every time (the figures show one set of latent draws improving), leaves
    the training's random stream untouched."""
    if settings.figure_samples == 0:
        return
    loaded = load_gan(folder, settings.device)
    n = _PREVIEW_DIGITS if dataset.kind == "image" else settings.figure_samples
    x = _to_data_units(loaded.model.sample(n, make_generator(settings.seed, settings.device)), standardizer)
    title = f"{data_label(dataset.name)}: {settings.loss} generator (EMA) at step {step}"
    save_figure(_figure(x, dataset.kind, dataset.x, title), folder / f"samples_step{step:07d}.png")


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


def _format(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


_TRAIN_HELP = (
    "Train an implicit generative model X = f(Z) against a divergence to the data.\n\n"
    "Writes checkpoint.pt (with history.json, loss.png) every --checkpoint-every steps with a figure "
    "of generator samples, and result.json at the end; for 8gaussians and 25gaussians it prints and "
    "stores the mode diagnostics (modes covered, high-quality fraction, KL to uniform). Vector data "
    "are standardized per feature (stored in the checkpoint); images stay in [-1, 1]. Unset "
    "learning rates and --n-critic take the loss's defaults (measureflow.generative.gan.DEFAULTS). "
    "--resume continues an interrupted run exactly (give the same options); with a larger --steps it "
    "trains a finished run further."
)


@gan_app.command("train", help=_TRAIN_HELP)
def train(
    data: Annotated[str, typer.Option(help=_DATA_HELP + ".")],
    loss: Annotated[str, typer.Option(
        help="Objective: js (original minimax GAN), ns (non-saturating), kl, rkl, pearson, hellinger "
             "(f-GAN), wgan (weight clipping), wgan-gp, gmmn (MMD^2, no critic), mmd-gan.")],
    steps: Annotated[int, typer.Option(help="Generator steps (each after --n-critic critic steps).")] = 5000,
    seed: Annotated[int, typer.Option(help="Random seed (data draws, initialization, batches, noise).")] = 0,
    out: Annotated[Path | None, typer.Option(help="Run folder (default runs/gan/DATA-LOSS).")] = None,
    resume: Annotated[bool, typer.Option(
        "--resume", help="Continue the run in --out from its checkpoint, exactly where it stopped "
                         "(give the same options).")] = False,
    overwrite: Annotated[bool, typer.Option(
        "--overwrite", help="Start afresh in an --out that holds a run (its files are replaced).")] = False,
    spectral_norm: Annotated[bool, typer.Option(
        "--spectral-norm", help="Spectrally normalize the critic's layers (not with wgan or gmmn; "
                                "mmd-gan's feature map always is).")] = False,
    stability: Annotated[str | None, typer.Option(
        help="alpha,beta1,beta2: the critic's Lipschitz bound, smoothness bound and RKHS-norm penalty "
             "weight of Chu, Minami & Fukumizu (2020); each > 0 (js, ns, f-GAN losses, wgan-gp).")] = None,
    g_lr: Annotated[str | None, typer.Option(
        help="Generator learning rate, or 'theory' for gamma_0 = 1/(7 alpha + beta2) (needs "
             "--stability; the theory is about gradient descent, with the loss's Adam it only sets "
             "the scale); default: the loss's.")] = None,
    d_lr: Annotated[float | None, typer.Option(
        help="Critic learning rate (default: the loss's).")] = None,
    n_critic: Annotated[int | None, typer.Option(
        help="Critic steps per generator step (default: 1 for js/ns/f-GAN, 5 for wgan/wgan-gp/mmd-gan).")]
    = None,
    batch_size: Annotated[int, typer.Option(help="Samples per critic step and per generator step.")] = 256,
    n_data: Annotated[int | None, typer.Option(
        help="Toys: number of draws (default 100,000); digits/files: a random subset of this many rows.")]
    = None,
    checkpoint_every: Annotated[int | None, typer.Option(
        help="Write the checkpoint (and a sample figure) every this many steps (default: a tenth of "
             "--steps).")] = None,
    figure_samples: Annotated[int, typer.Option(
        help="Samples drawn for each checkpoint's figure (vectors; 0: no such figures).")] = 2000,
    device: Annotated[str, typer.Option(help="cpu, cuda or cuda:N.")] = "cpu",
    no_progress: Annotated[bool, typer.Option("--no-progress", help="Hide the progress bar.")] = False,
) -> None:
    """Train an implicit generative model X = f(Z) against a divergence to the data."""
    with user_errors():
        default_out = Path("runs") / "gan" / f"{Path(data).stem or data}-{loss}"
        settings = GANTrainSettings(
            data=data, loss=loss, steps=steps, seed=seed, out=str(out if out is not None else default_out),
            resume=resume, overwrite=overwrite, spectral_norm=spectral_norm, stability=stability, g_lr=g_lr,
            d_lr=d_lr, n_critic=n_critic, batch_size=batch_size, n_data=n_data,
            checkpoint_every=checkpoint_every, figure_samples=figure_samples, device=check_device(device),
            progress=not no_progress,
        )
        folder = check_out(settings.out)
        _check_run_folder(folder, settings.resume, settings.overwrite)
        dataset, standardizer, generator = load_training_data(settings.data, settings.n_data, settings.seed,
                                                              settings.device)
        x = standardizer.forward(dataset.x) if standardizer is not None else dataset.x
        extra_config = {
            "data": {"spec": data_spec(settings.data), "n_data": settings.n_data, **dataset.summary()},
            "standardizer": None if standardizer is None else standardizer.to_dict(),
            "seed": settings.seed,
        }
        if settings.overwrite and folder.is_dir():
            _clear_run(folder)
        with interruptible(folder):
            model, history = train_gan(
                x.to(settings.device), loss=settings.loss, n_steps=settings.steps, generator=generator,
                batch_size=settings.batch_size, n_critic=settings.n_critic,
                generator_lr=settings.generator_lr, critic_lr=settings.d_lr,
                spectral_norm=settings.spectral_norm, stability=settings.stability_triple, out_dir=folder,
                resume=settings.resume, overwrite=settings.overwrite, progress=settings.progress,
                checkpoint_every=settings.checkpoint_every, extra_config=extra_config,
                on_checkpoint=lambda step, run: _write_preview(run, step, settings, dataset, standardizer),
            )
        # The resolved options (the loss's default learning rates, gamma_0, n_critic) as trained.
        config = load_checkpoint(folder, kind="gan")["config"]
        modes = None
        if dataset.name in MIXTURE_NAMES:
            shown = model.sample(_MODE_SAMPLES, make_generator(settings.seed, settings.device))
            modes = _mode_report(_to_data_units(shown, standardizer), dataset.name)
        last = {key: values[-1] for key, values in history.losses.items() if values}
        summary = {
            "command": "gan train",
            "settings": settings.to_dict(),
            "data": extra_config["data"],
            "standardized": standardizer is not None,
            "config": {key: value for key, value in config.items() if key not in extra_config},
            "steps": history.final_step,
            "final_generator_loss": last.get("generator_loss"),
            "final_critic_loss": last.get("critic_loss"),
            "final_penalty": last.get("penalty"),
            "modes": _modes_dict(modes, _MODE_SAMPLES),
            "wall_time_s": history.wall_time,
            "history": history.to_dict(),
            "figures": ["loss.png", *sorted(path.name for path in folder.glob(_PREVIEW_GLOB))],
            "files": {"checkpoint": CHECKPOINT_NAME, "history": "history.json"},
        }
        atomic_write_json(folder / "result.json", json_safe(summary))
    options = [f"{settings.loss}"]
    if config.get("spectral_norm"):
        options.append("spectral norm")
    if settings.stability is not None:
        options.append(f"stability {settings.stability}")
    critic = (f", critic lr {config['critic_lr']:.3g}, n_critic {config['n_critic']}"
              if settings.loss not in _NO_CRITIC else "")
    print_table(f"gan train: {data_label(dataset.name)}", [
        ("data", f"{dataset.n} samples of shape {dataset.event_shape} ({dataset.kind}"
                 f"{', standardized' if standardizer is not None else ''})"),
        ("loss", ", ".join(options)),
        ("optimizer", f"{config['optimizer']}, generator lr {config['generator_lr']:.3g}{critic}"),
        ("steps", str(history.final_step) + (f" (resumed from {history.resumed_from})"
                                             if history.resumed_from is not None else "")),
        ("final generator / critic loss", f"{_format(summary['final_generator_loss'])} / "
                                          f"{_format(summary['final_critic_loss'])}"),
        ("wall time", f"{history.wall_time:.2f} s (training, all sessions)"),
        ("written to", str(folder)),
    ])
    if modes is not None:
        print_table(f"mode diagnostics: {_MODE_SAMPLES} samples", mode_table(modes))


# ----------------------------------------------------------------------------- sample


@dataclass(frozen=True)
class GANSampleSettings:
    """The settings of ``gan sample``, validated on construction (ValueError naming the flag)."""

    ckpt: str
    n: int
    seed: int
    out: str
    device: str

    def __post_init__(self) -> None:
        check_count(self.n, "--n")
        check_seed(self.seed)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_SAMPLE_HELP = (
    "Sample a trained generator (its EMA weights): X = f(Z), Z ~ N(0, I).\n\n"
    "Writes samples.npz in the data's own units (the standardization is undone; digits as (n, 1, 8, "
    "8) clipped to [-1, 1], plus 'pixels' 0..16), samples.png and result.json (with the mode "
    "diagnostics for 8gaussians and 25gaussians)."
)


@gan_app.command("sample", help=_SAMPLE_HELP)
def sample(
    ckpt: Annotated[Path, typer.Option(help="A GAN checkpoint: the run folder or its .pt file.")],
    n: Annotated[int, typer.Option(help="Number of samples.")] = 10_000,
    seed: Annotated[int, typer.Option(help="Random seed (the latent draws).")] = 0,
    out: Annotated[Path | None, typer.Option(
        help="Output folder (default: RUN/samples beside the checkpoint).")] = None,
    device: Annotated[str, typer.Option(help="cpu, cuda or cuda:N.")] = "cpu",
) -> None:
    """Sample a trained generator (its EMA weights): X = f(Z), Z ~ N(0, I)."""
    with user_errors():
        settings = GANSampleSettings(ckpt=str(ckpt), n=n, seed=seed,
                                     out=str(out if out is not None else _run_folder(ckpt) / "samples"),
                                     device=check_device(device))
        folder = check_out(settings.out)
        if not ckpt.exists():
            raise ValueError(f"--ckpt {os.fspath(ckpt)!r} does not exist")
        loaded = load_gan(ckpt, settings.device)
        config = loaded.config
        data = config.get("data") or {}
        spec = data.get("spec")
        stored = config.get("standardizer")
        standardizer = Standardizer.from_dict(stored) if stored is not None else None
        event_shape = loaded.model.event_shape
        kind = data.get("kind", "image" if len(event_shape) == 3 else "vector")
        started = time.perf_counter()
        z = loaded.model.sample(settings.n, make_generator(settings.seed, settings.device))
        wall_time = time.perf_counter() - started
        if not bool(torch.isfinite(z).all()):
            raise ValueError(f"the generator in {os.fspath(ckpt)!r} produced NaN or infinite samples")
        samples = _to_data_units(z, standardizer)
        title = f"{data_label(spec)}: {config.get('loss', 'gan')} generator (EMA), step {loaded.step}"
        arrays: dict[str, Any] = {}
        if kind == "image":
            arrays["samples"] = samples.clamp(-1.0, 1.0).cpu().numpy()
            if spec == "digits":
                arrays["pixels"] = digits_to_pixels(samples, clamp=True).round().to(torch.uint8).cpu().numpy()
            reference = None
        else:
            arrays["samples"] = samples.cpu().numpy()
            reference = None
            if spec is not None:
                try:
                    reference = load_points(spec, _MAX_POINTS, make_generator(settings.seed)).x
                except (ValueError, OSError):
                    reference = None  # the training file moved: draw the samples alone
            if reference is not None and tuple(reference.shape[1:]) != event_shape:
                reference = None
        figure = _figure(samples, kind, reference, title)
        modes = _mode_report(samples, spec)
        summary = {
            "command": "gan sample",
            "settings": settings.to_dict(),
            "checkpoint": {"path": str(ckpt), "step": loaded.step, "loss": config.get("loss"), "data": data},
            "n_samples": settings.n,
            "event_shape": list(event_shape),
            "wall_time_s": wall_time,
            "units": "data" if standardizer is not None else "model (no standardization stored)",
            "images_clipped_to": [-1.0, 1.0] if kind == "image" else None,
            "mean": samples.double().mean(0).tolist() if kind == "vector" else None,
            "std": samples.double().std(0).tolist() if kind == "vector" and settings.n > 1 else None,
            "modes": _modes_dict(modes, settings.n),
            "figures": ["samples.png"],
            "files": {"samples": "samples.npz"},
        }
        (folder / "result.json").unlink(missing_ok=True)
        save_figure(figure, folder / "samples.png")
        save_npz(folder / "samples.npz", **arrays)
        atomic_write_json(folder / "result.json", json_safe(summary))
    print_table("gan sample", [
        ("checkpoint", f"{ckpt} (step {loaded.step}, loss {config.get('loss')})"),
        ("samples", f"{settings.n} of shape {event_shape}"),
        ("wall time", f"{wall_time:.2f} s"),
        ("written to", str(folder)),
    ])
    if modes is not None:
        print_table(f"mode diagnostics: {settings.n} samples", mode_table(modes))
