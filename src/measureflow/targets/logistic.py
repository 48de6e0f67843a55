"""Bayesian logistic regression: a finite-sum target for stochastic-gradient Langevin samplers."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from measureflow._core import check_positive
from measureflow.targets.base import FiniteSumTarget, as_buffer, common_dtype

__all__ = ["LogisticRegression"]


class LogisticRegression(FiniteSumTarget):
    """Posterior of logistic regression with a N(0, prior_std^2 I) prior, at beta = 1.

    With z_i = <features_i, theta> (an intercept column of ones is prepended when
    ``intercept=True``) and labels y_i in {0, 1}:

        L(theta) = ||theta||^2 / (2 prior_std^2) + sum_i [log(1 + e^{z_i}) - y_i z_i].

    The data terms l_i are the negative log-likelihoods; minibatch gradients are analytic:
    grad = theta / prior_std^2 + (N / b) sum_{i in B} (sigmoid(z_i) - y_i) features_i.
    The normalizer (the model evidence) is unknown.
    """

    name = "logistic-regression"

    def __init__(self, features, labels, prior_std: float = 1.0, intercept: bool = True) -> None:
        dtype = common_dtype(features)
        features = as_buffer(features, "features", 2, dtype)
        labels = as_buffer(labels, "labels", 1, dtype).to(features.device)
        if labels.shape[0] != features.shape[0]:
            raise ValueError(
                f"features has {features.shape[0]} rows but labels has {labels.shape[0]} entries"
            )
        if not bool(((labels == 0) | (labels == 1)).all()):
            raise ValueError("labels must be 0 or 1")
        if intercept:
            features = torch.cat([torch.ones_like(features[:, :1]), features], dim=1)
        super().__init__(features.shape[1])
        self._anchor = self._anchor.to(device=features.device, dtype=dtype)
        self.prior_std = check_positive(prior_std, "prior_std")
        self.intercept = bool(intercept)
        self.n_terms = features.shape[0]
        self.register_buffer("features", features)
        self.register_buffer("labels", labels)

    def prior_energy(self, x: Tensor) -> Tensor:
        return 0.5 * x.square().sum(-1) / self.prior_std**2

    def _logits(self, x: Tensor, index: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        """Logits ``(n, b)``, the matching features ``(n, b, p)`` or ``(N, p)``, labels."""
        if index is None:
            return x @ self.features.T, self.features, self.labels
        features = self.features[index]
        return torch.einsum("nbp,np->nb", features, x), features, self.labels[index]

    def data_energy(self, x: Tensor, index: Tensor) -> Tensor:
        logits, _, labels = self._logits(self._as_input(x), index)
        return F.softplus(logits) - labels * logits

    def energy(self, x: Tensor) -> Tensor:
        logits, _, labels = self._logits(self._as_input(x), None)
        return self.prior_energy(x) + (F.softplus(logits) - labels * logits).sum(-1)

    def energy_and_grad(self, x: Tensor) -> tuple[Tensor, Tensor]:
        logits, features, labels = self._logits(self._as_input(x), None)
        energy = self.prior_energy(x) + (F.softplus(logits) - labels * logits).sum(-1)
        gradient = x / self.prior_std**2 + (torch.sigmoid(logits) - labels) @ features
        return energy, gradient

    def grad_energy(self, x: Tensor) -> Tensor:
        return self.energy_and_grad(x)[1]

    def minibatch_grad_energy(self, x: Tensor, index: Tensor) -> Tensor:
        logits, features, labels = self._logits(self._as_input(x), index)
        scale = self.n_terms / index.shape[-1]
        residual = torch.sigmoid(logits) - labels
        return x / self.prior_std**2 + scale * torch.einsum("nb,nbp->np", residual, features)

    def minibatch_hessian_diag(
        self, x: Tensor, index: Tensor, generator: torch.Generator | None = None
    ) -> Tensor:
        """Exact diag of the minibatch Hessian: 1/s^2 + (N/b) sum_B p_i (1 - p_i) features_i^2."""
        logits, features, _ = self._logits(self._as_input(x), index)
        scale = self.n_terms / index.shape[-1]
        probability = torch.sigmoid(logits)
        curvature = probability * (1 - probability)
        return 1.0 / self.prior_std**2 + scale * torch.einsum(
            "nb,nbp->np", curvature, features.square()
        )

    def _design(self, features) -> Tensor:
        features = torch.as_tensor(features, dtype=self.dtype, device=self.device)
        if features.ndim != 2 or features.shape[1] != self.dim - int(self.intercept):
            raise ValueError(
                f"features must have shape (m, {self.dim - int(self.intercept)}), "
                f"got {tuple(features.shape)}"
            )
        if self.intercept:
            features = torch.cat([torch.ones_like(features[:, :1]), features], dim=1)
        return features

    def predictive(self, theta: Tensor, features, labels) -> dict[str, float]:
        """Posterior-predictive accuracy and mean log-likelihood on held-out data.

        ``theta`` is ``(m, p)`` posterior draws; p(y | x) is averaged over the draws (the Bayesian
        model average) before taking the log and the 0.5 threshold.
        """
        design = self._design(features)
        labels = torch.as_tensor(labels, dtype=self.dtype, device=self.device)
        logits = theta.to(self.dtype) @ design.T
        log_p1 = torch.logsumexp(F.logsigmoid(logits), 0) - math.log(theta.shape[0])
        log_p0 = torch.logsumexp(F.logsigmoid(-logits), 0) - math.log(theta.shape[0])
        log_likelihood = torch.where(labels == 1, log_p1, log_p0)
        accuracy = ((log_p1 > math.log(0.5)) == (labels == 1)).to(self.dtype).mean()
        return {
            "accuracy": float(accuracy),
            "mean_log_likelihood": float(log_likelihood.mean()),
        }
