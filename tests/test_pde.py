"""Tests of measureflow.pde: Fokker-Planck on 1-D and 2-D grids, aggregation-diffusion.

Truth comes from closed forms (the Ornstein-Uhlenbeck law), exact identities of the scheme
(zero column sums, the Gibbs fixed point, the discrete de Bruijn identity, Kronecker structure on
separable energies) and measured convergence orders. Tolerances are stated where they are used:
identities at float64 rounding, convergence orders within 0.15 of theory (the asymptotic regime
is reached on the grids used: the local slopes measured between successive refinements lie
within 0.03 of the theoretical order), errors against closed forms through their measured order.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from measureflow.metrics import gaussian_w2
from measureflow.pde import (
    AggregationDiffusion1D,
    FokkerPlanck1D,
    FokkerPlanck2D,
    FokkerPlanckSolution,
)
from measureflow.targets import DoubleWell, Gaussian

F64 = torch.float64
BETA_OU = 1.0
M0, S0 = 1.5, 0.5  # OU start N(M0, S0^2)


def quadratic(x: torch.Tensor) -> torch.Tensor:
    """L(x) = |x|^2 / 2: the Ornstein-Uhlenbeck energy."""
    return 0.5 * x.square().sum(-1)


def double_well(x: torch.Tensor) -> torch.Tensor:
    return (x.square() - 1).square().sum(-1)


def ou_density(x: torch.Tensor, t: float) -> torch.Tensor:
    """The law of dX = -X dt + sqrt(2 / beta) dB at time t from N(M0, S0^2):
    N(M0 e^-t, S0^2 e^-2t + (1 - e^-2t) / beta)."""
    mean = M0 * math.exp(-t)
    variance = S0**2 * math.exp(-2 * t) + (1 - math.exp(-2 * t)) / BETA_OU
    return torch.exp(-((x - mean) ** 2) / (2 * variance)) / math.sqrt(2 * math.pi * variance)


def fitted_slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of log y against log x."""
    lx = torch.tensor(xs, dtype=F64).log()
    ly = torch.tensor(ys, dtype=F64).log()
    lx, ly = lx - lx.mean(), ly - ly.mean()
    return float((lx * ly).sum() / (lx * lx).sum())


def gaussian_bump(x: torch.Tensor, centre: float, width: float) -> torch.Tensor:
    return torch.exp(-(((x - centre) / width) ** 2) / 2)


# ------------------------------------------------------------------------------------------------
# conservation, positivity, fixed point


@pytest.fixture(scope="module")
def far_off() -> tuple[FokkerPlanck1D, torch.Tensor]:
    """Double well at beta = 3 on [-3, 3], started at x = 2.2, far up the right wall: there
    beta L = 3 (2.2^2 - 1)^2 = 44 above the minimum, and the start's tail reaches cells where
    the Gibbs density is e^-190 below its peak."""
    solver = FokkerPlanck1D(DoubleWell(), beta=3.0, lo=-3.0, hi=3.0, n=300)
    return solver, gaussian_bump(solver.x, 2.2, 0.15)


def test_implicit_conserves_mass_and_positivity_from_far_off_start(far_off):
    solver, start = far_off
    times = torch.linspace(0, 5, 26, dtype=F64)
    solution = solver.solve(start, times, method="implicit", max_step=0.05, progress=False)
    # Implicit Euler conserves sum(p) dx exactly in exact arithmetic (zero column sums); 250
    # solves each add rounding of ~n eps ~ 1e-13: 1e-10 is the contract.
    assert float((solution.mass() - 1).abs().max()) < 1e-10
    # No clipping in the implicit method: non-negativity comes from the M-matrix alone.
    assert float(solution.p.min()) >= 0.0
    assert solution.p.shape == (26, 300)


def test_exponential_is_exact_in_time_from_far_off_start(far_off):
    """Implicit Euler converges to the exact semi-discrete flow at first order, so its
    Richardson extrapolation 2 p_{h/2} - p_h is O(h^2) from it. If the exponential method is
    the exact flow, that distance falls by 4 per halving of h at every time (measured 3.78 at
    t = 0.1, still slightly pre-asymptotic in the fast initial transient, 4.01 later; accepted
    > 3.5, while a method off by a fixed amount would give ratios near 1)."""
    solver, start = far_off
    times = [0.0, 0.1, 0.5, 2.0]
    exact = solver.solve(start, times)
    assert float((exact.mass() - 1).abs().max()) < 1e-10
    assert float(exact.p.min()) >= 0.0
    errors = []
    for step in (0.0025, 0.00125, 0.000625):
        solution = solver.solve(start, times, method="implicit", max_step=step, progress=False)
        errors.append(solution.p)
    distances = [(2 * fine - coarse - exact.p).abs().amax(-1)[1:] for coarse, fine in zip(errors, errors[1:],
                                                                                          strict=False)]
    ratio = distances[0] / distances[1]
    assert bool((ratio > 3.5).all()), ratio
    assert float(distances[1].max()) < 1e-2 * float(exact.p.max())
    torch.testing.assert_close(exact.p[0], start / (start.sum() * solver.dx), rtol=0, atol=0)


def test_gibbs_is_the_exact_fixed_point_and_the_long_time_limit(far_off):
    solver, start = far_off
    generator = solver.generator()
    # zero column sums and A g = 0, up to rounding of sums of 3 terms of size max|A| max g
    scale = float(generator.abs().max()) * float(solver.gibbs.max())
    assert float(generator.sum(0).abs().max()) < 1e-12 * float(generator.abs().max())
    assert float((generator @ solver.gibbs).abs().max()) < 1e-12 * scale
    off_diagonal = generator - torch.diag(generator.diagonal())
    assert float(generator.diagonal().max()) < 0 and float(off_diagonal.min()) >= 0
    for method in ("exponential", "implicit"):
        still = solver.solve(solver.gibbs, [0.0, 1.0, 10.0], method=method, max_step=0.5, progress=False)
        assert float((still.p - solver.gibbs).abs().max()) < 1e-12 * float(solver.gibbs.max())
    # Long-time limit: the gap is ~0.08 at beta = 3, so at t = 600 exp(-gap t) < 1e-20.
    gap = solver.spectral_gap()
    assert 0.05 < gap < 0.12
    late = solver.solve(start, [600.0])
    assert float((late.p[0] - solver.gibbs).abs().max()) < 1e-10
    # implicit Euler with huge steps (dt = 20) is still stable and converges to gibbs
    late = solver.solve(start, [600.0], method="implicit", max_step=20.0, progress=False)
    assert float((late.p[0] - solver.gibbs).abs().max()) < 1e-10
    assert float(late.kl()[0]) < 1e-15


# ------------------------------------------------------------------------------------------------
# convergence orders on the Ornstein-Uhlenbeck process


def test_second_order_in_space_against_the_ou_closed_form():
    """Exponential method (exact in time) at t = 1: L1 error against the closed form vs dx.
    Scharfetter-Gummel fluxes are second-order consistent; measured local slopes 1.98-2.00."""
    cells = [50, 100, 200, 400]
    errors, spacings = [], []
    for n in cells:
        solver = FokkerPlanck1D(quadratic, BETA_OU, -8.0, 8.0, n)
        solution = solver.solve(ou_density(solver.x, 0.0), [1.0])
        errors.append(float((solution.p[0] - ou_density(solver.x, 1.0)).abs().sum()) * solver.dx)
        spacings.append(solver.dx)
    slope = fitted_slope(spacings, errors)
    assert abs(slope - 2.0) < 0.15, (slope, errors)
    assert errors[-1] < 2e-4  # converges to the closed form (error 1.4e-4 at n = 400)


def test_first_order_in_time_against_the_ou_closed_form():
    """Implicit Euler at t = 1 on a fine grid (n = 800: spatial error ~1e-5 in max norm, 1% of
    the smallest temporal error 1.5e-3, shifting the slope by < 0.01); max-norm error vs step."""
    solver = FokkerPlanck1D(quadratic, BETA_OU, -8.0, 8.0, 800)
    start, truth = ou_density(solver.x, 0.0), ou_density(solver.x, 1.0)
    steps = [0.1, 0.05, 0.025, 0.0125]
    errors = []
    for step in steps:
        solution = solver.solve(start, [1.0], method="implicit", max_step=step, progress=False)
        errors.append(float((solution.p[0] - truth).abs().max()))
    slope = fitted_slope(steps, errors)
    assert abs(slope - 1.0) < 0.15, (slope, errors)


def test_spectral_gap_and_w2_converge_to_the_ou_values():
    """The OU generator's gap is 1 (eigenvalues -k); W2 to the Gibbs N(0, 1/beta) has the
    Gaussian closed form. Both discretization errors must fall by 4 per halving of dx
    (second order: measured ratios 4.00 and 3.99-4.00; accepted 3.5-4.5)."""
    gaps, w2_errors = [], []
    times = [0.5, 1.0]
    exact = []
    for t in times:
        mean = M0 * math.exp(-t)
        variance = S0**2 * math.exp(-2 * t) + (1 - math.exp(-2 * t)) / BETA_OU
        exact.append(float(gaussian_w2(torch.tensor([mean]), torch.tensor([[variance]]),
                                       torch.zeros(1), torch.eye(1) / BETA_OU)))
    for n in (200, 400):
        solver = FokkerPlanck1D(quadratic, BETA_OU, -8.0, 8.0, n)
        solution = solver.solve(ou_density(solver.x, 0.0), times)
        gaps.append(abs(solver.spectral_gap() - 1.0))
        w2_errors.append((solution.w2() - torch.tensor(exact, dtype=F64)).abs())
    assert 3.5 < gaps[0] / gaps[1] < 4.5
    ratio = w2_errors[0] / w2_errors[1]
    assert bool(((ratio > 3.5) & (ratio < 4.5)).all()), ratio
    assert gaps[1] < 1e-3 and float(w2_errors[1].max()) < 1e-3


# ------------------------------------------------------------------------------------------------
# de Bruijn identity


def test_de_bruijn_identity_on_the_grid():
    """d/dt KL(p_t || g) = -(1/beta) I_h(p_t) holds exactly along the semi-discrete flow, so a
    5-point central difference of kl() with step delta matches -(1/beta) fisher() up to its
    truncation error delta^4 K^(5) / 30: with delta = 1% of t it is ~1e-7 relative (measured
    1.5e-7), and halving delta divides it by 16 (fourth order; accepted 12-20). The scheme's
    exact derivative sum (A p)_i log(p_i / g_i) dx agrees to rounding."""
    beta = 2.0
    solver = FokkerPlanck1D(DoubleWell(), beta, -2.5, 2.5, 300)
    start = gaussian_bump(solver.x, -1.0, 0.15)
    at = torch.logspace(-2, 1, 16, dtype=F64)
    stencil = torch.tensor([-2.0, -1.0, 0.0, 1.0, 2.0], dtype=F64)
    relative = []
    for fraction in (0.01, 0.005):
        delta = fraction * at
        times = (at[:, None] + stencil * delta[:, None]).reshape(-1)
        solution = solver.solve(start, times)
        kl = solution.kl().reshape(-1, 5)
        fisher = solution.fisher().reshape(-1, 5)[:, 2]
        derivative = (kl[:, 0] - 8 * kl[:, 1] + 8 * kl[:, 3] - kl[:, 4]) / (12 * delta)
        relative.append((derivative + fisher / beta).abs() / (fisher / beta))
    assert float(relative[0].max()) < 1e-6
    worst = int(relative[0].argmax())
    assert 12 < float(relative[0][worst] / relative[1][worst]) < 20
    # exact semi-discrete derivative, no differencing at all
    solution = solver.solve(start, at)
    p = solution.p
    exact = ((p @ solver.generator().T) * (p.clamp_min(1e-300) / solver.gibbs).log()).sum(-1) * solver.dx
    torch.testing.assert_close(exact, -solution.fisher() / beta, rtol=1e-9, atol=1e-12)
    assert bool((solution.fisher() > 0).all()) and bool((solution.kl().diff() < 0).all())


# ------------------------------------------------------------------------------------------------
# 2-D


def separable_energy(z: torch.Tensor) -> torch.Tensor:
    """(x^2 - 1)^2 + y^2: a double well times a Gaussian."""
    return (z[:, 0].square() - 1).square() + z[:, 1].square()


@pytest.fixture(scope="module")
def separable():
    beta, n1, n2 = 2.0, 48, 40
    first = FokkerPlanck1D(double_well, beta, -2.5, 2.5, n1)
    second = FokkerPlanck1D(lambda y: y.square().sum(-1), beta, -3.0, 3.0, n2)
    plane = FokkerPlanck2D(separable_energy, beta, (-2.5, -3.0), (2.5, 3.0), (n1, n2))
    return beta, first, second, plane


def test_2d_generator_is_the_kronecker_sum_on_a_separable_energy(separable):
    _, first, second, plane = separable
    n1, n2 = plane.n
    kron = torch.kron(first.generator(), torch.eye(n2, dtype=F64)) + torch.kron(
        torch.eye(n1, dtype=F64), second.generator()
    )
    dense = plane.generator().to_dense()
    torch.testing.assert_close(dense, kron, rtol=1e-12, atol=1e-12 * float(kron.abs().max()))
    torch.testing.assert_close(plane.gibbs, first.gibbs[:, None] * second.gibbs[None, :], rtol=1e-12, atol=0)
    scale = float(dense.abs().max()) * float(plane.gibbs.max())
    assert float((dense @ plane.gibbs.reshape(-1)).abs().max()) < 1e-12 * scale


def test_2d_solution_converges_to_the_outer_product_of_1d_solutions(separable):
    """exp(t (A1 + A2)) = exp(t A1) x exp(t A2): the 2-D implicit Euler solution differs from
    the outer product of exact 1-D solutions by its O(dt) time error, which halves with dt
    (measured ratios 1.99, 2.00; accepted 1.8-2.2)."""
    _, first, second, plane = separable
    start_1, start_2 = gaussian_bump(first.x, -1.0, 0.2), gaussian_bump(second.x, 1.0, 0.3)
    times = [0.0, 0.5, 1.0]
    product = first.solve(start_1, times).p[:, :, None] * second.solve(start_2, times).p[:, None, :]
    errors = []
    for step in (0.02, 0.01):
        solution = plane.solve(start_1[:, None] * start_2[None, :], times, max_step=step, progress=False)
        assert float((solution.mass() - 1).abs().max()) < 1e-10
        assert float(solution.p.min()) >= 0.0
        errors.append(float((solution.p - product).abs().max()))
    assert 1.8 < errors[0] / errors[1] < 2.2
    assert errors[1] < 0.02 * float(product.max())


def test_2d_de_bruijn_identity_and_kl(separable):
    beta, first, second, plane = separable
    start = gaussian_bump(plane.x1, 1.2, 0.2)[:, None] * gaussian_bump(plane.x2, -1.5, 0.3)[None, :]
    solution = plane.solve(start, [0.0, 0.3, 2.0], max_step=0.05, progress=False)
    p = solution.p.reshape(3, -1)
    log_f = (p.clamp_min(1e-300) / plane.gibbs.reshape(-1)).log()
    flow = (plane.generator() @ p.T).T
    exact = (flow * log_f).sum(-1) * plane.dx[0] * plane.dx[1]
    torch.testing.assert_close(exact, -solution.fisher() / beta, rtol=1e-9, atol=1e-12)
    # KL of a product against a product Gibbs measure is the sum of the two 1-D KLs
    one = first.solve(gaussian_bump(first.x, 1.2, 0.2), [0.0])
    two = second.solve(gaussian_bump(second.x, -1.5, 0.3), [0.0])
    torch.testing.assert_close(solution.kl()[0], one.kl()[0] + two.kl()[0], rtol=1e-12, atol=1e-14)
    flux_1, flux_2 = solution.current()
    assert flux_1.shape == (3, 49, 40) and flux_2.shape == (3, 48, 41)
    assert float(flux_1[:, 0].abs().max()) == 0.0 and float(flux_2[:, :, -1].abs().max()) == 0.0


# ------------------------------------------------------------------------------------------------
# aggregation-diffusion


def test_aggregation_with_attraction_conserves_mass_stays_positive_and_dissipates():
    flow = AggregationDiffusion1D(double_well, lambda z: 0.5 * z.square().sum(-1), 2.0, -3.0, 3.0, 300)
    start = gaussian_bump(flow.x, 1.5, 0.3) + 0.5 * gaussian_bump(flow.x, -2.0, 0.2)
    solution = flow.solve(start, torch.linspace(0, 5, 51, dtype=F64), max_step=0.5, progress=False)
    assert float((solution.mass() - 1).abs().max()) < 1e-10
    assert float(solution.p.min()) >= 0.0
    energy = solution.free_energy()
    # non-increasing at every output time, up to the rounding of F (~1e-13)
    assert float(energy.diff().max()) <= 1e-12
    assert float(energy[-1]) < float(energy[0]) - 1.0


def test_aggregation_halves_steps_that_would_raise_the_free_energy():
    """A strongly repulsive (positive-definite) kernel at low temperature: the term
    (dx^2/2) delta^T W delta >= 0 beats the entropy decrease for dt = 5, so full steps would raise
    F; the solver must split them, and F must still never increase."""
    flow = AggregationDiffusion1D(
        quadratic, lambda z: 20 * torch.exp(-z.square().sum(-1) / (2 * 0.5**2)), 50.0, -4.0, 4.0, 200
    )
    start = gaussian_bump(flow.x, 0.0, 0.1)
    # the plain semi-implicit iteration with dt = 5 (no safeguard) raises F at some step
    density = (start / (start.sum() * flow.dx)).numpy()
    energies = [flow._free_energy(density)]
    for _ in range(5):
        density = flow._implicit_step(density, 5.0)
        energies.append(flow._free_energy(density))
    assert max(b - a for a, b in zip(energies, energies[1:], strict=False)) > 1e-6
    solution = flow.solve(start, [0.0, 5.0, 10.0, 25.0], max_step=5.0, progress=False)
    assert solution.n_rejected > 0
    assert float(solution.free_energy().diff().max()) <= 1e-12
    assert float((solution.mass() - 1).abs().max()) < 1e-10 and float(solution.p.min()) >= 0.0


def test_aggregation_without_interaction_is_the_fokker_planck_equation():
    beta = 2.0
    flow = AggregationDiffusion1D(DoubleWell(), None, beta, -3.0, 3.0, 200)
    linear = FokkerPlanck1D(DoubleWell(), beta, -3.0, 3.0, 200)
    start = gaussian_bump(flow.x, 1.5, 0.3)
    times = [0.0, 0.5, 1.0, 3.0]
    a = flow.solve(start, times, max_step=0.05, progress=False)
    b = linear.solve(start, times, method="implicit", max_step=0.05, progress=False)
    torch.testing.assert_close(a.p, b.p, rtol=1e-10, atol=1e-12)
    # with W = 0, F[p] - F[gibbs] = KL(p || gibbs) / beta exactly on the grid
    reference = flow._free_energy(linear.gibbs.numpy())
    torch.testing.assert_close(a.free_energy() - reference, b.kl() / beta, rtol=1e-10, atol=1e-13)


# ------------------------------------------------------------------------------------------------
# energies, results, figures, validation


def test_target_and_callable_energies_agree_and_the_target_is_untouched():
    target = Gaussian(torch.zeros(1), torch.full((1, 1), 0.5))  # float32 buffers, L = x^2
    a = FokkerPlanck1D(target, 1.0, -4.0, 4.0, 64)
    b = FokkerPlanck1D(lambda x: x.square().sum(-1), 1.0, -4.0, 4.0, 64)
    # the target's float32 buffers (precision 1 / 0.5) carry float32 rounding: relative 6e-8
    torch.testing.assert_close(a.energy_values, b.energy_values, rtol=2e-7, atol=1e-12)
    assert target.mean.dtype == torch.float32
    assert a.energy_values.dtype == F64 and a.x.shape == (64,)
    torch.testing.assert_close(a.x, -4.0 + (torch.arange(64, dtype=F64) + 0.5) * 0.125)


def test_results_serialize_and_figures_are_written(tmp_path):
    solver = FokkerPlanck1D(DoubleWell(), 2.0, -2.5, 2.5, 60)
    solution = solver.solve(gaussian_bump(solver.x, -1.0, 0.2), [0.0, 0.5, 2.0])
    assert isinstance(solution, FokkerPlanckSolution)
    data = json.loads(json.dumps(solution.to_dict()))
    assert len(data["kl"]) == 3 and len(data["p"][0]) == 60
    assert solution.current().shape == (3, 61)
    path = solution.figure(tmp_path / "fp.png")
    assert (tmp_path / "fp.png").stat().st_size > 1000 and path.endswith("fp.png")
    plane = FokkerPlanck2D(separable_energy, 2.0, -2.5, 2.5, 20)
    planar = plane.solve(torch.ones(20, 20), [0.0, 0.5], max_step=0.1, progress=False)
    json.dumps(planar.to_dict())
    planar.figure(tmp_path / "fp2.png")
    flow = AggregationDiffusion1D(double_well, None, 2.0, -2.5, 2.5, 40)
    aggregated = flow.solve(torch.ones(40), [0.0, 1.0], progress=False)
    json.dumps(aggregated.to_dict())
    aggregated.figure(tmp_path / "agg.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["agg.png", "fp.png", "fp2.png"]


@pytest.mark.parametrize(
    ("arguments", "error", "match"),
    [
        ((quadratic, 0.0, -1.0, 1.0, 10), ValueError, "beta"),
        ((quadratic, True, -1.0, 1.0, 10), TypeError, "beta"),
        ((quadratic, 1.0, 1.0, -1.0, 10), ValueError, "lo < hi"),
        ((quadratic, 1.0, -1.0, float("inf"), 10), ValueError, "finite"),
        ((quadratic, 1.0, -1.0, 1.0, 2), ValueError, "n must be"),
        ((quadratic, 1.0, -1.0, 1.0, 10.0), TypeError, "n must be"),
        (("x^2", 1.0, -1.0, 1.0, 10), TypeError, "Target or a callable"),
        ((lambda x: x, 1.0, -1.0, 1.0, 10), ValueError, r"shape \(m,\)"),
        ((lambda x: x[:, 0].tolist(), 1.0, -1.0, 1.0, 10), TypeError, "torch tensor"),
        ((lambda x: 1 / x[:, 0].round(), 1.0, -1.0, 1.0, 10), ValueError, "non-finite"),
        ((DoubleWell(dim=2), 1.0, -1.0, 1.0, 10), ValueError, "dimension"),
        ((quadratic, 100.0, -10.0, 10.0, 10), ValueError, "underflow"),
    ],
)
def test_bad_solver_arguments(arguments, error, match):
    with pytest.raises(error, match=match):
        FokkerPlanck1D(*arguments)


@pytest.mark.parametrize(
    ("p0", "times", "options", "match"),
    [
        (torch.ones(9), [1.0], {}, "shape"),
        (-torch.ones(10), [1.0], {}, "negative"),
        (torch.full((10,), float("nan")), [1.0], {}, "finite"),
        (torch.zeros(10), [1.0], {}, "zero mass"),
        (torch.ones(10), [2.0, 1.0], {}, "sorted"),
        (torch.ones(10), [-1.0], {}, "non-negative"),
        (torch.ones(10), [float("nan")], {}, "finite"),
        (torch.ones(10), [], {}, "non-empty"),
        (torch.ones(10), [1.0], {"method": "euler"}, "method"),
        (torch.ones(10), [1.0], {"method": "implicit", "max_step": 0.0}, "max_step"),
    ],
)
def test_bad_solve_arguments(p0, times, options, match):
    solver = FokkerPlanck1D(quadratic, 1.0, -1.0, 1.0, 10)
    with pytest.raises(ValueError, match=match):
        solver.solve(p0, times, progress=False, **options)


def test_bad_2d_and_aggregation_arguments():
    with pytest.raises(TypeError, match="pair"):
        FokkerPlanck2D(separable_energy, 1.0, (-1.0, -1.0, -1.0), 1.0, 10)
    with pytest.raises(ValueError, match=r"lo\[1\] < hi\[1\]"):
        FokkerPlanck2D(separable_energy, 1.0, (-1.0, 1.0), (1.0, -1.0), 10)
    with pytest.raises(ValueError, match="dimension 2"):
        FokkerPlanck2D(DoubleWell(), 1.0, -1.0, 1.0, 10)
    plane = FokkerPlanck2D(separable_energy, 1.0, -1.0, 1.0, (10, 12))
    with pytest.raises(ValueError, match=r"\(10, 12\)"):
        plane.solve(torch.ones(12, 10), [1.0], progress=False)
    with pytest.raises(ValueError, match="even"):
        AggregationDiffusion1D(None, lambda z: z[:, 0], 1.0, -1.0, 1.0, 10)


def test_import_star():
    namespace: dict = {}
    exec("from measureflow.pde import *", namespace)
    for name in ("FokkerPlanck1D", "FokkerPlanck2D", "AggregationDiffusion1D", "FokkerPlanckSolution"):
        assert name in namespace
    for module in ("fokker_planck", "fokker_planck_2d", "aggregation"):
        exec(f"from measureflow.pde.{module} import *", {})
