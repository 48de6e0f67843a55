"""TrainedModel: one type that loads, samples and scores every generative family in data units."""

from __future__ import annotations

import pytest
import torch

from measureflow.data import Standardizer
from measureflow.generative import TrainedModel, family_names, get_family
from measureflow.generative.diffusion import log_likelihood, score_model, train_diffusion
from measureflow.generative.ebm import train_ebm
from measureflow.generative.gan import train_gan
from measureflow.generative.train import load_checkpoint, save_checkpoint

TINY_DIFFUSION = {"name": "mlp", "dim": 2, "hidden": 16, "depth": 2}
TINY_GAN = {"latent_dim": 2, "hidden": 8, "depth": 1, "critic_hidden": 8, "critic_depth": 1}


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def data():
    # Data far from standard units, so a model left in model units would be caught at once.
    x = torch.randn(400, 2, generator=_generator()) * torch.tensor([1.0, 5.0]) + torch.tensor([100.0, -50.0])
    standardizer = Standardizer.fit(x)
    extra = {"standardizer": standardizer.to_dict(),
             "data": {"spec": "file.npy", "kind": "vector", "event_shape": [2]}}
    return x, standardizer, extra


@pytest.fixture(scope="module")
def runs(tmp_path_factory, data):
    x, standardizer, extra = data
    z = standardizer.forward(x).float()
    root = tmp_path_factory.mktemp("runs")
    train_diffusion(z, n_steps=8, generator=_generator(1), net=TINY_DIFFUSION, batch_size=32,
                    out_dir=root / "diffusion", progress=False, extra_config=extra)
    train_gan(z, loss="ns", n_steps=4, generator=_generator(2), batch_size=16, net=TINY_GAN,
              out_dir=root / "gan", progress=False, extra_config=extra)
    train_ebm(z, n_steps=4, generator=_generator(3), batch_size=16, hidden=8, depth=1,
              out_dir=root / "ebm", progress=False, config=extra)
    return root


def test_every_family_is_registered():
    assert {"diffusion", "gan", "ebm", "flow"} <= set(family_names())
    with pytest.raises(ValueError, match="no model family"):
        get_family("vae")


@pytest.mark.parametrize("kind", ["diffusion", "gan", "ebm"])
def test_load_gives_the_ema_weights_and_the_data_description(runs, data, kind):
    _, standardizer, _ = data
    model = TrainedModel.load(runs / kind)
    payload = load_checkpoint(runs / kind)
    assert model.kind == kind and model.step == payload["step"]
    assert model.event_shape == (2,) and model.data_kind == "vector" and model.data_spec == "file.npy"
    for name, value in model.network.state_dict().items():
        assert torch.equal(value, payload["ema"]["model"][name]), name
    assert model.trained is not None  # the last iterate, beside the EMA
    torch.testing.assert_close(model.standardizer.mean, standardizer.mean)
    assert not any(parameter.requires_grad for parameter in model.network.parameters())
    with pytest.raises(ValueError, match=f"not a 'flow' model|holds a '{kind}' model"):
        TrainedModel.load(runs / kind, family="flow")


def test_gan_samples_are_mapped_back_to_the_data_units(runs):
    model = TrainedModel.load(runs / "gan")
    z = model.sample_model_units(50, generator=_generator(5))
    x = model.sample(50, generator=_generator(5))
    torch.testing.assert_close(x, model.standardizer.inverse(z))
    # Exact identity above; on the units alone: standardized draws sit near 0, data near (100, -50).
    assert float(x[:, 0].mean()) > 50.0
    with pytest.raises(ValueError, match="no tractable density"):
        model.log_prob(x)
    with pytest.raises(ValueError, match="positive integer"):
        model.sample(0)


def test_diffusion_log_prob_is_the_change_of_units_of_the_model_density(runs, data):
    x, standardizer, _ = data
    model = TrainedModel.load(runs / "diffusion")
    points = x[:6]
    # log p_data(x) = log p_model((x - m)/s) - sum log s, against the library's likelihood run on
    # the standardized points (same solver and tolerances: equal up to round-off).
    score = score_model(model)
    expected = log_likelihood(score, score.sde, standardizer.forward(points), rtol=1e-4,
                              atol=1e-4).log_prob - standardizer.log_abs_det()
    measured = model.log_prob(points, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(measured, expected, rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="shape"):
        model.log_prob(points[:, :1])
    with pytest.raises(ValueError, match="NaN"):
        model.log_prob(torch.full((2, 2), float("nan")))


def test_ebm_samples_through_mala_in_data_units(runs):
    model = TrainedModel.load(runs / "ebm")
    x = model.sample(20, generator=_generator(6), n_steps=4, step_size=0.01)
    assert x.shape == (20, 2) and bool(torch.isfinite(x).all())
    assert float(x[:, 0].mean()) > 50.0


@pytest.mark.parametrize("kind", ["diffusion", "gan", "ebm"])
def test_save_and_load_round_trip(runs, tmp_path, kind):
    model = TrainedModel.load(runs / kind)
    path = model.save(tmp_path / f"{kind}.pt")
    again = TrainedModel.load(path)
    assert again.kind == kind and again.step == model.step and again.config == model.config
    for (name, a), (_, b) in zip(model.network.state_dict().items(), again.network.state_dict().items(),
                                 strict=True):
        assert torch.equal(a, b), name
    if kind == "gan":
        assert torch.equal(again.sample(7, generator=_generator(8)), model.sample(7, generator=_generator(8)))


def test_bad_checkpoints_are_one_value_error(runs, tmp_path):
    payload = load_checkpoint(runs / "gan")
    unknown = tmp_path / "unknown.pt"
    save_checkpoint(unknown, {**payload, "kind": "vae"})
    with pytest.raises(ValueError, match="'vae' model"):
        TrainedModel.load(unknown)
    no_ema = tmp_path / "no_ema.pt"
    save_checkpoint(no_ema, {key: value for key, value in payload.items() if key != "ema"})
    with pytest.raises(ValueError, match="no EMA weights"):
        TrainedModel.load(no_ema)
    bad_units = tmp_path / "bad_units.pt"
    save_checkpoint(bad_units, {**payload, "config": {**payload["config"], "standardizer": {"mean": [0.0]}}})
    with pytest.raises(ValueError, match="standardizer"):
        TrainedModel.load(bad_units)
    wrong_net = tmp_path / "wrong_net.pt"
    save_checkpoint(wrong_net, {**payload, "config": {**payload["config"], "net": {**payload["config"]["net"],
                                                                                    "hidden": 9}}})
    with pytest.raises(ValueError, match="does not hold a gan model"):
        TrainedModel.load(wrong_net)


def test_non_finite_weights_are_refused_on_load(runs, tmp_path):
    payload = load_checkpoint(runs / "gan")
    ema = dict(payload["ema"]["model"])
    name = next(key for key, value in ema.items() if value.is_floating_point())
    ema[name] = torch.full_like(ema[name], float("nan"))
    path = tmp_path / "nan.pt"
    save_checkpoint(path, {**payload, "ema": {**payload["ema"], "model": ema}})
    with pytest.raises(ValueError, match="NaN or infinite weights"):
        TrainedModel.load(path)
