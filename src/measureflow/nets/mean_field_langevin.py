r"""Mean-field Langevin dynamics: noisy mean-field training of a two-layer network, as a flow.

The neurons theta_j = (a_j, w_j) in R^{1+d} of the mean-field network
f_rho(x) = int a sigma(w.x) d rho(a, w) (``TwoLayer(..., scaling="mean-field")``, rho the empirical
measure of its M neurons) move by the Wasserstein gradient flow of the free energy

    F[rho] = R[rho] + (lambda_0 / 2) int |theta|^2 d rho(theta) - (1/beta) H[rho],

R the training risk (:class:`measureflow.nets.mean_field.MeanFieldRisk`), the weight decay
lambda_0 |theta|^2 / 2 on the whole neuron (a and w alike: the text's objective
(1/n) sum_i l_i(f_W(x_i)) + (lambda_0 / 2) ||W||_F^2 regularizes every parameter, and without the
decay on a the entropy would spread the outer weights forever, so F would have no minimizer) and
H[rho] = -int rho log rho the differential entropy at temperature 1/beta. Its particle system is
the McKean-Vlasov SDE (Mei, Montanari & Nguyen 2018; Hu, Ren, Siska & Szpruch 2021; Nitanda, Wu &
Suzuki 2022; Chizat 2022)

    d theta_j = [v_rho(theta_j) - lambda_0 theta_j] dt + sqrt(2 / beta) dB_j,

v_rho = -grad (dR/drho) the risk's velocity, realized by :func:`measureflow.flows.run` on the Sum
``MeanFieldRisk + Potential(lambda_0 |theta|^2 / 2) + Entropy(beta, method="noise")``:
theta <- theta + h (v_rho(theta) - lambda_0 theta) + sqrt(2 h / beta) xi. F is convex in rho
(R is convex along linear interpolations of measures for a convex loss, the other two terms are
strictly convex), its minimizer rho* is the unique fixed point rho* ~ exp(-beta (dR/drho[rho*] +
lambda_0 |theta|^2 / 2)), and F(rho_t) decreases to F(rho*) (exponentially under a uniform
log-Sobolev inequality).

Time scale. As in :mod:`measureflow.nets.mean_field`, the flow with step h is, on the network's
parameters Theta = (theta_1, ..., theta_M), noisy gradient descent with learning rate eta = h M
on L(Theta) = R(Theta) + (lambda_0 / (2M)) ||Theta||^2: Theta <- Theta - eta grad L(Theta) +
sqrt(2 eta / (beta M)) xi, i.e. gradient Langevin dynamics at inverse temperature beta M. The
M-neuron system is thus ergodic with the stationary law ~ exp(-beta M L(Theta)) on R^{M(1+d)}
(for a bounded smooth activation and lambda_0 > 0), whose one-neuron marginal tends to rho* as
M -> oo (propagation of chaos).

Pieces: :func:`mean_field_langevin` builds the Sum; :func:`free_energy` splits F at a particle
measure into risk, penalty and entropy (:class:`FreeEnergy`); :class:`ReplicatedMeanFieldRisk`
and :func:`replica_free_energies` run and read R independent systems as one particle array.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from measureflow._core import check_count, check_particles, check_positive
from measureflow.flows import Entropy, Functional, Potential, Sum
from measureflow.metrics.divergences import knn_entropy
from measureflow.nets.mean_field import MeanFieldRisk

__all__ = [
    "FreeEnergy",
    "ReplicatedMeanFieldRisk",
    "WeightDecay",
    "free_energy",
    "mean_field_langevin",
    "replica_free_energies",
]


@dataclass(frozen=True)
class WeightDecay:
    """The potential V(theta) = (lambda_0 / 2) |theta|^2 on whole neurons, grad V = lambda_0 theta.

    ``strength`` lambda_0 >= 0. Maps particles ``(M, D)`` to ``(M,)``; used as
    ``Potential(WeightDecay(l), grad=WeightDecay(l).grad)``.

    >>> WeightDecay(0.5)(torch.tensor([[1.0, 2.0]]))
    tensor([1.2500])
    """

    strength: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "strength", check_positive(self.strength, "weight_decay", allow_zero=True))

    def __call__(self, theta: Tensor) -> Tensor:
        return 0.5 * self.strength * theta.square().sum(1)

    def grad(self, theta: Tensor) -> Tensor:
        return self.strength * theta

    @property
    def __name__(self) -> str:  # Potential's label reads V.__name__
        return f"weight_decay={self.strength:g}"


@dataclass(frozen=True, eq=False)
class ReplicatedMeanFieldRisk(Functional):
    r"""R independent mean-field networks of M neurons each, as one particle array ``(R M, 1 + d)``.

    Rows r M, ..., (r + 1) M - 1 are the neurons of replica r; each replica's network and risk
    R_r are those of :class:`~measureflow.nets.mean_field.MeanFieldRisk` on its own block
    (``single``), so the velocity of every neuron is its own replica's mean-field velocity and
    :func:`measureflow.flows.run` moves R independent systems in one tensor program (the weight
    decay and the noise act neuron by neuron anyway). ``value`` is the mean (1/R) sum_r R_r, so the
    particle identity d value / d theta_i = -(1 / (R M)) velocity_i of the flows contract holds;
    :meth:`replica_risks` gives the R risks.

    >>> x, y = torch.randn(20, 2), torch.randn(20)
    >>> F = ReplicatedMeanFieldRisk(x, y, n_replicas=3, activation="tanh")
    >>> theta = torch.randn(3 * 50, 3)
    >>> torch.allclose(F.velocity(theta)[50:100], F.single.velocity(theta[50:100]))
    True
    """

    x: Any
    y: Any
    n_replicas: int
    activation: Any = "relu"
    loss: Any = "mse"
    single: MeanFieldRisk = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "n_replicas", check_count(self.n_replicas, "n_replicas"))
        single = MeanFieldRisk(self.x, self.y, activation=self.activation, loss=self.loss)
        object.__setattr__(self, "single", single)
        object.__setattr__(self, "x", single.x)
        object.__setattr__(self, "y", single.y)
        object.__setattr__(self, "activation", single.activation)
        object.__setattr__(self, "loss", single.loss)

    def _blocks(self, particles: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(neurons (R, M, 1 + d), inputs (n, d), targets (n,)) in the particles' dtype and device."""
        width = self.x.shape[1] + 1
        if particles.ndim != 2 or particles.shape[1] != width or particles.shape[0] % self.n_replicas:
            raise ValueError(
                f"particles must be {self.n_replicas} replicas of neurons (a, w), shape "
                f"({self.n_replicas} M, {width}), got {tuple(particles.shape)}"
            )
        theta = particles.reshape(self.n_replicas, particles.shape[0] // self.n_replicas, width)
        return (theta, self.x.to(dtype=particles.dtype, device=particles.device),
                self.y.to(dtype=particles.dtype, device=particles.device))

    def predict(self, particles: Tensor, x: Tensor) -> Tensor:
        """The R networks' outputs at ``x`` ``(m, d)``: ``(R, m)``."""
        theta, _, _ = self._blocks(particles)
        features = self.activation(torch.matmul(x, theta[..., 1:].transpose(1, 2)))  # (R, m, M)
        return (features @ theta[..., 0, None]).squeeze(-1) / theta.shape[1]

    def replica_risks(self, particles: Tensor) -> Tensor:
        """R_r for each replica: ``(R,)``."""
        _, inputs, targets = self._blocks(particles)
        return self.loss.value(self.predict(particles, inputs), targets).mean(1)

    def value(self, x: Tensor) -> Tensor:
        return self.replica_risks(x).mean()

    def velocity(self, x: Tensor, *, time: float = 0.0, generator: torch.Generator | None = None) -> Tensor:
        theta, inputs, targets = self._blocks(x)
        a, w = theta[..., 0], theta[..., 1:]  # (R, M), (R, M, d)
        features, slopes = self.activation.both(torch.matmul(inputs, w.transpose(1, 2)))  # (R, n, M)
        outputs = (features @ a[..., None]).squeeze(-1) / theta.shape[1]  # (R, n)
        g = self.loss.derivative(outputs, targets) / inputs.shape[0]  # (R, n)
        velocity = torch.empty_like(theta)
        velocity[..., 0] = -(g[:, None, :] @ features).squeeze(1)
        # The same products as MeanFieldRisk, batched over replicas: (R, d, n) @ (R, n, M).
        moved = (g[..., None] * inputs).transpose(1, 2) @ slopes  # (R, d, M)
        velocity[..., 1:] = -(moved * a[:, None, :]).transpose(1, 2)
        return velocity.reshape(x.shape)

    @property
    def label(self) -> str:
        return f"ReplicatedMeanFieldRisk({self.n_replicas} x {self.loss.name}, {self.activation.name})"


def _check_beta(beta: Any) -> float:
    if isinstance(beta, bool):
        raise TypeError(f"beta must be a number, got {beta!r}")
    try:
        value = float(beta)
    except (TypeError, ValueError):
        raise TypeError(f"beta must be a number, got {beta!r}") from None
    if math.isnan(value) or value <= 0:
        raise ValueError(f"beta must be positive (math.inf for no noise), got {beta!r}")
    return value


def mean_field_langevin(x: Any, y: Any, *, activation: Any = "tanh", loss: Any = "mse",
                        weight_decay: float, beta: float, n_replicas: int = 1) -> Sum:
    r"""The free energy F = R + (lambda_0 / 2) E|theta|^2 - H / beta of mean-field Langevin dynamics.

    Returns ``Sum(MeanFieldRisk(x, y, activation, loss), Potential(WeightDecay(weight_decay)),
    Entropy(beta, method="noise"))`` for :func:`measureflow.flows.run` on neurons ``(M, 1 + d)``
    (e.g. :func:`measureflow.nets.mean_field.neurons_of` of a mean-field ``TwoLayer``): velocity
    v_rho(theta) - lambda_0 theta, temperature 1/beta (noise sqrt(2 h / beta) per step), value
    F estimated with the k-nearest-neighbour entropy (see :func:`free_energy` for its parts).
    ``x`` ``(n, d)``, ``y`` ``(n,)``; ``weight_decay`` lambda_0 >= 0 (a zero term is left out);
    ``beta`` > 0, ``math.inf`` leaves out the entropy (the deterministic regularized mean-field
    flow). With lambda_0 = 0 and finite beta the flow is defined but F has no minimizer.
    ``activation``: the theory wants a smooth one (the default tanh). ``n_replicas`` R > 1 puts
    a :class:`ReplicatedMeanFieldRisk` in place of the risk: R independent systems in one array
    ``(R M, 1 + d)``; the Sum's value then averages risks and penalties over the replicas but
    estimates the entropy from all R M neurons together (the mixture of the replicas' measures),
    so read each replica's free energy with :func:`replica_free_energies`.

    >>> x, y = torch.randn(10, 2), torch.randn(10)
    >>> F = mean_field_langevin(x, y, weight_decay=0.1, beta=20.0)
    >>> F.temperature, len(F.terms)
    (0.05, 3)
    """
    decay = WeightDecay(weight_decay)
    beta = _check_beta(beta)
    n_replicas = check_count(n_replicas, "n_replicas")
    risk = (MeanFieldRisk(x, y, activation=activation, loss=loss) if n_replicas == 1 else
            ReplicatedMeanFieldRisk(x, y, n_replicas, activation=activation, loss=loss))
    terms: list[Functional] = [risk]
    if decay.strength > 0:
        terms.append(Potential(decay, grad=decay.grad))
    if math.isfinite(beta):
        terms.append(Entropy(beta, method="noise"))
    return Sum(tuple(terms))


@dataclass(frozen=True)
class FreeEnergy:
    """F = risk + penalty - entropy / beta at one particle measure, and its parts (floats).

    ``risk`` R[rho]; ``penalty`` E_rho V (the weight decay (lambda_0 / 2) E|theta|^2); ``entropy``
    the differential entropy H[rho] in nats by the Kozachenko-Leonenko estimate
    :func:`measureflow.metrics.knn_entropy` (``None`` without an entropy term, beta = inf);
    ``beta`` the inverse temperature (inf without an entropy term).
    """

    risk: float
    penalty: float
    entropy: float | None
    beta: float

    @property
    def entropy_term(self) -> float:
        """-H / beta (0 without an entropy term)."""
        return 0.0 if self.entropy is None else -self.entropy / self.beta

    @property
    def value(self) -> float:
        """F = risk + penalty - H / beta."""
        return self.risk + self.penalty + self.entropy_term

    def to_dict(self) -> dict[str, float | None]:
        return {"free_energy": self.value, "risk": self.risk, "penalty": self.penalty,
                "entropy": self.entropy, "entropy_term": self.entropy_term,
                "beta": self.beta if math.isfinite(self.beta) else None}


def _parts(functional: Any) -> tuple[MeanFieldRisk | ReplicatedMeanFieldRisk, list[Potential],
                                     Entropy | None]:
    """(the risk term, the Potential terms, the Entropy term or None) of a mean-field free energy."""
    if not isinstance(functional, Functional):
        raise TypeError(f"functional must be a measureflow.flows Functional, got {type(functional).__name__}")
    terms = functional.terms if isinstance(functional, Sum) else (functional,)
    risks = [term for term in terms if isinstance(term, (MeanFieldRisk, ReplicatedMeanFieldRisk))]
    potentials = [term for term in terms if isinstance(term, Potential)]
    entropies = [term for term in terms if isinstance(term, Entropy)]
    if len(risks) != 1:
        raise ValueError(f"functional must contain exactly one MeanFieldRisk, got {len(risks)}")
    if len(entropies) > 1 or any(term.method != "noise" for term in entropies):
        raise ValueError("functional may contain at most one Entropy term, with method='noise'")
    if len(risks) + len(potentials) + len(entropies) != len(terms):
        known = (MeanFieldRisk, ReplicatedMeanFieldRisk, Potential, Entropy)
        others = [term.label for term in terms if not isinstance(term, known)]
        raise ValueError(f"functional may hold only a mean-field risk, Potential and Entropy terms, got "
                         f"{', '.join(others)}")
    return risks[0], potentials, (entropies[0] if entropies else None)


def _free_energy(risk: MeanFieldRisk, potentials: list[Potential], entropy: Entropy | None,
                 theta: Tensor) -> FreeEnergy:
    penalty = sum((float(term.value(theta)) for term in potentials), 0.0)
    if entropy is None:
        return FreeEnergy(risk=float(risk.value(theta)), penalty=penalty, entropy=None, beta=math.inf)
    return FreeEnergy(risk=float(risk.value(theta)), penalty=penalty, entropy=float(knn_entropy(theta)),
                      beta=entropy.beta)


def _neurons(particles: Any) -> Tensor:
    theta = check_particles(particles, "particles")
    return theta if theta.is_floating_point() else theta.to(torch.get_default_dtype())


def free_energy(functional: Functional, particles: Any) -> FreeEnergy:
    """The free energy of ``functional`` at the neurons ``particles`` ``(M, 1 + d)``, in its parts.

    ``functional`` is a :class:`MeanFieldRisk` or a Sum of one MeanFieldRisk, any
    :class:`~measureflow.flows.Potential` terms (their values add into ``penalty``) and at most one
    :class:`~measureflow.flows.Entropy` with ``method="noise"`` (the output of
    :func:`mean_field_langevin`). ``FreeEnergy.value`` equals ``functional.value(particles)`` up to
    rounding: the entropy term's value is -H_hat / beta with the same k-NN estimate. For replicated
    systems use :func:`replica_free_energies`.

    >>> x, y = torch.randn(10, 2), torch.randn(10)
    >>> F = mean_field_langevin(x, y, weight_decay=0.1, beta=20.0)
    >>> theta = torch.randn(200, 3, generator=torch.Generator().manual_seed(0))
    >>> parts = free_energy(F, theta)
    >>> abs(parts.value - float(F.value(theta))) < 1e-5
    True
    """
    risk, potentials, entropy = _parts(functional)
    if isinstance(risk, ReplicatedMeanFieldRisk):
        raise ValueError("functional holds replicated systems; use replica_free_energies")
    return _free_energy(risk, potentials, entropy, _neurons(particles))


def replica_free_energies(functional: Functional, particles: Any) -> tuple[FreeEnergy, ...]:
    """The free energy of each replica of ``mean_field_langevin(..., n_replicas=R)``: R parts.

    ``particles`` ``(R M, 1 + d)``; replica r's neurons are rows r M to (r + 1) M - 1, and its
    free energy is :func:`free_energy` of the single-system functional at them (entropy from its
    own M neurons). A functional with a plain :class:`MeanFieldRisk` gives a 1-tuple.
    """
    risk, potentials, entropy = _parts(functional)
    theta = _neurons(particles)
    if isinstance(risk, MeanFieldRisk):
        return (_free_energy(risk, potentials, entropy, theta),)
    blocks, _, _ = risk._blocks(theta)
    return tuple(_free_energy(risk.single, potentials, entropy, block) for block in blocks)
