"""``measureflow flow``: move a particle cloud along the gradient flow of a functional."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import torch
import typer
from rich.console import Console
from rich.table import Table

from measureflow import flows
from measureflow._core import atomic_write_json, make_generator, save_npz
from measureflow.cli._common import (
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
from measureflow.report import save_figure

__all__ = ["FUNCTIONALS", "FlowSettings", "FunctionalChoice", "flow"]


@dataclass(frozen=True)
class FunctionalChoice:
    """A ``--functional`` name: what it runs, whether it needs a target, which options apply."""

    description: str
    needs_target: bool
    options: tuple[str, ...] = ()


FUNCTIONALS: dict[str, FunctionalChoice] = {
    "kl": FunctionalChoice(
        "KL(mu || pi_beta): Langevin/ULA with --entropy noise, the blob method with --entropy blob",
        True, ("beta", "entropy", "bandwidth")),
    "svgd": FunctionalChoice("Stein variational gradient descent toward pi_beta", True,
                             ("beta", "bandwidth")),
    "mmd": FunctionalChoice("MMD flow toward an exact sample of the target (beta must be 1 for mixtures)",
                            True, ("beta", "bandwidth", "noise_level", "target_samples", "kernel")),
    "descent": FunctionalChoice("gradient descent of every particle on L (potential energy only)", True),
    "aggregation": FunctionalChoice(
        "interaction W(z) = |z|^a/a - |z|^b/b (attraction a, repulsion b); no target",
        False, ("attraction", "repulsion")),
}

_FLAGS = {"beta": "--beta", "entropy": "--entropy", "bandwidth": "--bandwidth",
          "noise_level": "--noise-level", "target_samples": "--target-samples", "kernel": "--kernel",
          "attraction": "--attraction", "repulsion": "--repulsion"}
_DEFAULT_TARGET = "ring"
_DEFAULT_PARTICLES = 500
# The library's argument names in its messages, as this command's options (only names that
# cannot be plain words of a message).
_LIBRARY_FLAGS = {"n_steps": "--steps", "step_size": "--step-size", "record_every": "--record-every",
                  "noise_level": "--noise-level", "target_samples": "--target-samples"}
_ENTROPIES = ("noise", "blob")  # the methods of flows.Entropy / flows.KL
_KERNELS = ("gaussian", "imq")  # the kernels of flows.MMD


@dataclass(frozen=True)
class FlowSettings:
    """The settings of one ``flow`` command, validated on construction (ValueError naming the
    flag); recorded in ``result.json`` under ``settings``."""

    functional: str
    target: str | None
    dim: int | None
    n_particles: int
    steps: int
    step_size: float
    beta: float | None
    init_scale: float
    entropy: str | None
    bandwidth: float | None
    noise_level: float | None
    target_samples: int | None
    kernel: str | None
    attraction: float | None
    repulsion: float | None
    record_every: int | None
    seed: int
    device: str
    out: str
    progress: bool
    overwrite: bool = False

    def __post_init__(self) -> None:
        if self.functional not in FUNCTIONALS:
            raise ValueError(
                f"unknown functional {self.functional!r}; choose one of {', '.join(FUNCTIONALS)}"
            )
        choice = FUNCTIONALS[self.functional]
        check_count(self.n_particles, "--n-particles", minimum=2)
        check_count(self.steps, "--steps")
        check_positive_number(self.step_size, "--step-size")
        if self.beta is not None:
            check_positive_number(self.beta, "--beta")
        check_positive_number(self.init_scale, "--init-scale")
        check_seed(self.seed)
        if self.dim is not None:
            check_count(self.dim, "--dim")
        if self.record_every is not None:
            check_count(self.record_every, "--record-every")
        if self.target is not None and not choice.needs_target:
            raise ValueError(f"--target does not apply to --functional {self.functional}")
        if self.entropy is not None and self.entropy not in _ENTROPIES:
            raise ValueError(f"--entropy must be one of {', '.join(_ENTROPIES)}, got {self.entropy!r}")
        if self.kernel is not None and self.kernel not in _KERNELS:
            raise ValueError(f"--kernel must be one of {', '.join(_KERNELS)}, got {self.kernel!r}")
        if self.bandwidth is not None:
            check_positive_number(self.bandwidth, "--bandwidth")
        if self.noise_level is not None and not (math.isfinite(self.noise_level) and self.noise_level >= 0):
            raise ValueError(f"--noise-level must be finite and >= 0, got {self.noise_level!r}")
        if self.target_samples is not None:
            check_count(self.target_samples, "--target-samples", minimum=2)
        for option in ("attraction", "repulsion"):
            value = getattr(self, option)
            if value is not None and not math.isfinite(value):
                raise ValueError(f"{_FLAGS[option]} must be finite, got {value!r}")
        if self.functional == "aggregation":
            a = 2.0 if self.attraction is None else self.attraction
            b = 1.0 if self.repulsion is None else self.repulsion
            if a <= 0 or b >= a:
                raise ValueError(
                    f"--attraction a and --repulsion b need a > 0 and b < a, got a = {a}, b = {b}"
                )
        for option, flag in _FLAGS.items():
            if getattr(self, option) is not None and option not in choice.options:
                users = [name for name, entry in FUNCTIONALS.items() if option in entry.options]
                raise ValueError(f"{flag} applies to --functional {'/'.join(users)}, not {self.functional}")
        if self.functional == "kl" and self.entropy != "blob" and self.bandwidth is not None:
            raise ValueError("--bandwidth applies to --entropy blob, not to the noise entropy (the default)")

    @property
    def inverse_temperature(self) -> float:
        """--beta, 1 when not given."""
        return 1.0 if self.beta is None else self.beta

    @property
    def target_name(self) -> str | None:
        if not FUNCTIONALS[self.functional].needs_target:
            return None
        return self.target if self.target is not None else _DEFAULT_TARGET

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "target": self.target_name}


def _build(settings: FlowSettings, generator: torch.Generator) -> tuple[Any, Any, int]:
    """(functional, target or None, dimension) for the settings, on the chosen device in float64."""
    name = settings.functional
    if name == "aggregation":
        a = 2.0 if settings.attraction is None else settings.attraction
        b = 1.0 if settings.repulsion is None else settings.repulsion
        return flows.Interaction.power(a, b), None, settings.dim if settings.dim is not None else 2
    model, _ = resolve_target(settings.target_name, settings.dim)
    model = model.to(dtype=torch.float64, device=settings.device)
    if name == "kl":
        functional = flows.KL(model, settings.inverse_temperature, method=settings.entropy or "noise",
                              bandwidth=settings.bandwidth)
    elif name == "svgd":
        functional = flows.SVGD(model, settings.inverse_temperature, bandwidth=settings.bandwidth or "median")
    elif name == "descent":
        functional = flows.Potential(model)
    else:
        if not model.has_sampler:
            raise ValueError(f"--functional mmd needs exact samples of the target, and target "
                             f"{settings.target_name!r} has no exact sampler")
        size = settings.target_samples or settings.n_particles
        samples = model.sample(size, beta=settings.inverse_temperature, generator=generator)
        functional = flows.MMD(samples, kernel=settings.kernel or "gaussian", bandwidth=settings.bandwidth,
                               noise_level=settings.noise_level or 0.0)
    return functional, model, model.dim


def _write_run(out: Path, result: flows.FlowResult, data: dict[str, Any], figure: Any) -> None:
    """Write the run folder; every file atomically, result.json last (it marks a complete run)."""
    (out / "result.json").unlink(missing_ok=True)
    save_figure(figure, out / "flow.png")
    arrays = {
        "particles": result.particles.cpu().numpy(),
        "times": result.times.cpu().numpy(),
        "steps": result.steps.cpu().numpy(),
        "snapshots": result.snapshots.cpu().numpy(),
    }
    if result.values is not None:
        arrays["values"] = result.values.cpu().numpy()
    save_npz(out / "particles.npz", **arrays)
    atomic_write_json(out / "result.json", json_safe(data))


def _print_summary(result: flows.FlowResult, out: Path) -> None:
    summary = result.to_dict()
    table = Table(title=result.functional, show_header=False)
    table.add_column("quantity", style="bold")
    table.add_column("value")
    table.add_row("particles", f"{summary['n_particles']} in d = {summary['dim']}")
    table.add_row("steps", f"{summary['n_steps']} of h = {result.step_size:.4g} "
                           f"(t = {summary['final_time']:.4g})")
    if summary["values"] is not None:
        table.add_row("value", f"{summary['values'][0]:.4g} -> {summary['final_value']:.4g}")
    table.add_row("mean", "[" + ", ".join(f"{v:.4g}" for v in summary["mean"][:4]) + "]")
    table.add_row("wall time", f"{summary['wall_time_s']:.2f} s")
    table.add_row("written to", str(out))
    Console().print(table)


def _check_flow_memory(settings: FlowSettings, dimension: int) -> None:
    """Refuse sizes the machine cannot hold, before building anything (float64 throughout): the
    recorded snapshots (at most 1000 particles each), the particles and about eight working copies,
    and the n x m kernel matrices of the interacting functionals (svgd, blob, mmd, aggregation),
    about four of them at a time."""
    n = settings.n_particles
    every = settings.record_every or max(1, settings.steps // 100)
    records = settings.steps // every + 2
    pairs = {"svgd": n * n, "aggregation": n * n, "mmd": n * (settings.target_samples or n) + n * n,
             "kl": n * n if settings.entropy == "blob" else 0}.get(settings.functional, 0)
    check_memory(8 * (records * min(n, 1000) * dimension + 8 * n * dimension + 4 * pairs),
                 f"{n:,} particles in dimension {dimension:,} ({records:,} records)")


def flow(
    functional: Annotated[str, typer.Option(
        help="; ".join(f"{name}: {choice.description}" for name, choice in FUNCTIONALS.items()))] = "kl",
    target: Annotated[str | None, typer.Option(
        help=f"Target (kl, svgd, mmd, descent): one of {', '.join(TARGETS)}, or path/to/file.py:function "
             f"(default {_DEFAULT_TARGET}).")] = None,
    dim: Annotated[int | None, typer.Option(
        help="Dimension of dimension-generic targets and of aggregation (default: the target's own; "
             "aggregation 2).")] = None,
    n_particles: Annotated[int | None, typer.Option(
        "--n-particles", show_default=str(_DEFAULT_PARTICLES), help="Number of particles.")] = None,
    particles: Annotated[int | None, typer.Option(
        "--particles", hidden=True, help="Old name of --n-particles.")] = None,
    steps: Annotated[int, typer.Option(help="Number of forward-Euler steps.")] = 1000,
    step_size: Annotated[float, typer.Option(help="Step size h.")] = 0.01,
    beta: Annotated[float | None, typer.Option(
        help="Inverse temperature of the target pi_beta (kl, svgd, mmd; default 1).")] = None,
    init_scale: Annotated[float, typer.Option(
        help="The particles start as init_scale * N(0, I).")] = 1.0,
    entropy: Annotated[str | None, typer.Option(
        help="kl: noise (Langevin; the default) or blob (deterministic).")] = None,
    bandwidth: Annotated[float | None, typer.Option(
        help="Kernel bandwidth (svgd, mmd, kl with --entropy blob); default from the particles: the "
             "median heuristic (svgd, mmd: on the target sample), Silverman's rule (blob).")] = None,
    noise_level: Annotated[float | None, typer.Option(help="mmd: noise injection level (default 0).")] = None,
    target_samples: Annotated[int | None, typer.Option(
        help="mmd: size of the exact target sample (default --n-particles).")] = None,
    kernel: Annotated[str | None, typer.Option(help="mmd: gaussian (the default) or imq.")] = None,
    attraction: Annotated[float | None, typer.Option(help="aggregation: exponent a (default 2).")] = None,
    repulsion: Annotated[float | None, typer.Option(help="aggregation: exponent b < a (default 1).")] = None,
    record_every: Annotated[int | None, typer.Option(
        help="Record value and snapshot every this many steps (default: about 100 records).")] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    out: Annotated[str | None, typer.Option(help="Output folder (default runs/flow/FUNCTIONAL).")] = None,
    overwrite: Annotated[bool, typer.Option(
        "--overwrite", help="Write into an --out that holds another command's run (its result.json "
                            "is replaced).")] = False,
    device: Annotated[str, typer.Option(help="cpu, cuda or cuda:N.")] = "cpu",
    no_progress: Annotated[bool, typer.Option("--no-progress", help="Hide the progress bar.")] = False,
) -> None:
    """Move particles along a gradient flow; write particles.npz, result.json, flow.png."""
    with user_errors(_LIBRARY_FLAGS):
        settings = FlowSettings(
            functional=functional, target=target, dim=dim,
            n_particles=merge_alias(n_particles, particles, "--n-particles", "--particles",
                                    _DEFAULT_PARTICLES),
            steps=steps, step_size=step_size, beta=beta, init_scale=init_scale, entropy=entropy,
            bandwidth=bandwidth, noise_level=noise_level, target_samples=target_samples,
            kernel=kernel, attraction=attraction, repulsion=repulsion, record_every=record_every,
            seed=seed, device=check_device(device),
            out=str(out if out is not None else Path("runs") / "flow" / functional),
            progress=not no_progress, overwrite=overwrite,
        )
        folder = check_out(settings.out, "flow", overwrite=settings.overwrite)
        if settings.functional == "aggregation":  # no target: the dimension is known now
            _check_flow_memory(settings, settings.dim if settings.dim is not None else 2)
        elif settings.dim is not None:
            _check_flow_memory(settings, settings.dim)
        generator = make_generator(settings.seed, settings.device)
        model, target_model, dimension = _build(settings, generator)
        _check_flow_memory(settings, dimension)
        x0 = settings.init_scale * torch.randn(settings.n_particles, dimension, generator=generator,
                                               dtype=torch.float64, device=settings.device)
        result = flows.run(model, x0, settings.step_size, settings.steps, generator=generator,
                           record_every=settings.record_every, progress=settings.progress)
        figure = flows.flow_figure(result, target_model, settings.inverse_temperature)
        data = {
            "command": "flow",
            "target": settings.target_name,
            "settings": {**settings.to_dict(), "dim": dimension},
            **result.to_dict(),
            "figures": ["flow.png"],
            "files": {"particles": "particles.npz"},
        }
        _write_run(folder, result, data, figure)
    _print_summary(result, folder)
