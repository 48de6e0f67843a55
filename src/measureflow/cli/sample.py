"""``measureflow sample``: draw chains from a target's Gibbs measure and save them with a figure."""

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import torch
import typer
from rich.console import Console
from rich.table import Table

import measureflow as mf
from measureflow._core import atomic_path, atomic_write_json, save_npz
from measureflow.cli._common import (
    check_choice,
    check_count,
    check_device,
    check_memory,
    check_out,
    check_positive_number,
    check_seed,
    json_safe,
    merge_alias,
    user_errors,
)
from measureflow.cli._common.targets import TARGETS, resolve_target
from measureflow.report import function_posterior_figure, sample_figure, save_figure
from measureflow.samplers.annealed import SCHEDULES

__all__ = ["FORMATS", "SAMPLERS", "SampleSettings", "SamplerChoice", "sample"]


@dataclass(frozen=True)
class SamplerChoice:
    """A ``--sampler`` name: the library's sampler and the options (``mf.sample`` keywords)
    that apply to it."""

    name: str
    options: tuple[str, ...] = ()


SAMPLERS: dict[str, SamplerChoice] = {
    "ula": SamplerChoice("ula"),
    "sgld": SamplerChoice("sgld", ("batch_size",)),
    "sgld-cv": SamplerChoice("sgld-cv", ("batch_size",)),
    "psgld": SamplerChoice("psgld", ("batch_size",)),
    "sghmc": SamplerChoice("sghmc", ("batch_size", "friction")),
    "mala": SamplerChoice("mala"),
    "annealed": SamplerChoice("annealed", ("schedule", "beta_start")),
    "infinite-langevin": SamplerChoice("infinite-langevin", ("batch_size", "lam", "decay")),
}

_MAX_FUNCTIONS = 4000  # the last kept states drawn as functions (chains x steps, flattened)

_FLAGS = {"batch_size": "--batch-size", "friction": "--friction", "schedule": "--schedule",
          "beta_start": "--beta-start", "lam": "--lam", "decay": "--decay"}
# The library's argument names in its messages, as this command's options (only names that
# cannot be plain words of a message).
_LIBRARY_FLAGS = {"n_chains": "--n-chains", "n_steps": "--steps", "burn_in": "--burn-in",
                  "step_size": "--step-size", "batch_size": "--batch-size", "beta_start": "--beta-start"}
FORMATS = ("npz", "netcdf")  # --format: samples.npz (numpy) or samples.nc (ArviZ InferenceData, netCDF)
_DEFAULT_CHAINS = 1000


@dataclass(frozen=True)
class SampleSettings:
    """The settings of one ``sample`` command, validated on construction (ValueError naming the
    flag); recorded in ``result.json`` under ``settings``."""

    target: str
    dim: int | None
    sampler: str
    n_chains: int
    steps: int
    burn_in: int
    thin: int
    step_size: float | str
    beta: float
    batch_size: int | None
    friction: float | None
    schedule: str | None
    beta_start: float | None
    lam: float | None
    decay: float | None
    seed: int
    device: str
    out: str
    progress: bool
    format: str = "npz"
    overwrite: bool = False

    def __post_init__(self) -> None:
        if self.sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {self.sampler!r}; choose one of {', '.join(SAMPLERS)}")
        check_choice(self.format, FORMATS, "--format")
        check_count(self.n_chains, "--n-chains")
        check_count(self.steps, "--steps")
        check_count(self.burn_in, "--burn-in", minimum=0)
        check_count(self.thin, "--thin")
        if self.thin > self.steps:
            raise ValueError(f"--thin ({self.thin}) must not exceed --steps ({self.steps})")
        if self.step_size != "auto":
            try:
                step_size = float(self.step_size)
            except (TypeError, ValueError):
                raise ValueError(
                    f"--step-size must be a positive number or 'auto', got {self.step_size!r}"
                ) from None
            object.__setattr__(self, "step_size", check_positive_number(step_size, "--step-size"))
        check_positive_number(self.beta, "--beta")
        check_seed(self.seed)
        if self.dim is not None:
            check_count(self.dim, "--dim")
        if self.batch_size is not None:
            check_count(self.batch_size, "--batch-size")
        if self.friction is not None:
            check_positive_number(self.friction, "--friction")
        if self.beta_start is not None:
            check_positive_number(self.beta_start, "--beta-start")
        if self.lam is not None and not (math.isfinite(self.lam) and self.lam >= 0):
            raise ValueError(f"--lam must be finite and >= 0, got {self.lam!r}")
        if self.decay is not None:
            check_positive_number(self.decay, "--decay")
        if self.schedule is not None and self.schedule not in SCHEDULES:
            raise ValueError(
                f"--schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}"
            )
        applicable = SAMPLERS[self.sampler].options
        for option, flag in _FLAGS.items():
            if getattr(self, option) is not None and option not in applicable:
                users = [name for name, choice in SAMPLERS.items() if option in choice.options]
                raise ValueError(
                    f"{flag} applies to --sampler {'/'.join(users)}, not {self.sampler}"
                )

    def sampler_options(self) -> dict[str, Any]:
        """The sampler-specific keywords for ``mf.sample`` that were given."""
        return {
            option: getattr(self, option)
            for option in SAMPLERS[self.sampler].options
            if getattr(self, option) is not None
        }

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_SAMPLE_FILES = {"npz": "samples.npz", "netcdf": "samples.nc"}


def _inference_data(result: mf.SampleResult) -> Any:
    """The run as an ``arviz.InferenceData`` (--format netcdf); ArviZ missing is bad input."""
    try:
        return result.to_inference_data()
    except ImportError:
        raise ValueError("--format netcdf needs ArviZ (pip install arviz); install it or use "
                         "--format npz") from None


def _write_run(out: Path, result: mf.SampleResult, data: dict[str, Any], figure: Any,
               posterior: Any | None = None, sample_format: str = "npz") -> None:
    """Write the run folder; every file atomically, result.json last (it marks a complete run).

    The samples, chain first as ArviZ, NumPyro and Stan store them: ``samples.npz`` holds
    :meth:`~measureflow.SampleResult.to_arrays` (``samples`` ``(n_chains, n_kept, d)``, ``energy``,
    ``lp``, ``acceptance_rate``...); ``samples.nc`` (--format netcdf) the InferenceData of
    :meth:`~measureflow.SampleResult.to_inference_data`.
    """
    summary = json_safe(data)
    json.dumps(summary)  # fails here, before any file is written, if something is not JSON
    inference_data = _inference_data(result) if sample_format == "netcdf" else None
    # result.json marks a complete run: drop an earlier run's before replacing its other files,
    # so a failure half-way never leaves an old summary beside new samples; and the samples file
    # of the other format, so the folder holds one run.
    (out / "result.json").unlink(missing_ok=True)
    for other, name in _SAMPLE_FILES.items():
        if other != sample_format:
            (out / name).unlink(missing_ok=True)
    save_figure(figure, out / "sample.png")
    if posterior is not None:
        save_figure(posterior, out / "posterior.png")
    if inference_data is not None:
        with atomic_path(out / _SAMPLE_FILES["netcdf"]) as temporary:
            inference_data.to_netcdf(str(temporary))
    else:
        save_npz(out / _SAMPLE_FILES["npz"], **result.to_arrays())
    atomic_write_json(out / "result.json", summary)


def _print_summary(result: mf.SampleResult, target_name: str, out: Path) -> None:
    summary = result.to_dict()
    table = Table(title=f"{target_name}: {result.sampler}", show_header=False)
    table.add_column("quantity", style="bold")
    table.add_column("value")

    def short(values: list[float] | None) -> str:
        if values is None:
            return "-"
        shown = ", ".join(f"{v:.4g}" for v in values[:4])
        return f"[{shown}{', ...' if len(values) > 4 else ''}]"

    table.add_row("kept samples", f"{summary['n_kept']} steps x {summary['n_chains']} chains, "
                                  f"d = {summary['dim']}")
    table.add_row("step size", f"{result.step_size:.4g}")
    if result.step_size_search is not None:
        search = result.step_size_search
        tried = ", ".join(f"{h:.2g}: {v:.3g}" for h, v in zip(search.grid, search.ksd_squared, strict=True))
        table.add_row("KSD^2 of the pilots", tried)
    if summary["acceptance_rate"] is not None:
        table.add_row("acceptance rate", f"{summary['acceptance_rate']:.3f}")
    table.add_row("mean", short(summary["mean"]))
    table.add_row("std", short(summary["std"]))
    if summary["ess"] is not None:
        table.add_row("ESS (min over coordinates)", f"{min(summary['ess']):.4g}")
        table.add_row("R-hat (max over coordinates)", f"{max(summary['rhat']):.4f}")
    if "best_energy_min" in summary:
        table.add_row("best energy (min over chains)", f"{summary['best_energy_min']:.4g}")
    table.add_row("wall time", f"{summary['wall_time_s']:.2f} s")
    table.add_row("written to", str(out))
    Console().print(table)
    print_warnings(result.warnings)


def print_warnings(warnings: Any) -> None:
    """Each convergence warning as one line ``warning: ...`` on stderr (also in result.json)."""
    for warning in warnings or ():
        typer.echo(f"warning: {' '.join(str(warning).split())}", err=True)


def sample(
    target: Annotated[str, typer.Option(
        help=f"Target: one of {', '.join(TARGETS)}, or path/to/file.py:function.")] = "double-well",
    dim: Annotated[int | None, typer.Option(
        help="Dimension of dimension-generic targets and of user energy functions (default: the "
             "target's own: " + ", ".join(f"{name} {entry.default_dim}" for name, entry in TARGETS.items())
             + "; a user energy needs it unless it sets .dim).")] = None,
    sampler: Annotated[str, typer.Option(help=f"One of {', '.join(SAMPLERS)}.")] = "mala",
    n_chains: Annotated[int | None, typer.Option(
        "--n-chains", show_default=str(_DEFAULT_CHAINS), help="Number of independent chains.")] = None,
    chains: Annotated[int | None, typer.Option("--chains", hidden=True, help="Old name of --n-chains.")]
    = None,
    steps: Annotated[int, typer.Option(help="Steps kept after burn-in (before --thin).")] = 5000,
    burn_in: Annotated[int, typer.Option(help="Discarded steps first (MALA adapts h here).")] = 1000,
    thin: Annotated[int, typer.Option(help="Keep every thin-th step.")] = 1,
    step_size: Annotated[str, typer.Option(
        help="Step size h, or 'auto': the grid value whose pilot runs have the smallest kernel "
             "Stein discrepancy (ula, sgld, sgld-cv, psgld, sghmc).")] = "0.01",
    beta: Annotated[float, typer.Option(help="Inverse temperature (final one for annealed).")] = 1.0,
    batch_size: Annotated[int | None, typer.Option(
        help="Minibatch size for targets that are sums over data (sgld, sgld-cv, psgld, sghmc: default "
             "32; infinite-langevin: default the full gradient); at most the number of data terms.")]
    = None,
    friction: Annotated[float | None, typer.Option(help="Friction (sghmc; default 1).")] = None,
    schedule: Annotated[str | None, typer.Option(
        help=f"Annealing schedule (annealed): {', '.join(SCHEDULES)} (default geometric).")] = None,
    beta_start: Annotated[float | None, typer.Option(
        help="First inverse temperature (annealed; default 0.1).")] = None,
    lam: Annotated[float | None, typer.Option(
        help="RKHS weight lam of the penalty (lam/2) sum_k x_k^2 / mu_k (infinite-langevin; "
             "default 0).")] = None,
    decay: Annotated[float | None, typer.Option(
        help="Eigenvalue decay p, mu_k = (k+1)^-p (infinite-langevin; per neuron for "
             "network-regression; default: mu_k = 1).")] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    out: Annotated[str | None, typer.Option(
        help="Output folder (default runs/sample/TARGET).")] = None,
    sample_format: Annotated[str, typer.Option(
        "--format", help="samples.npz (numpy arrays, chain first: samples (n_chains, n_kept, d), energy, "
                         "lp, acceptance_rate...) or netcdf: samples.nc, an ArviZ InferenceData (needs "
                         "ArviZ).")] = "npz",
    overwrite: Annotated[bool, typer.Option(
        "--overwrite", help="Write into an --out that holds another command's run (its result.json "
                            "is replaced).")] = False,
    device: Annotated[str, typer.Option(help="cpu, cuda or cuda:N.")] = "cpu",
    no_progress: Annotated[bool, typer.Option("--no-progress", help="Hide the progress bar.")] = False,
) -> None:
    """Sample a target's Gibbs measure exp(-beta L); write samples.npz, result.json, sample.png."""
    with user_errors(_LIBRARY_FLAGS):
        default_out = Path("runs") / "sample" / Path(target.rpartition(":")[2] or target).stem
        settings = SampleSettings(
            target=target, dim=dim, sampler=sampler,
            n_chains=merge_alias(n_chains, chains, "--n-chains", "--chains", _DEFAULT_CHAINS), steps=steps,
            burn_in=burn_in, thin=thin, step_size=step_size, beta=beta, batch_size=batch_size,
            friction=friction, schedule=schedule, beta_start=beta_start, lam=lam, decay=decay, seed=seed,
            device=check_device(device), out=str(out if out is not None else default_out),
            progress=not no_progress, format=sample_format, overwrite=overwrite,
        )
        folder = check_out(settings.out, "sample", overwrite=settings.overwrite)
        model, target_name = resolve_target(settings.target, settings.dim)
        _check_batch_size(settings.batch_size, model, target_name)
        itemsize = torch.empty(0, dtype=model.dtype).element_size()
        kept = settings.steps // settings.thin
        # The kept samples (and energies), plus about eight states' worth of working tensors.
        check_memory((kept * (model.dim + 1) + 8 * model.dim) * settings.n_chains * itemsize,
                     f"{settings.n_chains:,} chains of dimension {model.dim:,} x {kept:,} kept steps")
        options = settings.sampler_options()
        function_space = isinstance(model, (mf.targets.HilbertRegression, mf.targets.InfiniteWidthNetwork))
        if isinstance(model, mf.targets.InfiniteWidthNetwork) and "decay" in options:
            # The decay is per neuron: every coordinate of w_j gets (j + 1)^-p.
            options["mu"] = model.eigenvalues(options.pop("decay"))
        result = mf.sample(
            model, SAMPLERS[settings.sampler].name,
            n_chains=settings.n_chains, n_steps=settings.steps, step_size=settings.step_size,
            beta=settings.beta, burn_in=settings.burn_in, thin=settings.thin, seed=settings.seed,
            device=settings.device, progress=settings.progress, **options,
        )
        figure = sample_figure(
            result.samples, result.energy_trace, model, settings.beta,
            burn_in=settings.burn_in, thin=settings.thin,
            title=f"{target_name}: {result.sampler}, {settings.n_chains} chains",
        )
        posterior = None
        if function_space:
            grid, values, data_x, data_y = mf.targets.function_values(
                model, result.samples.reshape(-1, model.dim)[-_MAX_FUNCTIONS:])
            posterior = function_posterior_figure(
                grid, values, data_x, data_y,
                title=f"{target_name}: posterior functions ({result.sampler}, beta = {settings.beta:g})")
        data = {
            "command": "sample",
            "target": target_name,
            "settings": {**settings.to_dict(), "dim": model.dim},
            **result.to_dict(),
            "figures": ["sample.png"] + (["posterior.png"] if posterior is not None else []),
            "files": {"samples": _SAMPLE_FILES[settings.format], "layout": "(chain, draw, ...)"},
        }
        _write_run(folder, result, data, figure, posterior, settings.format)
    _print_summary(result, target_name, folder)


def _check_batch_size(batch_size: int | None, model: Any, target_name: str) -> None:
    """--batch-size is a number of data terms: refused for a target that is no sum over data, and
    above the number of terms (the sampler would silently use the full gradient instead)."""
    if batch_size is None:
        return
    n_terms = getattr(model, "n_terms", None)
    if not isinstance(model, mf.targets.FiniteSumTarget) or n_terms is None:
        raise ValueError(f"--batch-size: target {target_name!r} is not a sum over data terms (as logistic "
                         "and the regression targets are); drop --batch-size")
    if batch_size > n_terms:
        raise ValueError(f"--batch-size {batch_size:,} exceeds the {n_terms:,} data terms of target "
                         f"{target_name!r}; use at most {n_terms:,} ({n_terms:,} is the full gradient)")
