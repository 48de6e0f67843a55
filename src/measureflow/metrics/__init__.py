"""Distances and divergences between measures, and sample diagnostics (ESS, R-hat).

- kernels and MMD: ``mmd2``, ``mmd_witness``, ``mmd_test``, ``gaussian_mmd2``, the kernel classes;
- optimal transport: ``wasserstein``, ``transport_plan``, ``kantorovich_potentials``, ``barycentric_map``,
  ``sinkhorn_divergence``, ``sliced_wasserstein``, ``wasserstein_1d``, ``wasserstein_1d_grid``,
  ``wasserstein_1d_to_normal``, ``gaussian_w2``, ``gaussian_brenier_map``, ``symmetric_matrix_power``;
- divergences from samples: ``knn_kl``, ``knn_entropy``, ``js_divergence``, ``c2st``, ``fisher_divergence``,
  ``fisher_divergence_from_samples``, ``kde_score``; closed form ``gaussian_kl``;
- Stein: ``ksd``, ``ksd_squared``;
- independence: ``hsic`` and the gamma-approximation HSIC test ``hsic_test``;
- densities on a grid: ``total_variation_grid``, ``kl_grid``, ``hellinger_grid``,
  ``jensen_shannon_grid``, ``chi2_grid``;
- chain diagnostics: ``ess``, ``rhat``, ``autocorrelation``, and the rank-normalized ``rhat_rank``,
  ``ess_bulk``, ``ess_tail`` (Vehtari et al. 2021; ArviZ's defaults) and ``rank_diagnostics`` (all three).
"""

from measureflow.metrics.diagnostics import (
    autocorrelation,
    ess,
    ess_bulk,
    ess_tail,
    rank_diagnostics,
    rhat,
    rhat_rank,
)
from measureflow.metrics.divergences import (
    C2STResult,
    c2st,
    fisher_divergence,
    fisher_divergence_from_samples,
    gaussian_kl,
    js_divergence,
    kde_score,
    knn_entropy,
    knn_kl,
    score_matching_objective,
)
from measureflow.metrics.grid import (
    chi2_grid,
    hellinger_grid,
    jensen_shannon_grid,
    kl_grid,
    total_variation_grid,
)
from measureflow.metrics.independence import HSICTestResult, hsic, hsic_test
from measureflow.metrics.kernels import (
    EnergyKernel,
    GaussianKernel,
    IMQKernel,
    LaplaceKernel,
    RadialKernel,
    median_bandwidth,
)
from measureflow.metrics.mmd import MMDTestResult, gaussian_mmd2, mmd2, mmd_test, mmd_witness
from measureflow.metrics.stein import ksd, ksd_squared
from measureflow.metrics.transport import (
    AffineMap,
    KantorovichPotentials,
    barycentric_map,
    gaussian_brenier_map,
    gaussian_w2,
    kantorovich_potentials,
    sinkhorn_divergence,
    sliced_wasserstein,
    symmetric_matrix_power,
    transport_plan,
    wasserstein,
    wasserstein_1d,
    wasserstein_1d_grid,
    wasserstein_1d_to_normal,
)

__all__ = [
    "AffineMap",
    "C2STResult",
    "EnergyKernel",
    "GaussianKernel",
    "HSICTestResult",
    "IMQKernel",
    "KantorovichPotentials",
    "LaplaceKernel",
    "MMDTestResult",
    "RadialKernel",
    "autocorrelation",
    "barycentric_map",
    "c2st",
    "chi2_grid",
    "ess",
    "ess_bulk",
    "ess_tail",
    "fisher_divergence",
    "fisher_divergence_from_samples",
    "gaussian_brenier_map",
    "gaussian_kl",
    "gaussian_mmd2",
    "gaussian_w2",
    "hellinger_grid",
    "hsic",
    "hsic_test",
    "jensen_shannon_grid",
    "js_divergence",
    "kantorovich_potentials",
    "kde_score",
    "kl_grid",
    "knn_entropy",
    "knn_kl",
    "ksd",
    "ksd_squared",
    "median_bandwidth",
    "mmd2",
    "mmd_test",
    "mmd_witness",
    "rank_diagnostics",
    "rhat",
    "rhat_rank",
    "score_matching_objective",
    "sinkhorn_divergence",
    "sliced_wasserstein",
    "symmetric_matrix_power",
    "total_variation_grid",
    "transport_plan",
    "wasserstein",
    "wasserstein_1d",
    "wasserstein_1d_grid",
    "wasserstein_1d_to_normal",
]
