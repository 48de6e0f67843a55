"""Supervised toy sets and labelled files for two-layer networks: the laws as documented, the inputs
the bias-free network needs, the parity of a bias-free network on the circle, file loading and
label mapping, and the train/test split.

Statistical tolerances: a mean of n i.i.d. draws is off by a normal error of standard error
SE = sd / sqrt(n); a sample standard deviation of n normal draws has SE about sd / sqrt(2 n);
a fraction p has SE sqrt(p (1 - p) / n). We fail beyond Z_MAX = 5 SE (false alarm about 6e-7
per comparison).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from stats_helpers import assert_within_se

from measureflow.data import (
    SUPERVISED_NAMES,
    SupervisedData,
    load_supervised,
    supervised_dataset,
    train_test_split,
)
from measureflow.data.supervised import CIRCLE_MODES, DEFAULT_NOISE, SUPERVISED_SETS
from measureflow.nets import TwoLayer

N_STAT = 20_000


def draw(name: str, n: int = 200, seed: int = 0, **kwargs) -> SupervisedData:
    return supervised_dataset(name, n, torch.Generator().manual_seed(seed), **kwargs)


@pytest.mark.parametrize("name", SUPERVISED_NAMES)
def test_shapes_dtypes_and_determinism(name):
    data = draw(name, 50)
    dims = {"circle": 2, "sine": 2, "moons": 3, "xor": 3}
    assert data.x.shape == (50, dims[name]) and data.y.shape == (50,) and data.n == 50
    assert data.x.dtype == data.y.dtype == torch.float32 and data.x.device.type == "cpu"
    assert data.task == SUPERVISED_SETS[name].task and data.noise == DEFAULT_NOISE
    assert torch.isfinite(data.x).all() and torch.isfinite(data.y).all()
    again, other = draw(name, 50), draw(name, 50, seed=1)
    assert torch.equal(again.x, data.x) and torch.equal(again.y, data.y)
    assert not torch.equal(other.x, data.x)
    wide = draw(name, 50, dtype=torch.float64)
    assert wide.x.dtype == torch.float64
    # Drawn in float64 whatever the dtype: the float32 set is the float64 one rounded.
    torch.testing.assert_close(wide.x.float(), data.x, rtol=0, atol=0)
    # The coordinates are what the inputs are made of (up to float32 rounding: the set computes
    # cos t in float64 before the cast, inputs() in float32).
    torch.testing.assert_close(data.inputs(data.coordinates), data.x)
    assert len(data.coordinate_names) == data.coordinates.shape[1]
    summary = data.summary()
    assert summary["name"] == name and summary["n"] == 50 and summary["task"] == data.task


def test_inputs_carry_the_constant_coordinate_where_the_bias_is_needed():
    circle, sine = draw("circle", noise=0.0), draw("sine", noise=0.0)
    torch.testing.assert_close(circle.x.norm(dim=1), torch.ones(200))  # on the unit circle
    t = circle.coordinates[:, 0]
    assert t.min() >= 0 and t.max() < 2 * math.pi
    assert torch.equal(sine.x[:, 1], torch.ones(200)) and sine.x[:, 0].abs().max() <= 1
    for name in ("moons", "xor"):
        assert torch.equal(draw(name).x[:, 2], torch.ones(200))


def test_regression_targets_without_noise():
    circle = draw("circle", noise=0.0, dtype=torch.float64)
    sine = draw("sine", noise=0.0, dtype=torch.float64)
    t = circle.coordinates[:, 0]
    expected = torch.sin(t) + 0.5 * torch.cos(2 * t) + 0.25 * torch.sin(4 * t)
    assert CIRCLE_MODES == ((1, "sin", 1.0), (2, "cos", 0.5), (4, "sin", 0.25))
    torch.testing.assert_close(circle.y, expected)
    torch.testing.assert_close(circle.target(circle.coordinates), expected)
    torch.testing.assert_close(sine.y, torch.sin(math.pi * sine.x[:, 0]))


@pytest.mark.parametrize("name", ["circle", "sine"])
def test_label_noise_is_centred_gaussian_of_the_given_std(name):
    noise = 0.3
    data = draw(name, N_STAT, noise=noise, dtype=torch.float64)
    residual = data.y - data.target(data.coordinates)
    assert_within_se(float(residual.mean()), 0.0, noise / math.sqrt(N_STAT), f"{name} noise mean")
    assert_within_se(float(residual.std()), noise, noise / math.sqrt(2 * N_STAT), f"{name} noise std")


@pytest.mark.parametrize("name", ["moons", "xor"])
def test_point_noise_is_added_after_the_label(name):
    # The noise is drawn last, so one seed gives the same clean points and labels at any noise level.
    noise = 0.2
    clean = draw(name, N_STAT, noise=0.0, dtype=torch.float64)
    noisy = draw(name, N_STAT, noise=noise, dtype=torch.float64)
    assert torch.equal(clean.y, noisy.y)
    shift = noisy.coordinates - clean.coordinates
    se_mean, se_std = noise / math.sqrt(N_STAT), noise / math.sqrt(2 * N_STAT)
    assert_within_se(shift.mean(0), torch.zeros(2), se_mean, f"{name} point noise mean")
    assert_within_se(shift.std(0), torch.full((2,), noise), se_std, f"{name} point noise std")


def test_moons_lie_on_their_arcs_with_balanced_labels():
    data = draw("moons", N_STAT, noise=0.0, dtype=torch.float64)
    z = data.coordinates + torch.tensor([0.5, 0.25], dtype=torch.float64)  # undo the centring
    upper = data.y == 1
    torch.testing.assert_close(z[upper].norm(dim=1), torch.ones(int(upper.sum()), dtype=torch.float64))
    assert z[upper, 1].min() >= 0
    lower_centre = torch.tensor([1.0, 0.5], dtype=torch.float64)
    torch.testing.assert_close((z[~upper] - lower_centre).norm(dim=1),
                               torch.ones(int((~upper).sum()), dtype=torch.float64))
    assert z[~upper, 1].max() <= 0.5 + 1e-12
    fraction = float(upper.double().mean())
    assert_within_se(fraction, 0.5, math.sqrt(0.25 / N_STAT), "fraction of upper-moon points")


def test_xor_labels_are_the_sign_of_the_product():
    data = draw("xor", N_STAT, noise=0.0, dtype=torch.float64)
    z = data.coordinates
    assert z.abs().max() <= 1
    assert torch.equal(data.y, torch.where(z[:, 0] * z[:, 1] >= 0, 1.0, -1.0).double())
    fraction = float((data.y == 1).double().mean())
    assert_within_se(fraction, 0.5, math.sqrt(0.25 / N_STAT), "fraction of +1 labels")


def _fourier(values: torch.Tensor) -> torch.Tensor:
    """|c_k| of values at t_i = 2 pi i / m, k = 0..m/2."""
    return torch.fft.rfft(values).abs() / values.shape[0]


# Fourier modes k = 0..9 of f(cos t, sin t) that a bias-free network cannot have, per activation.
_VANISHING = {
    "relu": [3, 5, 7, 9], "smooth-relu": [3, 5, 7, 9],    # linear + even: no odd k >= 3
    "tanh": [0, 2, 4, 6, 8], "erf": [0, 2, 4, 6, 8],      # odd: no even k
    "sigmoid": [2, 4, 6, 8],                              # constant + odd: no even k >= 2
}


@pytest.mark.parametrize("activation", list(_VANISHING))
def test_parity_of_a_bias_free_network_on_the_circle(activation):
    # The module docstring's claim: relu(u) = u/2 + |u|/2 gives a linear plus an even function of
    # x, so on the circle only Fourier modes 0, 1 and even ones; odd activations only odd modes;
    # sigmoid = 1/2 + tanh(u/2)/2 adds the constant. Exact at any width, so the vanishing modes
    # are round-off: float64 sums over 300 neurons and 256 points leave about 1e-12 of the
    # largest coefficient (measured 3e-12 for smooth-relu). The allowed modes up to k = 5 are
    # present (above 1e-2 of the largest in these draws; we ask for 1e-6).
    net = TwoLayer(2, 300, activation, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    t = 2 * math.pi * torch.arange(256, dtype=torch.float64) / 256
    with torch.no_grad():
        spectrum = _fourier(net(torch.stack([torch.cos(t), torch.sin(t)], dim=1)))
    vanishing = _VANISHING[activation]
    assert spectrum[vanishing].max() < 1e-10 * spectrum.max()
    allowed = [k for k in range(6) if k not in vanishing]
    assert spectrum[allowed].min() > 1e-6 * spectrum.max()
    # The circle's target (modes 1, 2 and 4) is therefore within reach of relu networks only.
    reachable = all(k not in vanishing for k, _, _ in CIRCLE_MODES)
    assert reachable == (activation in ("relu", "smooth-relu"))


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="unknown supervised data set 'spirals'; choose one of circle"):
        draw("spirals")
    with pytest.raises(ValueError, match="n must be a positive integer"):
        draw("sine", 0)
    with pytest.raises(ValueError, match="noise must be finite and >= 0"):
        draw("sine", noise=-0.1)
    with pytest.raises(ValueError, match="noise"):
        draw("sine", noise=float("nan"))
    with pytest.raises(TypeError, match="dtype"):
        draw("sine", dtype=torch.int64)


def test_supervised_data_validates_its_fields():
    x = torch.zeros(3, 2)
    with pytest.raises(ValueError, match="-1 or \\+1, got values \\{0, 1\\}"):
        SupervisedData("d", x, torch.tensor([0.0, 1.0, 1.0]), "classification")
    with pytest.raises(ValueError, match="y must be a tensor of shape \\(3,\\)"):
        SupervisedData("d", x, torch.zeros(2), "regression")
    with pytest.raises(ValueError, match="NaN"):
        SupervisedData("d", x, torch.tensor([0.0, float("nan"), 1.0]), "regression")
    with pytest.raises(ValueError, match="task"):
        SupervisedData("d", x, torch.zeros(3), "ranking")
    with pytest.raises(ValueError, match="no plotting coordinates"):
        SupervisedData("d", torch.zeros(3, 4), torch.zeros(3), "regression").inputs(torch.zeros(1, 4))


def write_csv(path, values, header="a,b,y"):
    np.savetxt(path, values, delimiter=",", header=header, comments="")
    return path


def test_load_supervised_splits_columns_and_maps_labels(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20, 2))
    zero_one = (x[:, 0] > 0).astype(float)
    path = write_csv(tmp_path / "binary.csv", np.c_[x, zero_one])
    regression = load_supervised(path)
    assert regression.task == "regression" and regression.x.shape == (20, 2) and regression.source is None
    np.testing.assert_array_equal(regression.y.numpy(), zero_one.astype(np.float32))  # kept as given
    classification = load_supervised(path, "classification")
    np.testing.assert_array_equal(classification.y.numpy(), 2 * zero_one - 1)  # 0 -> -1, 1 -> +1
    torch.testing.assert_close(classification.coordinates, classification.x, rtol=0, atol=0)
    assert classification.coordinate_names == ("x1", "x2") and classification.target(classification.x) is None
    signs = tmp_path / "signs.npy"
    np.save(signs, np.c_[x, 2 * zero_one - 1, rng.normal(size=20), 2 * zero_one - 1])
    wide = load_supervised(signs, "classification", dtype=torch.float64)
    assert wide.x.shape == (20, 4) and wide.coordinates is None and wide.x.dtype == torch.float64
    np.testing.assert_array_equal(wide.y.numpy(), 2 * zero_one - 1)
    subset = load_supervised(path, n=7, generator=torch.Generator().manual_seed(0))
    assert subset.n == 7
    rows = {tuple(row) for row in regression.x.tolist()}
    assert all(tuple(row) in rows for row in subset.x.tolist())


def test_load_supervised_refuses_bad_files(tmp_path):
    x = np.random.default_rng(1).normal(size=(10, 2))
    three = write_csv(tmp_path / "three.csv", np.c_[x, np.arange(10) % 3])
    with pytest.raises(ValueError, match="must be -1/\\+1 or 0/1, got values \\{0, 1, 2\\}"):
        load_supervised(three, "classification")
    nan = np.c_[x, np.ones(10)]
    nan[4, 0] = np.nan
    with pytest.raises(ValueError, match="row 5 .* NaN"):
        load_supervised(write_csv(tmp_path / "nan.csv", nan))
    with pytest.raises(ValueError, match="needs the inputs x"):
        load_supervised(write_csv(tmp_path / "one.csv", np.ones((5, 1)), header="y"))
    with pytest.raises(ValueError, match="does not exist"):
        load_supervised(tmp_path / "absent.csv")
    with pytest.raises(ValueError, match="n = 50 rows asked"):
        load_supervised(three, n=50)
    with pytest.raises(ValueError, match="task"):
        load_supervised(three, "clustering")


def test_train_test_split():
    data = draw("moons", 101)
    train, test = train_test_split(data, 0.3, torch.Generator().manual_seed(5))
    assert (train.n, test.n) == (71, 30) and train.source is data.source and train.noise == data.noise
    # Disjoint and covering: every row lands in exactly one part, with its label and coordinates.
    rows = sorted(map(tuple, torch.cat([train.x, test.x]).tolist()))
    assert rows == sorted(map(tuple, data.x.tolist()))
    again, _ = train_test_split(data, 0.3, torch.Generator().manual_seed(5))
    assert torch.equal(again.x, train.x) and torch.equal(again.y, train.y)
    torch.testing.assert_close(train.inputs(train.coordinates), train.x, rtol=0, atol=0)
    whole, none = train_test_split(data, 0.0, torch.Generator().manual_seed(5))
    assert none is None and whole.n == 101
    with pytest.raises(ValueError, match="test_fraction must lie in"):
        train_test_split(data, 1.0)
    with pytest.raises(ValueError, match="rounds to no test row"):
        train_test_split(draw("sine", 3), 0.1)
    with pytest.raises(ValueError, match="leaves no training row"):
        train_test_split(draw("sine", 2), 0.9)
