r"""Sampling a trained energy-based model: its Gibbs measure p(x) ∝ exp(-E(x)) as a measureflow Target.

A trained energy network is an energy in the sense of ``measureflow.targets``: wrapping it as a
:class:`~measureflow.targets.Target` gives its Gibbs measure every sampler of the spine, MALA in
particular (ULA proposals x' = x - h grad E(x) + sqrt(2h) z corrected by a Metropolis-Hastings
accept/reject, so exp(-E) is exactly invariant whatever the step size; Roberts & Tweedie 1996).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import Tensor

from measureflow._core import check_count, check_particles
from measureflow.samplers import sample as run_sampler
from measureflow.targets import Target

__all__ = ["EnergyTarget", "energy_dim", "sample_ebm"]


def energy_dim(energy_net: torch.nn.Module) -> int:
    """The input dimension d of an energy network ``(n, d) -> (n,)``.

    Its ``dim`` attribute when it has one, else the ``in_features`` of its first linear layer.
    """
    if not isinstance(energy_net, torch.nn.Module):
        raise TypeError(f"energy_net must be a torch.nn.Module, got {type(energy_net).__name__}")
    dim = getattr(energy_net, "dim", None)
    if isinstance(dim, int) and dim >= 1:
        return dim
    for module in energy_net.modules():
        if isinstance(module, torch.nn.Linear):
            return module.in_features
    raise ValueError(
        f"cannot tell the input dimension of {type(energy_net).__name__}: give it a `dim` "
        "attribute or a torch.nn.Linear first layer"
    )


def _parameter_like(module: torch.nn.Module) -> Tensor | None:
    return next(iter(module.parameters()), None)


class EnergyTarget(Target):
    """The Gibbs measure exp(-E(x)) / Z of an energy network E: R^d -> R, ``(n, d) -> (n,)``.

    Holds a frozen copy of the network (no parameter gradients; later training of the original
    does not change the target). dtype and device follow the network's parameters; ``.to(...)``
    moves the copy. The normalizer Z is unknown (``log_prob`` is unnormalized).

    >>> net = torch.nn.Sequential(torch.nn.Linear(2, 1), torch.nn.Flatten(0))
    >>> target = EnergyTarget(net)
    >>> tuple(target.energy(torch.zeros(5, 2)).shape), target.dim
    ((5,), 2)
    """

    name = "ebm"

    def __init__(self, energy_net: torch.nn.Module, dim: int | None = None) -> None:
        dim = energy_dim(energy_net) if dim is None else int(dim)
        super().__init__(dim)
        self.net = copy.deepcopy(energy_net).requires_grad_(False).eval()
        like = _parameter_like(self.net)
        if like is not None:
            self._anchor = self._anchor.to(dtype=like.dtype, device=like.device)

    def energy(self, x: Tensor) -> Tensor:
        value = self.net(self._as_input(x))
        if value.shape != x.shape[:1]:
            raise ValueError(
                f"the energy network must map (n, {self.dim}) to (n,), got shape {tuple(value.shape)}"
            )
        return value


def sample_ebm(
    energy_net: torch.nn.Module,
    n: int,
    *,
    n_steps: int,
    step_size: float,
    generator: torch.Generator | None,
    init: Tensor | None = None,
    sampler: str = "mala",
    burn_in: int | None = None,
    progress: bool = False,
    **options: Any,
) -> Tensor:
    """``n`` draws ``(n, d)`` from exp(-E) by ``n`` independent chains of ``sampler``.

    Each chain runs ``n_steps`` steps in all and the final states are returned. The first
    ``burn_in`` steps (default ``n_steps // 2``) are where MALA adapts its step size (dual
    averaging toward acceptance 0.574, starting from ``step_size``); after them the step is frozen,
    so for MALA the remaining steps are an exact exp(-E)-invariant chain. ``init`` ``(n, d)``
    gives the starting points (default: N(0, I) draws from ``generator``, the scale of
    standardized data). ``options`` go to :func:`measureflow.samplers.sample` (e.g.
    ``adapt_step_size=False``). dtype and device follow the network.

    Multimodal energies: a Langevin chain crosses a barrier of height Delta in time ~exp(Delta),
    so chains started in one basin stay there; the share of chains per mode then reflects the
    starting points rather than exp(-E). Start from points already spread like exp(-E) (e.g.
    importance-resampled from a broad distribution) when mode weights matter.

    >>> net = torch.nn.Sequential(torch.nn.Linear(2, 1), torch.nn.Flatten(0))
    >>> x = sample_ebm(net, 8, n_steps=4, step_size=0.1, generator=torch.Generator().manual_seed(0))
    >>> tuple(x.shape)
    (8, 2)
    """
    target = EnergyTarget(energy_net)
    n, n_steps = check_count(n, "n"), check_count(n_steps, "n_steps")
    burn_in = n_steps // 2 if burn_in is None else int(burn_in)
    if not 0 <= burn_in < n_steps:
        raise ValueError(f"burn_in must lie in [0, n_steps = {n_steps}), got {burn_in}")
    if init is None:
        init = target.initial_positions(n, generator)
    else:
        init = check_particles(init, "init", dim=target.dim)
        if init.shape[0] != n:
            raise ValueError(f"init must have shape ({n}, {target.dim}), got {tuple(init.shape)}")
        init = init.to(dtype=target.dtype, device=target.device)
    kept = n_steps - burn_in
    result = run_sampler(
        target, sampler, n_chains=n, n_steps=kept, step_size=step_size, burn_in=burn_in,
        thin=kept, init=init, generator=generator, record_energy=False, diagnostics=False,
        progress=progress, **options,
    )
    return result.samples[-1]
