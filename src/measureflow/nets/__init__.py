"""Networks as measures (seed 001): two-layer networks in the lazy (NTK) and mean-field regimes.

- :class:`TwoLayer`: f(x) = s(M) sum_j a_j sigma(w_j.x), a_j ~ U{+-1}, w_j ~ N(0, I),
  s(M) = M^{-1/2} ("ntk") or M^{-1} ("mean-field"); activations in :data:`ACTIVATIONS`;
- kernels: :func:`empirical_ntk` (closed form for TwoLayer, ``torch.func`` for any module),
  :func:`analytic_ntk` (the infinite-width kernel), :func:`ntk_regression` (the lazy limit);
- training: :func:`train` with torch.optim and averaged SGD, recording risk, movement, NTK drift
  and residual projections (:class:`Monitor`);
- plain gradient descent: :func:`gradient_descent` (one network, stop at a target risk, NTK
  drift) and :func:`batched_gradient_descent` (many independent networks as one tensor program);
  :func:`averaged_sgd_replicas` (averaged SGD on many replicas at once);
- mean field: :class:`MeanFieldRisk`, the risk as a functional of the neurons' measure, moved
  by :func:`measureflow.flows.run`;
- the kernel's spectrum on the circle (:func:`circle_spectrum`, :func:`fourier_features`) and
  margins (:func:`f1_max_margin`, :func:`kernel_max_margin`, :func:`normalized_margin`,
  :func:`train_margin`) for spectral bias and implicit bias.
"""

from measureflow.nets.activations import (
    ACTIVATIONS,
    Activation,
    Erf,
    ReLU,
    Sigmoid,
    SmoothReLU,
    Tanh,
    activation,
)
from measureflow.nets.descent import (
    BatchedGDResult,
    DescentRun,
    batched_gradient_descent,
    batched_init,
    gradient_descent,
)
from measureflow.nets.langevin import LangevinSGD
from measureflow.nets.losses import LOSSES, ExpLoss, LogisticLoss, Loss, SquaredLoss, loss_function
from measureflow.nets.margin import (
    ActiveNeurons,
    F1MaxMargin,
    F1NormBounds,
    KernelMaxMargin,
    MarginRun,
    NormalizedMargin,
    active_neurons,
    circle_directions,
    f1_dual_bound,
    f1_max_margin,
    f1_norm_on_data,
    kernel_max_margin,
    lazy_margin,
    normalized_margin,
    train_margin,
)
from measureflow.nets.mean_field import MeanFieldRisk, neurons_of, set_neurons
from measureflow.nets.mean_field_langevin import (
    FreeEnergy,
    ReplicatedMeanFieldRisk,
    WeightDecay,
    free_energy,
    mean_field_langevin,
    replica_free_energies,
)
from measureflow.nets.ntk import NTKPrediction, analytic_ntk, empirical_ntk, ntk_regression
from measureflow.nets.replicas import ReplicaSGDResult, averaged_sgd_replicas
from measureflow.nets.spectrum import (
    circle_inputs,
    circle_spectrum,
    eigenvalues_per_feature,
    fourier_features,
    ntk_neuron_terms,
    relu_circle_spectrum,
)
from measureflow.nets.training import OPTIMIZERS, Monitor, NetTrainResult, NetTrainTask, train
from measureflow.nets.two_layer import LAYERS, SCALINGS, TwoLayer, symmetrize

__all__ = [
    "ACTIVATIONS",
    "LAYERS",
    "LOSSES",
    "OPTIMIZERS",
    "SCALINGS",
    "Activation",
    "ActiveNeurons",
    "BatchedGDResult",
    "DescentRun",
    "Erf",
    "ExpLoss",
    "F1MaxMargin",
    "F1NormBounds",
    "FreeEnergy",
    "KernelMaxMargin",
    "LangevinSGD",
    "LogisticLoss",
    "Loss",
    "MarginRun",
    "MeanFieldRisk",
    "Monitor",
    "NTKPrediction",
    "NetTrainResult",
    "NetTrainTask",
    "NormalizedMargin",
    "ReLU",
    "ReplicaSGDResult",
    "ReplicatedMeanFieldRisk",
    "Sigmoid",
    "SmoothReLU",
    "SquaredLoss",
    "Tanh",
    "TwoLayer",
    "WeightDecay",
    "activation",
    "active_neurons",
    "analytic_ntk",
    "averaged_sgd_replicas",
    "batched_gradient_descent",
    "batched_init",
    "circle_directions",
    "circle_inputs",
    "circle_spectrum",
    "eigenvalues_per_feature",
    "empirical_ntk",
    "f1_dual_bound",
    "f1_max_margin",
    "f1_norm_on_data",
    "fourier_features",
    "free_energy",
    "gradient_descent",
    "kernel_max_margin",
    "lazy_margin",
    "loss_function",
    "mean_field_langevin",
    "neurons_of",
    "normalized_margin",
    "ntk_neuron_terms",
    "ntk_regression",
    "relu_circle_spectrum",
    "replica_free_energies",
    "set_neurons",
    "symmetrize",
    "train",
    "train_margin",
]
