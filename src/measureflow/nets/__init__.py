"""Networks as measures (seed 001): two-layer networks in the lazy (NTK) and mean-field regimes.

- :class:`TwoLayer`: f(x) = s(M) sum_j a_j sigma(w_j.x), a_j ~ U{+-1}, w_j ~ N(0, I),
  s(M) = M^{-1/2} ("ntk") or M^{-1} ("mean-field"); activations in :data:`ACTIVATIONS`;
- kernels: :func:`empirical_ntk` (closed form for TwoLayer, ``torch.func`` for any module),
  :func:`analytic_ntk` (the infinite-width kernel), :func:`ntk_regression` (the lazy limit);
- training: :func:`train` with torch.optim and averaged SGD, recording risk, movement, NTK drift
  and residual projections (:class:`Monitor`);
- mean field: :class:`MeanFieldRisk`, the risk as a functional of the neurons' measure, moved
  by :func:`measureflow.flows.run`.
"""

from measureflow.nets.activations import ACTIVATIONS, Activation, Erf, ReLU, Sigmoid, SmoothReLU, Tanh, activation
from measureflow.nets.losses import LOSSES, ExpLoss, LogisticLoss, Loss, SquaredLoss, loss_function
from measureflow.nets.mean_field import MeanFieldRisk, neurons_of, set_neurons
from measureflow.nets.ntk import NTKPrediction, analytic_ntk, empirical_ntk, ntk_regression
from measureflow.nets.training import OPTIMIZERS, Monitor, NetTrainResult, NetTrainTask, train
from measureflow.nets.two_layer import LAYERS, SCALINGS, TwoLayer

__all__ = [
    "ACTIVATIONS",
    "LAYERS",
    "LOSSES",
    "OPTIMIZERS",
    "SCALINGS",
    "Activation",
    "Erf",
    "ExpLoss",
    "LogisticLoss",
    "Loss",
    "MeanFieldRisk",
    "Monitor",
    "NTKPrediction",
    "NetTrainResult",
    "NetTrainTask",
    "ReLU",
    "Sigmoid",
    "SmoothReLU",
    "SquaredLoss",
    "Tanh",
    "TwoLayer",
    "activation",
    "analytic_ntk",
    "empirical_ntk",
    "loss_function",
    "neurons_of",
    "ntk_regression",
    "set_neurons",
    "train",
]
