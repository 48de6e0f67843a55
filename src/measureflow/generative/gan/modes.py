r"""Mode diagnostics for generators of Gaussian-mixture data (ring of 8, grid of 25, ...).

Following the convention of the GAN mode-collapse literature (Srivastava et al. 2017, VEEGAN;
Lin et al. 2018, PacGAN): a sample is *high quality* when it lies within ``n_std`` standard
deviations (default 3) of the nearest mode centre; a mode is *covered* when at least
``min_count`` high-quality samples are assigned to it; the balance of the coverage is the KL
divergence between the histogram of high-quality samples over modes and the uniform one,
sum_k h_k log(K h_k) (0 for perfect balance, log K when all samples sit in one mode).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from measureflow._core import check_count, check_positive

__all__ = ["ModeReport", "mode_diagnostics"]


@dataclass(frozen=True)
class ModeReport:
    """``counts`` ``(K,)`` high-quality samples per mode; ``covered`` ``(K,)`` bool; ``n_covered``;
    ``high_quality_fraction`` of all samples; ``kl_to_uniform`` of the mode histogram (``inf``
    when no sample is of high quality)."""

    counts: Tensor
    covered: Tensor
    n_covered: int
    high_quality_fraction: float
    kl_to_uniform: float

    def to_dict(self) -> dict[str, Any]:
        return {"counts": self.counts.tolist(), "covered": self.covered.tolist(), "n_covered": self.n_covered,
                "n_modes": int(self.counts.numel()), "high_quality_fraction": self.high_quality_fraction,
                "kl_to_uniform": self.kl_to_uniform}


def mode_diagnostics(samples: Tensor, centers: Tensor, std: float, *, n_std: float = 3.0,
                     min_count: int = 20) -> ModeReport:
    """Modes covered, high-quality fraction and mode-histogram KL of ``samples`` ``(n, d)`` against
    mode ``centers`` ``(K, d)`` of isotropic standard deviation ``std``. Rows with NaN or
    infinite entries count as samples of low quality.

    >>> centers = torch.tensor([[0.0, 0.0], [5.0, 0.0]])
    >>> samples = torch.tensor([[0.1, 0.0]] * 30 + [[2.5, 0.0]] * 10)
    >>> report = mode_diagnostics(samples, centers, std=0.2)
    >>> report.n_covered, report.high_quality_fraction, round(report.kl_to_uniform, 4)
    (1, 0.75, 0.6931)
    """
    if samples.dim() != 2 or centers.dim() != 2 or samples.shape[1] != centers.shape[1]:
        raise ValueError(f"samples (n, d) and centers (K, d) must agree in d, got {tuple(samples.shape)} "
                         f"and {tuple(centers.shape)}")
    if samples.shape[0] < 1 or centers.shape[0] < 1:
        raise ValueError("need at least one sample and one mode")
    std = check_positive(std, "std")
    n_std = check_positive(n_std, "n_std")
    check_count(min_count, "min_count")
    # A non-finite sample (a diverged generator) is of low quality, not an error: its row is
    # replaced by a finite placeholder and excluded.
    finite = torch.isfinite(samples).all(dim=1)
    distances = torch.cdist(torch.nan_to_num(samples.double(), nan=0.0, posinf=0.0, neginf=0.0),
                            centers.to(samples.device).double())
    nearest_distance, nearest = distances.min(dim=1)
    good = (nearest_distance <= n_std * std) & finite
    counts = torch.bincount(nearest[good], minlength=centers.shape[0]).cpu()
    covered = counts >= int(min_count)
    n_good = int(counts.sum())
    if n_good == 0:
        kl = math.inf
    else:
        histogram = counts.double() / n_good
        kl = float(torch.xlogy(histogram, histogram * centers.shape[0]).sum())
    return ModeReport(counts, covered, int(covered.sum()), n_good / samples.shape[0], kl)
