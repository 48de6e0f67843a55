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

import numpy as np
import torch
from torch import Tensor

from measureflow._core import check_count, progress_bar
from measureflow.metrics import rank_diagnostics
from measureflow.samplers.base import (
    DivergenceError,
    GradientCount,
    SamplerParams,
    SamplerSpec,
    StepSizeSearch,
)
from measureflow.samplers.registry import SAMPLERS
from measureflow.targets import FiniteSumTarget, Target

__all__ = ["DualAveraging", "SampleResult", "convergence_warnings", "run"]

# Convergence thresholds, Stan's and ArviZ's (Vehtari et al. 2021, sec. 4.3): rank-normalized
# R-hat below 1.01, bulk and tail ESS at least 100 per chain.
RHAT_THRESHOLD = 1.01
ESS_PER_CHAIN = 100


@dataclass(frozen=True)
class SampleResult:
    """What a sampling run returns.

    ``samples`` ``(n_kept, n_chains, d)`` (draw first, as the library stores chain histories;
    :meth:`to_arrays` and :meth:`to_inference_data` give ArviZ's (chain, draw, ...) layout);
    ``energy_trace`` ``(n_kept, n_chains)``, L at the kept samples; ``acceptance``
    ``(n_chains,)`` per-chain acceptance rates after burn-in (Metropolis samplers: MALA);
    ``acceptance_trace`` ``(n_kept, n_chains)`` the acceptance probability min(1, r) of the
    step that produced each kept sample (Metropolis samplers); ``divergence_trace``
    ``(n_kept, n_chains)`` bool, whether a divergent transition (a kernel's
    ``Info.is_divergent``, e.g. HMC's energy error) occurred since the previous kept sample,
    ``None`` for kernels that report none (all current ones).

    Convergence diagnostics, ``(d,)``, the rank-normalized ones of Vehtari et al. (2021) that
    ArviZ, Stan and NumPyro report by default: ``rhat`` the rank-normalized split R-hat
    (max of bulk and folded; :func:`measureflow.metrics.rhat_rank`), ``ess`` the bulk ESS
    (:func:`measureflow.metrics.ess_bulk`), ``ess_tail`` the tail ESS
    (:func:`measureflow.metrics.ess_tail`); ``None`` without diagnostics or with fewer than 4
    kept draws. The classical ESS of the mean and split R-hat are
    ``measureflow.metrics.ess(result.samples)`` and ``measureflow.metrics.rhat(...)``.
    ``warnings``: one line per convergence problem found after the run (see
    :func:`convergence_warnings`); the library never emits them, callers print them.

    ``params`` the parameters used after burn-in (with the adapted step size; ``params.beta``
    is beta, the final one for annealed Langevin); ``n_grad_evals`` gradient evaluations
    (exact or minibatch) per chain over the whole run, initialization included (the one-off
    finiteness check of the initial points is not counted), and ``n_data_grads`` the per-datum gradients
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
    ess_tail: Tensor | None = None
    acceptance_trace: Tensor | None = None
    divergence_trace: Tensor | None = None
    warnings: tuple[str, ...] = ()

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
            # Rank-normalized (Vehtari et al. 2021), as ArviZ's defaults: named in the file so
            # that a reader comparing with other tools knows which estimators these are.
            "ess": listed(self.ess),
            "ess_method": "bulk",
            "ess_tail": listed(self.ess_tail),
            "rhat": listed(self.rhat),
            "rhat_method": "rank",
            "acceptance_rate": None if self.acceptance is None else float(self.acceptance.mean()),
            "n_divergent": (None if self.divergence_trace is None
                            else int(self.divergence_trace.sum())),
            "warnings": list(self.warnings),
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

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The run's arrays as numpy, chain first: ArviZ's, NumPyro's and Stan's layout.

        ``samples`` ``(n_chains, n_kept, d)``; when recorded, ``energy`` ``(n_chains, n_kept)``
        (L, the library's energy: the potential, not ArviZ's Hamiltonian ``energy``) and ``lp``
        ``= -beta L``, the log density of exp(-beta L) up to its constant; for Metropolis
        samplers ``acceptance_rate`` ``(n_chains, n_kept)`` (the acceptance probability of
        each kept sample's step) and ``acceptance`` ``(n_chains,)`` (each chain's rate over
        the kept phase); ``diverging`` ``(n_chains, n_kept)`` bool for kernels that report
        divergences. Arrays keep the samples' dtype.
        """

        def chain_first(tensor: Tensor) -> np.ndarray:
            return tensor.detach().transpose(0, 1).cpu().numpy()

        arrays = {"samples": chain_first(self.samples)}
        if self.energy_trace is not None:
            arrays["energy"] = chain_first(self.energy_trace)
            arrays["lp"] = chain_first(-self.params.beta * self.energy_trace)
        if self.acceptance_trace is not None:
            arrays["acceptance_rate"] = chain_first(self.acceptance_trace)
        if self.acceptance is not None:
            arrays["acceptance"] = self.acceptance.detach().cpu().numpy()
        if self.divergence_trace is not None:
            arrays["diverging"] = chain_first(self.divergence_trace)
        return arrays

    def to_inference_data(self) -> Any:
        """An ``arviz.InferenceData`` of the kept samples (needs ArviZ, imported only here).

        ``posterior``: ``x`` with dims ``(chain, draw, x_dim_0)``. ``sample_stats``: ``lp``
        ``= -beta L`` (ArviZ's convention, as NumPyro's ``-potential_energy``),
        ``acceptance_rate`` per draw for Metropolis samplers, ``diverging`` for kernels that
        report divergences. No ``energy``: ArviZ reads it as the Hamiltonian (for the BFMI),
        which no Langevin kernel has. Attributes (of the posterior and sample_stats groups and
        of the InferenceData): ``sampler``, ``step_size``, ``beta``, ``burn_in``, ``thin``,
        ``inference_library``; ArviZ adds ``created_at`` and ``arviz_version``.
        """
        import warnings as python_warnings

        try:
            # ArviZ 0.23 announces its coming refactor with a FutureWarning on import; that
            # notice is about ArviZ, not about this call.
            with python_warnings.catch_warnings():
                python_warnings.filterwarnings(
                    "ignore", message="\\s*ArviZ is undergoing", category=FutureWarning
                )
                import arviz
        except ImportError as error:
            raise ImportError("to_inference_data needs ArviZ: pip install arviz") from error
        arrays = self.to_arrays()
        stats = {key: arrays[key] for key in ("lp", "acceptance_rate", "diverging") if key in arrays}
        attrs = {
            "inference_library": "measureflow",
            "sampler": self.sampler,
            "step_size": float(self.params.step_size),
            "beta": float(self.params.beta),
            "burn_in": int(self.burn_in),
            "thin": int(self.thin),
        }
        # On the posterior and sample_stats groups (what a netCDF file keeps per group) and on
        # the InferenceData itself; copies, as ArviZ edits the dictionaries it is given.
        return arviz.from_dict(
            posterior={"x": arrays["samples"]}, sample_stats=stats or None, attrs=dict(attrs),
            posterior_attrs=dict(attrs), sample_stats_attrs=dict(attrs),
        )


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
    MCMC chain. With ``compile``, a sampler that declares ``draw``/``transition`` runs its
    transition as one compiled graph (see :class:`_FusedStep`).

    Non-finite values are errors, never results. Before the first step the energy and gradient
    at the initial points must be finite (taken from the kernel's state when it carries them,
    else evaluated once; not counted in ``n_grad_evals``), else a ``ValueError`` names the
    chains. During the run, every ``check_every`` steps and at the end (one host
    synchronization per check, none per step), the positions, the energy and gradient the
    state carries, the energies recorded since the last check and the proposals a kernel
    flagged (``Info.nonfinite_proposal``: MALA's NaN energies, which it would otherwise
    reject forever) are checked; a :class:`~measureflow.samplers.base.DivergenceError` names
    the chains, the steps between which it happened, and what to change.

    After the run, ``diagnostics`` computes the rank-normalized R-hat and bulk/tail ESS (when
    at least 4 draws are kept) and :func:`convergence_warnings` fills ``result.warnings``.
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
    acceptance_trace = (
        torch.empty(n_kept, n_chains, dtype=position.dtype, device=position.device)
        if spec.metropolis else None
    )
    # Allocated at the first step whose Info reports them (see SampleResult.divergence_trace).
    divergence_trace: Tensor | None = None
    divergent_since_kept: Tensor | None = None
    # Chains with a proposal the kernel flagged as non-finite since the last check.
    flagged: Tensor | None = None
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
    _check_initial_points(state, target, spec.name)
    if compile:
        step = _FusedStep(spec.draw, spec.transition, target, params, state, total, generator)
    # Gradient evaluations per chain, and their per-datum cost, as the kernel reports them.
    n_grad, n_data_grad = getattr(state, "init_cost", GradientCount())
    bar = progress_bar(total, f"{spec.name}", enabled=progress)
    update_every = max(1, total // 100)
    checked_step = checked_slot = 0  # the last clean check, and the energies it covered
    try:
        for t in range(total):
            state, info = step(state, target, params, generator=generator)
            n_grad += info.n_grad
            n_data_grad += info.n_data_grad
            nonfinite = getattr(info, "nonfinite_proposal", None)
            if nonfinite is not None:  # one in-place OR per step, no synchronization
                flagged = nonfinite.clone() if flagged is None else flagged.logical_or_(nonfinite)
            divergent = getattr(info, "is_divergent", None)
            if divergent is not None and divergence_trace is None:
                divergence_trace = torch.zeros(n_kept, n_chains, dtype=torch.bool,
                                               device=position.device)
                divergent_since_kept = torch.zeros(n_chains, dtype=torch.bool, device=position.device)
            kept_phase = t - burn_in
            if adapter is not None and t < burn_in:
                step_size = adapter.update(float(info.acceptance_prob.mean()))
                if t == burn_in - 1:
                    step_size = adapter.final
                params = params.replace(step_size=step_size)
            if kept_phase >= 0:
                if spec.metropolis:
                    accepted += info.is_accepted
                if divergent_since_kept is not None and divergent is not None:
                    divergent_since_kept.logical_or_(divergent)
                if (kept_phase + 1) % thin == 0:
                    slot = kept_phase // thin
                    samples[slot] = state.position
                    if energies is not None:
                        current = getattr(state, "energy", None)
                        energies[slot] = current if current is not None else target.energy(state.position)
                    if acceptance_trace is not None:
                        acceptance_trace[slot] = info.acceptance_prob
                    if divergence_trace is not None:
                        divergence_trace[slot] = divergent_since_kept
                        divergent_since_kept.zero_()
            if (t + 1) % check_every == 0 or t + 1 == total:
                n_written = max(0, (kept_phase + 1) // thin)
                recorded = energies[checked_slot:n_written] if energies is not None else None
                _check_divergence(state, recorded, flagged, checked_step, t + 1, params, spec.name)
                checked_step, checked_slot = t + 1, n_written
            if (t + 1) % update_every == 0 or t + 1 == total:
                bar.update((t + 1) - bar.n)
    finally:
        bar.close()
        if isinstance(step, _FusedStep):
            step.close()

    ess = tail = rhat = None
    if diagnostics and n_kept >= 4:
        rhat, ess, tail = rank_diagnostics(samples)
    acceptance = accepted / n_steps if spec.metropolis else None
    found = (
        convergence_warnings(rhat=rhat, ess=ess, ess_tail=tail, n_kept=n_kept, n_chains=n_chains,
                             acceptance=acceptance, divergence_trace=divergence_trace)
        if diagnostics else ()
    )
    return SampleResult(
        samples=samples,
        energy_trace=energies,
        acceptance=acceptance,
        ess=ess,
        ess_tail=tail,
        rhat=rhat,
        acceptance_trace=acceptance_trace,
        divergence_trace=divergence_trace,
        warnings=found,
        sampler=spec.name,
        params=params,
        burn_in=burn_in,
        thin=thin,
        n_grad_evals=n_grad,
        n_data_grads=n_data_grad if isinstance(target, FiniteSumTarget) else None,
        wall_time=time.perf_counter() - start_time,
        final_state=state,
    )


def convergence_warnings(
    *,
    rhat: Tensor | None,
    ess: Tensor | None,
    ess_tail: Tensor | None,
    n_kept: int,
    n_chains: int,
    acceptance: Tensor | None = None,
    divergence_trace: Tensor | None = None,
) -> tuple[str, ...]:
    """One line per convergence problem of a run, each saying what to do; ``()`` when none.

    Stan's and ArviZ's rules (Vehtari et al. 2021): the rank-normalized R-hat above 1.01 (or
    undefined: all draws of a coordinate equal), the bulk or tail ESS below 100 per chain
    (the minimum over coordinates); fewer than 4 kept draws (no diagnostics possible); chains
    of a Metropolis sampler that accepted nothing after burn-in (frozen at one point); any
    divergent transition. ``rhat``, ``ess``, ``ess_tail``, ``acceptance`` ``(n_chains,)`` as
    in :class:`SampleResult`. The library returns these lines and never calls
    ``warnings.warn``: the caller (the CLI) prints them and stores them with the result.
    """
    found: list[str] = []
    if n_kept < 4:
        found.append(
            f"only {n_kept} draw(s) kept per chain: R-hat and ESS need at least 4; "
            "run more steps (or thin less)"
        )
    if rhat is not None:
        undefined = int(torch.isnan(rhat).sum())
        if undefined:
            found.append(
                f"R-hat is undefined for {undefined} of {rhat.numel()} coordinate(s): all their "
                "draws are equal (frozen chains); lower the step size or check the target"
            )
        finite = rhat[~torch.isnan(rhat)]
        if finite.numel() and float(finite.max()) > RHAT_THRESHOLD:
            n_high = int((finite > RHAT_THRESHOLD).sum())
            found.append(
                f"R-hat is {float(finite.max()):.3g} (> {RHAT_THRESHOLD}) for {n_high} of "
                f"{rhat.numel()} coordinate(s): the chains have not mixed; run more steps and a "
                "longer burn-in, or a smaller step size if few proposals are accepted"
            )
    floor = ESS_PER_CHAIN * n_chains
    for value, kind, what in ((ess, "bulk", "the mean and median"),
                              (ess_tail, "tail", "the 5% and 95% quantiles")):
        if value is not None and float(value.min()) < floor:
            found.append(
                f"{kind} ESS is {float(value.min()):.4g} (min over coordinates), below "
                f"{ESS_PER_CHAIN} per chain ({floor}): estimates of {what} are unreliable; "
                "run more steps"
            )
    if acceptance is not None:
        frozen = int((acceptance == 0).sum())
        if frozen:
            found.append(
                f"{frozen} of {n_chains} chain(s) accepted no proposal after burn-in and never "
                "moved; lower the step size or lengthen burn-in so its adaptation can"
            )
    if divergence_trace is not None:
        n_divergent = int(divergence_trace.sum())
        if n_divergent:
            found.append(
                f"{n_divergent} divergent transition(s) after burn-in: the draws near them are "
                "biased; lower the step size"
            )
    return tuple(found)


def _chain_list(bad: Tensor, limit: int = 5) -> str:
    """``"chains 0, 3, 7"`` (the first ``limit`` indices of the True entries, then "...")."""
    index = torch.nonzero(bad).flatten()[: limit + 1].tolist()
    shown = ", ".join(str(i) for i in index[:limit])
    return f"chain{'s' if len(index) > 1 else ''} {shown}{', ...' if len(index) > limit else ''}"


def _check_initial_points(state: Any, target: Target, name: str) -> None:
    """Refuse to start from points where the target's energy or gradient is NaN or infinite.

    Uses the energy and gradient the kernel's ``init`` computed (MALA, annealed) when the state
    carries them; otherwise evaluates them once (one gradient per chain, not counted as a step).
    """
    energy, gradient = getattr(state, "energy", None), getattr(state, "grad", None)
    if energy is None or gradient is None:
        energy, gradient = target.energy_and_grad(state.position)
    bad_energy = ~torch.isfinite(energy)
    bad_gradient = ~torch.isfinite(gradient).all(-1)
    bad = bad_energy | bad_gradient
    if not bool(bad.any()):  # one synchronization, before the first step
        return
    parts = []
    for what, flags, values in (("energy", bad_energy, energy), ("gradient", bad_gradient, gradient)):
        if bool(flags.any()):
            nonfinite = values[flags]
            is_nan = torch.isnan(nonfinite[~torch.isfinite(nonfinite)])
            kind = ("NaN" if bool(is_nan.all())
                    else "infinite" if not bool(is_nan.any()) else "NaN or infinite")
            parts.append(f"{what} is {kind}")
    raise ValueError(
        f"the target's {' and its '.join(parts)} at the initial points of {int(bad.sum())} of "
        f"{bad.numel()} {name} chains ({_chain_list(bad)}), before step 1: fix the target or "
        "start the chains where it is finite"
    )


def _check_divergence(
    state: Any,
    recorded: Tensor | None,
    flagged: Tensor | None,
    last_clean: int,
    t: int,
    params: SamplerParams,
    name: str,
) -> None:
    """Raise :class:`DivergenceError` if a chain's state went non-finite in steps
    ``last_clean + 1 .. t``: its position, the energy and gradient the state carries, the
    energies ``recorded`` ``(k, n_chains)`` at the samples kept since, or a proposal the kernel
    ``flagged`` ``(n_chains,)``. One host synchronization when all is finite."""
    position = state.position
    bad_position = ~torch.isfinite(position).all(-1)
    bad = bad_position.clone()
    energy, gradient = getattr(state, "energy", None), getattr(state, "grad", None)
    if isinstance(energy, Tensor):
        bad |= ~torch.isfinite(energy)
    if isinstance(gradient, Tensor) and gradient.shape == position.shape:
        bad |= ~torch.isfinite(gradient).all(-1)
    if recorded is not None and recorded.numel():
        bad |= ~torch.isfinite(recorded).all(0)
    if flagged is not None:
        bad |= flagged
    if not bool(bad.any()):
        return
    beta = min(params.beta, getattr(params, "beta_start", params.beta))
    noise_scale = math.sqrt(2 * params.step_size / beta)
    # Beyond sqrt(largest float) a typical noise draw's square (a quadratic energy) overflows.
    limit = math.sqrt(torch.finfo(position.dtype).max)
    if noise_scale > limit:
        advice = (f"the noise scale sqrt(2 h / beta) = {noise_scale:.3g} is beyond what "
                  f"{str(position.dtype).removeprefix('torch.')} can square ({limit:.2g}); "
                  "raise beta (or lower the step size)")
    elif not bool(bad_position.any()):
        # Finite positions, so the target itself returned NaN/inf there (or at proposals).
        where = ("points it proposed" if flagged is not None and bool(flagged.any())
                 else "finite points the chains reached")
        advice = (f"the target's energy or gradient was NaN/inf at {where}; fix the target "
                  "there (MALA rejects proposals whose energy is +inf) or lower the step size")
    else:
        advice = "rerun with a smaller step size"
    raise DivergenceError(
        f"{int(bad.sum())} of {bad.numel()} {name} chains ({_chain_list(bad)}) became NaN/inf "
        f"by step {t} with step_size={params.step_size:g}, beta={params.beta:g} (all finite at "
        f"step {last_clean}): {advice}"
    )
