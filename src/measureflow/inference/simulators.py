"""Simulators for simulation-based inference, vectorized over batches of parameters.

Every simulator has

- ``prior``: a :class:`Prior` with ``sample(n, generator) -> (n, p)`` and ``log_prob(theta) -> (n,)``;
- ``simulate(theta, generator) -> (n, d_y)``: one simulation per row of ``theta`` ``(n, p)``, all rows
  at once (no Python loop per simulation). Rows whose simulation fails are NaN rows; every method must
  drop or otherwise handle them;
- ``log_likelihood(theta, y) -> (n,)`` where the likelihood is available in closed form (``None`` as a
  class attribute otherwise: see ``has_likelihood``);
- ``parameter_names`` (length p) and ``observation_dim`` (d_y).

Input conventions: ``theta`` is ``(n, p)`` (a single ``(p,)`` vector is accepted and read as ``n = 1``);
it must be finite, else ``ValueError`` -- we refuse non-finite parameters rather than returning NaN
rows, because a NaN parameter is a bug upstream, while a NaN row means "this parameter's simulation
failed". Outputs are float64 (the ODE needs it); pass ``theta`` in any float dtype.
"""

from __future__ import annotations

import abc
import contextlib
import math
from collections.abc import Sequence

import torch
from torch import Tensor

from measureflow._core import as_tensor, check_count, check_finite, check_positive

__all__ = [
    "GaussianLinear",
    "LogNormalPrior",
    "LotkaVolterra",
    "NormalPrior",
    "Prior",
    "Simulator",
    "StochasticLotkaVolterra",
]

_LOG_2PI = math.log(2.0 * math.pi)


def _as_rows(value: object, name: str, width: int, *, finite: bool = True) -> Tensor:
    """``value`` as a float64 ``(n, width)`` tensor; a ``(width,)`` vector becomes one row."""
    tensor = as_tensor(value, name, dtype=torch.float64)
    if tensor.ndim == 1 and tensor.shape[0] == width:
        tensor = tensor.unsqueeze(0)
    if tensor.ndim != 2 or tensor.shape[1] != width:
        raise ValueError(f"{name} must have shape (n, {width}), got {tuple(tensor.shape)}")
    if finite:
        check_finite(tensor, name)
    return tensor


class Prior(abc.ABC):
    """A prior over ``p`` parameters: ``sample(n, generator) -> (n, p)``, ``log_prob(theta) -> (n,)``."""

    dim: int

    @abc.abstractmethod
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` draws, ``(n, p)``."""

    @abc.abstractmethod
    def log_prob(self, theta: Tensor) -> Tensor:
        """The log density at the rows of ``theta`` ``(n, p)``, ``(n,)``."""


class NormalPrior(Prior):
    """Independent normals: ``theta_i ~ N(mean_i, scale_i^2)``; ``log_prob`` sums the p log-densities."""

    def __init__(self, mean: Sequence[float] | Tensor, scale: Sequence[float] | Tensor | float) -> None:
        self.mean = as_tensor(mean, "mean", dtype=torch.float64).reshape(-1)
        scale_t = as_tensor(scale, "scale", dtype=torch.float64).reshape(-1).expand_as(self.mean).clone()
        check_finite(self.mean, "mean")
        if not bool((scale_t > 0).all()) or not bool(torch.isfinite(scale_t).all()):
            raise ValueError("scale must be finite and positive")
        self.scale = scale_t
        self.dim = int(self.mean.shape[0])

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        n = check_count(n, "n")
        z = torch.randn((n, self.dim), generator=generator, dtype=torch.float64)
        return self.mean + self.scale * z

    def log_prob(self, theta: Tensor) -> Tensor:
        theta = _as_rows(theta, "theta", self.dim, finite=False)
        z = (theta - self.mean) / self.scale
        return (-0.5 * z**2 - torch.log(self.scale) - 0.5 * _LOG_2PI).sum(-1)


class LogNormalPrior(Prior):
    """Independent log-normals: ``log theta_i ~ N(log_mean_i, log_scale_i^2)``.

    ``log_prob(theta) = sum_i [log N(log theta_i; m_i, s_i^2) - log theta_i]`` (the Jacobian of the
    log), and ``-inf`` for rows with a non-positive entry (outside the support).
    """

    def __init__(self, log_mean: Sequence[float] | Tensor, log_scale: Sequence[float] | Tensor | float):
        self.base = NormalPrior(log_mean, log_scale)
        self.dim = self.base.dim

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        return torch.exp(self.base.sample(n, generator))

    def log_prob(self, theta: Tensor) -> Tensor:
        theta = _as_rows(theta, "theta", self.dim, finite=False)
        positive = (theta > 0).all(-1)
        log_theta = torch.log(torch.where(theta > 0, theta, torch.ones_like(theta)))
        value = self.base.log_prob(log_theta) - log_theta.sum(-1)
        return torch.where(positive, value, torch.full_like(value, -math.inf))


class Simulator(abc.ABC):
    """Interface: ``prior``, ``simulate``, ``log_likelihood`` (if ``has_likelihood``), names and sizes."""

    prior: Prior
    parameter_names: tuple[str, ...]
    observation_dim: int
    has_likelihood: bool = False
    #: "real", "positive" or "nonnegative": where observations live (checked on user input).
    observation_support: str = "real"

    def observation_features(self, y: Tensor) -> Tensor:
        """The coordinates neural methods see for an observation ``(n, d_y)``: ``y`` itself here;
        simulators with positive data override it (``log y``)."""
        return y

    @property
    def parameter_dim(self) -> int:
        return len(self.parameter_names)

    @abc.abstractmethod
    def simulate(self, theta: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """One simulation per row of ``theta`` ``(n, p)``: ``(n, d_y)``, NaN rows where it failed."""

    def log_likelihood(self, theta: Tensor, y: Tensor) -> Tensor:
        raise TypeError(f"{type(self).__name__} has no tractable likelihood; use a likelihood-free method")

    def sample_joint(self, n: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """``n`` draws of ``(theta, y)`` from ``prior(theta) p(y | theta)``: ``(n, p)`` and ``(n, d_y)``."""
        theta = self.prior.sample(n, generator)
        return theta, self.simulate(theta, generator)


# ---------------------------------------------------------------------------------------------------
# Lotka-Volterra (ODE)


_LOG_BLOW_UP = 60.0


class _BlowUpError(RuntimeError):
    """A row of the batch left the range where the solution can be meant (see ``_lv_log_rhs``)."""


def _lv_log_rhs(theta: Tensor):
    """Right-hand side of the LV ODE in log coordinates ``u = log x``, ``v = log y``:

    du/dt = alpha - beta e^v,   dv/dt = -gamma + delta e^u   (state ``(n, 2)``, theta ``(n, 4)``).
    """
    alpha, beta, gamma, delta = theta.unbind(-1)

    def rhs(t: Tensor, state: Tensor) -> Tensor:
        # A population above e^60 ~ 1e26 (22 orders past the 1e4 clamp) only comes from a blow-up;
        # stopping here saves the solver from shrinking dt to underflow first. No lower bound: prior
        # draws legitimately take predators down to 1e-28 and below (then clamped to 1e-10).
        if not bool((state < _LOG_BLOW_UP).all()):
            raise _BlowUpError
        u, v = state.unbind(-1)
        return torch.stack((alpha - beta * torch.exp(v), -gamma + delta * torch.exp(u)), dim=-1)

    return rhs


def _max_norm(tensor: Tensor) -> Tensor:
    """Error norm over the whole batch: the max of |error / tolerance| over every row and component,
    so each row is held to the tolerance on its own (the default RMS would average a hard row's error
    with the easy rows' and let it through).

    Detached: the step-size control is not differentiated, so a gradient through the solve is that
    of the discrete solution on the steps taken (consistent with the values returned), and a row's
    gradient does not depend on the other rows of its batch."""
    return tensor.abs().max().detach()


class LotkaVolterra(Simulator):
    r"""The standard Lotka-Volterra benchmark (as in sbibm), so published reference posteriors apply.

    Parameters ``theta = (alpha, beta, gamma, delta)``, prior ``log theta ~ N(m, 0.5^2 I)`` with
    ``m = (-0.125, -3.0, -0.125, -3.0)``. The ODE

        dx/dt = alpha x - beta x y,    dy/dt = -gamma y + delta x y,    (x, y)(0) = (30, 1),

    is observed at ``t_k = 2.1 k``, ``k = 0..9`` (every 21st point of a 0.1 grid on [0, 20]). With
    ``s(t) = clamp(solution, 1e-10, 1e4)``, the observation is ``log y_obs ~ N(log s, 0.1^2)``
    independently, flattened as ``(x_1..x_10, y_1..y_10)``: ``y`` has shape ``(n, 20)``.

    Solver. The whole batch goes through one ``torchdiffeq.odeint`` call (dopri5, float64), on the
    equivalent ODE for ``(log x, log y)`` (above, :func:`_lv_log_rhs`): positivity holds exactly and
    an absolute tolerance ``tol`` on ``log x`` is a relative tolerance ``tol`` on ``x`` at every scale,
    including predators near 1e-10, which the original form cannot give with any fixed ``atol``. We
    use ``atol = rtol = tol``. Default ``tol = 1e-8``: the *local* tolerance has to be well below the
    accuracy wanted, because the global error grows along the ~10 cycles; measured against
    ``solve_ivp`` (DOP853, rtol 1e-11) on 64 prior draws, the worst relative error at the
    observation times was 5e-4 at tol 1e-6, 2e-5 at 1e-7 and 1.2e-6 at 1e-8, so 1e-8 makes the
    solution itself accurate to about 1e-6 relative (the issue's requirement). The batch shares one
    adaptive step sequence: the error norm is the max over every row and component
    (:func:`_max_norm`), so the steps are those of the hardest row and every row is at least as
    accurate as if solved alone (a row's result depends on its batch only through the step sizes,
    at the level of the tolerance; the tests bound that). The price: every row takes the hardest
    row's steps.

    Failures. If the batch solve fails (dt underflow or more than ``max_num_steps`` steps, which a
    stiff or blowing-up row causes), the batch is split in halves and each half solved again,
    recursively; a single row that still fails is a NaN row. A row whose population exceeds
    ``e^60`` (about 1e26, far above the clamp) counts as failed at once.
    Rows with a non-finite solution are NaN rows too. Every other row is valid. ``failure_count``
    (failed rows of the last call) is kept for diagnostics.

    Gradients. When ``theta`` requires grad (MCMC's energy), ``solve`` and ``log_likelihood`` are
    differentiable in it: autograd runs back through the solver's steps (discretize-then-
    differentiate). The step-size control is not differentiated (:func:`_max_norm` is detached), so
    the gradient is exactly that of the discrete solution returned, and a row's gradient does not
    depend on the other rows of its batch; a failed row's gradient is NaN or zero (callers mask it:
    MCMC gives it energy +inf). Otherwise the solve runs under ``no_grad``, as before. Why not
    ``torchdiffeq.odeint_adjoint``: measured on 32 rows near the posterior (forward + backward of
    the log-likelihood, 1 thread, 2-core EPYC): forward alone 0.28 s, backprop through the solver
    0.59 s, adjoint 3.6 s (``adjoint_options={"norm": "seminorm"}``) or 5.3 s (default norm): the
    adjoint's backward ODE solve of the augmented 2 + 2 + 4-dimensional state at tol 1e-8 costs far
    more than keeping the forward graph (a few hundred steps of (n, 2) tensors: small memory). The
    two gradients agree to 4e-6 relative (the adjoint's own solve error); with the step-size control
    differentiated too they would agree with ours to 2e-9. The cost is mostly per solver step, so
    it grows slowly with the batch (single runs on a loaded machine: 1.5 s for 32 and 128 rows,
    1.7 s for 512, 2.7 s for 2,048; about 150 steps each near the posterior).
    """

    parameter_names = ("alpha", "beta", "gamma", "delta")
    observation_dim = 20
    has_likelihood = True
    observation_support = "positive"
    log_mean = (-0.125, -3.0, -0.125, -3.0)
    log_scale = 0.5
    noise_scale = 0.1
    initial_state = (30.0, 1.0)
    clamp_range = (1e-10, 1e4)

    def __init__(self, *, tol: float = 1e-8, max_num_steps: int = 20_000) -> None:
        self.tol = check_positive(tol, "tol")
        self.max_num_steps = check_count(max_num_steps, "max_num_steps")
        self.prior = LogNormalPrior(self.log_mean, self.log_scale)
        self.times = torch.arange(10, dtype=torch.float64) * 2.1
        self.failure_count = 0

    def observation_features(self, y: Tensor) -> Tensor:
        """``log y``: the noise is Gaussian in these coordinates and the populations span decades."""
        return torch.log(y)

    # -- the ODE ------------------------------------------------------------------------------------
    def _solve_batch(self, theta: Tensor) -> Tensor:
        from torchdiffeq import odeint  # the library imports without the ODE machinery

        n = theta.shape[0]
        state0 = torch.log(torch.tensor(self.initial_state, dtype=torch.float64, device=theta.device))
        log_path = odeint(
            _lv_log_rhs(theta), state0.expand(n, 2).contiguous(), self.times.to(theta.device),
            method="dopri5",
            rtol=self.tol, atol=self.tol,
            options={"norm": _max_norm, "max_num_steps": self.max_num_steps},
        )  # (T, n, 2)
        return torch.exp(log_path).permute(1, 2, 0)  # (n, 2, T)

    def _solve_or_split(self, theta: Tensor) -> Tensor:
        # The graph through the solver's steps is built only when a gradient is wanted (MCMC's
        # energy); simulation never pays for it.
        wants_grad = theta.requires_grad and torch.is_grad_enabled()
        try:
            with contextlib.nullcontext() if wants_grad else torch.no_grad():
                path = self._solve_batch(theta)
        except (AssertionError, RuntimeError):  # torchdiffeq signals dt underflow / step limit so
            if theta.shape[0] == 1:
                self.failure_count += 1
                return torch.full(
                    (1, 2, self.times.shape[0]), math.nan, dtype=torch.float64, device=theta.device
                )
            half = theta.shape[0] // 2
            return torch.cat((self._solve_or_split(theta[:half]), self._solve_or_split(theta[half:])))
        bad = ~torch.isfinite(path).flatten(1).all(-1)
        self.failure_count += int(bad.sum())
        # Out of place: autograd saved exp's output for the backward pass.
        return torch.where(bad[:, None, None], torch.full_like(path, math.nan), path)

    def solve(self, theta: Tensor) -> Tensor:
        """The ODE solution ``(x(t_k), y(t_k))`` flattened to ``(n, 20)``, unclamped; NaN rows for
        failed solves. ``theta`` ``(n, 4)``, finite (entries need not be positive)."""
        theta = _as_rows(theta, "theta", 4)
        self.failure_count = 0
        if theta.shape[0] == 0:
            return torch.empty((0, self.observation_dim), dtype=torch.float64, device=theta.device)
        return self._solve_or_split(theta).reshape(theta.shape[0], -1)

    def _log_mean(self, theta: Tensor) -> Tensor:
        low, high = self.clamp_range
        return torch.log(self.solve(theta).clamp(low, high))  # NaN stays NaN through clamp

    # -- the simulator ------------------------------------------------------------------------------
    def simulate(self, theta: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """``y = clamp(solution) * exp(0.1 eps)``, ``eps ~ N(0, I_20)``: ``(n, 20)``, NaN rows where
        the solve failed (the noise is drawn for every row, so row i's noise does not depend on
        which other rows failed)."""
        log_mean = self._log_mean(theta)
        eps = torch.randn(log_mean.shape, generator=generator, dtype=torch.float64, device=log_mean.device)
        return torch.exp(log_mean + self.noise_scale * eps)

    def log_likelihood(self, theta: Tensor, y: Tensor) -> Tensor:
        """Exact log-normal density ``sum_j [log N(log y_j; log s_j, 0.1^2) - log y_j]`` with
        ``s = clamp(solution)``: ``(n,)``. ``y`` is ``(n, 20)`` or one ``(20,)`` observation shared by
        every row; non-positive ``y`` gives ``-inf``; a failed solve gives NaN."""
        theta = _as_rows(theta, "theta", 4)
        y = _as_rows(y, "y", self.observation_dim)
        if y.shape[0] not in (1, theta.shape[0]):
            raise ValueError(f"y must have 1 or {theta.shape[0]} rows (one per theta), got {y.shape[0]}")
        log_mean = self._log_mean(theta)
        positive = (y > 0).all(-1)
        log_y = torch.log(torch.where(y > 0, y, torch.ones_like(y)))
        z = (log_y - log_mean) / self.noise_scale
        value = (-0.5 * z**2 - math.log(self.noise_scale) - 0.5 * _LOG_2PI - log_y).sum(-1)
        return torch.where(positive, value, torch.full_like(value, -math.inf))


# ---------------------------------------------------------------------------------------------------
# Stochastic Lotka-Volterra (SDE)


class StochasticLotkaVolterra(Simulator):
    r"""The notes' stochastic Lotka-Volterra (after Tran et al. 2017), additive noise:

        dx = (alpha x - beta x y) dt + sigma dW_1,    dy = (-gamma y + delta x y) dt + sigma dW_2,

    from (30, 1), ``sigma^2 = 10`` (the notes' ``eps ~ N(0, 10)``), with the same parameters and
    prior as :class:`LotkaVolterra`, observed without further noise at ``t_k = 2.1 k``, ``k = 0..9``,
    flattened ``(x_1..x_10, y_1..y_10)``.

    Integrated by our own vectorized Euler-Maruyama with fixed step ``dt`` (default 0.01):
    ``X_{k+1} = X_k + f(X_k) dt + sigma sqrt(dt) xi_k``. Why not torchsde: it is not a dependency,
    and fixed-step Euler-Maruyama is the scheme the notes state (with additive noise it has strong
    order 1, so nothing is gained from torchsde's higher-order schemes here). Additive noise can push
    a population below zero, where the model means nothing; we reflect at zero (``X <- |X|``) after
    each step, and clamp at 1e4 so exploding rows stay finite (as the ODE's clamp does). There is no
    tractable likelihood.
    """

    parameter_names = LotkaVolterra.parameter_names
    observation_dim = 20
    has_likelihood = False
    observation_support = "nonnegative"
    initial_state = (30.0, 1.0)

    def __init__(self, *, sigma: float = math.sqrt(10.0), dt: float = 0.01) -> None:
        self.sigma = check_positive(sigma, "sigma", allow_zero=True)
        self.dt = check_positive(dt, "dt")
        steps_per_obs = 2.1 / self.dt
        if abs(steps_per_obs - round(steps_per_obs)) > 1e-9:
            raise ValueError(f"dt must divide the observation spacing 2.1, got {dt}")
        self.steps_per_obs = round(steps_per_obs)
        self.prior = LogNormalPrior(LotkaVolterra.log_mean, LotkaVolterra.log_scale)
        self.times = torch.arange(10, dtype=torch.float64) * 2.1

    def observation_features(self, y: Tensor) -> Tensor:
        """``log(1 + y)``: populations span decades, and reflection at zero can give exact zeros."""
        return torch.log1p(y)

    def simulate(self, theta: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Euler-Maruyama paths at the 10 observation times: ``(n, 20)``. All ``n`` rows advance
        together (one tensor op per time step); the noise is drawn one step at a time so memory is
        ``O(n)``."""
        theta = _as_rows(theta, "theta", 4)
        n = theta.shape[0]
        alpha, beta, gamma, delta = theta.unbind(-1)
        state = torch.tensor(self.initial_state, dtype=torch.float64, device=theta.device).repeat(n, 1)
        scale = self.sigma * math.sqrt(self.dt)
        observed = [state]
        for _ in range(9):  # the loop is over time steps, never over simulations
            for _ in range(self.steps_per_obs):
                x, y = state.unbind(-1)
                drift = torch.stack((alpha * x - beta * x * y, -gamma * y + delta * x * y), dim=-1)
                noise = torch.randn((n, 2), generator=generator, dtype=torch.float64, device=theta.device)
                state = (state + drift * self.dt + scale * noise).abs().clamp(max=1e4)
            observed.append(state)
        return torch.stack(observed, dim=-1).reshape(n, -1)  # (n, 2, 10) -> (x_1..x_10, y_1..y_10)


# ---------------------------------------------------------------------------------------------------
# Gaussian linear (closed-form posterior)


class GaussianLinear(Simulator):
    r"""``theta ~ N(0, prior_scale^2 I_p)``, ``y = A theta + noise_scale * eps``, ``eps ~ N(0, I_d)``.

    ``A`` defaults to the identity (``p = d = dim``); pass ``matrix`` ``(d, p)`` for another map. The
    posterior is Gaussian (conjugate):

        Sigma_post = (A^T A / noise^2 + I / prior^2)^{-1},   mu_post = Sigma_post A^T y / noise^2.
    """

    has_likelihood = True

    def __init__(
        self, dim: int = 2, *, prior_scale: float = 1.0, noise_scale: float = 0.5,
        matrix: Tensor | None = None,
    ) -> None:
        dim = check_count(dim, "dim")
        self.prior_scale = check_positive(prior_scale, "prior_scale")
        self.noise_scale = check_positive(noise_scale, "noise_scale")
        if matrix is None:
            self.matrix = torch.eye(dim, dtype=torch.float64)
        else:
            self.matrix = as_tensor(matrix, "matrix", dtype=torch.float64)
            if self.matrix.ndim != 2:
                raise ValueError(f"matrix must be 2-D (d, p), got shape {tuple(self.matrix.shape)}")
            check_finite(self.matrix, "matrix")
        self.observation_dim = int(self.matrix.shape[0])
        p = int(self.matrix.shape[1])
        self.parameter_names = tuple(f"theta_{i + 1}" for i in range(p))
        self.prior = NormalPrior(torch.zeros(p, dtype=torch.float64), self.prior_scale)

    def simulate(self, theta: Tensor, generator: torch.Generator | None = None) -> Tensor:
        theta = _as_rows(theta, "theta", self.parameter_dim)
        mean = theta @ self.matrix.T
        eps = torch.randn(mean.shape, generator=generator, dtype=torch.float64, device=mean.device)
        return mean + self.noise_scale * eps

    def log_likelihood(self, theta: Tensor, y: Tensor) -> Tensor:
        """``log N(y; A theta, noise^2 I)``: ``(n,)``; ``y`` ``(n, d)`` or one ``(d,)`` for all rows."""
        theta = _as_rows(theta, "theta", self.parameter_dim)
        y = _as_rows(y, "y", self.observation_dim)
        z = (y - theta @ self.matrix.T) / self.noise_scale
        d = self.observation_dim
        return -0.5 * (z**2).sum(-1) - d * math.log(self.noise_scale) - 0.5 * d * _LOG_2PI

    def posterior(self, y: Tensor) -> tuple[Tensor, Tensor]:
        """Posterior mean ``(p,)`` and covariance ``(p, p)`` given one observation ``y`` ``(d,)``."""
        y = _as_rows(y, "y", self.observation_dim)
        if y.shape[0] != 1:
            raise ValueError(f"posterior takes one observation (d,), got {y.shape[0]} rows")
        a = self.matrix
        precision = a.T @ a / self.noise_scale**2 + torch.eye(a.shape[1], dtype=a.dtype) / self.prior_scale**2
        covariance = torch.linalg.inv(precision)
        covariance = 0.5 * (covariance + covariance.T)
        mean = covariance @ (a.T @ y[0]) / self.noise_scale**2
        return mean, covariance
