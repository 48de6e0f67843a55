"""The one integrator of particle gradient flows: forward Euler, with noise for entropy terms."""

from __future__ import annotations

import math
import numbers
import time as clock
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from measureflow._core import as_tensor, check_count, check_positive, progress_bar
from measureflow.flows.functionals import Functional

__all__ = ["FlowResult", "run"]


@dataclass(frozen=True)
class FlowResult:
    """A particle flow: the final particles and what was recorded along the way.

    ``particles`` ``(n, d)`` at the end; ``steps`` ``(T,)`` the step indices recorded (0, every
    ``record_every``-th and the last), ``times`` ``(T,)`` = steps * step_size; ``values``
    ``(T,)`` the functional's ``value`` there (``None`` when not recorded); ``snapshots``
    ``(T, n_keep, d)`` the first ``n_keep`` particles there (particles drawn i.i.d. at the start
    are exchangeable, so the first ``n_keep`` are a fair subset). ``temperature`` is the noise
    temperature T of the run (x <- x + h v + sqrt(2 h T) xi).
    """

    particles: Tensor
    steps: Tensor
    times: Tensor
    values: Tensor | None
    snapshots: Tensor
    step_size: float
    n_steps: int
    temperature: float
    functional: str
    wall_time: float

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe summary (no particle arrays)."""
        final = self.particles.detach().double()
        return {
            "functional": self.functional,
            "n_particles": int(final.shape[0]),
            "dim": int(final.shape[1]),
            "n_steps": self.n_steps,
            "step_size": self.step_size,
            "temperature": self.temperature,
            "final_time": float(self.times[-1]),
            "times": [float(t) for t in self.times],
            "values": None if self.values is None else [float(v) for v in self.values],
            "final_value": None if self.values is None else float(self.values[-1]),
            "mean": [float(v) for v in final.mean(0)],
            "std": [float(v) for v in final.std(0)] if final.shape[0] > 1 else None,
            "wall_time_s": self.wall_time,
        }


def _count(value: Any, name: str) -> int:
    # A value of the wrong type stays a TypeError, as it always was here; the range check is shared.
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be a positive integer, got {value!r}")
    return check_count(value, name)


def run(
    functional: Functional,
    x0: Any,
    step_size: float,
    n_steps: int,
    *,
    generator: torch.Generator | None = None,
    record_every: int | None = None,
    n_keep: int | None = None,
    record_values: bool = True,
    progress: bool = True,
) -> FlowResult:
    """Move the particles ``x0`` ``(n, d)`` along the flow of ``functional`` for ``n_steps`` steps.

    Forward Euler on the particle system dx = v(x) dt + sqrt(2 T) dB:

        x <- x + h v(x, t) + sqrt(2 h T) xi,    xi ~ N(0, I),  t = k h,

    v = ``functional.velocity`` and T = ``functional.temperature`` (the total temperature of its
    entropy-by-noise terms; T = 0 gives a deterministic flow). Vectorized over particles; the
    device and dtype follow ``x0`` (integers become the default float dtype) and ``generator``
    (on x0's device) draws the noise. Every ``record_every``-th step (default: about 100
    records), step 0 and the last step record the time, the value (when ``record_values``) and
    the first ``n_keep`` particles (default min(n, 1000)). A particle that becomes NaN or
    infinite stops the run with a ``ValueError`` naming the step.

    >>> from measureflow.flows import Potential
    >>> F = Potential(lambda z: 0.5 * z.square().sum(1))  # dx/dt = -x
    >>> result = run(F, torch.ones(4, 1), step_size=0.01, n_steps=100, progress=False)
    >>> round(float(result.particles[0, 0]), 4)  # (1 - h)^100 ~ exp(-1)
    0.366
    """
    if not isinstance(functional, Functional):
        raise TypeError(
            f"functional must be a measureflow.flows Functional (Potential, Interaction, Entropy, "
            f"KL, MMD, SVGD or a Sum of them), got {type(functional).__name__}"
        )
    x = as_tensor(x0, "x0")
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"x0 must have shape (n, d) with n, d >= 1, got {tuple(x.shape)}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"x0 contains {int((~torch.isfinite(x)).sum())} NaN or infinite value(s)")
    step_size = check_positive(step_size, "step_size")
    n_steps = _count(n_steps, "n_steps")
    n = x.shape[0]
    record_every = max(1, n_steps // 100) if record_every is None else _count(record_every, "record_every")
    n_keep = min(n, 1000) if n_keep is None else min(_count(n_keep, "n_keep"), n)
    temperature = float(functional.temperature)
    if not math.isfinite(temperature) or temperature < 0:
        raise ValueError(f"the functional's temperature must be finite and >= 0, got {temperature}")
    noise_scale = math.sqrt(2 * step_size * temperature)
    if noise_scale > 0 and generator is not None and generator.device.type != x.device.type:
        raise ValueError(
            f"generator is on {generator.device} but the particles are on {x.device}; make it with "
            "torch.Generator(device=x0.device)"
        )

    recorded = sorted(set(range(0, n_steps + 1, record_every)) | {n_steps})
    snapshots = torch.empty(len(recorded), n_keep, x.shape[1], dtype=x.dtype, device=x.device)
    values = torch.empty(len(recorded), dtype=x.dtype, device=x.device) if record_values else None
    start = clock.perf_counter()
    x = x.detach().clone()
    slot = 0

    def record(step: int) -> None:
        nonlocal slot
        snapshots[slot] = x[:n_keep]
        if values is not None:
            values[slot] = functional.value(x)
        slot += 1

    bar = progress_bar(n_steps, "flow", enabled=progress)
    update_every = max(1, n_steps // 100)
    try:
        with torch.no_grad():
            record(0)
            for k in range(n_steps):
                velocity = functional.velocity(x, time=k * step_size, generator=generator)
                x.add_(velocity, alpha=step_size)
                if noise_scale > 0:
                    noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
                    x.add_(noise, alpha=noise_scale)
                if not bool(torch.isfinite(x).all()):
                    n_bad = int((~torch.isfinite(x).all(1)).sum())
                    raise ValueError(
                        f"the flow diverged at step {k + 1} (t = {(k + 1) * step_size:.4g}): {n_bad} of "
                        f"{n} particles became NaN or infinite with step_size={step_size:g}; "
                        "reduce the step size"
                    )
                if k + 1 == recorded[slot]:
                    record(k + 1)
                if (k + 1) % update_every == 0 or k + 1 == n_steps:
                    bar.update(k + 1 - bar.n)
    finally:
        bar.close()
    steps = torch.tensor(recorded, dtype=torch.int64)
    return FlowResult(
        particles=x,
        steps=steps,
        times=steps.to(torch.float64) * step_size,
        values=values,
        snapshots=snapshots,
        step_size=step_size,
        n_steps=n_steps,
        temperature=temperature,
        functional=functional.label,
        wall_time=clock.perf_counter() - start,
    )
