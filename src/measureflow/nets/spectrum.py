r"""The spectrum of the infinite-width NTK on the circle: Fourier modes are its eigenfunctions.

Inputs lie on the unit circle, x(t) = (cos t, sin t) with t uniform on [0, 2 pi), or on the
lifted circle x(t) = (cos t, sin t, c) / sqrt(1 + c^2) (a constant coordinate c, the ``offset``,
which plays the part of a bias of the first layer). Either way |x| = 1 and

    x(t) . x(t') = (cos(t - t') + c^2) / (1 + c^2)

depends on t - t' only, so K_inf(x(t), x(t')) = kappa(t - t') for an even, 2 pi-periodic kappa
(the dot-product kernels of :func:`~measureflow.nets.analytic_ntk` depend on |x|, |x'| and x.x'
only). The integral operator of the uniform law P,

    T f(t) = int K(x(t), x(s)) f(s) dP(s) = (1 / 2 pi) int_0^{2 pi} kappa(t - s) f(s) ds,

is a convolution; by Mercer / Bochner its eigenfunctions are the Fourier modes and its
eigenvalues the Fourier cosine coefficients of kappa:

    T cos(k .) = mu_k cos(k .),   T sin(k .) = mu_k sin(k .),
    mu_k = (1 / 2 pi) int_0^{2 pi} kappa(s) cos(k s) ds,   k = 0, 1, 2, ...

(mu_0 for the constant). In L2(P) the orthonormal eigenbasis is 1, sqrt(2) cos(k t),
sqrt(2) sin(k t) (:func:`fourier_features`), and Mercer's expansion reads
kappa(s) = mu_0 + 2 sum_{k >= 1} mu_k cos(k s); in particular kappa(0) = mu_0 + 2 sum_k mu_k.

For the ReLU network with both layers trained on the plain circle (c = 0) the coefficients are
known in closed form (the arc-cosine kernels of degrees 0 and 1, Cho & Saul 2009):

    mu_0 = 3 / pi^2,   mu_1 = 1 / 4,
    mu_k = (1 / pi^2) [ 1 / (k - 1)^2 + 1 / (k + 1)^2 - 1 / (k^2 - 1) ]   (k >= 2 even),
    mu_k = 0                                                             (k >= 3 odd),

so the odd frequencies above 1 are invisible to that kernel (its power series in x.x' has no
odd powers beyond the first). On the lifted circle (c != 0) x.x' is an affine function of
cos(t - t') with positive slope, every power of it holds every frequency with a positive
coefficient, and all mu_k > 0. In both cases the singularity of the ReLU kernel at t = t'
(like |t - t'|) makes mu_k decay like k^{-2}.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from measureflow._core import as_tensor, check_count, check_finite
from measureflow.nets.activations import Activation
from measureflow.nets.ntk import analytic_ntk
from measureflow.nets.two_layer import LAYERS, TwoLayer

__all__ = [
    "circle_inputs",
    "circle_spectrum",
    "eigenvalues_per_feature",
    "fourier_features",
    "ntk_neuron_terms",
    "relu_circle_spectrum",
]


def _offset(offset: Any) -> float:
    if isinstance(offset, bool):
        raise TypeError(f"offset must be a real number, got {offset!r}")
    try:
        value = float(offset)
    except (TypeError, ValueError):
        raise TypeError(f"offset must be a real number, got {offset!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"offset must be finite, got {offset!r}")
    return value


def _angles(angles: Any) -> Tensor:
    tensor = check_finite(as_tensor(angles, "angles"), "angles")
    if tensor.ndim != 1:
        raise ValueError(f"angles must have shape (n,), got {tuple(tensor.shape)}")
    return tensor


def circle_inputs(angles: Any, offset: float = 0.0) -> Tensor:
    r"""Points of the unit circle x(t) = (cos t, sin t), ``(n, 2)``, or of the lifted circle
    x(t) = (cos t, sin t, c) / sqrt(1 + c^2), ``(n, 3)``, for ``offset`` c != 0; ``angles`` t ``(n,)``.

    Both have |x| = 1 and x(t) . x(t') = (cos(t - t') + c^2) / (1 + c^2).

    >>> circle_inputs(torch.tensor([0.0, math.pi / 2]), offset=1.0).round(decimals=4)
    tensor([[0.7071, 0.0000, 0.7071],
            [-0.0000, 0.7071, 0.7071]])
    """
    t = _angles(angles)
    c = _offset(offset)
    columns = [torch.cos(t), torch.sin(t)]
    if c == 0.0:
        return torch.stack(columns, 1)
    columns.append(torch.full_like(t, c))
    return torch.stack(columns, 1) / math.sqrt(1 + c * c)


def fourier_features(angles: Any, n_frequencies: int) -> Tensor:
    r"""The orthonormal Fourier basis of L2(uniform law on [0, 2 pi)) up to frequency K - 1, ``(n, 2K - 1)``.

    Columns, for K = ``n_frequencies``: 1, sqrt(2) cos t, sqrt(2) sin t, sqrt(2) cos 2t,
    sqrt(2) sin 2t, ..., sqrt(2) sin((K - 1) t): column 2k - 1 is the cosine and column 2k the
    sine of frequency k. These are the eigenfunctions of the NTK's integral operator on the circle;
    :func:`eigenvalues_per_feature` lists their eigenvalues in the same order.

    >>> t = 2 * math.pi * torch.arange(8, dtype=torch.float64) / 8
    >>> phi = fourier_features(t, 3)
    >>> torch.testing.assert_close(phi.T @ phi / 8, torch.eye(5, dtype=torch.float64))
    """
    t = _angles(angles)
    k_max = check_count(n_frequencies, "n_frequencies")
    columns = [torch.ones_like(t)]
    for k in range(1, k_max):
        columns += [math.sqrt(2) * torch.cos(k * t), math.sqrt(2) * torch.sin(k * t)]
    return torch.stack(columns, 1)


def eigenvalues_per_feature(spectrum: Any) -> Tensor:
    """The eigenvalue of each column of :func:`fourier_features`: mu_0, mu_1, mu_1, mu_2, mu_2, ...

    ``spectrum`` ``(K,)`` (mu_0 .. mu_{K-1}, e.g. from :func:`circle_spectrum`) -> ``(2K - 1,)``.

    >>> eigenvalues_per_feature(torch.tensor([3.0, 2.0, 1.0]))
    tensor([3., 2., 2., 1., 1.])
    """
    mu = check_finite(as_tensor(spectrum, "spectrum"), "spectrum")
    if mu.ndim != 1 or mu.shape[0] == 0:
        raise ValueError(f"spectrum must have shape (K,) with K >= 1, got {tuple(mu.shape)}")
    return torch.cat([mu[:1], mu[1:].repeat_interleave(2)])


def circle_spectrum(n_frequencies: int, activation: str | Activation = "relu", *, train: Any = LAYERS,
                    offset: float = 0.0, n_points: int = 4096, dtype: torch.dtype = torch.float64,
                    device: torch.device | str | None = None) -> Tensor:
    r"""The eigenvalues mu_0, ..., mu_{K-1} of the infinite-width NTK's integral operator on the
    (lifted) circle under the uniform law, ``(K,)`` with K = ``n_frequencies``.

    mu_k = (1 / 2 pi) int_0^{2 pi} kappa(s) cos(k s) ds with kappa(s) = K_inf(x(0), x(s))
    (:func:`~measureflow.nets.analytic_ntk` with ``activation``, ``train``; x from
    :func:`circle_inputs` with ``offset``), by the trapezoidal rule on ``n_points`` equally
    spaced angles, i.e. one real FFT. For a periodic integrand this rule is exact for
    trigonometric polynomials of degree < N - k and otherwise only aliases: the computed value is
    sum_m (mu_{k + mN} + mu_{mN - k}) summed over m >= 1 added to mu_k, an error O(N^{-2}) for
    the ReLU kernel (mu_k ~ k^{-2}) and exponentially small for a smooth activation. ``n_points``
    must be at least 2 (K - 1) (the Nyquist frequency N/2 is the last one an N-point grid holds).

    >>> mu = circle_spectrum(5)  # ReLU, both layers, plain circle: closed form (module docstring)
    >>> torch.testing.assert_close(mu, relu_circle_spectrum(5), rtol=0, atol=1e-7)
    >>> mu[3].abs() < 1e-7  # odd frequencies >= 3 vanish on the plain circle
    tensor(True)
    """
    k_max = check_count(n_frequencies, "n_frequencies")
    n = check_count(n_points, "n_points", minimum=2)
    if n < 2 * (k_max - 1):
        raise ValueError(f"n_points must be at least 2 (n_frequencies - 1) = {2 * (k_max - 1)}, got {n}")
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating torch.dtype, got {dtype!r}")
    angles = 2 * math.pi * torch.arange(n, dtype=dtype, device=device) / n
    points = circle_inputs(angles, offset)
    kappa = analytic_ntk(points[:1], points, activation, train=train)[0]
    # sum_j kappa(s_j) cos(k s_j) = Re rfft(kappa)_k since kappa is real (and even, so Im = 0).
    return torch.fft.rfft(kappa).real[:k_max] / n


def relu_circle_spectrum(n_frequencies: int, *, dtype: torch.dtype = torch.float64,
                         device: torch.device | str | None = None) -> Tensor:
    r"""The closed-form spectrum of the ReLU NTK (both layers trained) on the plain circle, ``(K,)``.

    mu_0 = 3 / pi^2, mu_1 = 1 / 4, mu_k = [1/(k-1)^2 + 1/(k+1)^2 - 1/(k^2-1)] / pi^2 for even
    k >= 2, and 0 for odd k >= 3. Derivation: with theta = |s| on [-pi, pi], kappa(s) =
    sin(theta) / (2 pi) + 2 cos(s) g(s), g(s) = (pi - theta) / (2 pi) the degree-0 arc-cosine kernel.
    g has coefficients g_0 = 1/4 and g_k = (1 - (-1)^k) / (2 pi^2 k^2); multiplying by cos(s)
    averages neighbours, (g_{k-1} + g_{k+1}) / 2; and sin|s| / (2 pi) has coefficients
    (1 + (-1)^k) / (2 pi^2 (1 - k^2)) (zero for k = 1).

    >>> relu_circle_spectrum(3) * math.pi**2
    tensor([3.0000, 2.4674, 0.7778], dtype=torch.float64)
    """
    k_max = check_count(n_frequencies, "n_frequencies")
    values = []
    for k in range(k_max):
        if k == 0:
            values.append(3 / math.pi**2)
        elif k == 1:
            values.append(0.25)
        elif k % 2 == 1:
            values.append(0.0)
        else:
            values.append((1 / (k - 1) ** 2 + 1 / (k + 1) ** 2 - 1 / (k * k - 1)) / math.pi**2)
    return torch.tensor(values, dtype=dtype, device=device)


def ntk_neuron_terms(model: TwoLayer, x: Any, directions: Any) -> Tensor:
    r"""The per-neuron terms of the NTK projected on ``directions``: ``(M, k, k)`` whose mean over
    neurons is U^T K_M U, with K_M = :func:`~measureflow.nets.empirical_ntk` (model, x).

    For f(x) = s sum_j a_j sigma(w_j . x), K_M = s^2 sum_j [ S_j S_j^T + a_j^2 (D_j D_j^T) * (X X^T) ]
    with S_j = sigma(X w_j), D_j = sigma'(X w_j) ``(n,)`` (first term if ``a`` is trained, second
    if ``w`` is). With G_j = [U^T S_j, a_j U^T (D_j * X_1), ..., a_j U^T (D_j * X_d)] ``(k, 1 + d)``
    (X_c the c-th column of X), term j is M s^2 G_j G_j^T. At initialization the neurons are
    i.i.d., so under the NTK scaling (M s^2 = 1) U^T K_M U is a mean of M i.i.d. terms with
    expectation U^T K_inf U: their spread is the Monte Carlo error of the finite-width kernel.
    ``x`` ``(n, d)``, ``directions`` U ``(n, k)``.

    >>> from measureflow.nets import empirical_ntk
    >>> net = TwoLayer(3, 40, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    >>> x = torch.randn(6, 3, dtype=torch.float64); u = torch.randn(6, 2, dtype=torch.float64)
    >>> terms = ntk_neuron_terms(net, x, u)
    >>> torch.testing.assert_close(terms.mean(0), u.T @ empirical_ntk(net, x) @ u)
    """
    if not isinstance(model, TwoLayer):
        raise TypeError(f"model must be a TwoLayer, got {type(model).__name__}")
    reference = model.w.detach()
    inputs = check_finite(as_tensor(x, "x"), "x").to(reference)
    if inputs.ndim != 2 or inputs.shape[1] != model.dim:
        raise ValueError(f"x must have shape (n, {model.dim}), got {tuple(inputs.shape)}")
    u = check_finite(as_tensor(directions, "directions"), "directions").to(reference)
    if u.ndim != 2 or u.shape[0] != inputs.shape[0]:
        raise ValueError(f"directions must have shape ({inputs.shape[0]}, k), got {tuple(u.shape)}")
    with torch.no_grad():
        value, slope = model.features(inputs)  # (n, M) each
        blocks = []
        if "a" in model.trained:
            blocks.append((u.T @ value)[:, :, None])  # (k, M, 1)
        if "w" in model.trained:
            blocks.append(torch.einsum("nk,nm,nc->kmc", u, slope, inputs) * model.a.detach()[None, :, None])
        if not blocks:
            return reference.new_zeros(model.width, u.shape[1], u.shape[1])
        g = torch.cat(blocks, 2)  # (k, M, 1 + d)
        return torch.einsum("kmc,lmc->mkl", g, g) * (model.width * model.scale**2)
