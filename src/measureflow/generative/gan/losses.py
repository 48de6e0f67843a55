r"""The objectives of adversarial and kernel generative models, one name each.

Data P (samples x), model Q_theta = law of G(z), critic outputs v = h(x) (raw, before any
activation). Each critic objective is written as a loss to *minimize*.

- f-GAN family, through the variational bound of :mod:`~measureflow.generative.gan.divergences`
  (Nowozin, Cseke & Tomioka 2016): the critic maximizes
  B(h) = E_P[g_f(h(x))] - E_Q[f*(g_f(h(G z)))] <= D_f(P || Q_theta), the generator minimizes
  B, i.e. its loss is -E_Q[f*(g_f(h(G z)))]. ``"js"`` is the original minimax GAN (table row
  ``"gan"``: g(v) = log sigmoid(v), f*(g(v)) = -log(1 - sigmoid(v)); the game value at the optimal
  critic is 2 JS - log 4; Goodfellow et al. 2014), ``"kl"``, ``"rkl"``, ``"pearson"``,
  ``"hellinger"`` the rows kl, reverse-kl, pearson, hellinger.
- ``"ns"``: the original GAN's critic with the non-saturating generator loss -E_Q[log D(G z)]
  = -E_Q[g(h(G z))] (same fixed points, gradients that do not vanish when D(G z) -> 0).
- ``"wgan"``, ``"wgan-gp"``: Kantorovich-Rubinstein W1(P, Q) = sup_{Lip h <= 1} E_P h - E_Q h;
  critic loss E_Q h - E_P h, generator loss -E_Q h; the Lipschitz constraint by weight clipping
  (Arjovsky et al. 2017) or by :func:`gradient_penalty` (Gulrajani et al. 2017).
- ``"gmmn"``: no critic; the generator minimizes MMD^2 with a fixed sum of Gaussian kernels
  (Li, Swersky & Zemel 2015; Dziugaite et al. 2015), :func:`mmd2_loss`.
- ``"mmd-gan"``: MMD^2 between learned features, k(g_xi(x), g_xi(y)); the feature map maximizes
  it, the generator minimizes it (Li et al. 2017).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from measureflow.generative.gan.divergences import F_DIVERGENCES, variational_bound

__all__ = [
    "ADVERSARIAL_LOSSES",
    "F_LOSS_ROWS",
    "LOSS_NAMES",
    "critic_loss",
    "generator_loss",
    "gradient_penalty",
    "mmd2_loss",
]

LOSS_NAMES = ("js", "ns", "kl", "rkl", "pearson", "hellinger", "wgan", "wgan-gp", "gmmn", "mmd-gan")
# The losses whose critic outputs one value per sample and plays through critic_loss/generator_loss.
ADVERSARIAL_LOSSES = ("js", "ns", "kl", "rkl", "pearson", "hellinger", "wgan", "wgan-gp")
# Loss name -> row of the f-GAN table.
F_LOSS_ROWS = {"js": "gan", "ns": "gan", "kl": "kl", "rkl": "reverse-kl", "pearson": "pearson",
               "hellinger": "hellinger"}


def _check_loss(loss: str, allowed: Sequence[str] = ADVERSARIAL_LOSSES) -> str:
    if loss not in allowed:
        raise ValueError(f"unknown loss {loss!r} here; choose one of {', '.join(allowed)}")
    return loss


def _check_outputs(*outputs: Tensor) -> None:
    for out in outputs:
        if not isinstance(out, Tensor) or out.dim() != 1 or out.numel() == 0:
            shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise ValueError(f"critic outputs must be non-empty 1-D tensors (one value per sample), "
                             f"got {shape}")


def critic_loss(loss: str, real_out: Tensor, fake_out: Tensor) -> Tensor:
    """The critic's loss (to minimize) from raw outputs on data ``real_out`` ``(n,)`` and on
    generated samples ``fake_out`` ``(m,)``: -B(h) for the f-GAN family (``js``, ``ns``, ``kl``,
    ``rkl``, ``pearson``, ``hellinger``), E_Q h - E_P h for ``wgan`` and ``wgan-gp`` (penalty
    not included: see :func:`gradient_penalty`).

    >>> v = torch.zeros(4)
    >>> round(float(critic_loss("js", v, v)), 4)   # D = 1/2 everywhere: -2 log(1/2) = log 4
    1.3863
    """
    _check_loss(loss)
    _check_outputs(real_out, fake_out)
    if loss in F_LOSS_ROWS:
        return -variational_bound(real_out, fake_out, F_LOSS_ROWS[loss])
    return fake_out.mean() - real_out.mean()


def generator_loss(loss: str, fake_out: Tensor) -> Tensor:
    """The generator's loss (to minimize) from the critic's raw outputs ``fake_out`` ``(m,)`` on
    its samples: -E_Q[f*(g_f(v))] for the f-GAN family (for ``js``: E log(1 - D)), -E_Q[g(v)]
    = -E log D for ``ns``, -E_Q h for ``wgan``/``wgan-gp``.

    >>> v = torch.zeros(4)
    >>> round(float(generator_loss("js", v)), 4), round(float(generator_loss("ns", v)), 4)
    (-0.6931, 0.6931)
    """
    _check_loss(loss)
    _check_outputs(fake_out)
    if loss == "ns":
        return -F_DIVERGENCES["gan"].activation(fake_out).mean()
    if loss in F_LOSS_ROWS:
        return -F_DIVERGENCES[F_LOSS_ROWS[loss]].activated_conjugate(fake_out).mean()
    return -fake_out.mean()


def gradient_penalty(critic: Callable[[Tensor], Tensor], real: Tensor, fake: Tensor,
                     generator: torch.Generator | None = None) -> Tensor:
    r"""E (||grad_x h(x_hat)||_2 - 1)^2 over x_hat = u x + (1 - u) y, u ~ U(0, 1) one per row,
    for data ``real`` and generated ``fake`` of the same shape ``(n, ...)`` (Gulrajani et al.
    2017). Differentiable in the critic's parameters (built with ``create_graph=True``); the
    gradient does not flow into ``fake``.

    >>> h = lambda x: 3 * x.sum(dim=1)           # |grad h| = 3 sqrt(2) everywhere
    >>> round(float(gradient_penalty(h, torch.zeros(5, 2), torch.ones(5, 2))), 4)
    10.5147
    """
    if real.shape != fake.shape:
        raise ValueError(f"real and fake must have the same shape, got {tuple(real.shape)} and "
                         f"{tuple(fake.shape)}")
    shape = (real.shape[0],) + (1,) * (real.dim() - 1)
    u = torch.rand(shape, generator=generator, dtype=real.dtype, device=real.device)
    x_hat = (u * real.detach() + (1 - u) * fake.detach()).requires_grad_(True)
    out = critic(x_hat)
    (grad,) = torch.autograd.grad(out.sum(), x_hat, create_graph=True)
    norm = grad.reshape(grad.shape[0], -1).norm(dim=1)
    return ((norm - 1) ** 2).mean()


def mmd2_loss(x: Tensor, y: Tensor, bandwidths: Sequence[float]) -> Tensor:
    r"""Unbiased MMD^2(x, y) with k = sum_h exp(-|a - b|^2 / (2 h^2)) over ``bandwidths``,
    differentiable in both samples; rows ``(n, ...)`` and ``(m, ...)`` are flattened::

        1/(n(n-1)) sum_{i != i'} k(x_i, x_i') + 1/(m(m-1)) sum_{j != j'} k(y_j, y_j')
            - 2/(nm) sum_{i, j} k(x_i, y_j)

    Dense O((n + m)^2) kernel matrices: meant for minibatches (use
    :func:`measureflow.metrics.mmd2` to evaluate large samples).

    >>> x = torch.zeros(3, 2); y = torch.zeros(3, 2)
    >>> float(mmd2_loss(x, y, [1.0]))
    0.0
    """
    x, y = x.reshape(x.shape[0], -1), y.reshape(y.shape[0], -1)
    if x.shape[1] != y.shape[1] or x.shape[0] < 2 or y.shape[0] < 2:
        raise ValueError(f"x (n, d) and y (m, d) need n, m >= 2 and the same d, got {tuple(x.shape)} and "
                         f"{tuple(y.shape)}")
    bandwidths = [float(h) for h in bandwidths]
    if not bandwidths or any(not h > 0 for h in bandwidths):
        raise ValueError(f"bandwidths must be a non-empty list of positive numbers, got {bandwidths}")
    n, m = x.shape[0], y.shape[0]
    z = torch.cat([x, y])
    # Squared distances from the Gram matrix (one matmul), clamped at 0 against round-off.
    squared_norms = (z * z).sum(dim=1)
    d2 = (squared_norms[:, None] + squared_norms[None, :] - 2 * z @ z.T).clamp_min(0)
    # Exponents are clamped at -80 (e^-80 ~ 2e-35, far below the estimator's resolution): results
    # that would be subnormal make exp and its backward an order of magnitude slower on CPUs.
    kernel = sum(torch.exp((d2 * (-0.5 / (h * h))).clamp_min(-80.0)) for h in bandwidths)
    k_xx, k_yy, k_xy = kernel[:n, :n], kernel[n:, n:], kernel[:n, n:]
    within_x = (k_xx.sum() - k_xx.diagonal().sum()) / (n * (n - 1))
    within_y = (k_yy.sum() - k_yy.diagonal().sum()) / (m * (m - 1))
    return within_x + within_y - 2 * k_xy.mean()
