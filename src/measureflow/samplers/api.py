"""The user-facing entry point :func:`sample`: validate, place the target, choose the step size
when asked (:mod:`~measureflow.samplers.autostep`), then run the chains
(:func:`~measureflow.samplers.driver.run`).

Sits above both: the driver knows nothing of the step-size search, and the search calls the
driver for its pilots.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from measureflow._core import as_tensor, check_count, check_finite, make_generator
from measureflow.samplers.autostep import DEFAULT_STEP_SIZE_GRID, search_step_size
from measureflow.samplers.driver import SampleResult, run
from measureflow.samplers.registry import get_sampler
from measureflow.targets import Target

__all__ = ["sample"]


def sample(
    target: Target,
    sampler: str = "mala",
    n_chains: int = 1000,
    n_steps: int = 5000,
    step_size: float | str = 1e-2,
    beta: float = 1.0,
    burn_in: int = 1000,
    thin: int = 1,
    init: Tensor | None = None,
    seed: int | None = 0,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    adapt_step_size: bool = True,
    record_energy: bool = True,
    diagnostics: bool = True,
    progress: bool = True,
    compile: bool = False,
    step_size_grid: Sequence[float] = DEFAULT_STEP_SIZE_GRID,
    n_pilot_steps: int = 500,
    n_pilot_chains: int = 1000,
    **options: Any,
) -> SampleResult:
    """Draw ``n_chains`` chains from pi_beta = exp(-beta L) with the named sampler.

    ``sampler`` is one of ``measureflow.samplers.SAMPLERS`` (ula, sgld, sgld-cv, psgld, sghmc,
    mala, annealed, infinite-langevin); sampler-specific settings (``batch_size``, ``friction``,
    ``schedule``, ``lam``, ``mu``, ``decay``, ...)
    go in ``options``. The run is ``burn_in`` discarded steps followed by ``n_steps`` steps of
    which every ``thin``-th is kept. ``init`` ``(n_chains, d)`` sets the starting points
    (default: the target's, standard normal). Randomness comes from ``generator`` if given,
    else from a generator seeded with ``seed``. ``device``/``dtype`` move a copy of the target;
    by default both follow the target (or ``init``). Chains that become NaN or infinite raise
    :class:`~measureflow.samplers.base.DivergenceError` (a ``ValueError``). ``compile`` (ula,
    mala) compiles each step's deterministic part into one ``torch.compile`` graph and draws
    its noise outside it: the same chain, faster on many chains once the one-off compilation
    (seconds) is paid.

    ``step_size="auto"`` (unadjusted samplers: ula, sgld, sgld-cv, psgld, sghmc) first runs
    ``n_pilot_steps`` steps of ``n_pilot_chains`` independent chains (started from the initial
    points, cycled when there are fewer) for each step size of
    ``step_size_grid`` and keeps the one whose final pilot positions have the smallest IMQ
    kernel Stein discrepancy to pi_beta (Gorham & Mackey 2017); the grid and its KSD^2 values
    are in ``result.step_size_search``, and the main run starts afresh from the initial points.

    >>> import measureflow as mf
    >>> result = mf.sample(mf.targets.DoubleWell(), "mala", n_chains=8, n_steps=50,
    ...                    burn_in=10, progress=False)
    >>> tuple(result.samples.shape)
    (50, 8, 1)
    """
    if not isinstance(target, Target):
        raise TypeError(
            f"target must be a measureflow Target, got {type(target).__name__}; "
            "wrap an energy function with measureflow.targets.from_energy(energy, dim)"
        )
    spec = get_sampler(sampler)
    n_chains = check_count(n_chains, "n_chains")
    known = {field.name for field in dataclasses.fields(spec.params)}
    unknown = set(options) - known
    if unknown:
        raise TypeError(
            f"sampler {spec.name!r} has no option(s) {', '.join(sorted(unknown))}; "
            f"its options are {', '.join(sorted(known))}"
        )
    auto_step = isinstance(step_size, str)
    if auto_step:
        if step_size != "auto":
            raise ValueError(f"step_size must be a positive number or 'auto', got {step_size!r}")
        if spec.target_acceptance is not None or spec.configure is not None:
            raise ValueError(
                f"step_size='auto' chooses the step size of an unadjusted sampler by KSD; "
                f"{spec.name!r} sets its own (mala adapts it during burn-in, annealed follows "
                "its schedule): give a number"
            )
        step_size = 1.0  # a placeholder until the search below
    params = spec.params(step_size=step_size, beta=beta, **options)

    if init is not None:
        init = as_tensor(init, "init")
        device = device if device is not None else init.device
        dtype = dtype if dtype is not None else init.dtype
    device = torch.device(device) if device is not None else target.device
    dtype = dtype if dtype is not None else target.dtype
    if target.device != device or target.dtype != dtype:
        target = copy.deepcopy(target).to(device=device, dtype=dtype)
    if generator is None:
        generator = make_generator(seed, device)
    elif generator.device.type != device.type:
        raise ValueError(
            f"generator is on {generator.device} but the chains run on {device}; "
            f"pass a generator on {device} (or a seed)"
        )

    if init is None:
        position = target.initial_positions(n_chains, generator)
    else:
        position = init.to(device=device, dtype=dtype)
        if position.ndim != 2 or position.shape[1] != target.dim or position.shape[0] not in (1, n_chains):
            raise ValueError(
                f"init must have shape ({n_chains}, {target.dim}) or (1, {target.dim}), "
                f"got {tuple(position.shape)}"
            )
        check_finite(position, "init")
        position = position.expand(n_chains, target.dim).clone()

    with torch.no_grad():
        search = None
        if auto_step:
            # Two at least: the unbiased KSD^2 is a U-statistic over pairs of pilot chains.
            n_pilot_chains = check_count(n_pilot_chains, "n_pilot_chains", minimum=2)
            # Pilot chain i starts where main chain i mod n_chains does.
            pilot_index = torch.arange(n_pilot_chains, device=position.device) % n_chains
            search = search_step_size(
                target, spec, params, position[pilot_index], generator,
                grid=step_size_grid, n_pilot_steps=n_pilot_steps,
            )
            params = params.replace(step_size=search.step_size)
        result = run(
            target, spec, params, position, compile=compile,
            n_steps=n_steps, burn_in=burn_in, thin=thin, generator=generator,
            adapt_step_size=adapt_step_size, record_energy=record_energy,
            diagnostics=diagnostics, progress=progress,
        )
    return result if search is None else dataclasses.replace(result, step_size_search=search)
