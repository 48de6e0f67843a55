"""Data for generative models: 2-D toys against their exact laws, the digits split, user files,
the standardizer and load_dataset.

Statistical tolerances: a sample mean or covariance entry of n i.i.d. draws is off its true value
by a normal error with standard error SE = sqrt(Var(statistic) / n) (central limit theorem, n >=
100,000 here); the variance is estimated from the draws themselves, a relative error of order
n^(-1/2) in the SE. We fail beyond Z_MAX = 5 SE: a false alarm has probability about 6e-7 per
comparison. Counts over cells are tested with Pearson's statistic, chi-square with (cells - 1)
degrees of freedom under the null; we fail above its 1 - 1e-6 quantile.
"""

from __future__ import annotations

import collections
import json
import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats

import measureflow as mf
from measureflow.data import (
    MODE_STD,
    TOY_NAMES,
    Dataset,
    MixtureSpec,
    Standardizer,
    digits,
    digits_to_pixels,
    load_array,
    load_dataset,
    toy_2d,
    toy_mixture,
)
from measureflow.data.toys import MOONS_NOISE, SWISSROLL_NOISE, SWISSROLL_SCALE

Z_MAX = 5.0
CHI2_LEVEL = 1e-6


def moment_z_scores(x: torch.Tensor, mean: torch.Tensor,
                    cov: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """z-scores (estimate - truth) / SE of the sample mean (d,) and covariance (d, d) of ``x``
    (n, d), SEs from the CLT with the variances estimated from ``x``."""
    x = x.to(torch.float64)
    n = x.shape[0]
    centred = x - x.mean(0)
    sample_cov = centred.T @ centred / (n - 1)
    mean_se = (torch.diagonal(sample_cov) / n).sqrt()
    products = centred[:, :, None] * centred[:, None, :]                  # (n, d, d)
    cov_se = (products.var(0) / n).sqrt()
    return (x.mean(0) - mean) / mean_se, (sample_cov - cov) / cov_se


def chi_square_excess(counts: torch.Tensor, probabilities: torch.Tensor) -> tuple[float, float]:
    """Pearson's statistic of ``counts`` against ``probabilities`` and its 1 - CHI2_LEVEL quantile."""
    n = float(counts.sum())
    expected = n * probabilities.to(torch.float64)
    statistic = float(((counts.to(torch.float64) - expected).square() / expected).sum())
    return statistic, float(stats.chi2.ppf(1 - CHI2_LEVEL, df=counts.numel() - 1))


def uniform_moments(f, g, lo: float, hi: float) -> float:
    """E[f(s) g(s)] for s ~ U[lo, hi] by adaptive quadrature (error ~1e-10, far below any SE)."""
    value, _ = integrate.quad(lambda s: f(s) * g(s), lo, hi, limit=200)
    return value / (hi - lo)


def exact_moments(name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The exact mean (2,) and covariance (2, 2) of each toy law, float64."""
    if name in ("8gaussians", "25gaussians"):
        spec = toy_mixture(name)
        return spec.mean(), spec.covariance()
    if name == "moons":
        # a ~ U[0, pi]: E cos = 0, E sin = 2/pi, E cos^2 = E sin^2 = 1/2, E cos sin = 0. Each arc
        # with probability 1/2: E x = 1/2, E y = 1/4, E x^2 = 1, E y^2 = 5/8 - 1/pi,
        # E xy = 1/4 - 1/pi; noise adds MOONS_NOISE^2 to each variance.
        mean = torch.tensor([0.5, 0.25], dtype=torch.float64)
        var_x = 1.0 - 0.25 + MOONS_NOISE**2
        var_y = 0.625 - 1 / math.pi - 0.0625 + MOONS_NOISE**2
        cov_xy = 0.25 - 1 / math.pi - 0.125
        return mean, torch.tensor([[var_x, cov_xy], [cov_xy, var_y]], dtype=torch.float64)
    if name == "checkerboard":
        # The 8 black unit squares have centres c with c_x c_y summing to 2 (see the toy's layout);
        # inside a square the two coordinates are independent U(-1/2, 1/2) around the centre, so
        # E x = E y = 0, E xy = 2 / 8 = 1/4, and each marginal is U[-2, 2] with variance 4/3.
        return torch.zeros(2, dtype=torch.float64), torch.tensor([[4 / 3, 0.25], [0.25, 4 / 3]],
                                                                    dtype=torch.float64)
    lo, hi = 1.5 * math.pi, 4.5 * math.pi

    def fx(s):
        return s * math.cos(s) / SWISSROLL_SCALE

    def fy(s):
        return s * math.sin(s) / SWISSROLL_SCALE

    def one(s):
        return 1.0

    wide = torch.float64
    mean = torch.tensor([uniform_moments(fx, one, lo, hi), uniform_moments(fy, one, lo, hi)], dtype=wide)
    second = torch.tensor([[uniform_moments(fx, fx, lo, hi), uniform_moments(fx, fy, lo, hi)],
                           [uniform_moments(fx, fy, lo, hi), uniform_moments(fy, fy, lo, hi)]], dtype=wide)
    return mean, second - torch.outer(mean, mean) + SWISSROLL_NOISE**2 * torch.eye(2, dtype=torch.float64)


# ---------------------------------------------------------------------------------------------
# toys


@pytest.mark.parametrize("name", TOY_NAMES)
def test_toy_shapes_dtype_and_determinism(name):
    first = toy_2d(name, 1000, torch.Generator().manual_seed(3))
    again = toy_2d(name, 1000, torch.Generator().manual_seed(3))
    other = toy_2d(name, 1000, torch.Generator().manual_seed(4))
    assert first.shape == (1000, 2) and first.dtype == torch.float32
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    single = toy_2d(name, 1, torch.Generator().manual_seed(0), dtype=torch.float64)
    assert single.shape == (1, 2) and single.dtype == torch.float64
    assert bool(torch.isfinite(first).all())


@pytest.mark.parametrize("name", TOY_NAMES)
def test_toy_mean_and_covariance_match_the_exact_law(name):
    mean, cov = exact_moments(name)
    x = toy_2d(name, 200_000, torch.Generator().manual_seed(11), dtype=torch.float64)
    z_mean, z_cov = moment_z_scores(x, mean, cov)
    assert float(z_mean.abs().max()) < Z_MAX, (name, z_mean)
    assert float(z_cov.abs().max()) < Z_MAX, (name, z_cov)


@pytest.mark.parametrize("name", ["8gaussians", "25gaussians"])
def test_mixture_toys_sample_the_mixture_spec_exactly(name):
    spec = toy_mixture(name)
    n = 200_000
    x = toy_2d(name, n, torch.Generator().manual_seed(5), dtype=torch.float64)
    # Modes are >= 15 MODE_STD apart, so the nearest mean identifies the component of every draw
    # (a misassignment needs a 7.5-sigma excursion: probability < 1e-13 per draw).
    component = torch.cdist(x, spec.means).argmin(1)
    counts = torch.bincount(component, minlength=spec.n_components)
    statistic, bound = chi_square_excess(counts, spec.weights)
    assert statistic < bound, (statistic, bound)
    # Within a mode the residual is N(0, MODE_STD^2 I): its mean square per coordinate has
    # SE = MODE_STD^2 sqrt(2 / (2 n)) (Var of a squared normal is 2 sigma^4; 2n coordinates).
    residual = x - spec.means[component]
    mean_square = float(residual.square().mean())
    se = MODE_STD**2 * math.sqrt(2 / (2 * n))
    assert abs(mean_square - MODE_STD**2) < Z_MAX * se
    # ... and uncorrelated across the two coordinates: SE of the mean product is MODE_STD^2 / sqrt(n).
    assert abs(float((residual[:, 0] * residual[:, 1]).mean())) < Z_MAX * MODE_STD**2 / math.sqrt(n)


def test_mixture_spec_geometry_and_log_prob():
    ring = toy_mixture("8gaussians")
    torch.testing.assert_close(ring.means.norm(dim=1), torch.full((8,), 2.0, dtype=torch.float64))
    grid = toy_mixture("25gaussians")
    assert sorted(set(grid.means.flatten().tolist())) == [-4.0, -2.0, 0.0, 2.0, 4.0]
    assert ring.means.dtype == ring.covs.dtype == ring.weights.dtype == torch.float64
    torch.testing.assert_close(ring.covs, MODE_STD**2 * torch.eye(2, dtype=torch.float64).expand(8, 2, 2))
    reference = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(probs=ring.weights),
        torch.distributions.MultivariateNormal(ring.means, covariance_matrix=ring.covs),
    )
    x = torch.randn(64, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 2
    torch.testing.assert_close(ring.log_prob(x), reference.log_prob(x), rtol=1e-12, atol=1e-10)
    assert ring.log_prob(x.float()).dtype == torch.float32
    assert json.loads(json.dumps(ring.to_dict()))["name"] == "8gaussians"
    assert isinstance(ring.to("cpu"), MixtureSpec)


def test_checkerboard_is_uniform_on_the_black_squares():
    n = 256_000
    x = toy_2d("checkerboard", n, torch.Generator().manual_seed(2), dtype=torch.float64)
    assert bool((x.abs() <= 2).all())
    column, row = torch.floor(x[:, 0] + 2).long(), torch.floor(x[:, 1] + 2).long()
    # Every draw lies on a black square ((i + j) even): mass exactly 1, not approximately.
    assert int(((column + row) % 2).sum()) == 0
    # Uniform over the 8 squares x (4 x 4 sub-cells of each) = 128 equally likely cells.
    sub_x = torch.floor((x[:, 0] + 2 - column) * 4).long().clamp(max=3)
    sub_y = torch.floor((x[:, 1] + 2 - row) * 4).long().clamp(max=3)
    cell = ((column * 4 + row) * 4 + sub_x) * 4 + sub_y
    counts = torch.bincount(cell, minlength=256)
    black = counts[counts > 0]
    assert black.numel() == 128
    statistic, bound = chi_square_excess(black, torch.full((128,), 1 / 128))
    assert statistic < bound, (statistic, bound)


def test_toys_reject_bad_arguments():
    with pytest.raises(ValueError, match="moons, 8gaussians, 25gaussians, checkerboard, swissroll"):
        toy_2d("spiral", 10)
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="n must be a positive integer"):
            toy_2d("moons", bad)
    with pytest.raises(TypeError, match="dtype"):
        toy_2d("moons", 10, dtype=torch.int64)
    with pytest.raises(ValueError, match="not a Gaussian mixture"):
        toy_mixture("moons")
    with pytest.raises(ValueError, match="8gaussians, 25gaussians"):
        toy_mixture("nope")


# ---------------------------------------------------------------------------------------------
# digits


def test_digits_split_sizes_range_and_partition():
    train_images, train_labels = digits("train")
    test_images, test_labels = digits("test")
    all_images, all_labels = digits("all")
    assert train_images.shape == (1437, 1, 8, 8) and test_images.shape == (360, 1, 8, 8)
    assert all_images.shape == (1797, 1, 8, 8)
    assert train_images.dtype == torch.float32 and train_labels.dtype == torch.int64
    assert float(all_images.min()) == -1.0 and float(all_images.max()) == 1.0
    # Values are x / 8 - 1 for integer intensities x in 0..16.
    pixels = digits_to_pixels(all_images)
    assert torch.equal(pixels, pixels.round())
    # Train and test are a partition of the whole set, as multisets of (image, label) rows
    # (the set holds a few identical images, so row identity, not content, defines overlap).
    def rows(images, labels):
        return collections.Counter(
            (tuple(image.flatten().tolist()), int(label)) for image, label in zip(images, labels, strict=True)
        )
    assert rows(train_images, train_labels) + rows(test_images, test_labels) == rows(all_images, all_labels)
    # Stratified: each class has round-to-nearest(20%) of its images in the test split, +-1.
    for digit in range(10):
        total = int((all_labels == digit).sum())
        assert abs(int((test_labels == digit).sum()) - 0.2 * total) <= 1


def test_digits_match_scikit_learn_and_are_fixed():
    from sklearn.datasets import load_digits

    images, labels = digits("all")
    bunch = load_digits()
    pixels = torch.tensor(bunch.data, dtype=torch.float32)
    assert torch.equal(digits_to_pixels(images).reshape(-1, 64), pixels)
    assert torch.equal(labels, torch.tensor(bunch.target))
    first, again = digits("test"), digits("test")
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    first[0].fill_(0.0)  # callers own their copy
    assert not torch.equal(first[0], digits("test")[0])
    assert float(digits_to_pixels(torch.tensor([-2.0, 2.0]), clamp=True).min()) == 0.0
    with pytest.raises(ValueError, match="train, test, all"):
        digits("validation")


# ---------------------------------------------------------------------------------------------
# files


def test_load_array_reads_csv_and_npy(tmp_path):
    (tmp_path / "header.csv").write_text("# comment\nx,y\n1,2\n\n3.5,-4e-1\n")
    torch.testing.assert_close(load_array(tmp_path / "header.csv"), torch.tensor([[1.0, 2.0], [3.5, -0.4]]))
    (tmp_path / "column.csv").write_text("value\n1\n2\n3\n")
    assert load_array(tmp_path / "column.csv").shape == (3, 1)
    (tmp_path / "spaces.csv").write_text("1 2 3\n4 5 6\n")
    assert load_array(tmp_path / "spaces.csv", dim=3).shape == (2, 3)
    (tmp_path / "semicolon.csv").write_text("a;b\n1;2\n3;4\n")
    assert load_array(tmp_path / "semicolon.csv").tolist() == [[1.0, 2.0], [3.0, 4.0]]
    np.save(tmp_path / "points.npy", np.arange(12, dtype=np.float64).reshape(6, 2))
    loaded = load_array(tmp_path / "points.npy", dim=2)
    assert loaded.dtype == torch.float32 and loaded.shape == (6, 2) and float(loaded[5, 1]) == 11.0


@pytest.mark.parametrize(
    ("filename", "content", "kwargs", "message"),
    [
        ("missing.csv", None, {}, "does not exist"),
        ("points.txt", "1,2\n", {}, "unknown extension '.txt'; use a .csv or .npy"),
        ("text.csv", "1,2\n3,abc\n", {}, "line 2 holds the non-numeric value 'abc'"),
        ("ragged.csv", "1,2\n3,4,5\n", {}, "line 2 has 3 values"),
        ("nan.csv", "x,y\n1,2\n3,4\n5,nan\n", {}, r"row 3 \(line 4\) holds NaN or infinity"),
        ("inf.csv", "1,2\ninf,4\n", {}, r"row 2 \(line 2\) holds NaN or infinity"),
        ("few.csv", "x,y\n1,2\n", {}, "has 1 data row"),
        ("empty.csv", "", {}, "has 0 data row"),
        ("wide.csv", "1,2,3\n4,5,6\n", {"dim": 2}, "has 3 columns, expected dim=2"),
        ("huge.csv", "1,2\n1e39,4\n", {}, "float32 range"),
        ("vector.npy", np.arange(5.0), {}, r"must be 2-D, \(n, d\); reshape"),
        ("cube.npy", np.zeros((2, 2, 2)), {}, "must be 2-D"),
        ("strings.npy", np.array([["a", "b"], ["c", "d"]]), {}, "only real numbers"),
        ("objects.npy", np.array([[1, None], [2, 3]], dtype=object), {}, "Python objects"),
        ("nan.npy", np.array([[1.0, 2.0], [np.nan, 1.0], [0.0, 0.0]]), {}, "row 2 holds NaN"),
        ("truncated.npy", "truncate", {}, "truncated or not a .npy|not a readable .npy"),
    ],
)
def test_load_array_errors_name_the_file_and_the_problem(tmp_path, filename, content, kwargs, message):
    path = tmp_path / filename
    if isinstance(content, str) and content == "truncate":
        np.save(path, np.zeros((100, 3)))
        path.write_bytes(path.read_bytes()[:200])
    elif isinstance(content, str):
        path.write_text(content)
    elif isinstance(content, np.ndarray):
        np.save(path, content, allow_pickle=True)
    with pytest.raises(ValueError, match=message) as caught:
        load_array(path, **kwargs)
    text = str(caught.value)
    assert filename in text and "\n" not in text


def test_load_array_rejects_bad_options(tmp_path):
    with pytest.raises(ValueError, match="min_rows"):
        load_array(tmp_path / "a.csv", min_rows=0)
    with pytest.raises(ValueError, match="dim"):
        load_array(tmp_path / "a.csv", dim=0)
    (tmp_path / "folder.csv").mkdir()
    with pytest.raises(ValueError, match="not a regular file"):
        load_array(tmp_path / "folder.csv")


# ---------------------------------------------------------------------------------------------
# Standardizer, Dataset, load_dataset


def test_standardizer_round_trip_and_constant_features():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(500, 3, generator=generator, dtype=torch.float64) * torch.tensor([2.0, 0.5, 1.0]) + 7.0
    x[:, 2] = 3.25  # a constant feature
    standardizer = Standardizer.fit(x)
    z = standardizer.forward(x)
    torch.testing.assert_close(z.mean(0), torch.zeros(3, dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(z[:, :2].std(0, unbiased=False), torch.ones(2, dtype=torch.float64))
    assert float(standardizer.std[2]) == 1.0 and bool((z[:, 2] == 0).all())
    torch.testing.assert_close(standardizer.inverse(z), x, rtol=1e-14, atol=1e-12)
    restored = Standardizer.from_dict(json.loads(json.dumps(standardizer.to_dict())))
    assert torch.equal(restored.mean, standardizer.mean) and torch.equal(restored.std, standardizer.std)
    # dtype and device follow the input; the statistics stay float64.
    assert standardizer.forward(x.float()).dtype == torch.float32
    images = digits("test")[0]
    image_standardizer = Standardizer.fit(images)
    assert image_standardizer.mean.shape == (1, 8, 8)
    torch.testing.assert_close(image_standardizer.inverse(image_standardizer.forward(images)), images)
    with pytest.raises(ValueError, match=r"shape \(n, 3\)"):
        standardizer.forward(torch.zeros(4, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match="NaN"):
        Standardizer.fit(torch.tensor([[1.0], [float("nan")]]))
    with pytest.raises(ValueError, match="'mean' and 'std'"):
        Standardizer.from_dict({"mean": [0.0]})


def test_load_dataset_resolves_every_kind_of_spec(tmp_path):
    generator = torch.Generator().manual_seed(0)
    toy = load_dataset("swissroll", generator=generator)
    assert toy.kind == "vector" and toy.n == 100_000 and toy.event_shape == (2,) and toy.dim == 2
    assert toy.labels is None and toy.name == "swissroll"
    small = load_dataset("moons", n=10, generator=torch.Generator().manual_seed(1))
    assert torch.equal(small.x, toy_2d("moons", 10, torch.Generator().manual_seed(1)))
    images = load_dataset("digits")
    assert images.kind == "image" and images.n == 1437
    assert images.event_shape == (1, 8, 8) and images.dim == 64
    assert images.labels is not None and images.labels.shape == (1437,)
    subset = load_dataset("digits", n=100, generator=torch.Generator().manual_seed(0))
    assert subset.n == 100 and subset.labels.shape == (100,)
    np.save(tmp_path / "data.npy", np.ones((20, 3)))
    from_file = load_dataset(tmp_path / "data.npy")
    assert from_file.kind == "vector" and from_file.event_shape == (3,) and from_file.dim == 3
    (tmp_path / "data.csv").write_text("1,2\n3,4\n5,6\n")
    assert load_dataset(str(tmp_path / "data.csv")).n == 3
    assert json.loads(json.dumps(from_file.summary()))["event_shape"] == [3]
    with pytest.raises(ValueError, match=r"digits or a path to a file ending in \.csv or \.npy"):
        load_dataset("cifar10")
    with pytest.raises(ValueError, match="exceeds the 3 samples"):
        load_dataset(tmp_path / "data.csv", n=4)
    with pytest.raises(ValueError, match="n must be None or a positive integer"):
        load_dataset("moons", n=0)
    with pytest.raises(ValueError, match="kind must be one of vector, image"):
        Dataset("x", torch.zeros(3, 2), "table")
    with pytest.raises(ValueError, match=r"\(n, C, H, W\)"):
        Dataset("x", torch.zeros(3, 2), "image")


def test_public_names():
    for module in ("measureflow.data", "measureflow.data.toys", "measureflow.data.images",
                   "measureflow.data.files", "measureflow.data.dataset"):
        namespace: dict = {}
        exec(f"from {module} import *", namespace)
    assert mf.data.toy_2d is toy_2d and "load_dataset" in mf.data.__all__
