"""``measureflow infer``: posterior draws of a simulator's parameters given one observation, by a
likelihood-free method (or MCMC on the exact likelihood), with a corner plot and a posterior
predictive check."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import torch
import typer

from measureflow._core import make_generator, save_npz
from measureflow.cli._common import (
    check_choice,
    check_count,
    check_device,
    check_memory,
    check_out,
    check_seed,
    format_number,
    print_table,
    user_errors,
    write_json,
)
from measureflow.inference.api import (
    DEFAULT_PARAMETERS,
    METHODS,
    SIMULATORS,
    infer,
    make_simulator,
    observation_layout,
    posterior_predictive,
)
from measureflow.inference.base import check_observation
from measureflow.inference.generators import RATIO_LOSSES
from measureflow.inference.simulators import LogNormalPrior
from measureflow.report import save_figure
from measureflow.report.inference import corner_figure, predictive_figure

__all__ = ["InferSettings", "infer_command", "read_observation"]

_FLAGS = {"n_samples": "--n-samples", "n_steps": "--steps", "budget": "--budget"}
_PREDICTIVE_DRAWS = 200
_FILES = ("posterior.npz", "corner.png", "predictive.png")


@dataclass(frozen=True)
class InferSettings:
    """The settings of one ``infer`` command, validated on construction (ValueError naming the flag)."""

    simulator: str
    method: str
    budget: int
    n_samples: int
    observation: str | None
    true_parameters: str | None
    steps: int | None
    loss: str | None
    seed: int
    device: str
    out: str
    progress: bool
    overwrite: bool

    def __post_init__(self) -> None:
        check_choice(self.simulator, tuple(SIMULATORS), "--simulator")
        check_choice(self.method, tuple(METHODS), "--method")
        check_count(self.budget, "--budget", minimum=20)
        check_count(self.n_samples, "--n-samples")
        check_seed(self.seed)
        if self.observation is not None and self.true_parameters is not None:
            raise ValueError("give --observation FILE or --true-parameters, not both")
        if self.steps is not None:
            check_count(self.steps, "--steps")
            if self.method not in ("lfvi", "mmd", "diffusion", "npe"):
                raise ValueError(f"--steps applies to the trained methods (lfvi, mmd, diffusion, npe), "
                                 f"not {self.method}")
        if self.loss is not None:
            check_choice(self.loss, RATIO_LOSSES, "--loss")
            if self.method != "lfvi":
                raise ValueError(f"--loss applies to --method lfvi, not {self.method}")

    def method_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {}
        if self.steps is not None:
            options["n_steps"] = self.steps
        if self.loss is not None:
            options["loss"] = self.loss
        return options


def read_observation(path: str, width: int) -> torch.Tensor:
    """One observation from a CSV file: one row of ``width`` numbers, comma-separated, optionally
    after one header line of names; a ValueError says what is wrong with the file."""
    try:
        text = Path(path).read_text()
    except UnicodeDecodeError:
        raise ValueError(f"--observation {path!r} is not a text CSV file") from None
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    rows = []
    for number, line in enumerate(lines):
        cells = [cell.strip() for cell in line.split(",")]
        try:
            rows.append([float(cell) for cell in cells])
        except ValueError:
            if number == 0 and len(lines) > 1:
                continue  # a header line of names
            raise ValueError(f"--observation {path!r}: line {number + 1} is not {width} comma-separated "
                             "numbers") from None
    if len(rows) != 1:
        raise ValueError(f"--observation {path!r} must hold one row of {width} values (with or without a "
                         f"header line), found {len(rows)} rows")
    if len(rows[0]) != width:
        raise ValueError(f"--observation {path!r} must hold {width} values, found {len(rows[0])}")
    return torch.tensor(rows[0], dtype=torch.float64)


def _true_parameters(text: str, names: tuple[str, ...]) -> torch.Tensor:
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError:
        values = []
    if len(values) != len(names) or not all(math.isfinite(v) for v in values):
        raise ValueError(f"--true-parameters must be {len(names)} finite comma-separated numbers "
                         f"({','.join(names)}), got {text!r}")
    return torch.tensor(values, dtype=torch.float64)


def infer_command(
    simulator: Annotated[str, typer.Option(help=f"Simulator: {', '.join(SIMULATORS)}.")] = "lotka-volterra",
    method: Annotated[str, typer.Option(
        help="Method: " + "; ".join(f"{name} ({entry.title}{', amortized' if entry.amortized else ''})"
                                    for name, entry in METHODS.items()) + ".")] = "npe",
    budget: Annotated[int, typer.Option(help="Simulations the method may spend (mcmc uses none).")] = 10_000,
    n_samples: Annotated[int, typer.Option("--n-samples", help="Posterior draws written.")] = 10_000,
    observation: Annotated[str | None, typer.Option(
        help="CSV file of one row with the observed values (x_1..x_10, y_1..y_10 for Lotka-Volterra), "
             "with or without a header line.")] = None,
    true_parameters: Annotated[str | None, typer.Option(
        "--true-parameters", help="Simulate the observation from these comma-separated parameters "
        "(default when no --observation: " + "; ".join(
            f"{name} {','.join(f'{v:g}' for v in values)}" for name, values in DEFAULT_PARAMETERS.items())
        + ").")] = None,
    steps: Annotated[int | None, typer.Option(
        help="Training steps of lfvi, mmd, diffusion and npe (default: grows with the budget).")] = None,
    loss: Annotated[str | None, typer.Option(
        help=f"LFVI's critic loss, an f-GAN ratio estimator: {', '.join(RATIO_LOSSES)} (default js).")]
    = None,
    seed: Annotated[int, typer.Option(help="Random seed (observation, simulations, training, draws).")] = 0,
    out: Annotated[str | None, typer.Option(help="Output folder (default runs/infer/SIMULATOR-METHOD).")]
    = None,
    overwrite: Annotated[bool, typer.Option(
        "--overwrite", help="Write into an --out that holds another command's run.")] = False,
    device: Annotated[str, typer.Option(help="cpu, cuda or cuda:N.")] = "cpu",
    no_progress: Annotated[bool, typer.Option("--no-progress", help="Hide the progress bars.")] = False,
) -> None:
    """Sample a simulator's posterior given one observation; write posterior.npz (theta: (n, p)),
    corner.png, predictive.png and result.json."""
    with user_errors(_FLAGS):
        settings = InferSettings(
            simulator=simulator, method=method, budget=budget, n_samples=n_samples, observation=observation,
            true_parameters=true_parameters, steps=steps, loss=loss, seed=seed, device=check_device(device),
            out=str(out if out is not None else Path("runs") / "infer" / f"{simulator}-{method}"),
            progress=not no_progress, overwrite=overwrite)
        folder = check_out(settings.out, "infer", overwrite=settings.overwrite)
        model = make_simulator(settings.simulator)
        p, d = model.parameter_dim, model.observation_dim
        check_memory(8.0 * (settings.budget * (p + d) * 3 + settings.n_samples * p * 4),
                     f"{settings.budget:,} simulations and {settings.n_samples:,} draws")
        generator = make_generator(settings.seed)
        truth = None
        if settings.observation is not None:
            y_obs = check_observation(model, read_observation(settings.observation, d))
        else:
            default = ",".join(str(v) for v in DEFAULT_PARAMETERS[settings.simulator])
            text = settings.true_parameters if settings.true_parameters is not None else default
            truth = _true_parameters(text, model.parameter_names)
            if not bool(torch.isfinite(model.prior.log_prob(truth[None])).all()):
                raise ValueError(f"--true-parameters {text!r} lie outside the prior's support")
            y_obs = model.simulate(truth[None], generator)[0]
            if not bool(torch.isfinite(y_obs).all()):
                raise ValueError(f"the simulation at --true-parameters {text!r} failed; choose other values")
        result = infer(model, y_obs, settings.method, settings.budget, n_samples=settings.n_samples,
                       generator=generator, progress=settings.progress, device=settings.device,
                       **settings.method_options())
        _, predictive = posterior_predictive(model, result.theta, _PREDICTIVE_DRAWS, generator)
        times, series, log_scale = observation_layout(model)
        label = f"{settings.simulator}: {settings.method}"
        positive = isinstance(model.prior, LogNormalPrior)
        corner = corner_figure({settings.method: result.theta}, model.parameter_names, title=label,
                               truth=None if truth is None else truth.tolist(), log_scale=positive)
        predictive_plot = predictive_figure(times, y_obs, predictive, series,
                                            title=f"{label}, posterior predictive", log_scale=log_scale)
        summary = {"command": "infer", "settings": dataclasses.asdict(settings),
                   "parameter_names": list(model.parameter_names),
                   "true_parameters": None if truth is None else truth.tolist(),
                   **result.to_dict(), "figures": ["corner.png", "predictive.png"],
                   "files": {"posterior": "posterior.npz", "layout": "theta (n_samples, n_parameters)"}}
        (folder / "result.json").unlink(missing_ok=True)  # result.json marks a complete run: written last
        folder.mkdir(parents=True, exist_ok=True)
        save_npz(folder / "posterior.npz", theta=result.theta.numpy(), observation=y_obs.numpy())
        save_figure(corner, folder / "corner.png")
        save_figure(predictive_plot, folder / "predictive.png")
        write_json(folder / "result.json", summary)
    mean, sd = summary["posterior_mean"], summary["posterior_sd"]
    rows = [("method", f"{settings.method} ({'amortized' if result.amortized else 'not amortized'})"),
            ("simulations", f"{result.n_simulations:,} ({result.n_valid:,} valid)")]
    rows += [(name, f"{format_number(m)} +- {format_number(s)}")
             for name, m, s in zip(model.parameter_names, mean, sd, strict=True)]
    rows += [("wall time", f"{result.wall_time:.1f} s"), ("written to", str(folder))]
    print_table(f"{settings.simulator}: posterior", rows)
