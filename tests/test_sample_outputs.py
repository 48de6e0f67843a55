"""What a sampling run hands back: non-finite values as errors, convergence warnings as data,
and the ArviZ-shaped outputs (``to_arrays``, ``to_inference_data``)."""

from __future__ import annotations

import sys
import warnings
from typing import NamedTuple

import numpy as np
import pytest
import torch

import measureflow as mf
from measureflow.samplers import DivergenceError, SamplerParams, SamplerSpec, run
from measureflow.samplers.driver import convergence_warnings

F64 = torch.float64
QUIET = dict(progress=False)


def _arviz():
    # ArviZ 0.23 announces its coming refactor with a FutureWarning on import.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        import arviz
    return arviz


def gaussian(dim: int = 2) -> mf.targets.Target:
    return mf.targets.from_energy(lambda x: 0.5 * x.square().sum(-1), dim)


# --- Non-finite values are errors ---


@pytest.mark.parametrize("sampler", ["mala", "ula"])
def test_nan_energy_at_the_initial_points_stops_before_the_first_step(sampler):
    # The reproducer: L(x) = |x|^2 * NaN. MALA used to reject forever and report a
    # "successful" frozen run; now nothing runs.
    target = mf.targets.from_energy(lambda x: (x**2).sum(-1) * float("nan"), 2)
    with pytest.raises(ValueError, match="initial points") as caught:
        mf.sample(target, sampler, n_chains=8, n_steps=20, burn_in=0, **QUIET)
    message = str(caught.value)
    assert not isinstance(caught.value, DivergenceError)
    assert "energy is NaN" in message and "8 of 8" in message
    assert "chains 0, 1, 2, 3, 4, ..." in message and "before step 1" in message


def test_the_error_names_the_chains_whose_initial_points_are_bad():
    # NaN energy only where x_0 > 5: chains 1 and 3 start there.
    target = mf.targets.from_energy(
        lambda x: torch.where(x[..., 0] > 5, float("nan"), 0.5 * x.square().sum(-1)), 2)
    init = torch.zeros(4, 2)
    init[[1, 3], 0] = 6.0
    with pytest.raises(ValueError, match=r"energy is NaN at the initial points of 2 of 4 ula "
                                         r"chains \(chains 1, 3\)"):
        mf.sample(target, "ula", n_chains=4, n_steps=10, burn_in=0, init=init, **QUIET)


def test_a_nan_gradient_at_the_start_is_named():
    # sqrt|x| at 0: autograd's 0.5 / sqrt(0) * sign(0) = inf * 0 = NaN, with a finite energy.
    target = mf.targets.from_energy(lambda x: x.abs().sqrt().sum(-1), 1)
    with pytest.raises(ValueError, match=r"the target's gradient is NaN at the initial points"):
        mf.sample(target, "ula", n_chains=2, n_steps=10, burn_in=0, init=torch.zeros(1, 1), **QUIET)


def test_mala_proposals_with_nan_energy_raise_with_the_chains_and_the_step():
    # The energy is NaN outside |x| < 1.5; from 0 with h = 0.5 the proposals (sd 1 per
    # coordinate) leave that disc within a few steps, long before the check at step 100.
    target = mf.targets.from_energy(
        lambda x: torch.where(x.norm(dim=-1) > 1.5, float("nan"), 0.5 * x.square().sum(-1)), 2)
    with pytest.raises(DivergenceError, match=r"mala chains \(chains 0, .*\) became NaN/inf by step "
                                              r"100 .*all finite at step 0.*points it proposed"):
        mf.sample(target, "mala", n_chains=8, n_steps=150, burn_in=0, step_size=0.5,
                  init=torch.zeros(1, 2), adapt_step_size=False, **QUIET)


def test_mala_rejects_proposals_with_infinite_energy_without_error():
    # +inf energy is a zero density (a hard wall at |x| = 1.5): a valid rejection, no error.
    target = mf.targets.from_energy(
        lambda x: torch.where(x.norm(dim=-1) > 1.5, float("inf"), 0.5 * x.square().sum(-1)), 2)
    result = mf.sample(target, "mala", n_chains=8, n_steps=150, burn_in=0, step_size=0.5,
                       init=torch.zeros(1, 2), adapt_step_size=False, **QUIET)
    assert bool((result.samples.norm(dim=-1) <= 1.5).all())
    assert 0 < float(result.acceptance.mean()) < 1


def test_ula_energy_nan_at_visited_points_is_an_error():
    # NaN energy outside |x| < 1.5 but a finite gradient (that of the quadratic): ULA moves on
    # with finite positions, and the recorded energies reveal it.
    def energy(x):
        quadratic = 0.5 * x.square().sum(-1)
        return quadratic + torch.where(x.norm(dim=-1) > 1.5, float("nan"), 0.0)

    target = mf.targets.from_energy(energy, 2)
    target.grad_energy = lambda x: x  # the quadratic's gradient everywhere
    target.energy_and_grad = lambda x: (energy(x), x)
    with pytest.raises(DivergenceError, match="finite points the chains reached"):
        mf.sample(target, "ula", n_chains=8, n_steps=150, burn_in=0, step_size=0.5,
                  init=torch.zeros(1, 2), **QUIET)


def test_the_check_cadence_is_kept():
    # |x| grows by |1 - 100 h| = 999 per step and overflows float32 within 15 steps, but the
    # positions are checked only every check_every = 100 steps: the error reports step 100.
    target = mf.targets.from_energy(lambda x: 50 * x.square().sum(-1), 2)
    with pytest.raises(DivergenceError, match=r"by step 100 with step_size=10, beta=1 \(all "
                                              r"finite at step 0\): rerun with a smaller step size"):
        mf.sample(target, "ula", n_chains=4, n_steps=300, burn_in=0, step_size=10.0, **QUIET)


@pytest.mark.parametrize("sampler", ["mala", "ula"])
def test_a_tiny_beta_names_the_noise_scale(sampler):
    # sqrt(2 h / beta) = sqrt(0.02 / 1e-300) = 1.4e149: float32 noise overflows at once.
    with pytest.raises(DivergenceError, match=r"noise scale sqrt\(2 h / beta\) = 1\.41e\+149 .*"
                                              r"raise beta"):
        mf.sample(mf.targets.DoubleWell(), sampler, beta=1e-300, n_chains=4, n_steps=10,
                  burn_in=0, **QUIET)


# --- Convergence warnings as data ---


def test_a_well_mixed_run_has_no_warnings():
    # MALA on N(0, 1) in 1-D: autocorrelation time about 3 steps, so 4 x 2000 kept draws give
    # a bulk ESS of thousands (400 needed). For 8 split chains of ESS
    # ~600 each, R^2 - 1 ~ (B/W)/n with B/W ~ chi2_7 / 7, so R-hat - 1 ~ 0.5 chi2_7/7 / 600:
    # 0.0008 on average, 0.003 at its 99.9th percentile (bar 0.01). Measured: 1.0001, ESS 5960
    # (bulk) and 4353 (tail).
    result = mf.sample(gaussian(1), "mala", n_chains=4, n_steps=2000, burn_in=300, seed=1, **QUIET)
    assert result.warnings == ()
    assert result.to_dict()["warnings"] == []


def test_chains_in_separate_modes_warn_about_rhat_and_ess():
    # A double well with barrier height 20 (beta = 1): chains started in opposite wells stay
    # there for exp(20) steps, so R-hat is far above 1.01 and the bulk ESS is about m.
    target = mf.targets.from_energy(lambda x: 20 * (x.square() - 1).square().sum(-1), 1)
    init = torch.tensor([[-1.0], [-1.0], [1.0], [1.0]])
    result = mf.sample(target, "mala", n_chains=4, n_steps=200, burn_in=50, init=init, **QUIET)
    assert float(result.rhat.max()) > 1.5
    text = "\n".join(result.warnings)
    assert "R-hat is" in text and "run more steps" in text
    assert "bulk ESS" in text and "tail ESS" in text
    assert all("\n" not in line for line in result.warnings)
    assert result.to_dict()["warnings"] == list(result.warnings)


def test_mala_that_never_accepts_warns():
    # h = 1e4 without adaptation on N(0, I): y = (1 - h) x + sqrt(2 h) xi lands at |y| ~ 10^4,
    # accepted with probability about exp(-|y|^2 / 2) = 0 in floating point.
    result = mf.sample(gaussian(), "mala", n_chains=4, n_steps=50, burn_in=0, step_size=1e4,
                       adapt_step_size=False, **QUIET)
    assert float(result.acceptance.max()) == 0.0
    assert any("4 of 4 chain(s) accepted no proposal" in line and "lower the step size" in line
               for line in result.warnings)


def test_too_few_draws_warns():
    result = mf.sample(gaussian(), "ula", n_chains=4, n_steps=2, burn_in=0, **QUIET)
    assert result.rhat is None
    assert any("only 2 draw(s) kept" in line for line in result.warnings)


def test_warning_thresholds_are_stans():
    # R-hat above 1.01; bulk and tail ESS below 100 per chain (here 4 chains: 400).
    ok = torch.tensor([400.0, 500.0], dtype=F64)
    assert convergence_warnings(rhat=torch.tensor([1.0, 1.01], dtype=F64), ess=ok, ess_tail=ok,
                                n_kept=100, n_chains=4) == ()
    found = convergence_warnings(rhat=torch.tensor([1.0, 1.0101], dtype=F64),
                                 ess=torch.tensor([399.0, 500.0], dtype=F64),
                                 ess_tail=torch.tensor([399.0, 500.0], dtype=F64),
                                 n_kept=100, n_chains=4)
    assert len(found) == 3
    assert found[0].startswith("R-hat is 1.01 (> 1.01) for 1 of 2")
    assert found[1].startswith("bulk ESS is 399") and found[2].startswith("tail ESS is 399")
    undefined = convergence_warnings(rhat=torch.tensor([float("nan")], dtype=F64), ess=None,
                                     ess_tail=None, n_kept=100, n_chains=4)
    assert len(undefined) == 1 and "undefined" in undefined[0]


# --- Divergences: the path a kernel like HMC will use ---


class _JumpState(NamedTuple):
    position: torch.Tensor
    step: int


class _JumpInfo(NamedTuple):
    is_divergent: torch.Tensor
    n_grad: int
    n_data_grad: float


def _jump_init(position, target, params, *, generator=None):
    return _JumpState(position, 0)


def _jump_step(state, target, params, *, generator=None):
    # Deterministic: chain 1 reports a divergence at steps 2 and 7 (0-based), no other chain.
    divergent = torch.zeros(state.position.shape[0], dtype=torch.bool)
    divergent[1] = state.step in (2, 7)
    return _JumpState(state.position + 1.0, state.step + 1), _JumpInfo(divergent, 0, 0.0)


def test_divergences_reported_by_a_kernel_are_recorded_per_kept_draw():
    spec = SamplerSpec("jump", SamplerParams, _jump_init, _jump_step, "test kernel")
    result = run(gaussian(1), spec, SamplerParams(step_size=0.1), torch.zeros(3, 1), n_steps=8,
                 burn_in=1, thin=2, progress=False)
    # Kept phase: steps 1..8 (0-based), draws after steps 2, 4, 6, 8; the divergence at step 2
    # belongs to draw 0, the one at step 7 to draw 3 (thinning keeps them, it ORs the steps).
    expected = torch.zeros(4, 3, dtype=torch.bool)
    expected[0, 1] = expected[3, 1] = True
    assert torch.equal(result.divergence_trace, expected)
    assert result.to_dict()["n_divergent"] == 2
    assert any("2 divergent transition(s)" in line for line in result.warnings)
    np.testing.assert_array_equal(result.to_arrays()["diverging"], expected.T.numpy())


# --- Arrays in (chain, draw, ...) layout and ArviZ ---


def test_to_arrays_is_chain_first():
    result = mf.sample(gaussian(), "mala", n_chains=3, n_steps=40, burn_in=10, beta=2.0, **QUIET)
    arrays = result.to_arrays()
    assert set(arrays) == {"samples", "energy", "lp", "acceptance_rate", "acceptance"}
    np.testing.assert_array_equal(arrays["samples"], result.samples.transpose(0, 1).numpy())
    assert arrays["samples"].shape == (3, 40, 2) and arrays["energy"].shape == (3, 40)
    np.testing.assert_array_equal(arrays["energy"], result.energy_trace.T.numpy())
    np.testing.assert_array_equal(arrays["lp"], (-2.0 * result.energy_trace).T.numpy())
    assert arrays["acceptance_rate"].shape == (3, 40) and arrays["acceptance"].shape == (3,)
    plain = mf.sample(gaussian(), "ula", n_chains=3, n_steps=40, burn_in=10, **QUIET).to_arrays()
    assert set(plain) == {"samples", "energy", "lp"}


def test_the_acceptance_trace_matches_the_moves():
    # A draw that differs from the previous one was accepted, so its step's acceptance
    # probability is positive; probability 1 means accepted (u < 1 always), hence moved.
    result = mf.sample(gaussian(), "mala", n_chains=6, n_steps=200, burn_in=20, seed=2, **QUIET)
    probability = result.acceptance_trace[1:]
    moved = (result.samples[1:] != result.samples[:-1]).any(-1)
    assert bool((probability[moved] > 0).all()) and bool(moved[probability == 1].all())
    assert bool(((0 <= result.acceptance_trace) & (result.acceptance_trace <= 1)).all())


def test_to_inference_data_agrees_with_arviz_diagnostics():
    az = _arviz()
    # float64 chains: ArviZ folds float32 draws in float32, which can order near-ties
    # differently from the float64 fold here; in float64 both compute the same numbers.
    result = mf.sample(gaussian(3), "mala", n_chains=4, n_steps=300, burn_in=50, beta=2.0,
                       dtype=F64, **QUIET)
    data = result.to_inference_data()
    posterior = data.posterior["x"]
    assert posterior.dims == ("chain", "draw", "x_dim_0") and posterior.shape == (4, 300, 3)
    np.testing.assert_array_equal(posterior.values, result.samples.transpose(0, 1).numpy())
    stats = data.sample_stats
    assert set(stats.data_vars) == {"lp", "acceptance_rate"}  # no "energy": not a Hamiltonian
    np.testing.assert_array_equal(stats["lp"].values, (-2.0 * result.energy_trace).T.numpy())
    attrs = data.posterior.attrs
    assert attrs["sampler"] == "mala" and attrs["beta"] == 2.0 and attrs["burn_in"] == 50
    assert attrs["thin"] == 1 and attrs["step_size"] == result.step_size
    # Same estimators on the same float64 arrays: agreement to round-off (see
    # tests/test_diagnostics.py for the derivation of rtol = 1e-10).
    rhat = torch.from_numpy(az.rhat(data)["x"].values)
    torch.testing.assert_close(result.rhat, rhat, rtol=1e-10, atol=0)
    summary = az.summary(data, round_to="none")
    for column, ours in (("r_hat", result.rhat), ("ess_bulk", result.ess), ("ess_tail", result.ess_tail)):
        torch.testing.assert_close(torch.tensor(summary[column].to_numpy()), ours,
                                   rtol=1e-10, atol=0, msg=column)


def test_to_inference_data_without_arviz_says_how_to_get_it(monkeypatch):
    result = mf.sample(gaussian(), "ula", n_chains=2, n_steps=8, burn_in=0, **QUIET)
    monkeypatch.setitem(sys.modules, "arviz", None)  # "import arviz" now raises ImportError
    with pytest.raises(ImportError, match=r"^to_inference_data needs ArviZ: pip install arviz$"):
        result.to_inference_data()


def test_to_dict_names_the_estimators():
    summary = mf.sample(gaussian(), "ula", n_chains=4, n_steps=40, burn_in=0, **QUIET).to_dict()
    assert summary["ess_method"] == "bulk" and summary["rhat_method"] == "rank"
    assert len(summary["ess"]) == len(summary["ess_tail"]) == len(summary["rhat"]) == 2
    assert summary["n_divergent"] is None and isinstance(summary["warnings"], list)
