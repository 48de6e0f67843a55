"""Normalizing flows (generative.flow): the change-of-variables density against closed forms and
autograd, sampling by generator, the TrainedModel round trip, and exact resume on the shared loop."""

from __future__ import annotations

import math

import pytest
import torch

from measureflow.generative import TrainedModel, family_names
from measureflow.generative.flow import (
    FlowTask,
    build_flow,
    check_flow_config,
    default_flow_config,
    flow_log_prob,
    flow_sample,
    train_flow,
)
from measureflow.generative.train import load_checkpoint

SMALL_NSF = {"name": "nsf", "features": 2, "transforms": 2, "hidden": [16], "bins": 4}
SMALL_MAF = {"name": "maf", "features": 2, "transforms": 2, "hidden": [16]}


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _standard_normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    return -0.5 * (z.square().sum(-1) + z.shape[-1] * math.log(2 * math.pi))


@pytest.mark.parametrize("config", [SMALL_NSF, SMALL_MAF, {**SMALL_NSF, "features": 1},
                                    {**SMALL_MAF, "features": 1}])
def test_zero_parameters_give_the_identity_and_the_base_density(config):
    # With every parameter 0 each layer is the identity: the affine map exp(0) x + 0, the spline
    # with equal bins and unit knot slopes. Then q = N(0, I) exactly and a sample is the noise.
    flow = build_flow(config).double()
    with torch.no_grad():
        for parameter in flow.parameters():
            parameter.zero_()
    x = 2.0 * torch.randn(50, config["features"], generator=_generator(), dtype=torch.float64)
    torch.testing.assert_close(flow_log_prob(flow, x), _standard_normal_log_prob(x))
    noise = torch.randn(7, config["features"], generator=_generator(3), dtype=torch.float64)
    torch.testing.assert_close(flow_sample(flow, 7, generator=_generator(3)), noise)


@pytest.mark.parametrize("config", [SMALL_NSF, SMALL_MAF])
def test_log_prob_is_the_change_of_variables_by_autograd(config):
    # log q(x) = log N(T(x)) + log|det dT/dx|, with the Jacobian of T taken by autograd, point by
    # point, at a random initialization (so T is far from the identity); float64: rounding only.
    flow = build_flow(config).double()
    with torch.no_grad():
        for parameter in flow.parameters():
            parameter.add_(0.3 * torch.randn(parameter.shape, generator=_generator(1), dtype=torch.float64))
    transform = flow().transform
    x = torch.randn(6, 2, generator=_generator(2), dtype=torch.float64)
    expected = []
    for point in x:
        jacobian = torch.autograd.functional.jacobian(lambda y: transform(y[None])[0], point)
        z = transform(point[None])
        expected.append(_standard_normal_log_prob(z)[0] + torch.linalg.slogdet(jacobian).logabsdet)
    torch.testing.assert_close(flow_log_prob(flow, x), torch.stack(expected))
    # T^{-1} inverts T, so a sample's noise is recovered.
    samples = flow_sample(flow, 6, generator=_generator(4))
    noise = torch.randn(6, 2, generator=_generator(4), dtype=torch.float64)
    torch.testing.assert_close(transform(samples), noise)


def test_sampling_is_reproducible_and_leaves_the_global_rng_alone():
    flow = build_flow(SMALL_NSF)
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    a = flow_sample(flow, 100, generator=_generator(5))
    after = torch.random.get_rng_state()
    torch.manual_seed(999)  # another global state: no influence on the draws
    b = flow_sample(flow, 100, generator=_generator(5))
    assert torch.equal(before, after)
    assert torch.equal(a, b)
    assert not torch.equal(a, flow_sample(flow, 100, generator=_generator(6)))


def test_maximum_likelihood_learns_a_gaussian():
    # Data N(m, diag(s^2)) with m = (1, -2), s = (0.5, 2). A MAF contains this law exactly (one
    # affine autoregressive layer), so the fitted NLL on fresh points approaches the true one; the
    # paired gap is KL(p || q) >= 0 up to Monte Carlo error. 200 Adam steps bring it to 0.001-0.004
    # nats (seeds 0-2), far below the 0.05 asserted; its standard error on 4,000 points is ~0.001.
    mean, std = torch.tensor([1.0, -2.0]), torch.tensor([0.5, 2.0])
    x = mean + std * torch.randn(20_000, 2, generator=_generator(0))
    flow, history = train_flow(x, n_steps=200, generator=_generator(1), net=SMALL_MAF, batch_size=256,
                               learning_rate=1e-2, progress=False)
    assert history.final_step == 200
    test = mean + std * torch.randn(4000, 2, generator=_generator(2))
    truth = torch.distributions.Normal(mean, std).log_prob(test).sum(1)
    gap = (truth - flow_log_prob(flow, test)).double()
    standard_error = float(gap.std()) / math.sqrt(gap.shape[0])
    assert -5 * standard_error < float(gap.mean()) < 0.05


def test_trained_model_round_trip(tmp_path):
    x = torch.randn(500, 2, generator=_generator(0)) * torch.tensor([1.0, 3.0])
    flow, _ = train_flow(x, n_steps=10, generator=_generator(1), net=SMALL_NSF, batch_size=64,
                         out_dir=tmp_path / "run", progress=False,
                         extra_config={"data": {"spec": "x", "kind": "vector", "event_shape": [2]}})
    assert "flow" in family_names()
    model = TrainedModel.load(tmp_path / "run", family="flow")
    assert model.kind == "flow" and model.has_log_prob and model.event_shape == (2,) and model.step == 10
    points = torch.randn(20, 2, generator=_generator(2))
    torch.testing.assert_close(model.log_prob(points), flow_log_prob(flow, points), rtol=0, atol=0)
    drawn = model.sample(30, generator=_generator(3))
    assert torch.equal(drawn, flow_sample(flow, 30, generator=_generator(3)))
    # save/load through TrainedModel keeps both.
    again = TrainedModel.load(model.save(tmp_path / "copy.pt"), family="flow")
    assert torch.equal(again.log_prob(points), model.log_prob(points))
    assert torch.equal(again.sample(30, generator=_generator(3)), drawn)
    with pytest.raises(ValueError, match="'flow' model, not a 'diffusion'"):
        TrainedModel.load(tmp_path / "run", family="diffusion")
    with pytest.raises(ValueError, match="takes no options"):
        model.sample(3, generator=_generator(0), n_steps=10)


def test_resume_continues_exactly(tmp_path):
    # Cosine schedule, Adam and EMA are in the state: 20 steps straight equal 10 + resume 10.
    x = torch.randn(300, 2, generator=_generator())
    options = {"n_steps": 20, "net": SMALL_NSF, "batch_size": 32, "progress": False, "checkpoint_every": 10}
    train_flow(x, generator=_generator(5), out_dir=tmp_path / "straight", **options)

    def interrupt(step, path):
        if step == 10:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_flow(x, generator=_generator(5), out_dir=tmp_path / "cut", on_checkpoint=interrupt, **options)
    assert load_checkpoint(tmp_path / "cut")["step"] == 10
    train_flow(x, generator=_generator(99), out_dir=tmp_path / "cut", resume=True, **options)
    straight, resumed = load_checkpoint(tmp_path / "straight"), load_checkpoint(tmp_path / "cut")
    assert resumed["step"] == straight["step"] == 20
    for key in ("model",):
        for name, value in straight[key].items():
            assert torch.equal(value, resumed[key][name]), name
    for name, value in straight["ema"]["model"].items():
        assert torch.equal(value, resumed["ema"]["model"][name]), name
    assert straight["scheduler"] == resumed["scheduler"]


def test_configs_and_errors():
    assert default_flow_config(3, "maf") == {"name": "maf", "features": 3, "transforms": 4,
                                             "hidden": [64, 64]}
    with pytest.raises(ValueError, match="unknown flow 'realnvp'"):
        build_flow({"name": "realnvp", "features": 2})
    with pytest.raises(ValueError, match="unknown: \\['bins'\\]"):
        check_flow_config({**SMALL_MAF, "bins": 8})
    with pytest.raises(ValueError, match="bins must be an integer >= 2"):
        check_flow_config({**SMALL_NSF, "bins": 1})
    with pytest.raises(ValueError, match="hidden must be a non-empty list"):
        check_flow_config({**SMALL_NSF, "hidden": []})
    with pytest.raises(ValueError, match="3 features but x has 2 columns"):
        train_flow(torch.zeros(10, 2), n_steps=1, generator=_generator(), net={**SMALL_NSF, "features": 3})
    with pytest.raises(ValueError, match="n_steps"):
        FlowTask(build_flow(SMALL_NSF), n_steps=0)
    with pytest.raises(ValueError, match="n must be a positive integer"):
        flow_sample(build_flow(SMALL_NSF), 0)
    with pytest.raises(ValueError, match="NaN"):
        train_flow(torch.full((10, 2), math.nan), n_steps=1, generator=_generator(), net=SMALL_NSF,
                   progress=False)
