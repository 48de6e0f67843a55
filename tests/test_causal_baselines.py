"""ANM, IGCI and RECI (measureflow.inference.causal.baselines), against cdt and causal-learn.

Not compared: cdt 0.6's ANM and its IGCI slope ("integral") estimator, which are broken on the
installed numpy/scikit-learn: ANM's GP predicts shape (n,) against targets (n, 1), so its
"residual" is an (n, n) matrix whose HSIC is the same both ways (the score is exactly 0 on every
pair); ``x[[idx]]`` in the slope estimator is a (1, n) array since numpy 1.23, so both sums are
empty and it returns 0. ANM is compared with causal-learn's instead, the slope estimator with a
transcription of the reference loop (igci.m, which cdt's function copies).
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

from measureflow.inference.causal.baselines import anm_direction, igci_direction, reci_direction


def _mixture_pair(seed: int, n: int = 300) -> tuple[torch.Tensor, torch.Tensor]:
    """X from a 3-component Gaussian mixture with random means, sds and weights;
    Y = tanh(2X) + X^3/3 + U(-1/2, 1/2), an additive noise model with X -> Y."""
    gen = torch.Generator().manual_seed(seed)
    means = torch.rand(3, generator=gen, dtype=torch.float64) * 4 - 2
    sds = 0.2 + 0.4 * torch.rand(3, generator=gen, dtype=torch.float64)
    weights = torch.rand(3, generator=gen, dtype=torch.float64) + 0.5
    component = torch.multinomial(weights, n, replacement=True, generator=gen)
    x = means[component] + sds[component] * torch.randn(n, generator=gen, dtype=torch.float64)
    y = torch.tanh(2 * x) + x**3 / 3 + torch.rand(n, generator=gen, dtype=torch.float64) - 0.5
    return x, y


@pytest.fixture(scope="module")
def cdt_pairwise():
    """cdt's pairwise models, imported once (about 5-10 s). Its import warns (no GPU found, a
    scipy deprecation), which the repository's ``-W error`` would turn into failures."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pytest.importorskip("cdt")
        from cdt.causality import pairwise
    return pairwise


def _pairs_frame(pairs):
    pandas = pytest.importorskip("pandas")
    return pandas.DataFrame({"A": [x.numpy() for x, _ in pairs], "B": [y.numpy() for _, y in pairs]})


# ------------------------------------------------------------------------------------------
# ANM


@pytest.mark.parametrize("regressor", ["gp", "kernel-ridge"])
def test_anm_identifies_an_additive_noise_pair(regressor):
    x, y = _mixture_pair(0)
    result = anm_direction(x, y, regressor=regressor)
    assert result.method == "anm" and result.direction == 1 and result.score > 0
    # The causal residual passes the HSIC test (p from 0.36 to 0.96 on seeds 0-7; the anticausal
    # p-value ranges from 1e-14 to 0.35 over those seeds, so no threshold is asserted on it).
    assert result.details["p_value_xy"] > 0.05
    assert result.score == pytest.approx(result.details["log_p_value_xy"] - result.details["log_p_value_yx"])
    # Swapping x and y swaps the two fits and tests: the score changes sign exactly.
    assert anm_direction(y, x, regressor=regressor).score == -result.score
    assert set(result.fitted) == {"x", "y", "y_given_x", "x_given_y"}
    json.dumps(result.to_dict())


def test_anm_agrees_with_causal_learn():
    """causal-learn's ANM fits the same scikit-learn GP (same kernel, bounds and start; we copy
    them), so on the same standardized data the fits agree to the optimizer's determinism (the
    same L-BFGS run: 1e-8 in units of the data's sd). Its test is KCI_UInd with its own "empirical"
    bandwidth (0.5 sd at n = 300, ours the median heuristic) and a different null variance
    estimate, so p-values differ; the decision (which direction's p-value is larger) must agree
    on clear pairs."""
    cl_anm = pytest.importorskip("causallearn.search.FCMBased.ANM.ANM")
    from sklearn.exceptions import ConvergenceWarning

    for seed in (0, 1):
        x, y = _mixture_pair(seed)
        ours = anm_direction(x, y)
        xs, ys = ours.fitted["x"].numpy()[:, None], ours.fitted["y"].numpy()[:, None]
        model = cl_anm.ANM()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            theirs_fit = model.fit_gp(xs, ys)[:, 0]
            p_forward, p_backward = model.cause_or_effect(xs, ys)
        np.testing.assert_allclose(ours.fitted["y_given_x"].numpy(), theirs_fit, atol=1e-8)
        assert ours.direction == 1 and p_forward > p_backward


def test_anm_subsamples_reproducibly_with_a_generator():
    x, y = _mixture_pair(2, n=400)
    first, again = (anm_direction(x, y, regressor="kernel-ridge", max_points=120,
                                  generator=torch.Generator().manual_seed(0)) for _ in range(2))
    assert first.details["n_used"] == 120 and first.fitted["x"].shape == (120,)
    assert first.score == again.score
    other = anm_direction(x, y, regressor="kernel-ridge", max_points=120,
                          generator=torch.Generator().manual_seed(5))
    assert other.score != first.score


# ------------------------------------------------------------------------------------------
# IGCI


def _igci_m_slope(x: np.ndarray, y: np.ndarray) -> float:
    """igci.m's integral-approximation estimator, loop for loop (as in cdt, with its indexing
    fixed and a stable sort, as Matlab's): f = (a - b) / m, < 0 for X -> Y."""
    m = len(x)
    a = b = 0.0
    ind1, ind2 = np.argsort(x, kind="stable"), np.argsort(y, kind="stable")
    for i in range(m - 1):
        x1, x2, y1, y2 = x[ind1[i]], x[ind1[i + 1]], y[ind1[i]], y[ind1[i + 1]]
        if x1 != x2 and y1 != y2:
            a += np.log(abs((y2 - y1) / (x2 - x1)))
        x1, x2, y1, y2 = x[ind2[i]], x[ind2[i + 1]], y[ind2[i]], y[ind2[i + 1]]
        if x1 != x2 and y1 != y2:
            b += np.log(abs((x2 - x1) / (y2 - y1)))
    return (a - b) / m


@pytest.mark.parametrize("estimator", ["slope", "entropy"])
@pytest.mark.parametrize("reference", ["uniform", "gaussian"])
def test_igci_is_exactly_antisymmetric(estimator, reference):
    x, y = _mixture_pair(3)
    forward = igci_direction(x, y, estimator=estimator, reference=reference)
    backward = igci_direction(y, x, estimator=estimator, reference=reference)
    assert backward.score == -forward.score
    assert forward.details["c_xy"] == backward.details["c_yx"]


def test_igci_decides_a_deterministic_pair():
    """Y = f(X) with f increasing and its slope uncorrelated with the density of X (uniform on
    [0, 1]): both estimators with the uniform reference pick X -> Y."""
    x = torch.rand(400, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    y = x**3 + 0.5 * x
    for estimator in ("slope", "entropy"):
        assert igci_direction(x, y, estimator=estimator).direction == 1
        assert igci_direction(y, x, estimator=estimator).direction == -1


@pytest.mark.parametrize("reference", ["uniform", "gaussian"])
def test_igci_slope_matches_the_reference_loop(reference):
    """Score = -f of igci.m, the same sums in another order: equal to 1e-12. The rounded pair has
    ties in x and in y, which both skip."""
    for seed in (5, 6):
        x, y = _mixture_pair(seed, n=200)
        for xs, ys in ((x, y), (torch.round(x, decimals=1), torch.round(y, decimals=1))):
            ours = igci_direction(xs, ys, estimator="slope", reference=reference)
            if reference == "uniform":
                a, b = (xs - xs.min()) / (xs.max() - xs.min()), (ys - ys.min()) / (ys.max() - ys.min())
            else:
                a, b = (xs - xs.mean()) / xs.std(), (ys - ys.mean()) / ys.std()
            assert ours.score == pytest.approx(-_igci_m_slope(a.numpy(), b.numpy()), abs=1e-12)


def test_igci_entropy_matches_cdt(cdt_pairwise):
    """cdt's entropy estimator is igci.m's: score H(X) - H(Y), > 0 for X -> Y in both. The sums
    differ in order only: 1e-10. cdt's Gaussian reference divides by the sd with ddof = 0, ours
    (and igci.m) ddof = 1: a common factor c = sqrt(n / (n - 1)) that cancels in H(X) - H(Y)
    when neither has ties; with ties it shifts each H by log(c) (nonzero spacings) / (n - 1), so
    the tied pair is compared with the uniform reference only."""
    model = cdt_pairwise.IGCI()
    pairs = [_mixture_pair(seed, n=200) for seed in (7, 8, 9)]
    tied = [(torch.round(x, decimals=1), torch.round(y, decimals=1)) for x, y in pairs[:1]]
    for reference in ("uniform", "gaussian"):
        for x, y in pairs + (tied if reference == "uniform" else []):
            theirs = model.predict_proba((x.numpy(), y.numpy()), ref_measure=reference, estimator="entropy")
            ours = igci_direction(x, y, estimator="entropy", reference=reference)
            assert ours.score == pytest.approx(float(theirs), abs=1e-10)
    # The DataFrame interface (cdt's default: Gaussian reference, entropy estimator).
    theirs = model.predict(_pairs_frame(pairs))
    ours = [igci_direction(x, y, estimator="entropy", reference="gaussian").score for x, y in pairs]
    np.testing.assert_allclose(ours, np.asarray(theirs, dtype=float), atol=1e-10)


# ------------------------------------------------------------------------------------------
# RECI


def test_reci_matches_cdt(cdt_pairwise):
    """cdt's RECI fits a x^3 + b (it zeroes the x and x^2 features) on min-max rescaled data and
    returns MSE(X | Y) - MSE(Y | X), our convention: with regression="monomial" the scores are the
    same least-squares problems, equal to 1e-10 (lstsq against LinearRegression). With the full
    cubic the scores differ in value but agree in sign on these pairs."""
    pairs = [_mixture_pair(seed, n=200) for seed in (10, 11, 12)]
    pairs.append((pairs[0][1], pairs[0][0]))  # a Y -> X pair
    theirs = np.asarray(cdt_pairwise.RECI(degree=3).predict(_pairs_frame(pairs)), dtype=float)
    monomial = [reci_direction(x, y, degree=3, regression="monomial").score for x, y in pairs]
    np.testing.assert_allclose(monomial, theirs, atol=1e-10)
    polynomial = [reci_direction(x, y, degree=3).score for x, y in pairs]
    assert np.array_equal(np.sign(polynomial), np.sign(theirs))
    assert np.array_equal(np.sign(theirs), [1, 1, 1, -1])


def test_reci_details_and_antisymmetry():
    x, y = _mixture_pair(13)
    result = reci_direction(x, y, degree=4)
    assert result.score == result.details["mse_yx"] - result.details["mse_xy"]
    assert reci_direction(y, x, degree=4).score == -result.score
    json.dumps(result.to_dict())


# ------------------------------------------------------------------------------------------
# Validation


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda x, y: anm_direction(x, y, regressor="svm"), "choose one of gp, kernel-ridge"),
        (lambda x, y: anm_direction(x, y, max_points=5), "max_points"),
        (lambda x, y: igci_direction(x, y, estimator="foo"), "choose one of slope, entropy"),
        (lambda x, y: igci_direction(x, y, reference="lebesgue"), "choose one of uniform, gaussian"),
        (lambda x, y: reci_direction(x, y, regression="spline"), "choose one of polynomial, monomial"),
        (lambda x, y: reci_direction(x, y, degree=0), "degree"),
    ],
)
def test_bad_options(call, message):
    x, y = _mixture_pair(14, n=30)
    with pytest.raises(ValueError, match=message):
        call(x, y)


@pytest.mark.parametrize("method", [anm_direction, igci_direction, reci_direction])
def test_bad_pairs(method):
    x, y = _mixture_pair(15, n=30)
    with pytest.raises(ValueError, match="at least 10"):
        method(x[:5], y[:5])
    with pytest.raises(ValueError, match="same number"):
        method(x, y[:-1])
    with pytest.raises(ValueError, match="constant"):
        method(torch.ones(30), y)
