"""The one driver: burn-in, step-size adaptation, thinning, traces, divergence checks, progress.

:func:`run` moves chains with one kernel of the registry; the user-facing
:func:`measureflow.samplers.sample` (in :mod:`measureflow.samplers.api`) validates its arguments,
chooses the step size when asked and calls it.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from measureflow._core import check_count, progress_bar
from measureflow.metrics import ess as effective_sample_size
from measureflow.metrics import rhat as split_rhat
from measureflow.samplers.base import (
    DivergenceError,
    GradientCount,
    SamplerParams,
    SamplerSpec,
    StepSizeSearch,
)
from measureflow.samplers.registry import SAMPLERS
from measureflow.targets import FiniteSumTarget, Target

__all__ = ["DualAveraging", "SampleResult", "run"]


@dataclass(frozen=True)
class SampleResult:
    """What a sampling run returns.

    ``samples`` ``(n_kept, n_chains, d)``; ``energy_trace`` ``(n_kept, n_chains)``, L at the
    kept samples; ``acceptance`` ``(n_chains,)`` per-chain acceptance rates after burn-in (MALA
    only); ``ess`` and ``rhat`` ``(d,)``; ``params`` the parameters used after burn-in (with the
    adapted step size); ``n_grad_evals`` gradient evaluations (exact or minibatch) per chain
    over the whole run, initialization included, and ``n_data_grads`` the per-datum gradients
    per chain on finite-sum targets (a full gradient counts N; SGLD-CV's one-off mode search is
    counted whole, as if every chain had paid for it): the sums of what the kernel reported
    (its ``Info.n_grad`` and ``Info.n_data_grad`` per step, its ``State.init_cost`` for
    ``init``).
    """

    samples: Tensor
    energy_trace: Tensor | None
    acceptance: Tensor | None
    ess: Tensor | None
    rhat: Tensor | None
    sampler: str
    params: SamplerParams
    burn_in: int
    thin: int
    n_grad_evals: int
    n_data_grads: float | None
    wall_time: float
    final_state: Any = dataclasses.field(repr=False, compare=False)
    step_size_search: StepSizeSearch | None = None

    @property
    def step_size(self) -> float:
        return self.params.step_size

    @property
    def best_position(self) -> Tensor | None:
        """The lowest-energy point each chain visited (annealed Langevin), ``(n_chains, d)``."""
        return getattr(self.final_state, "best_position", None)

    @property
    def best_energy(self) -> Tensor | None:
        return getattr(self.final_state, "best_energy", None)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe summary (no sample arrays)."""
        flat = self.samples.reshape(-1, self.samples.shape[-1]).double()

        def listed(tensor: Tensor | None) -> list[float] | None:
            return None if tensor is None else [float(v) for v in tensor.flatten()]

        summary: dict[str, Any] = {
            "sampler": self.sampler,
            # Tensors among the options (infinite-langevin's eigenvalues mu) as lists, for JSON.
            "params": {key: value.tolist() if isinstance(value, Tensor) else value
                       for key, value in dataclasses.asdict(self.params).items()},
            "n_kept": self.samples.shape[0],
            "n_chains": self.samples.shape[1],
            "dim": self.samples.shape[2],
            "burn_in": self.burn_in,
            "thin": self.thin,
            "mean": listed(flat.mean(0)),
            "std": listed(flat.std(0)) if flat.shape[0] > 1 else None,
            "ess": listed(self.ess),
            "rhat": listed(self.rhat),
            "acceptance_rate": None if self.acceptance is None else float(self.acceptance.mean()),
            "mean_energy": None if self.energy_trace is None else float(self.energy_trace.mean()),
            "n_grad_evals": self.n_grad_evals,
            "n_data_grads": self.n_data_grads,
            "wall_time_s": self.wall_time,
        }
        if self.step_size_search is not None:
            summary["step_size_search"] = self.step_size_search.to_dict()
        if self.best_energy is not None:
            summary["best_energy_min"] = float(self.best_energy.min())
            summary["best_energy_median"] = float(self.best_energy.median())
        return summary


class DualAveraging:
    """Step-size adaptation toward a target acceptance rate (Hoffman & Gelman 2014, sec. 3.2).

    H_t = (1 - 1/(t + t0)) H_{t-1} + (delta - a_t) / (t + t0),
    log h_t = mu - sqrt(t) H_t / gamma,
    log hbar_t = t^-kappa log h_t + (1 - t^-kappa) log hbar_{t-1},
    with mu = log(10 h_0); ``final`` is hbar, used once adaptation stops. Here a_t is the mean
    acceptance probability over all chains, so the statistic is nearly noise-free.
    """

    def __init__(self, step_size: float, target_acceptance: float, gamma: float = 0.05,
                 t0: float = 10.0, kappa: float = 0.75) -> None:
        self.mu = math.log(10 * step_size)
        self.target = target_acceptance
        self.gamma, self.t0, self.kappa = gamma, t0, kappa
        self.t = 0
        self.h_bar = 0.0
        self.log_step = math.log(step_size)
        self.log_step_avg = math.log(step_size)

    def update(self, acceptance: float) -> float:
        self.t += 1
        weight = 1.0 / (self.t + self.t0)
        self.h_bar = (1 - weight) * self.h_bar + weight * (self.target - acceptance)
        self.log_step = self.mu - math.sqrt(self.t) / self.gamma * self.h_bar
        eta = self.t ** (-self.kappa)
        self.log_step_avg = eta * self.log_step + (1 - eta) * self.log_step_avg
        return math.exp(self.log_step)

    @property
    def final(self) -> float:
        return math.exp(self.log_step_avg)


# Below this many random numbers per step the hand-off to a helper thread costs more than
# drawing them in the loop (2-D ring, 10,000 chains: 20,000 normals take ~50 us).
_PREFETCH_MIN_NUMBERS = 1 << 17


class _FusedStep:
    """``spec.step`` as eager noise draws plus one compiled deterministic transition.

    The same Markov chain as ``spec.step``: the same random numbers, drawn from the same
    generator in the same order, fed to the same arithmetic (up to the rounding of the compiled
    graph). The step size lives in a 0-d tensor so dual averaging does not trigger recompiles.

    The transition is compiled single-threaded: one step of a sampler is a few fused loops over
    the chains, and an OpenMP fork/join per step costs more than it saves at these sizes (and
    far more on a loaded machine). When a step needs many random numbers, the draws for step
    t + 1 run on a helper thread while step t's transition runs (torch's normal generator is
    single-threaded and would otherwise dominate, e.g. 10^6 normals per step at d = 100): at
    most ``n_draws`` steps are drawn, one ahead, strictly in order, so the generator ends where
    the step-by-step loop leaves it (unless the run stops early with an error).
    """

    def __init__(self, draw: Any, transition: Any, target: Target, params: SamplerParams,
                 state: Any, n_draws: int, generator: torch.Generator | None) -> None:
        like = state.position
        self._draw = draw
        self._step_size = torch.tensor(params.step_size, dtype=like.dtype, device=like.device)
        self._step_size_value = params.step_size
        beta = float(params.beta)

        def deterministic(state: Any, randoms: Any, step_size: Tensor) -> Any:
            return transition(state, randoms, target, step_size, beta)

        self._transition = torch.compile(deterministic, dynamic=False, options={"cpp.threads": 1})
        self._pool: ThreadPoolExecutor | None = None
        if like.device.type == "cpu" and like.numel() >= _PREFETCH_MIN_NUMBERS and n_draws > 1:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="measureflow-noise")
            self._pending: deque[Future] = deque()
            self._left = n_draws
            self._shape_state = state
            self._generator = generator
            self._submit()

    def _submit(self) -> None:
        if self._left > 0:
            self._left -= 1
            self._pending.append(
                self._pool.submit(self._draw, self._shape_state, self._generator)
            )

    def __call__(self, state: Any, target: Any, params: SamplerParams, *,
                 generator: torch.Generator | None = None) -> tuple[Any, Any]:
        if self._pool is None:
            randoms = self._draw(state, generator)
        else:
            self._submit()  # step t + 1's numbers are drawn while step t runs
            randoms = self._pending.popleft().result()
        if params.step_size != self._step_size_value:
            self._step_size.fill_(params.step_size)
            self._step_size_value = params.step_size
        return self._transition(state, randoms, self._step_size)

    def close(self) -> None:
        if self._pool is not None:
            for future in self._pending:
                future.cancel()
            self._pool.shutdown(wait=True)
            self._pool = None


def run(
    target: Target,
    spec: SamplerSpec,
    params: SamplerParams,
    position: Tensor,
    *,
    n_steps: int,
    burn_in: int = 0,
    thin: int = 1,
    generator: torch.Generator | None = None,
    adapt_step_size: bool = True,
    record_energy: bool = True,
    diagnostics: bool = True,
    progress: bool = True,
    check_every: int = 100,
    compile: bool = False,
) -> SampleResult:
    """Run ``spec``'s kernel from ``position`` ``(n_chains, d)`` for ``burn_in + n_steps`` steps.

    Keeps every ``thin``-th state after burn-in, so ``n_kept = n_steps // thin``. During burn-in
    a sampler with a target acceptance rate adapts its step size by dual averaging (when
    ``adapt_step_size``); the averaged step size is then frozen, so the kept chain is an exact
    MCMC chain. Positions are checked for NaN/inf every ``check_every`` steps and at the end; a
    :class:`~measureflow.samplers.base.DivergenceError` reports chains that left the finite
    numbers. With ``compile``, a sampler that declares ``draw``/``transition`` runs its transition as
    one compiled graph (see :class:`_FusedStep`).
    """
    n_steps = check_count(n_steps, "n_steps")
    burn_in = check_count(burn_in, "burn_in", minimum=0)
    thin = check_count(thin, "thin")
    if n_steps < thin:
        raise ValueError(f"n_steps ({n_steps}) must be at least thin ({thin}) to keep a sample")
    if spec.configure is not None:
        params = spec.configure(params, burn_in + n_steps)
    start_time = time.perf_counter()
    n_chains, dim = position.shape
    n_kept = n_steps // thin
    samples = torch.empty(n_kept, n_chains, dim, dtype=position.dtype, device=position.device)
    energies = (
        torch.empty(n_kept, n_chains, dtype=position.dtype, device=position.device)
        if record_energy else None
    )
    accepted = torch.zeros(n_chains, dtype=position.dtype, device=position.device)
    adapter = (
        DualAveraging(params.step_size, spec.target_acceptance)
        if adapt_step_size and spec.target_acceptance is not None and burn_in > 0
        else None
    )

    total = burn_in + n_steps
    if compile and (spec.transition is None or spec.draw is None):
        compilable = [name for name, entry in SAMPLERS.items() if entry.transition is not None]
        raise ValueError(
            f"compile=True is available for samplers with a compiled transition "
            f"({', '.join(compilable)}), not {spec.name!r}; run it with compile=False"
        )
    step: Any = spec.step
    state = spec.init(position, target, params, generator=generator)
    if compile:
        step = _FusedStep(spec.draw, spec.transition, target, params, state, total, generator)
    # Gradient evaluations per chain, and their per-datum cost, as the kernel reports them.
    n_grad, n_data_grad = getattr(state, "init_cost", GradientCount())
    bar = progress_bar(total, f"{spec.name}", enabled=progress)
    update_every = max(1, total // 100)
    try:
        for t in range(total):
            state, info = step(state, target, params, generator=generator)
            n_grad += info.n_grad
            n_data_grad += info.n_data_grad
            kept_phase = t - burn_in
            if adapter is not None and t < burn_in:
                step_size = adapter.update(float(info.acceptance_prob.mean()))
                if t == burn_in - 1:
                    step_size = adapter.final
                params = params.replace(step_size=step_size)
            if kept_phase >= 0:
                if spec.metropolis:
                    accepted += info.is_accepted
                if (kept_phase + 1) % thin == 0:
                    slot = kept_phase // thin
                    samples[slot] = state.position
                    if energies is not None:
                        current = getattr(state, "energy", None)
                        energies[slot] = current if current is not None else target.energy(state.position)
            if (t + 1) % check_every == 0 or t + 1 == total:
                _check_divergence(state.position, t + 1, params, spec.name)
            if (t + 1) % update_every == 0 or t + 1 == total:
                bar.update((t + 1) - bar.n)
    finally:
        bar.close()
        if isinstance(step, _FusedStep):
            step.close()

    ess = rhat = None
    if diagnostics and n_kept >= 4:
        ess, rhat = effective_sample_size(samples), split_rhat(samples)
    return SampleResult(
        samples=samples,
        energy_trace=energies,
        acceptance=accepted / n_steps if spec.metropolis else None,
        ess=ess,
        rhat=rhat,
        sampler=spec.name,
        params=params,
        burn_in=burn_in,
        thin=thin,
        n_grad_evals=n_grad,
        n_data_grads=n_data_grad if isinstance(target, FiniteSumTarget) else None,
        wall_time=time.perf_counter() - start_time,
        final_state=state,
    )


def _check_divergence(position: Tensor, t: int, params: SamplerParams, name: str) -> None:
    if not bool(torch.isfinite(position).all()):
        n_bad = int((~torch.isfinite(position).all(-1)).sum())
        raise DivergenceError(
            f"{n_bad} of {position.shape[0]} {name} chains became NaN/inf by step {t} with "
            f"step_size={params.step_size:g}; rerun with a smaller step size"
        )

