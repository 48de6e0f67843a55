"""MCMC sample diagnostics on chain histories ``(n_steps, n_chains, d)``: ESS and split R-hat.

Both follow the definitions of the Stan reference manual (and Gelman et al., Bayesian Data
Analysis, 3rd ed., section 11.4-11.5) without rank normalization.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from measureflow._core import as_tensor, check_finite

__all__ = ["autocorrelation", "ess", "rhat"]


def _as_chains(chains, name: str = "chains", min_steps: int = 4) -> Tensor:
    tensor = as_tensor(chains, name)
    if tensor.ndim == 2:
        raise ValueError(
            f"{name} must have shape (n_steps, n_chains, d), got {tuple(tensor.shape)}; "
            "for one coordinate add a trailing axis: chains[..., None]"
        )
    if tensor.ndim != 3:
        raise ValueError(f"{name} must have shape (n_steps, n_chains, d), got {tuple(tensor.shape)}")
    if tensor.shape[0] < min_steps:
        raise ValueError(f"{name} needs at least {min_steps} steps per chain, got {tensor.shape[0]}")
    check_finite(tensor, name)
    # Sums of squares over long chains lose digits in float32.
    return tensor.to(torch.float64)


def autocorrelation(chains) -> Tensor:
    """Per-chain autocovariance by FFT, normalized by n (the biased, positive-definite form).

    ``chains`` ``(n, m, d)`` -> ``(n, m, d)``, lag 0 first. Zero-padding to 2n avoids the
    circular wrap-around of the FFT.
    """
    x = _as_chains(chains, min_steps=2)
    n = x.shape[0]
    centred = x - x.mean(0)
    size = 1 << (2 * n - 1).bit_length()
    spectrum = torch.fft.rfft(centred, n=size, dim=0)
    return torch.fft.irfft(spectrum * spectrum.conj(), n=size, dim=0)[:n] / n


def _split(x: Tensor) -> Tensor:
    """Cut each chain into its first and last halves (the odd middle draw dropped): 2m chains."""
    half = x.shape[0] // 2
    return torch.cat([x[:half], x[-half:]], dim=1)


def ess(chains) -> Tensor:
    """Effective sample size of the mean per coordinate, ``(n_steps, n_chains, d) -> (d,)``.

    Computed on split chains (each chain cut in two halves, as Stan and ArviZ do, so that a
    drift within a chain lowers the ESS). With W the mean within-chain variance, B/n the
    variance of the chain means and var+ = (n - 1)/n W + B/n, the combined autocorrelation is
    rho_t = 1 - (W - mean_chains acov_t) / var+. Geyer's initial monotone sequence sums the
    pairs P_k = rho_{2k} + rho_{2k+1} while positive, made non-increasing, plus the even term
    of the first non-positive pair when that term is positive; then
    ESS = m n / tau with tau = -1 + 2 sum_k P_k (+ that term), tau >= 1 / log10(m n).
    Agrees with ``arviz.ess(..., method="mean")`` (checked in the tests' derivation notes).

    >>> import torch, measureflow as mf
    >>> draws = torch.randn(1000, 4, 1, generator=torch.Generator().manual_seed(0))
    >>> 3000 < float(mf.metrics.ess(draws)) < 5000
    True
    """
    x = _split(_as_chains(chains))
    n, m, _ = x.shape
    acov = autocorrelation(x)
    within = (acov[0] * n / (n - 1)).mean(0)
    between_over_n = x.mean(0).var(0, unbiased=True)
    var_plus = (n - 1) / n * within + between_over_n
    safe_var = torch.where(var_plus > 0, var_plus, torch.ones_like(var_plus))
    rho = 1 - (within - acov.mean(1)) / safe_var
    rho[0] = 1.0
    n_pairs = n // 2
    pairs = rho[: 2 * n_pairs].reshape(n_pairs, 2, -1).sum(1)
    # Keep the leading run of positive pairs, made monotone non-increasing.
    positive = torch.cumprod((pairs > 0).to(pairs.dtype), dim=0)
    kept = torch.where(positive > 0, pairs, torch.zeros_like(pairs))
    monotone = torch.cummin(kept, dim=0).values * positive
    n_kept = positive.sum(0).long()
    # The even autocorrelation that opened the first failing pair, if positive, still counts.
    next_even = rho.gather(0, (2 * n_kept).clamp(max=n - 1)[None])[0]
    tail = torch.where((2 * n_kept < n) & (next_even > 0), next_even, torch.zeros_like(next_even))
    tau = -1 + 2 * monotone.sum(0) + tail
    total = n * m
    result = total / tau.clamp_min(1.0 / math.log10(total))
    return torch.where(var_plus > 0, result, torch.full_like(result, float(total)))


def rhat(chains) -> Tensor:
    """Split R-hat per coordinate, ``(n_steps, n_chains, d) -> (d,)``.

    Each chain is cut in two halves (the odd middle draw dropped), giving 2m chains of length
    h; R-hat = sqrt(var+ / W) with var+ = (h - 1)/h W + B/h. Values near 1 (below about 1.01)
    say the chains agree with each other and with themselves over time.
    """
    split = _split(_as_chains(chains))
    half = split.shape[0]
    within = split.var(0, unbiased=True).mean(0)
    between_over_h = split.mean(0).var(0, unbiased=True)
    var_plus = (half - 1) / half * within + between_over_h
    return torch.sqrt(var_plus / within)
