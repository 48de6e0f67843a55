"""Optimal transport: distances, maps, dual potentials; exact (POT), entropic, sliced, 1-D, Gaussian.

Conventions shared by every function here:

- samples are ``(n, d)`` and ``(m, d)`` tensors (numpy arrays are accepted), weights ``(n,)`` and
  ``(m,)`` non-negative and normalized internally (uniform when ``None``);
- the ground cost is ``c(x, y) = ||x - y||^p`` with the Euclidean norm and ``p >= 1``;
- distances are returned as ``W_p`` (not ``W_p^p``), except the Sinkhorn divergence, which lives on
  the scale of ``W_p^p`` (see :func:`sinkhorn_divergence`);
- results are tensors on the device and in the (common floating) dtype of the inputs.

References: C. Villani, *Optimal transport, old and new* (2009); G. Peyre and M. Cuturi,
*Computational optimal transport* (2019), chapters 2-4 and 9 (cited below as PC19).
"""

from __future__ import annotations

import math
import numbers
import warnings
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import ot
import torch
from torch import Tensor

from measureflow._core import as_tensor, check_count, check_finite, check_positive
from measureflow.metrics._validate import check_density_pair, check_gaussian, check_sample_pair, check_weights

__all__ = [
    "AffineMap",
    "KantorovichPotentials",
    "barycentric_map",
    "gaussian_brenier_map",
    "gaussian_w2",
    "kantorovich_potentials",
    "sinkhorn_divergence",
    "sliced_wasserstein",
    "symmetric_matrix_power",
    "transport_plan",
    "wasserstein",
    "wasserstein_1d",
    "wasserstein_1d_grid",
    "wasserstein_1d_to_normal",
]

# Elements of one block of the cost matrix in the Sinkhorn softmin: 2^20 float32 are 4 MiB, small
# enough to stay in the cache between the passes of a log-sum-exp (measured fastest on the 2-core
# EPYC; larger blocks only add memory traffic).
_BLOCK_ELEMENTS = 1 << 20
# Elements of one chunk of projected samples in the sliced distance: bounds its memory to about
# 2^24 * 8 bytes per temporary, whatever n and n_projections.
_PROJECTION_ELEMENTS = 1 << 24
_DIRECTIONS = ("random", "quasi")


# --------------------------------------------------------------------------------------------------
# validation helpers


def _check_p(p: Any) -> float:
    """The order ``p`` of the distance as a float, finite and ``>= 1``."""
    if isinstance(p, bool) or not isinstance(p, (numbers.Real, np.floating, np.integer)):
        raise TypeError(f"p must be a real number >= 1, got {p!r} of type {type(p).__name__}")
    value = float(p)
    if not math.isfinite(value) or value < 1:
        raise ValueError(
            f"p must be a finite number >= 1 (the cost ||x - y||^p is a metric power only then), "
            f"got {p!r}"
        )
    return value


def _check_1d_samples(value: Any, name: str) -> Tensor:
    """Samples of a measure on the line: shape ``(n,)`` or ``(n, 1)`` -> finite ``(n,)``."""
    tensor = as_tensor(value, name)
    if tensor.ndim == 2 and tensor.shape[1] == 1:
        tensor = tensor[:, 0]
    if tensor.ndim != 1:
        raise ValueError(
            f"{name} must hold points on the line, shape (n,) or (n, 1), got shape "
            f"{tuple(tensor.shape)}; for d > 1 use wasserstein or sliced_wasserstein"
        )
    if tensor.shape[0] == 0:
        raise ValueError(f"{name} is empty; need at least one point")
    return check_finite(tensor, name)


# --------------------------------------------------------------------------------------------------
# exact optimal transport through POT


def _pairwise_cost(x: Tensor, y: Tensor, p: float) -> Tensor:
    """``C_ij = ||x_i - y_j||^p``, ``(n, m)``.

    The direct-difference mode of ``cdist`` is used, not ``||x||^2 + ||y||^2 - 2 x.y``: the latter
    loses all digits of small distances to cancellation, which ``sqrt`` (p = 1) then amplifies to
    ~1e-8 instead of 0 for equal points. The network simplex dominates the time anyway.
    """
    distance = torch.cdist(x, y, compute_mode="donot_use_mm_for_euclid_dist")
    if p == 1:
        return distance
    if p == 2:
        return distance.square()
    return distance.pow(p)


class _ExactSolution(NamedTuple):
    """What POT's network simplex returns, in float64 numpy on the CPU (beside the validated inputs)."""

    x: Tensor  # (n, d), validated, common dtype, on the input device
    y: Tensor  # (m, d)
    p: float
    plan: np.ndarray  # (n, m) optimal coupling P
    cost: Tensor  # float64 CPU scalar, sum_ij P_ij C_ij
    a: np.ndarray  # (n,) normalized weights
    b: np.ndarray  # (m,)
    cost_matrix: np.ndarray  # (n, m) C_ij = ||x_i - y_j||^p
    u: np.ndarray  # (n,) dual potentials
    v: np.ndarray  # (m,)


def _exact_plan(
    x: Any, y: Any, p: Any, x_weights: Any, y_weights: Any, max_iter: int | None
) -> _ExactSolution:
    """Validate, solve the exact OT problem with ``ot.emd`` in float64 on the CPU (see
    :class:`_ExactSolution` for what comes back)."""
    x, y = check_sample_pair(x, y)
    p = _check_p(p)
    n, m = x.shape[0], y.shape[0]
    # POT's solver works in float64 numpy; its torch backend only converts to numpy and back and
    # adds autograd bookkeeping, so calling it with numpy arrays is the cheapest route.
    x_cpu = x.detach().to(device="cpu", dtype=torch.float64)
    y_cpu = y.detach().to(device="cpu", dtype=torch.float64)
    a = check_weights(x_weights, n, "x_weights", x_cpu).numpy()
    b = check_weights(y_weights, m, "y_weights", y_cpu).numpy()
    cost = _pairwise_cost(x_cpu, y_cpu, p).numpy()
    if max_iter is None:
        # POT's default of 1e5 pivots stops short already at n = m = 5000 (measured: 1e6 is
        # needed there); the bound only costs time when the simplex really needs the pivots.
        max_iter = max(1_000_000, 10 * n * m)
    max_iter = check_count(max_iter, "max_iter")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plan, log = ot.emd(a, b, cost, numItermax=max_iter, log=True)
    code = int(log["result_code"])
    if code != 1:  # 1 is OPTIMAL in POT's network simplex (0 infeasible, 2 unbounded, 3 max iter)
        if code == 3:
            raise RuntimeError(
                f"the exact OT solver (POT's network simplex) stopped after max_iter={max_iter} "
                f"pivots before reaching the optimum for n={n}, m={m} points; the plan is not "
                "optimal. Pass a larger max_iter, or use sinkhorn_divergence / sliced_wasserstein"
            )
        raise RuntimeError(f"the exact OT solver (POT) failed with result code {code}: {log['warning']}")
    for warning in caught:  # anything else POT said is passed on, not swallowed
        if warning.message.args and str(warning.message) == log["warning"]:
            continue
        warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    cost_value = torch.tensor(float(log["cost"]), dtype=torch.float64)
    return _ExactSolution(x, y, p, plan, cost_value, a, b, cost, np.asarray(log["u"]), np.asarray(log["v"]))


def wasserstein(
    x: Any,
    y: Any,
    p: float = 2,
    x_weights: Any = None,
    y_weights: Any = None,
    *,
    max_iter: int | None = None,
) -> Tensor:
    r"""Exact Wasserstein distance ``W_p`` between two weighted point clouds.

    .. math::
        W_p(\mu, \nu) = \Big(\min_{P \in \Pi(a, b)} \sum_{ij} P_{ij} \|x_i - y_j\|^p\Big)^{1/p},
        \qquad \mu = \sum_i a_i \delta_{x_i},\ \nu = \sum_j b_j \delta_{y_j},

    where ``Pi(a, b)`` are the couplings with marginals ``a`` and ``b`` (PC19, eq. 2.15). The linear
    program is solved by POT's network simplex (``ot.emd``) in float64 on the CPU: O(n^2 m) time in
    practice and an ``(n, m)`` float64 plan in memory, so a few thousand points at most.

    Args:
        x: ``(n, d)`` samples. y: ``(m, d)`` samples.
        p: order, ``p >= 1``. Returns ``W_p``, not ``W_p^p``.
        x_weights, y_weights: ``(n,)``, ``(m,)`` non-negative weights (normalized here); ``None``
            for uniform.
        max_iter: pivots allowed to the simplex; ``None`` picks ``max(10^6, 10 n m)``. A
            ``RuntimeError`` is raised when the solver stops before the optimum.

    Returns:
        A scalar tensor, in the dtype and on the device of the inputs. If ``x`` or ``y`` requires
        grad, the result is differentiable: ``<P*, C(x, y)>^(1/p)`` with the optimal plan ``P*``
        held fixed, which is the gradient of ``W_p^p`` by the envelope theorem.

    >>> import torch
    >>> x = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
    >>> print(round(float(wasserstein(x, x + torch.tensor([3.0, 4.0]))), 6))
    5.0
    """
    x, y, p, plan, cost = _exact_plan(x, y, p, x_weights, y_weights, max_iter)[:5]
    if torch.is_grad_enabled() and (x.requires_grad or y.requires_grad):
        plan_t = torch.from_numpy(plan).to(device=x.device, dtype=x.dtype)
        return (plan_t * _pairwise_cost(x, y, p)).sum().clamp_min(0).pow(1.0 / p)
    return cost.clamp_min(0).pow(1.0 / p).to(device=x.device, dtype=x.dtype)


def transport_plan(
    x: Any,
    y: Any,
    p: float = 2,
    x_weights: Any = None,
    y_weights: Any = None,
    *,
    max_iter: int | None = None,
) -> Tensor:
    r"""Optimal coupling ``P`` ``(n, m)`` of the exact OT problem with cost ``||x - y||^p``.

    ``P = argmin_{P >= 0, P 1 = a, P^T 1 = b} sum_ij P_ij ||x_i - y_j||^p`` (PC19, eq. 2.11), from
    POT's network simplex (``ot.emd``); a vertex of the transport polytope, so it has at most
    ``n + m - 1`` non-zero entries. Rows sum to ``a`` and columns to ``b`` (the normalized weights).
    Arguments as in :func:`wasserstein`; the plan is returned in the inputs' dtype and device.

    >>> import torch
    >>> x = torch.tensor([[0.0], [1.0]]); y = torch.tensor([[1.1], [0.1]])
    >>> print(transport_plan(x, y).tolist())
    [[0.0, 0.5], [0.5, 0.0]]
    """
    solution = _exact_plan(x, y, p, x_weights, y_weights, max_iter)
    return torch.from_numpy(solution.plan).to(device=solution.x.device, dtype=solution.x.dtype)


@dataclass(frozen=True)
class KantorovichPotentials:
    """An optimal dual pair of the exact OT linear program (see :func:`kantorovich_potentials`).

    ``u`` ``(n,)`` and ``v`` ``(m,)`` are the potentials on the source and target points;
    ``primal`` is the optimal cost ``sum_ij P_ij C_ij = W_p^p`` of the primal plan, ``dual`` the
    dual objective ``a.u + b.v`` (equal to ``primal`` up to rounding: strong duality), and
    ``max_violation`` is ``max_ij (u_i + v_j - C_ij)``, <= 0 up to rounding for a feasible pair.
    All are tensors in the inputs' dtype and on their device.
    """

    u: Tensor
    v: Tensor
    primal: Tensor
    dual: Tensor
    max_violation: Tensor

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe fields."""
        return {"u": self.u.tolist(), "v": self.v.tolist(), "primal": float(self.primal),
                "dual": float(self.dual), "max_violation": float(self.max_violation)}


def kantorovich_potentials(
    x: Any,
    y: Any,
    p: float = 2,
    x_weights: Any = None,
    y_weights: Any = None,
    *,
    max_iter: int | None = None,
) -> KantorovichPotentials:
    r"""Optimal Kantorovich potentials ``(u, v)``: the dual solution of the exact OT linear program.

    For ``mu = sum_i a_i delta_{x_i}``, ``nu = sum_j b_j delta_{y_j}`` and ``C_ij = ||x_i - y_j||^p``,

    .. math::
        \min_{P \ge 0,\ P 1 = a,\ P^T 1 = b} \langle P, C\rangle
        \;=\; \max_{u_i + v_j \le C_{ij}} a^T u + b^T v

    (PC19, prop. 2.4 and eq. 2.20): the primal and the dual are both attained and equal, W_p^p.
    At optimality complementary slackness holds: ``P_ij > 0`` implies ``u_i + v_j = C_ij`` (the
    plan moves mass only along pairs where the constraint is tight). The potentials are those of
    the optimal basis of POT's network simplex (``ot.emd``, float64 on the CPU); they are unique
    only up to ``(u + c, v - c)`` and, for degenerate problems, beyond that. For ``p = 1`` a dual
    solution gives the 1-Lipschitz Kantorovich-Rubinstein potential ``f(z) = min_j (|z - y_j| - v_j)``
    with ``E_mu f - E_nu f = W1`` (Villani 2009, thm. 5.10).

    Args:
        x: ``(n, d)`` samples. y: ``(m, d)`` samples. p: order ``>= 1`` of the cost.
        x_weights, y_weights: ``(n,)``, ``(m,)`` non-negative weights (normalized here); ``None``
            for uniform.
        max_iter: pivots allowed to the simplex, as in :func:`wasserstein`.

    Returns:
        :class:`KantorovichPotentials` with ``u`` ``(n,)``, ``v`` ``(m,)``, the primal and dual
        values and the largest constraint violation, in the inputs' dtype and device.

    >>> import torch
    >>> x = torch.tensor([[0.0], [1.0]], dtype=torch.float64); y = x + 3.0
    >>> dual = kantorovich_potentials(x, y, p=1)
    >>> print(round(float(dual.dual), 9), round(float(dual.primal), 9), float(dual.max_violation) <= 1e-12)
    3.0 3.0 True
    """
    solution = _exact_plan(x, y, p, x_weights, y_weights, max_iter)
    u, v = solution.u, solution.v
    dual = float(solution.a @ u + solution.b @ v)
    violation = float((u[:, None] + v[None, :] - solution.cost_matrix).max())
    options = {"dtype": solution.x.dtype, "device": solution.x.device}
    return KantorovichPotentials(
        u=torch.from_numpy(u).to(**options),
        v=torch.from_numpy(v).to(**options),
        primal=solution.cost.to(**options),
        dual=torch.tensor(dual, **options),
        max_violation=torch.tensor(violation, **options),
    )


def barycentric_map(
    x: Any,
    y: Any,
    p: float = 2,
    x_weights: Any = None,
    y_weights: Any = None,
    *,
    max_iter: int | None = None,
) -> Tensor:
    r"""Barycentric projection of the optimal plan: ``T(x_i) = sum_j P_ij y_j / sum_j P_ij``.

    ``(n, d)``: the image of each source point, the conditional mean of the target under the
    optimal coupling ``P`` of :func:`transport_plan` (PC19, remark 2.19). For uniform weights and
    ``n = m`` the plan is a permutation matrix divided by ``n`` (Birkhoff), so ``T`` is the Monge
    map ``x_i -> y_sigma(i)``. A source point with zero weight carries no mass and has no image:
    its row is NaN. Differentiable with respect to ``y`` (the plan is held fixed).

    >>> import torch
    >>> x = torch.tensor([[0.0], [1.0]]); y = torch.tensor([[1.1], [0.1]])
    >>> print([round(v, 4) for v in barycentric_map(x, y).flatten().tolist()])
    [0.1, 1.1]
    """
    x, y, _, plan, _ = _exact_plan(x, y, p, x_weights, y_weights, max_iter)[:5]
    plan_t = torch.from_numpy(plan).to(device=x.device, dtype=x.dtype)
    return (plan_t @ y) / plan_t.sum(1, keepdim=True)


# --------------------------------------------------------------------------------------------------
# entropic optimal transport: the debiased Sinkhorn divergence


def _softmin(eps: float, source: Tensor, target: Tensor, log_weights: Tensor, p: float) -> Tensor:
    r"""``-eps log sum_j exp(h_j - ||s_i - t_j||^p / eps)`` for every source point ``i``, ``(n,)``.

    ``log_weights`` is ``h`` ``(m,)``. The cost is recomputed block by block from the points
    instead of being stored, so memory stays O(block) for any n, m (10^5 points would need 40 GB
    per stored float32 cost matrix). Without autograd a block is transformed in place; with it,
    out of place so that autograd can record it (then memory is O(n m)).
    """
    track = torch.is_grad_enabled() and (
        source.requires_grad or target.requires_grad or log_weights.requires_grad
    )
    m = target.shape[0]
    rows = max(1, _BLOCK_ELEMENTS // m)
    source_sq = source.square().sum(1)
    target_sq = target.square().sum(1)
    out = []
    if track:
        for start in range(0, source.shape[0], rows):
            block = source[start : start + rows]
            cost = (torch.addmm(target_sq.unsqueeze(0), block, target.T, alpha=-2.0)
                    + source_sq[start : start + rows, None]).clamp_min(0)
            if p != 2:
                # d^p = (d^2)^(p/2) with a zero-safe gradient at coincident points (the where keeps
                # the infinite derivative of the power at 0 out of the backward pass).
                cost = torch.where(cost > 0, cost.clamp_min(torch.finfo(cost.dtype).tiny).pow(p / 2), 0.0)
            out.append(-eps * torch.logsumexp(log_weights - cost / eps, dim=1))
        return torch.cat(out)
    # exp() of arguments far below the float range takes a slow path (measured 6x slower in
    # float32); terms below exp(floor) change the sum by at most m exp(floor) relative, i.e.
    # exp(-25) in float32 and exp(-45) in float64, far below the rounding of the sum itself.
    floor = -(math.log(m) + (25.0 if torch.finfo(source.dtype).bits <= 32 else 45.0))
    if p == 2:
        # h_j - |s_i - t_j|^2 / eps = -|s_i|^2 / eps + (h_j - |t_j|^2 / eps) + (2 / eps) s_i.t_j: the
        # row term leaves the log-sum-exp, and one addmm makes the whole exponent of a block.
        shifted = (log_weights - target_sq / eps).unsqueeze(0)
    for start in range(0, source.shape[0], rows):
        block = source[start : start + rows]
        if p == 2:
            exponent = torch.addmm(shifted, block, target.T, alpha=2.0 / eps)
        else:
            exponent = torch.addmm(target_sq.unsqueeze(0), block, target.T, alpha=-2.0)
            exponent.add_(source_sq[start : start + rows, None]).clamp_(min=0).pow_(p / 2)
            exponent.mul_(-1.0 / eps).add_(log_weights)
        # In-place log-sum-exp: max, subtract, exp, sum, without a second block buffer.
        top = exponent.amax(1, keepdim=True)
        exponent.sub_(top).clamp_(min=floor).exp_()
        lse = top.squeeze(1) + exponent.sum(1).log()
        out.append(source_sq[start : start + rows] - eps * lse if p == 2 else -eps * lse)
    return torch.cat(out)


def _marginal_error(weights: Tensor, potential: Tensor, update: Tensor, eps: float) -> float:
    """Total variation ``sum_i |r_i - a_i|`` between the marginal ``r`` of the plan defined by the
    current potentials and its target ``a``: ``r_i = a_i exp((f_i - softmin_i) / eps)``."""
    deviation = weights * torch.expm1((potential - update) / eps).abs()
    return float(torch.where(weights > 0, deviation, 0.0).sum())  # 0 * inf is not an error


def sinkhorn_divergence(
    x: Any,
    y: Any,
    eps: float,
    p: float = 2,
    x_weights: Any = None,
    y_weights: Any = None,
    n_iters: int = 2000,
    tol: float = 1e-2,
    *,
    scaling: float = 0.5,
) -> Tensor:
    r"""Debiased Sinkhorn divergence ``S_eps`` with cost ``||x - y||^p``, on the scale of ``W_p^p``.

    .. math::
        S_\varepsilon(\mu, \nu) = \mathrm{OT}_\varepsilon(\mu, \nu)
            - \tfrac12 \mathrm{OT}_\varepsilon(\mu, \mu) - \tfrac12 \mathrm{OT}_\varepsilon(\nu, \nu),
        \qquad
        \mathrm{OT}_\varepsilon(\mu, \nu) = \min_{P \in \Pi(a, b)} \langle P, C \rangle
            + \varepsilon\, \mathrm{KL}(P \,\|\, a \otimes b),

    with ``C_ij = ||x_i - y_j||^p`` (no ``1/p`` factor) and the entropic term included in
    ``OT_eps`` (Genevay et al., AISTATS 2018; Feydy et al., AISTATS 2019, eq. 4). Then
    ``S_eps >= 0``, ``S_eps = 0`` iff the measures are equal, and ``S_eps -> W_p^p`` as
    ``eps -> 0``: for discrete measures ``|S_eps - W_p^p| <= eps log min(n, m)``, because the KL
    term of a coupling lies in ``[0, log min(n, m)]``. Note: it approaches ``W_p^p``, not ``W_p``.
    GeomLoss' ``SamplesLoss("sinkhorn", p=2, blur=s)`` uses the cost ``||x - y||^2 / 2`` and
    ``eps = s^2``: it equals ``S_eps / 2`` here with ``eps = 2 s^2``.

    Algorithm: log-domain Sinkhorn on the dual potentials, written here in torch because POT's
    ``sinkhorn_log`` stores the ``(n, m)`` kernels and has no annealing, and GeomLoss needs KeOps
    to avoid storing them. As in GeomLoss (Feydy 2019, sec. 3.3): eps-scaling from ``diameter^p``
    down to ``eps`` by factors ``scaling``, one iteration per level, alternating updates for the
    ``(mu, nu)`` potentials and averaged symmetric updates for the two self terms. At the target
    ``eps`` the ``(mu, nu)`` updates are over-relaxed, ``f <- f + omega (softmin(g) - f)``, with
    ``omega`` re-estimated every 10 iterations from the measured rate of convergence (Young's
    optimal SOR factor; Thibault et al., Algorithms 2021; Lehmann et al., Optim. Lett. 2022), which
    cuts the iterations several-fold at small eps. The iterations stop when the plans' marginals
    are within total variation ``tol`` of ``a`` and ``b``, or after ``n_iters`` with a
    ``RuntimeWarning``. Measured error relative to the converged value (n = 60 to 10^4): at most
    about ``5e-4`` at the default ``tol = 1e-2``, ``1e-5`` at ``tol = 1e-3`` (about 1.5 times as
    many iterations); GeomLoss' default schedule stops after the annealing and was 2% off at
    n = 10^4, eps = 0.005. Sinkhorn slows down like ``exp(-gap / eps)`` when the measures form
    clusters separated by a cost ``gap``; there the marginal error decays slowly while the value
    is already accurate, and ``n_iters`` may be reached before ``tol``. Each
    ``OT_eps`` is evaluated as its dual objective at the final potentials (a lower bound with an
    error second order in theirs), so for nearly equal measures the result can be slightly
    negative, by about that error. The cost is tracked by autograd in that last evaluation only,
    which gives the envelope-theorem gradient.
    Each iteration costs ``O((n + m)^2 d)`` time and ``O(n + m)`` memory (``O(n m)`` when a
    gradient is taken).

    Args:
        x: ``(n, d)``. y: ``(m, d)``. eps: entropic regularization ``> 0``, in units of the cost.
        p: cost exponent ``>= 1``. x_weights, y_weights: as in :func:`wasserstein`.
        n_iters: maximum iterations at the target ``eps`` after the annealing.
        tol: stopping tolerance, total variation of the marginal error of the plans.
        scaling: ratio in ``(0, 1)`` between successive eps of the annealing (GeomLoss'
            ``scaling=s`` is a ratio of blur = eps^(1/p), i.e. ``s^p`` here). Measured at
            n = 10^4: 0.5 needs a third of the iterations of 0.25 in total.

    Returns:
        A scalar tensor in the inputs' dtype and device.

    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> x = torch.randn(200, 2, generator=g, dtype=torch.float64)
    >>> print(round(float(sinkhorn_divergence(x, x + 1.0, eps=0.01)), 2))  # W2^2 = |shift|^2 = 2
    2.0
    """
    x, y = check_sample_pair(x, y)
    eps = check_positive(eps, "eps")
    p = _check_p(p)
    n_iters = check_count(n_iters, "n_iters")
    tol = check_positive(tol, "tol")
    scaling = check_positive(scaling, "scaling")
    if scaling >= 1:
        raise ValueError(f"scaling must lie in (0, 1) (the eps ratio of the annealing), got {scaling!r}")
    n, m = x.shape[0], y.shape[0]
    a = check_weights(x_weights, n, "x_weights", x)
    b = check_weights(y_weights, m, "y_weights", y)
    log_a, log_b = a.log(), b.log()  # -inf for zero weights: such points drop out of the sums

    # The cost is translation invariant; centring first keeps ||x||^2 + ||y||^2 - 2 x.y accurate.
    with torch.no_grad():
        both = torch.cat([x, y])
        center = both.mean(0)
        diameter = float((both.amax(0) - both.amin(0)).norm())
    xc, yc = x - center, y - center
    schedule = []
    level = diameter**p
    while level > eps:
        schedule.append(level)
        level *= scaling
    schedule.append(eps)

    with torch.no_grad():
        xd, yd = xc.detach(), yc.detach()
        e = schedule[0]
        f_ab = _softmin(e, xd, yd, log_b, p)
        g_ab = _softmin(e, yd, xd, log_a + f_ab / e, p)
        f_aa = _softmin(e, xd, xd, log_a, p)
        g_bb = _softmin(e, yd, yd, log_b, p)
        for e in schedule[1:-1]:
            f_ab = _softmin(e, xd, yd, log_b + g_ab / e, p)
            g_ab = _softmin(e, yd, xd, log_a + f_ab / e, p)
            f_aa = 0.5 * (f_aa + _softmin(e, xd, xd, log_a + f_aa / e, p))
            g_bb = 0.5 * (g_bb + _softmin(e, yd, yd, log_b + g_bb / e, p))
        omega, window, errors, last_estimate = 1.0, 10, [], 0
        self_error = math.inf
        for iteration in range(n_iters):
            f_new = _softmin(eps, xd, yd, log_b + g_ab / eps, p)
            row_error = _marginal_error(a, f_ab, f_new, eps)
            f_ab = f_ab + omega * (f_new - f_ab)
            g_new = _softmin(eps, yd, xd, log_a + f_ab / eps, p)
            column_error = _marginal_error(b, g_ab, g_new, eps)
            g_ab = g_ab + omega * (g_new - g_ab)
            if self_error >= tol:  # the self terms converge in a few steps; then they are frozen
                f_fix = _softmin(eps, xd, xd, log_a + f_aa / eps, p)
                g_fix = _softmin(eps, yd, yd, log_b + g_bb / eps, p)
                self_error = max(_marginal_error(a, f_aa, f_fix, eps), _marginal_error(b, g_bb, g_fix, eps))
                f_aa, g_bb = 0.5 * (f_aa + f_fix), 0.5 * (g_bb + g_fix)
            error = max(row_error, column_error)
            errors.append(error)
            if max(error, self_error) < tol:
                break
            if iteration - last_estimate == window:
                omega = _overrelaxation(errors, window, omega)
                last_estimate = iteration
        else:
            warnings.warn(
                f"sinkhorn_divergence did not converge in n_iters={n_iters} iterations at eps={eps:g}: "
                f"marginal error {max(error, self_error):.3g} > tol={tol:g}. Raise n_iters or eps, or "
                "loosen tol",
                RuntimeWarning,
                stacklevel=2,
            )
    # Each OT_eps is evaluated as its dual objective at the final potentials, with the cost tracked
    # by autograd: D(f, g) = <a, f> + <b, g> - eps (<a (x) b, exp((f + g - C) / eps)> - 1), where the
    # double sum is <a, exp((f - softmin(g)) / eps)>. D is a lower bound whose error is second order
    # in the potentials' error (the plain <a, f> + <b, g> would be first order), and its gradient
    # in x, y at fixed potentials is the envelope-theorem gradient of OT_eps.
    pair = _dual_value(eps, a, f_ab, xc, b, g_ab, yc, p)
    self_x = _dual_value(eps, a, f_aa, xc, a, f_aa, xc, p)
    self_y = _dual_value(eps, b, g_bb, yc, b, g_bb, yc, p)
    return pair - 0.5 * (self_x + self_y)


def _overrelaxation(errors: list[float], window: int, omega: float) -> float:
    """Next over-relaxation factor, from the error decay over the last ``window // 2`` iterations.

    Alternating Sinkhorn is a nonlinear block Gauss-Seidel iteration with a linear rate kappa near
    the solution; Young's SOR theory for such two-block (2-cyclic) iterations links the rate
    ``lam`` of ``omega``-relaxation to kappa by ``(lam + omega - 1)^2 = lam omega^2 kappa`` and
    gives the optimum ``omega* = 2 / (1 + sqrt(1 - kappa))``. The rate is measured, kappa solved
    for, omega moved to omega* (capped at 1.95). When ``lam <= omega - 1`` omega is already past
    omega* (complex eigenvalues, rate omega - 1) and is kept. Over-relaxation is only locally
    convergent: when the error grew over the half window, omega restarts at 1. (Variants that
    restart less eagerly needed up to 2.5 times more iterations on Gaussian samples, n = 300 and
    1500, eps = 0.05 and 0.005.)
    """
    start, end = errors[-1 - window // 2], errors[-1]
    if not (start > 0 and end > 0):
        return omega
    if end > start:
        return 1.0
    rate = min((end / start) ** (2.0 / window), 0.9999)
    if omega == 1.0:
        kappa = rate
    elif rate > omega - 1 + 1e-3:
        kappa = (rate + omega - 1) ** 2 / (rate * omega**2)
    else:
        return omega
    return min(1.95, 2.0 / (1.0 + math.sqrt(1.0 - min(kappa, 0.9999))))


def _dual_value(
    eps: float, a: Tensor, f: Tensor, x: Tensor, b: Tensor, g: Tensor, y: Tensor, p: float
) -> Tensor:
    """The entropic OT dual objective ``D(f, g)`` (Peyre-Cuturi eq. 4.30 with the KL to ``a (x) b``)."""
    log_b = b.log()
    if not bool((a > 0).all()):
        # Zero-weight rows carry no mass; dropping them keeps 0 * exp(overflow) out of the sum.
        keep = a > 0
        a, f, x = a[keep], f[keep], x[keep]
    mass = (a * torch.exp((f - _softmin(eps, x, y, log_b + g / eps, p)) / eps)).sum()
    return (a * f).sum() + (b * g).sum() - eps * (mass - 1)


# --------------------------------------------------------------------------------------------------
# one dimension: quantile functions


def _uniform_merge(n: int, m: int, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """Merged breakpoints of the quantile functions of two uniform empirical measures, exactly.

    On ``(0, 1)`` the breakpoints are ``i/n`` and ``j/m``; in units of ``1/(n m)`` they are the
    integers ``i m`` and ``j n``, merged without rounding. On the interval ending at ``u``,
    ``F^-1 = x_(ceil(u/m))`` and ``G^-1 = y_(ceil(u/n))``. Returns the 0-based order indices
    ``(n + m,)`` into sorted x and sorted y and the integer interval lengths.
    """
    ends = torch.cat(
        [torch.arange(1, n + 1, device=device) * m, torch.arange(1, m + 1, device=device) * n]
    ).sort().values
    lengths = torch.diff(ends, prepend=ends.new_zeros(1))
    return (ends + m - 1) // m - 1, (ends + n - 1) // n - 1, lengths


def _wasserstein_1d_pow(
    x: Tensor, y: Tensor, p: float, a: Tensor | None = None, b: Tensor | None = None
) -> Tensor:
    r"""``W_p^p`` between 1-D empirical measures, batched: ``x`` ``(L, n)``, ``y`` ``(L, m)`` -> ``(L,)``.

    ``W_p^p = int_0^1 |F^-1(u) - G^-1(u)|^p du`` (PC19, remark 2.30), computed exactly: both
    quantile functions are step functions, constant between the merged breakpoints (the cumulative
    weights of the two sorted samples), so the integral is a finite sum. ``a`` ``(n,)``, ``b``
    ``(m,)`` are normalized weights; ``None`` means uniform, which needs no per-row merge.
    """
    n, m = x.shape[-1], y.shape[-1]
    if a is None and b is None:
        xs, ys = x.sort(dim=-1).values, y.sort(dim=-1).values
        if n == m:
            return (xs - ys).abs().pow(p).mean(-1)
        ix, iy, lengths = _uniform_merge(n, m, x.device)
        gaps = (xs.index_select(-1, ix) - ys.index_select(-1, iy)).abs().pow(p)
        return gaps @ lengths.to(x.dtype) / (n * m)
    a = torch.full((n,), 1.0 / n, dtype=x.dtype, device=x.device) if a is None else a
    b = torch.full((m,), 1.0 / m, dtype=y.dtype, device=y.device) if b is None else b
    xs, x_order = x.sort(dim=-1)
    ys, y_order = y.sort(dim=-1)
    # Cumulative weights in sorted order, divided by their own total so the last is exactly 1.
    x_cdf = a[x_order].cumsum(-1)
    x_cdf = x_cdf / x_cdf[..., -1:]
    y_cdf = b[y_order].cumsum(-1)
    y_cdf = y_cdf / y_cdf[..., -1:]
    ends = torch.cat([x_cdf, y_cdf], dim=-1).sort(dim=-1).values
    lengths = torch.diff(ends, dim=-1, prepend=torch.zeros_like(ends[..., :1]))
    # On (u_prev, u], F^-1 is the first sorted point whose cumulative weight reaches u.
    ix = torch.searchsorted(x_cdf, ends).clamp_max(n - 1)
    iy = torch.searchsorted(y_cdf, ends).clamp_max(m - 1)
    gaps = (xs.gather(-1, ix) - ys.gather(-1, iy)).abs().pow(p)
    return (gaps * lengths).sum(-1)


def wasserstein_1d(
    x: Any, y: Any, p: float = 2, x_weights: Any = None, y_weights: Any = None
) -> Tensor:
    r"""Exact ``W_p`` between two weighted empirical measures on the line, by sorting.

    .. math::
        W_p(\mu, \nu) = \Big(\int_0^1 |F^{-1}(u) - G^{-1}(u)|^p\,du\Big)^{1/p}

    with ``F``, ``G`` the cumulative distribution functions (PC19, remark 2.30). The quantile
    functions are step functions; the integral is summed exactly over the merged breakpoints of the
    two (cumulative-weight) grids, so ``n != m`` and unequal weights are exact, in
    ``O((n + m) log(n + m))``.

    Args:
        x: ``(n,)`` or ``(n, 1)``. y: ``(m,)`` or ``(m, 1)``. p: order ``>= 1``.
        x_weights, y_weights: ``(n,)``, ``(m,)`` non-negative weights, ``None`` for uniform.

    Returns:
        ``W_p`` (not ``W_p^p``) as a scalar tensor in the inputs' dtype and device.

    >>> import torch
    >>> print(round(float(wasserstein_1d(torch.tensor([0.0, 1.0]), torch.tensor([2.0]), p=1)), 6))
    1.5
    """
    x = _check_1d_samples(x, "x")
    y = _check_1d_samples(y, "y")
    if x.device != y.device:
        raise ValueError(f"x is on {x.device} and y on {y.device}; move both to one device")
    dtype = torch.promote_types(x.dtype, y.dtype)
    x, y = x.to(dtype), y.to(dtype)
    p = _check_p(p)
    a = None if x_weights is None else check_weights(x_weights, x.shape[0], "x_weights", x)
    b = None if y_weights is None else check_weights(y_weights, y.shape[0], "y_weights", y)
    return _wasserstein_1d_pow(x[None], y[None], p, a, b)[0].pow(1.0 / p)


def sliced_wasserstein(
    x: Any,
    y: Any,
    p: float = 2,
    n_projections: int = 200,
    directions: str = "random",
    generator: torch.Generator | None = None,
    *,
    x_weights: Any = None,
    y_weights: Any = None,
) -> Tensor:
    r"""Sliced Wasserstein distance, a Monte Carlo (or quasi-Monte Carlo) average over directions.

    .. math::
        SW_p(\mu, \nu) = \Big(\mathbb{E}_{\theta \sim \mathrm{U}(S^{d-1})}\,
            W_p^p(\theta_\#\mu, \theta_\#\nu)\Big)^{1/p}
        \approx \Big(\frac1L \sum_{l=1}^L W_p^p(\theta_l \cdot x, \theta_l \cdot y)\Big)^{1/p}

    (Rabin et al. 2011; Bonneel et al. 2015). Each 1-D ``W_p^p`` is exact (see
    :func:`wasserstein_1d`), also for ``n != m`` and weights. ``directions="random"``: ``theta`` is a
    normalized standard Gaussian vector. ``directions="quasi"``: a scrambled Sobol sequence in
    ``[0, 1)^d`` (``torch.quasirandom.SobolEngine``, seeded from ``generator``) mapped to Gaussians
    by the inverse normal CDF, then normalized; it integrates the smooth function of ``theta`` with
    a smaller error than random directions (best with ``n_projections`` a power of 2; ``d <= 21201``).
    Projections are processed in chunks so memory stays near 2^24 numbers whatever ``n`` and ``L``.
    ``SW_p^p`` is an unbiased estimate over directions; ``SW_p`` itself is biased low by Jensen.

    Args:
        x: ``(n, d)``. y: ``(m, d)``. p: order ``>= 1``. n_projections: ``L >= 1``.
        directions: ``"random"`` or ``"quasi"``. generator: source of the directions.
        x_weights, y_weights: ``(n,)``, ``(m,)`` non-negative weights, ``None`` for uniform.

    Returns:
        ``SW_p`` as a scalar tensor in the inputs' dtype and device.

    >>> import torch
    >>> x = torch.zeros(3, 2)
    >>> print(round(float(sliced_wasserstein(x, x + 1.0, generator=torch.Generator().manual_seed(0))), 1))
    1.0
    """
    x, y = check_sample_pair(x, y)
    p = _check_p(p)
    n_projections = check_count(n_projections, "n_projections")
    if directions not in _DIRECTIONS:
        raise ValueError(f"directions must be one of {_DIRECTIONS}, got {directions!r}")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    (n, d), m = x.shape, y.shape[0]
    a = None if x_weights is None else check_weights(x_weights, n, "x_weights", x)
    b = None if y_weights is None else check_weights(y_weights, m, "y_weights", y)
    theta = _directions(directions, n_projections, d, generator, x.dtype, x.device)
    chunk = max(1, _PROJECTION_ELEMENTS // (n + m))
    total = torch.zeros((), dtype=x.dtype, device=x.device)
    for start in range(0, n_projections, chunk):
        block = theta[start : start + chunk]
        total = total + _wasserstein_1d_pow(block @ x.T, block @ y.T, p, a, b).sum()
    return (total / n_projections).pow(1.0 / p)


def _directions(
    kind: str, count: int, dim: int, generator: torch.Generator | None, dtype: torch.dtype, device
) -> Tensor:
    """``(count, dim)`` unit vectors, uniform on the sphere (random) or a Sobol-based net (quasi)."""
    source = generator.device if generator is not None else device
    if kind == "random":
        gaussian = torch.randn(count, dim, generator=generator, dtype=dtype, device=source)
    else:
        if dim > torch.quasirandom.SobolEngine.MAXDIM:
            raise ValueError(
                f"directions='quasi' supports d <= {torch.quasirandom.SobolEngine.MAXDIM} "
                f"(torch's Sobol tables), got d = {dim}; use directions='random'"
            )
        seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=source))
        points = torch.quasirandom.SobolEngine(dim, scramble=True, seed=seed).draw(count, dtype=torch.float64)
        # Scrambled points are never exactly 0, but keep ndtri finite whatever the engine returns.
        tiny = torch.finfo(torch.float64).eps
        gaussian = torch.special.ndtri(points.clamp(tiny, 1 - tiny)).to(dtype)
    gaussian = gaussian.to(device)
    return gaussian / gaussian.norm(dim=1, keepdim=True)


def _integral_abs_power_linear(d0: Tensor, d1: Tensor, length: Tensor, p: float) -> Tensor:
    r"""``int_0^h |d0 + (d1 - d0) t / h|^p dt`` exactly, without cancellation.

    Opposite signs: the zero splits the interval into two pieces of ``|c t|^p``:
    ``h (|d0|^(p+1) + |d1|^(p+1)) / ((p + 1)(|d0| + |d1|))``. Same sign, with ``M = max``,
    ``delta = 1 - min/max``: ``h M^p (1 - (1 - delta)^(p+1)) / ((p + 1) delta)``, evaluated by
    ``expm1``/``log1p`` so that ``delta -> 0`` (limit ``h M^p``) keeps full precision.
    """
    a0, a1 = d0.abs(), d1.abs()
    big = torch.maximum(a0, a1)
    small = torch.minimum(a0, a1)
    safe_big = torch.where(big > 0, big, torch.ones_like(big))
    delta = (big - small) / safe_big
    safe_delta = torch.where(delta > 0, delta, torch.ones_like(delta))
    ratio = -torch.expm1((p + 1) * torch.log1p(-safe_delta)) / ((p + 1) * safe_delta)
    same_sign = length * big.pow(p) * torch.where(delta > 0, ratio, torch.ones_like(ratio))
    total = a0 + a1
    safe_total = torch.where(total > 0, total, torch.ones_like(total))
    opposite = length * (a0.pow(p + 1) + a1.pow(p + 1)) / ((p + 1) * safe_total)
    return torch.where(d0 * d1 < 0, opposite, same_sign)


def wasserstein_1d_grid(grid: Any, p_density: Any, q_density: Any, p: float = 2) -> Tensor:
    r"""``W_p`` between two densities given by their values on a common increasing 1-D grid.

    Grid convention (the one of ``mf.pde.FokkerPlanck1D``): ``grid`` holds cell centres; cell ``k``
    runs between the midpoints to its neighbours, the two end cells extending half a spacing
    beyond the end points (for a uniform grid of ``n`` cells on ``[lo, hi]``, exactly those
    cells). Each density is taken piecewise constant, equal to its value on its cell, and is
    normalized internally by its total mass ``sum_k density_k * width_k``. Then the CDFs are
    piecewise linear, the quantile functions are piecewise linear between the merged breakpoints
    (the CDF values at the cell edges), and

    .. math:: W_p^p = \int_0^1 |F^{-1}(u) - G^{-1}(u)|^p\,du

    is integrated exactly on each merged interval (no u-grid): the result is the exact ``W_p``
    between the two piecewise-constant densities, which differs from that of smooth densities
    by ``O(h^2)`` for grid spacing ``h`` (the midpoint rule's error in the cell masses).

    Args:
        grid: ``(n,)`` strictly increasing cell centres, ``n >= 2``.
        p_density, q_density: ``(..., n)`` non-negative values at the centres, same shape; leading
            dimensions are a batch (e.g. ``(T, n)`` densities of a PDE solution at T times).
        p: order ``>= 1``.

    Returns:
        ``W_p`` with the leading shape ``(...)`` (a scalar for ``(n,)`` densities).

    >>> import torch
    >>> grid = torch.linspace(0.05, 9.95, 100, dtype=torch.float64)  # 100 cells on [0, 10]
    >>> uniform = ((grid > 0) & (grid < 1)).double()       # U[0, 1]
    >>> print(round(float(wasserstein_1d_grid(grid, uniform, uniform.roll(30))), 6))  # shift by 3
    3.0
    """
    p = _check_p(p)
    grid = check_finite(as_tensor(grid, "grid"), "grid")
    if grid.ndim != 1 or grid.shape[0] < 2:
        raise ValueError(f"grid must have shape (n,) with n >= 2 cell centres, got shape {tuple(grid.shape)}")
    step = torch.diff(grid)
    if bool((step <= 0).any()):
        k = int(torch.nonzero(step <= 0)[0])
        raise ValueError(
            f"grid must be strictly increasing, got grid[{k}] = {float(grid[k]):g} >= "
            f"grid[{k + 1}] = {float(grid[k + 1]):g}"
        )
    f, g = check_density_pair(p_density, q_density, names=("p_density", "q_density"))
    n = grid.shape[0]
    if f.ndim == 0 or f.shape[-1] != n:
        raise ValueError(
            f"p_density and q_density must have shape (..., {n}), one value per grid point, got "
            f"{tuple(f.shape)}"
        )
    if grid.device != f.device:
        raise ValueError(f"grid is on {grid.device} and the densities on {f.device}; use one device")
    dtype = torch.promote_types(grid.dtype, f.dtype)
    grid, f, g = grid.to(dtype), f.to(dtype), g.to(dtype)
    batch = f.shape[:-1]
    f, g = f.reshape(-1, n), g.reshape(-1, n)

    middle = 0.5 * (grid[1:] + grid[:-1])
    edges = torch.cat([grid[:1] - 0.5 * step[:1], middle, grid[-1:] + 0.5 * step[-1:]])
    widths = torch.diff(edges)

    def cdf(density: Tensor, name: str) -> tuple[Tensor, Tensor]:
        cumulative = (density * widths).cumsum(-1)
        mass = cumulative[:, -1:]
        if bool((mass <= 0).any()):
            raise ValueError(f"{name} has zero total mass on the grid; a density needs positive mass")
        cumulative = cumulative / mass  # last entry exactly 1
        return cumulative, torch.diff(cumulative, dim=-1, prepend=torch.zeros_like(mass))

    f_cdf, f_mass = cdf(f, "p_density")
    g_cdf, g_mass = cdf(g, "q_density")
    ends = torch.cat([f_cdf, g_cdf], dim=-1).sort(dim=-1).values
    starts = torch.cat([torch.zeros_like(ends[:, :1]), ends[:, :-1]], dim=-1)

    def quantile(cumulative: Tensor, mass: Tensor) -> tuple[Tensor, Tensor]:
        # The cell holding (start, end]: the first whose right CDF value reaches the end. Its
        # mass is > 0 whenever end > start; zero-length intervals get a safe denominator.
        cell = torch.searchsorted(cumulative, ends).clamp_max(n - 1)
        cell_mass = mass.gather(-1, cell)
        left = cumulative.gather(-1, cell) - cell_mass
        slope = widths[cell] / torch.where(cell_mass > 0, cell_mass, torch.ones_like(cell_mass))
        return edges[cell] + (starts - left) * slope, edges[cell] + (ends - left) * slope

    f_start, f_end = quantile(f_cdf, f_mass)
    g_start, g_end = quantile(g_cdf, g_mass)
    power = _integral_abs_power_linear(f_start - g_start, f_end - g_end, ends - starts, p).sum(-1)
    return power.clamp_min(0).pow(1.0 / p).reshape(batch)


def _standard_normal_density(z: Tensor) -> Tensor:
    return torch.exp(-0.5 * z.square()) / math.sqrt(2 * math.pi)


def wasserstein_1d_to_normal(x: Any, mean: float = 0.0, std: float = 1.0, p: float = 2) -> Tensor:
    r"""Exact ``W_p`` (``p`` = 1 or 2) between the empirical measure of ``x`` and ``N(mean, std^2)``.

    On the line the optimal coupling is monotone (PC19, remark 2.30), so with ``x_(1) <= ... <=
    x_(n)`` sorted, ``c_i = x_(i) - mean``, ``Q`` the standard normal quantile and ``u_i = i / n``,

    .. math::
        W_p^p = \sum_{i=1}^n \int_{u_{i-1}}^{u_i} |c_i - s\,Q(u)|^p \,du .

    With ``z = Q(u)`` and ``phi`` the standard normal density, ``int Q du = -phi(z)`` and
    ``int Q^2 du = u - z phi(z)`` (the terms at ``u = 0, 1`` vanish), so both orders are sums of
    closed forms, with no quadrature and no Monte Carlo error:

    .. math::
        W_2^2 = \sum_i \Big[\frac{c_i^2}{n} - 2 c_i s\,(\phi(z_{i-1}) - \phi(z_i))
            + s^2 \Big(\frac1n + z_{i-1}\phi(z_{i-1}) - z_i\phi(z_i)\Big)\Big],

    and for ``W_1`` each cell is split at ``w_i = clamp(Phi(c_i / s), u_{i-1}, u_i)``, where the sign
    of ``c_i - s Q(u)`` changes:
    ``W_1 = sum_i c_i (2 w_i - u_{i-1} - u_i) + s (2 phi(Q(w_i)) - phi(z_{i-1}) - phi(z_i))``.

    Args:
        x: ``(n,)`` or ``(n, 1)`` samples. mean, std: the normal's mean and standard deviation
            (``std > 0``). p: 1 or 2 (other orders have no such closed form).

    Returns:
        ``W_p`` (not ``W_p^p``) as a 0-d tensor in ``x``'s dtype and on its device, computed in
        float64 (``O(n log n)`` for the sort).

    >>> import torch
    >>> print(round(float(wasserstein_1d_to_normal(torch.zeros(1))), 6))  # sqrt(E Z^2)
    1.0
    >>> print(round(float(wasserstein_1d_to_normal(torch.zeros(1), p=1)), 6))  # E|Z| = sqrt(2 / pi)
    0.797885
    """
    sample = _check_1d_samples(x, "x")
    if isinstance(mean, bool) or not isinstance(mean, (numbers.Real, np.floating, np.integer)) \
            or not math.isfinite(float(mean)):
        raise ValueError(f"mean must be a finite real number, got {mean!r}")
    scale = check_positive(std, "std")
    order = _check_p(p)
    if order not in (1.0, 2.0):
        raise ValueError(f"p must be 1 or 2 (the orders with a closed form here), got {p!r}")
    values = torch.sort(sample.to(torch.float64) - float(mean)).values
    n = values.shape[0]
    edges = torch.arange(n + 1, dtype=torch.float64, device=values.device) / n
    z = torch.special.ndtri(edges)  # -inf, ..., +inf
    density = _standard_normal_density(z)  # 0 at the infinite ends
    lower, upper = slice(0, n), slice(1, n + 1)
    if order == 2.0:
        z_density = torch.where(torch.isfinite(z), z * density, torch.zeros_like(z))
        power = (values.square() / n - 2 * values * scale * (density[lower] - density[upper])
                 + scale**2 * (1.0 / n + z_density[lower] - z_density[upper])).sum()
        distance = power.clamp_min(0).sqrt()
    else:
        split = torch.maximum(torch.minimum(torch.special.ndtr(values / scale), edges[upper]), edges[lower])
        split_density = _standard_normal_density(torch.special.ndtri(split))
        distance = (values * (2 * split - edges[lower] - edges[upper])
                    + scale * (2 * split_density - density[lower] - density[upper])).sum().clamp_min(0)
    return distance.to(sample.dtype if sample.is_floating_point() else torch.float64)


# --------------------------------------------------------------------------------------------------
# Gaussian measures


def _power_from_eigh(values: Tensor, vectors: Tensor, power: float) -> Tensor:
    """V diag(lambda^power) V^T from ``eigh``'s ``(values, vectors)``; for ``power > 0`` eigenvalues
    below 0 (rounding of a PSD matrix) are taken as 0."""
    if power > 0:
        values = values.clamp_min(0)
    return (vectors * values.pow(power).unsqueeze(-2)) @ vectors.transpose(-1, -2)


def _symmetric_matrix_power(matrix: Tensor, power: float) -> Tensor:
    """S^power for an already validated symmetric matrix ``(..., d, d)``."""
    return _power_from_eigh(*torch.linalg.eigh(matrix), power)


def symmetric_matrix_power(matrix: Any, power: float) -> Tensor:
    r"""The power ``S^power`` of a symmetric positive semi-definite matrix, by its eigendecomposition.

    .. math::
        S = V \operatorname{diag}(\lambda) V^T \implies S^r = V \operatorname{diag}(\lambda^r) V^T,

    the unique symmetric PSD matrix with that spectrum (``r = 1/2``: the principal square root,
    ``r = -1/2``: its inverse). ``matrix`` is ``(..., d, d)``, batched over leading dimensions,
    and must be symmetric to a relative ``sqrt(machine eps)`` (it is symmetrized) and positive
    semi-definite up to the same tolerance; eigenvalues that rounding pushed slightly below 0 are
    taken as 0. A negative ``power`` needs a positive definite matrix: every eigenvalue above
    ``sqrt(eps)`` times the largest (else the power would be infinite or dominated by rounding).
    Returns a tensor of the input's shape, dtype and device.

    >>> import torch
    >>> print(symmetric_matrix_power(torch.tensor([[4.0, 0.0], [0.0, 9.0]]), 0.5).tolist())
    [[2.0, 0.0], [0.0, 3.0]]
    >>> s = torch.tensor([[2.0, 1.0], [1.0, 2.0]], dtype=torch.float64)
    >>> root = symmetric_matrix_power(s, 0.5)
    >>> bool(torch.allclose(root @ root, s)), bool(torch.allclose(symmetric_matrix_power(s, -1.0) @ s,
    ...                                                            torch.eye(2, dtype=torch.float64)))
    (True, True)
    """
    if isinstance(power, bool) or not isinstance(power, (numbers.Real, np.floating, np.integer)) \
            or not math.isfinite(float(power)):
        raise TypeError(f"power must be a finite real number, got {power!r}")
    power = float(power)
    matrix = check_finite(as_tensor(matrix, "matrix"), "matrix")
    if matrix.ndim < 2 or matrix.shape[-1] != matrix.shape[-2] or matrix.shape[-1] == 0:
        raise ValueError(f"matrix must have shape (..., d, d) with d >= 1, got {tuple(matrix.shape)}")
    if not matrix.is_floating_point():
        matrix = matrix.to(torch.get_default_dtype())
    # The diagonal stands in for a mean of the right dimension: only the covariance is checked.
    _, matrix = check_gaussian(torch.diagonal(matrix, dim1=-2, dim2=-1), matrix, ("diagonal", "matrix"))
    if power < 0:
        values = torch.linalg.eigvalsh(matrix)
        floor = math.sqrt(torch.finfo(matrix.dtype).eps) * values.abs().amax(-1, keepdim=True)
        if bool((values <= floor).any()):
            raise ValueError(
                f"matrix must be positive definite for the negative power {power:g}; its smallest "
                f"eigenvalue is {float(values.amin()):.3g} against a largest of {float(values.amax()):.3g}"
            )
    return _symmetric_matrix_power(matrix, power)


def gaussian_w2(m1: Any, S1: Any, m2: Any, S2: Any) -> Tensor:  # noqa: N803 (math names)
    r"""``W_2`` between ``N(m1, S1)`` and ``N(m2, S2)`` with full covariances (closed form).

    .. math::
        W_2^2 = \|m_1 - m_2\|^2 + \operatorname{tr}\big(S_1 + S_2
            - 2 (S_1^{1/2} S_2 S_1^{1/2})^{1/2}\big)

    (Dowson & Landau 1982; Givens & Shortt 1984; PC19, remark 2.31). Square roots of the symmetric
    PSD matrices by ``eigh``. Means ``(..., d)``, covariances ``(..., d, d)``, broadcast over leading
    dimensions; returns ``W_2`` (not squared) with the broadcast leading shape. Covariances must be
    symmetric positive semi-definite (checked, with a relative tolerance ``sqrt(machine eps)``).
    For nearly equal Gaussians the trace cancels: the absolute error of ``W_2^2`` is about
    ``eps * tr(S1 + S2)``, so ``W_2`` has an error floor near ``sqrt(eps tr)``.

    >>> import torch
    >>> print(round(float(gaussian_w2(torch.zeros(2), torch.eye(2), torch.ones(2), 4 * torch.eye(2))), 6))
    2.0
    """
    m1, S1 = check_gaussian(m1, S1, ("m1", "S1"))
    m2, S2 = check_gaussian(m2, S2, ("m2", "S2"))
    if m1.shape[-1] != m2.shape[-1]:
        raise ValueError(
            f"the two Gaussians must have one dimension d, got {m1.shape[-1]} and {m2.shape[-1]}"
        )
    if m1.device != m2.device:
        raise ValueError(f"m1 is on {m1.device} and m2 on {m2.device}; use one device")
    dtype = torch.promote_types(m1.dtype, m2.dtype)
    m1, S1, m2, S2 = m1.to(dtype), S1.to(dtype), m2.to(dtype), S2.to(dtype)
    root = _symmetric_matrix_power(S1, 0.5)
    middle = root @ S2 @ root
    middle = 0.5 * (middle + middle.transpose(-1, -2))
    cross = torch.linalg.eigvalsh(middle).clamp_min(0).sqrt().sum(-1)
    trace = torch.diagonal(S1, dim1=-2, dim2=-1).sum(-1) + torch.diagonal(S2, dim1=-2, dim2=-1).sum(-1)
    squared = (m1 - m2).square().sum(-1) + trace - 2 * cross
    return squared.clamp_min(0).sqrt()


@dataclass(frozen=True)
class AffineMap:
    """The affine map ``T(x) = matrix @ x + shift``, applied row-wise to ``(n, d)`` points."""

    matrix: Tensor  # (d, d)
    shift: Tensor  # (d,)

    def __call__(self, x: Any) -> Tensor:
        """``(n, d) -> (n, d)``: ``x @ matrix.T + shift``."""
        d = self.shift.shape[0]
        tensor = check_finite(as_tensor(x, "x"), "x")
        if tensor.ndim != 2 or tensor.shape[1] != d:
            raise ValueError(f"x must have shape (n, {d}), got {tuple(tensor.shape)}")
        dtype = torch.promote_types(tensor.dtype, self.matrix.dtype)
        tensor = tensor.to(dtype=dtype, device=self.matrix.device)
        return tensor @ self.matrix.T.to(dtype) + self.shift.to(dtype)

    def to_dict(self) -> dict[str, list]:
        """JSON-safe fields."""
        return {"matrix": self.matrix.tolist(), "shift": self.shift.tolist()}


def gaussian_brenier_map(m1: Any, S1: Any, m2: Any, S2: Any) -> AffineMap:  # noqa: N803 (math names)
    r"""Brenier (optimal ``W_2``) map from ``N(m1, S1)`` to ``N(m2, S2)``: ``T(x) = m2 + A (x - m1)``.

    .. math::
        A = S_1^{-1/2} \big(S_1^{1/2} S_2 S_1^{1/2}\big)^{1/2} S_1^{-1/2},

    the unique symmetric positive semi-definite ``A`` with ``A S1 A = S2`` (PC19, remark 2.31), so
    ``T_# N(m1, S1) = N(m2, S2)`` and ``E|X - T(X)|^2 = gaussian_w2(m1, S1, m2, S2)^2``. ``S1``
    must be positive definite (checked: smallest eigenvalue above ``sqrt(eps)`` times the largest);
    ``S2`` may be singular. Means ``(d,)``, covariances ``(d, d)``.

    Returns:
        ``AffineMap(matrix=A, shift=m2 - A m1)``; call it on ``(n, d)`` points.

    >>> import torch
    >>> T = gaussian_brenier_map(torch.zeros(2), torch.eye(2), torch.ones(2), 4 * torch.eye(2))
    >>> print(T(torch.tensor([[1.0, 0.0]])).tolist())
    [[3.0, 1.0]]
    """
    m1, S1 = check_gaussian(m1, S1, ("m1", "S1"))
    m2, S2 = check_gaussian(m2, S2, ("m2", "S2"))
    if m1.ndim != 1 or m2.ndim != 1:
        raise ValueError(
            f"gaussian_brenier_map takes one pair of Gaussians: means (d,), covariances (d, d); got "
            f"means of shapes {tuple(m1.shape)} and {tuple(m2.shape)}"
        )
    if m1.shape != m2.shape:
        raise ValueError(f"the two Gaussians must have one dimension d, got {m1.shape[0]} and {m2.shape[0]}")
    if m1.device != m2.device:
        raise ValueError(f"m1 is on {m1.device} and m2 on {m2.device}; use one device")
    dtype = torch.promote_types(m1.dtype, m2.dtype)
    m1, S1, m2, S2 = m1.to(dtype), S1.to(dtype), m2.to(dtype), S2.to(dtype)
    values, vectors = torch.linalg.eigh(S1)
    if float(values.amin()) <= math.sqrt(torch.finfo(dtype).eps) * float(values.amax()):
        raise ValueError(
            "S1 must be positive definite for the Brenier map (T is defined on the support of "
            f"N(m1, S1)); its eigenvalues range over [{float(values.amin()):.3g}, {float(values.amax()):.3g}]"
        )
    root = _power_from_eigh(values, vectors, 0.5)
    inverse_root = _power_from_eigh(values, vectors, -0.5)
    middle = root @ S2 @ root
    matrix = inverse_root @ _symmetric_matrix_power(0.5 * (middle + middle.T), 0.5) @ inverse_root
    matrix = 0.5 * (matrix + matrix.T)
    return AffineMap(matrix=matrix, shift=m2 - matrix @ m1)
