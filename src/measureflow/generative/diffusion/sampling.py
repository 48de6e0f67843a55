r"""Running a forward SDE backward: reverse SDE, probability-flow ODE, predictor-corrector, NCSN.

Given the forward SDE dX = f(t) X dt + g(t) dB with marginals p_t and a score s(x, t) ~
grad log p_t(x), two processes started from p_T reach p_0 at t = 0 (Anderson 1982; Song et al.
2021, eqs. 6 and 13):

    reverse-time SDE      dY = [f(t) Y - g(t)^2 s(Y, t)] dt + g(t) dB-bar   (t from T down to 0)
    probability-flow ODE  dx/dt = f(t) x - (1/2) g(t)^2 s(x, t)

Every sampler integrates from T down to ``sde.t_min`` on a uniform grid of ``n_steps`` steps,
starts from ``x_T`` (usually ``sde.prior_sample``), works under ``torch.no_grad`` and returns a
:class:`ReverseResult` whose ``n_evaluations`` counts calls of the score (the cost a network
pays). ``score(x, t)`` takes ``x`` ``(n, ...)`` and ``t`` ``(n,)`` and returns the shape of
``x``; samples may be vectors ``(n, d)`` or images ``(n, C, H, W)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torchdiffeq
from torch import Tensor

from measureflow._core import check_count, check_positive, progress_bar
from measureflow.generative.diffusion.sde import SDE, broadcast_time

__all__ = [
    "SAMPLER_NAMES",
    "ReverseResult",
    "annealed_langevin",
    "noise_levels",
    "predictor_corrector",
    "probability_flow",
    "reverse_drift",
    "reverse_process",
    "reverse_sde",
    "sample",
]

Score = Callable[[Tensor, Tensor], Tensor]
SAMPLER_NAMES = ("sde", "ode", "ode-adaptive", "pc", "als")


@dataclass(frozen=True)
class ReverseResult:
    """Samples of a reverse process: ``x`` ``(n, ...)``; ``n_evaluations`` score calls;
    ``times`` ``(k,)`` and ``trajectory`` ``(k, n_keep, ...)`` the recorded snapshots (the first
    ``n_keep`` samples; k = 0 when nothing was recorded)."""

    x: Tensor
    n_evaluations: int
    times: Tensor
    trajectory: Tensor


def _check_steps(n_steps: int, name: str = "n_steps") -> int:
    return check_count(n_steps, name)


def _check_start(x: Tensor) -> Tensor:
    if not isinstance(x, Tensor) or x.dim() < 2 or not x.is_floating_point():
        raise ValueError("x_T must be a floating tensor of shape (n, ...) with n >= 1")
    if not bool(torch.isfinite(x).all()):
        raise ValueError("x_T contains NaN or infinite values")
    return x


class _Recorder:
    """Snapshots of the first ``n_keep`` samples every ``record_every`` steps (0: none)."""

    def __init__(self, record_every: int, n_keep: int) -> None:
        if record_every < 0:
            raise ValueError(f"record_every must be >= 0, got {record_every}")
        self.every, self.n_keep = int(record_every), int(n_keep)
        self.times: list[float] = []
        self.states: list[Tensor] = []

    def __call__(self, step: int, t: float, x: Tensor, last: bool = False) -> None:
        if self.every and (step % self.every == 0 or last):
            self.times.append(float(t))
            self.states.append(x[: self.n_keep].detach().clone())

    def result(self, x: Tensor, n_evaluations: int) -> ReverseResult:
        if self.states:
            trajectory = torch.stack(self.states)
        else:
            trajectory = x.new_zeros((0, *x[: self.n_keep].shape))
        return ReverseResult(x, n_evaluations, torch.tensor(self.times, dtype=torch.float64), trajectory)


def _times(sde: SDE, n_steps: int, x: Tensor) -> Tensor:
    return sde.time_grid(n_steps, dtype=x.dtype, device=x.device)


def _check_finite_state(x: Tensor, step: int, sampler: str) -> None:
    # A sampler that blew up should say where instead of returning NaN samples.
    if not bool(torch.isfinite(x).all()):
        raise ValueError(
            f"{sampler} produced NaN/inf at step {step}: the score is unstable there; use more steps"
        )


@torch.no_grad()
def reverse_sde(score: Score, sde: SDE, x_T: Tensor, n_steps: int = 500, *,  # noqa: N803 (math name)
                generator: torch.Generator | None = None, denoise: bool = True, record_every: int = 0,
                n_keep: int = 500, progress: bool = False) -> ReverseResult:
    r"""Euler-Maruyama on the reverse-time SDE, from T to t_min in ``n_steps`` steps.

    With h = (T - t_min)/n_steps and z ~ N(0, I):

        x <- x - h [f(t) x - g(t)^2 s(x, t)] + g(t) sqrt(h) z.

    ``denoise``: the last step adds no noise (its mean is the sample), as in Song et al. (2021).
    One score evaluation per step.

    >>> from measureflow.generative.diffusion.sde import OU
    >>> sde = OU(T=6.0)
    >>> exact = lambda x, t: -x  # the data law N(0, I) is invariant: p_t = N(0, I)
    >>> g = torch.Generator().manual_seed(0)
    >>> result = reverse_sde(exact, sde, sde.prior_sample((20_000, 1), g), 200, generator=g)
    >>> round(float(result.x.var()), 1)
    1.0
    """
    x = _check_start(x_T).clone()
    n_steps = _check_steps(n_steps)
    times = _times(sde, n_steps, x)
    recorder = _Recorder(record_every, n_keep)
    recorder(0, float(times[0]), x)
    with progress_bar(n_steps, "reverse SDE", enabled=progress) as bar:
        for i in range(n_steps):
            t, h = times[i], times[i] - times[i + 1]
            t_batch = t.expand(x.shape[0])
            g = sde.diffusion(t)
            x = x - h * reverse_drift(score, sde, x, t_batch)
            if not (denoise and i == n_steps - 1):
                x = x + g * torch.sqrt(h) * torch.randn(x.shape, generator=generator, dtype=x.dtype,
                                                        device=x.device)
            recorder(i + 1, float(times[i + 1]), x, last=i == n_steps - 1)
            bar.update()
    _check_finite_state(x, n_steps, "the reverse SDE")
    return recorder.result(x, n_steps)


def reverse_drift(score: Score, sde: SDE, x: Tensor, t: Tensor, weight: float = 1.0) -> Tensor:
    r"""f(x, t) - w g(t)^2 s(x, t) at times ``t`` ``(n,)``: with w = 1 the drift of the reverse-time
    SDE (Anderson 1982) run backward, dx = [f - g^2 s] dt + g dw-bar; with w = 1/2 the
    probability-flow velocity, whose ODE has the same marginals p_t (Song et al. 2021)."""
    g = broadcast_time(sde.diffusion(t), x)
    return sde.drift(x, t) - weight * g**2 * score(x, t)


def _flow_velocity(score: Score, sde: SDE) -> Callable[[Tensor, Tensor], Tensor]:
    """v(x, t) = f(t) x - (1/2) g(t)^2 s(x, t), the probability-flow field."""

    def velocity(x: Tensor, t: Tensor) -> Tensor:
        return reverse_drift(score, sde, x, t.expand(x.shape[0]), weight=0.5)

    return velocity


@torch.no_grad()
def probability_flow(score: Score, sde: SDE, x_T: Tensor, n_steps: int = 100, *,  # noqa: N803
                     method: str = "heun", rtol: float = 1e-5, atol: float = 1e-5, record_every: int = 0,
                     n_keep: int = 500, progress: bool = False) -> ReverseResult:
    r"""Integrate the probability-flow ODE dx/dt = f x - (1/2) g^2 s(x, t) from T to t_min.

    ``method="heun"`` (default): Heun's second-order method on a uniform grid, h < 0,

        d1 = v(x, t_i),  x~ = x + h d1,  d2 = v(x~, t_{i+1}),  x <- x + (h/2)(d1 + d2),

    two score evaluations per step, global error O(h^2). ``method="euler"``: one evaluation per
    step, O(h). ``method="dopri5"`` (or any other adaptive method of torchdiffeq): an adaptive
    Dormand-Prince solver with tolerances ``rtol``/``atol``; ``n_steps`` is then ignored and
    ``n_evaluations`` is what the solver spent. The map x_T -> x_{t_min} is deterministic.

    >>> from measureflow.generative.diffusion.sde import OU
    >>> sde = OU(T=6.0)
    >>> x_T = torch.tensor([[0.5]])
    >>> out = probability_flow(lambda x, t: -x, sde, x_T, 10).x  # N(0, I) is a fixed point: x is too
    >>> round(float(out), 6)
    0.5
    """
    x = _check_start(x_T).clone()
    velocity = _flow_velocity(score, sde)
    if method in ("heun", "euler"):
        n_steps = _check_steps(n_steps)
        times = _times(sde, n_steps, x)
        recorder = _Recorder(record_every, n_keep)
        recorder(0, float(times[0]), x)
        with progress_bar(n_steps, f"probability flow ({method})", enabled=progress) as bar:
            for i in range(n_steps):
                h = times[i + 1] - times[i]
                d1 = velocity(x, times[i])
                if method == "euler":
                    x = x + h * d1
                else:
                    d2 = velocity(x + h * d1, times[i + 1])
                    x = x + 0.5 * h * (d1 + d2)
                recorder(i + 1, float(times[i + 1]), x, last=i == n_steps - 1)
                bar.update()
        _check_finite_state(x, n_steps, f"the probability-flow ODE ({method})")
        return recorder.result(x, n_steps * (1 if method == "euler" else 2))
    return _adaptive_flow(velocity, sde, x, method, rtol, atol, record_every, n_keep)


_STEP_TO_END = ("dopri5", "dopri8", "bosh3", "fehlberg2", "adaptive_heun")


def solver_options(method: str, times: Tensor) -> dict[str, Any]:
    """Keep torchdiffeq's adaptive Runge-Kutta solvers inside [t_min, T], where the SDE's
    coefficients exist (VP's sigma^2 < 0 for t < 0): they would overshoot the last time and
    interpolate back (``step_t`` makes them step onto the requested times), and their automatic
    first-step probe can land far outside (``first_step`` of 1% of the interval instead)."""
    if method not in _STEP_TO_END:
        return {}
    return {"step_t": times[1:], "first_step": float(abs(times[-1] - times[0])) / 100}


def _adaptive_flow(velocity: Callable[[Tensor, Tensor], Tensor], sde: SDE, x: Tensor, method: str,
                   rtol: float, atol: float, record_every: int, n_keep: int) -> ReverseResult:
    check_positive(rtol, "rtol")
    check_positive(atol, "atol")
    n_evaluations = 0

    def field(t: Tensor, state: Tensor) -> Tensor:
        nonlocal n_evaluations
        n_evaluations += 1
        return velocity(state, t)

    # With record_every > 0 the solution is also reported at that many evenly spaced times.
    n_points = 2 if record_every <= 0 else max(2, int(record_every) + 1)
    times = torch.linspace(sde.T, sde.t_min, n_points, dtype=x.dtype, device=x.device)
    try:
        path = torchdiffeq.odeint(field, x, times, method=method, rtol=rtol, atol=atol,
                                  options=solver_options(method, times))
    except (AssertionError, ValueError) as error:
        raise ValueError(f"adaptive ODE solver {method!r} failed: {error}") from None
    _check_finite_state(path[-1], n_evaluations, f"the probability-flow ODE ({method})")
    trajectory = path[:, :n_keep] if record_every > 0 else path[:0, :n_keep]
    recorded = times.double() if record_every > 0 else times.new_zeros(0, dtype=torch.float64)
    return ReverseResult(path[-1], n_evaluations, recorded, trajectory)


@torch.no_grad()
def predictor_corrector(score: Score, sde: SDE, x_T: Tensor, n_steps: int = 500, *,  # noqa: N803
                        n_corrector: int = 1, snr: float = 0.16, generator: torch.Generator | None = None,
                        denoise: bool = True, record_every: int = 0, n_keep: int = 500,
                        progress: bool = False) -> ReverseResult:
    r"""Predictor-corrector sampling (Song et al. 2021, algorithms 2-3).

    At each grid time t_i, ``n_corrector`` Langevin corrector steps toward p_{t_i},

        x <- x + eps s(x, t_i) + sqrt(2 eps) z,   eps = 2 a_i (snr |z| / |s|)^2,

    where |z| and |s| are batch means of the per-sample norms and a_i =
    alpha(t_i)^2 / alpha(t_{i+1})^2 (DDPM's 1 - beta_i; 1 for VE), then one reverse-SDE
    Euler-Maruyama predictor step to t_{i+1}. The signal-to-noise rule sets the corrector's
    step so that its move is ``snr`` times its noise. ``n_steps (1 + n_corrector)`` score calls.
    """
    x = _check_start(x_T).clone()
    n_steps = _check_steps(n_steps)
    check_count(n_corrector, "n_corrector", minimum=0)
    snr = check_positive(snr, "snr")
    times = _times(sde, n_steps, x)
    alphas, _ = sde.marginal_coefficients(times)
    recorder = _Recorder(record_every, n_keep)
    recorder(0, float(times[0]), x)

    def noise() -> Tensor:
        return torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)

    with progress_bar(n_steps, "predictor-corrector", enabled=progress) as bar:
        for i in range(n_steps):
            t, h = times[i], times[i] - times[i + 1]
            t_batch = t.expand(x.shape[0])
            ratio = torch.clamp(alphas[i] ** 2 / alphas[i + 1] ** 2, max=1.0)
            for _ in range(int(n_corrector)):
                gradient = score(x, t_batch)
                z = noise()
                gradient_norm = gradient.reshape(x.shape[0], -1).norm(dim=1).mean()
                noise_norm = z.reshape(x.shape[0], -1).norm(dim=1).mean()
                step = 2 * ratio * (snr * noise_norm / gradient_norm.clamp_min(1e-30)) ** 2
                x = x + step * gradient + torch.sqrt(2 * step) * z
            g = sde.diffusion(t)
            x = x - h * reverse_drift(score, sde, x, t_batch)
            if not (denoise and i == n_steps - 1):
                x = x + g * torch.sqrt(h) * noise()
            recorder(i + 1, float(times[i + 1]), x, last=i == n_steps - 1)
            bar.update()
    _check_finite_state(x, n_steps, "the predictor-corrector sampler")
    return recorder.result(x, n_steps * (1 + int(n_corrector)))


def noise_levels(sde: SDE, n_levels: int, sigma_end: float = 0.01, *, dtype: torch.dtype = torch.float64,
                 device: torch.device | str = "cpu") -> Tensor:
    """``n_levels`` times from T down whose noise-to-signal ratios sigma(t)/alpha(t) are
    geometric between that of T and ``sigma_end`` (raised to the ratio at t_min if below it).

    NCSN's levels are geometric in sigma; for VE, sigma/alpha = sigma, and for VP this spaces
    the levels evenly in log signal-to-noise.
    """
    grid = torch.linspace(sde.t_min, sde.T, 20_001, dtype=torch.float64)
    alpha, sigma = sde.marginal_coefficients(grid)
    log_ratio = torch.log(sigma / alpha)
    start, end = float(log_ratio[-1]), max(float(log_ratio[0]), math.log(sigma_end))
    if end >= start:
        raise ValueError(f"sigma_end={sigma_end} is not below the noise level at T ({math.exp(start):.3g})")
    targets = torch.linspace(start, end, n_levels, dtype=torch.float64)
    # log_ratio increases with t: invert it by interpolation on the fine grid.
    index = torch.searchsorted(log_ratio, targets).clamp(1, grid.numel() - 1)
    lower, upper = log_ratio[index - 1], log_ratio[index]
    fraction = ((targets - lower) / (upper - lower)).clamp(0, 1)
    times = grid[index - 1] + fraction * (grid[index] - grid[index - 1])
    return times.to(dtype=dtype, device=device)


@torch.no_grad()
def annealed_langevin(score: Score, sde: SDE, x_T: Tensor, n_levels: int = 50,  # noqa: N803
                      steps_per_level: int = 10, *, step_ratio: float = 0.2, sigma_end: float = 0.01,
                      generator: torch.Generator | None = None, denoise: bool = True,
                      record_every: int = 0, n_keep: int = 500, progress: bool = False) -> ReverseResult:
    r"""Annealed Langevin dynamics over decreasing noise levels (NCSN; Song & Ermon 2019, alg. 1).

    The levels are ``n_levels`` times t_1 = T > ... > t_L from :func:`noise_levels` (geometric
    noise-to-signal ratio down to ``sigma_end``). At level l, ``steps_per_level`` unadjusted
    Langevin steps toward p_{t_l}:

        x <- x + (a_l / 2) s(x, t_l) + sqrt(a_l) z,    a_l = step_ratio * sigma(t_l)^2,

    which is NCSN's a_l = eps sigma_l^2 / sigma_L^2 with eps = step_ratio sigma_L^2. ``denoise``
    ends with Tweedie's formula x <- (x + sigma_L^2 s(x, t_L)) / alpha(t_L) (Jolicoeur-Martineau
    et al. 2021), which removes the last level's noise for one more score call. Made for VE
    (nested levels); with VP each level also rescales the mean, and it needs many more steps.
    """
    x = _check_start(x_T).clone()
    n_levels = _check_steps(n_levels, "n_levels")
    steps_per_level = _check_steps(steps_per_level, "steps_per_level")
    step_ratio = check_positive(step_ratio, "step_ratio")
    times = noise_levels(sde, n_levels, check_positive(sigma_end, "sigma_end"), dtype=x.dtype,
                         device=x.device)
    alphas, sigmas = sde.marginal_coefficients(times)
    recorder = _Recorder(record_every, n_keep)
    recorder(0, float(times[0]), x)
    with progress_bar(n_levels * steps_per_level, "annealed Langevin", enabled=progress) as bar:
        for level in range(n_levels):
            t_batch = times[level].expand(x.shape[0])
            step = step_ratio * sigmas[level] ** 2
            for _ in range(steps_per_level):
                x = x + 0.5 * step * score(x, t_batch) + torch.sqrt(step) * torch.randn(
                    x.shape, generator=generator, dtype=x.dtype, device=x.device)
            recorder(level + 1, float(times[level]), x, last=level == n_levels - 1)
            bar.update(steps_per_level)
    n_evaluations = n_levels * steps_per_level
    if denoise:
        x = (x + sigmas[-1] ** 2 * score(x, times[-1].expand(x.shape[0]))) / alphas[-1]
        n_evaluations += 1
    _check_finite_state(x, n_evaluations, "annealed Langevin")
    return recorder.result(x, n_evaluations)


def reverse_process(score: Score, sde: SDE, x_T: Tensor, n_steps: int = 500, *,  # noqa: N803
                    method: str = "sde", generator: torch.Generator | None = None, n_records: int = 0,
                    n_keep: int = 500, progress: bool = False, **options: Any) -> ReverseResult:
    """Run the sampler ``method`` from ``x_T`` and return its :class:`ReverseResult`.

    ``method``: ``"sde"`` (:func:`reverse_sde`), ``"ode"`` (:func:`probability_flow`, Heun),
    ``"ode-adaptive"`` (probability flow, dopri5 or ``solver=...``; ``n_steps`` unused), ``"pc"``
    (:func:`predictor_corrector`) or ``"als"`` (:func:`annealed_langevin` with
    ``n_steps // steps_per_level`` levels, ``steps_per_level`` default 10). ``n_records``: about
    that many snapshots of the first ``n_keep`` paths (0: none); for ``"ode-adaptive"`` the
    solver steps onto the report times, which costs a few evaluations. ``options`` go to the
    sampler (``snr``, ``n_corrector``, ``rtol``, ``atol``, ``step_ratio``, ...).
    """
    if method not in SAMPLER_NAMES:
        raise ValueError(f"unknown sampler {method!r}; choose one of {', '.join(SAMPLER_NAMES)}")
    check_count(n_records, "n_records", minimum=0)

    def every(steps: int) -> int:
        return 0 if n_records == 0 else max(1, steps // int(n_records))

    keep = {"n_keep": n_keep, "progress": progress}
    if method == "ode-adaptive":
        return probability_flow(score, sde, x_T, method=options.pop("solver", "dopri5"),
                                record_every=int(n_records), **keep, **options)
    n_steps = _check_steps(n_steps)
    if method == "sde":
        return reverse_sde(score, sde, x_T, n_steps, generator=generator, record_every=every(n_steps),
                           **keep, **options)
    if method == "ode":
        return probability_flow(score, sde, x_T, n_steps, record_every=every(n_steps), **keep, **options)
    if method == "pc":
        return predictor_corrector(score, sde, x_T, n_steps, generator=generator,
                                   record_every=every(n_steps), **keep, **options)
    steps_per_level = _check_steps(options.pop("steps_per_level", 10), "steps_per_level")
    n_levels = max(1, n_steps // steps_per_level)
    return annealed_langevin(score, sde, x_T, n_levels, steps_per_level, generator=generator,
                             record_every=every(n_levels), **keep, **options)


def sample(score: Score, sde: SDE, n: int, shape: int | tuple[int, ...], n_steps: int = 500, *,
           method: str = "sde", generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32,
           device: torch.device | str = "cpu", progress: bool = False, **options: Any) -> Tensor:
    """``n`` samples ``(n, *shape)`` of the data law by running ``sde`` backward from its prior
    with the sampler ``method`` (see :func:`reverse_process` for the names and ``options``).

    >>> from measureflow.generative.diffusion.sde import VPSDE
    >>> g = torch.Generator().manual_seed(1)
    >>> x = sample(lambda x, t: -x, VPSDE(), 5, 2, n_steps=50, generator=g)  # N(0, I) data
    >>> tuple(x.shape)
    (5, 2)
    """
    if method not in SAMPLER_NAMES:
        raise ValueError(f"unknown sampler {method!r}; choose one of {', '.join(SAMPLER_NAMES)}")
    check_count(n, "n")
    event = (int(shape),) if isinstance(shape, int) else tuple(int(size) for size in shape)
    x_T = sde.prior_sample((int(n), *event), generator, dtype=dtype, device=device)
    return reverse_process(score, sde, x_T, n_steps, method=method, generator=generator, progress=progress,
                           **options).x
