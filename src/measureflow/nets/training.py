r"""Training networks with torch.optim, and averaged SGD with regularization toward the initialization.

:func:`train` runs on the shared loop of :mod:`measureflow.generative.train` (progress bar,
window-averaged losses, atomic checkpoints, exact resume, Ctrl-C handling): the data are the
rows [x, y], full-batch (``batch_size=None``: gradient descent) or minibatches drawn with
replacement (SGD). Each step minimizes the empirical risk (1/b) sum_i l(y_i, f(x_i)) of the
batch plus (lambda/2) ||theta - theta_0||^2 with ``regularization`` lambda.

``optimizer="averaged-sgd"`` is the algorithm of Nitanda & Suzuki (2020) in the text: SGD steps

    theta_{t+1} = theta_t - alpha [ grad l(y_t, f_{theta_t}(x_t)) + lambda (theta_t - theta_0) ],

returning the average theta_bar_T = (1/T) sum_{t<T} theta_t, kept by
``torch.optim.swa_utils.AveragedModel`` (updated before each step, so the average runs over
theta_0 .. theta_{T-1} as in the algorithm box).

``optimizer="langevin"`` is gradient Langevin dynamics (:class:`~measureflow.nets.langevin.LangevinSGD`):

    theta_{t+1} = theta_t - lr g_t + sqrt(2 lr / beta) xi_t,      xi_t ~ N(0, I),

with g_t the gradient of the batch objective above (GLD full-batch, SGLD with minibatches),
sampling approximately exp(-beta [R_n(theta) + (lambda/2) ||theta - theta_0||^2]), R_n the mean
loss over the training set. The noise comes from the run's ``generator``, after the batch
indices of the same step, so the checkpoint's generator state makes resumed runs exact.

Every ``Monitor.every`` steps (and at step 0) the run records, at full precision over whole sets:
the training and test risk of the predictor (the average for averaged SGD), the relative
movement ||theta_t - theta_0|| / ||theta_0|| of the trained parameters, the NTK drift
||K_t - K_0||_F / ||K_0||_F on a fixed probe set, and the projections u_k^T (f(X) - y) of the
training residual on chosen directions (e.g. eigenvectors of K_0).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel

from measureflow._core import as_tensor, check_count, check_finite, check_positive, make_generator
from measureflow.generative.train import TrainHistory, TrainTask
from measureflow.generative.train import train as train_loop
from measureflow.nets.langevin import LangevinSGD
from measureflow.nets.losses import Loss, loss_function
from measureflow.nets.ntk import empirical_ntk
from measureflow.nets.two_layer import TwoLayer

__all__ = ["OPTIMIZERS", "Monitor", "NetTrainResult", "NetTrainTask", "train"]

OPTIMIZERS = ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "averaged-sgd", "langevin")
KIND = "two-layer"
_TRACE_KEYS = ("steps", "train_loss", "test_loss", "movement", "ntk_drift", "projections")


@dataclass(frozen=True, eq=False)
class Monitor:
    """What a training run records every ``every`` steps (and at step 0).

    ``x_test`` ``(m, d)`` / ``y_test`` ``(m,)``: a test set for the test risk; ``probe``
    ``(p, d)``: inputs on which the NTK drift is measured (default: the first 64 training
    inputs; ``probe=False`` turns the drift off); ``directions`` ``(n, k)``: vectors (e.g.
    eigenvectors of K_0 on the training inputs) on which the training residual is projected.
    """

    x_test: Any = None
    y_test: Any = None
    probe: Any = None
    directions: Any = None
    every: int = 10


@dataclass(frozen=True)
class NetTrainResult:
    """A finished run: the trained ``model``, the ``averaged`` model (averaged SGD; else None),
    the ``trace`` recorded by the :class:`Monitor` (tensors ``(T,)``, ``projections`` ``(T, k)``;
    NaN where not measured) and the loop's ``history`` (window means of the batch loss)."""

    model: nn.Module
    averaged: nn.Module | None
    trace: dict[str, Tensor]
    history: TrainHistory

    @property
    def predictor(self) -> nn.Module:
        """The model whose outputs are the estimate: the average for averaged SGD, else the model."""
        return self.averaged if self.averaged is not None else self.model

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: the trace as lists and the history."""
        trace = {key: value.tolist() for key, value in self.trace.items()}
        return {"trace": trace, "history": self.history.to_dict()}


def _make_optimizer(name: str, parameters: list[nn.Parameter], lr: float,
                    momentum: float, beta: float | None = None) -> torch.optim.Optimizer:
    if name == "langevin":
        return LangevinSGD(parameters, lr=lr, beta=beta)
    if name in ("sgd", "averaged-sgd"):
        return torch.optim.SGD(parameters, lr=lr)
    if name == "momentum":
        return torch.optim.SGD(parameters, lr=lr, momentum=momentum)
    if name == "nesterov":
        return torch.optim.SGD(parameters, lr=lr, momentum=momentum, nesterov=True)
    if name == "adagrad":
        return torch.optim.Adagrad(parameters, lr=lr)
    if name == "rmsprop":
        return torch.optim.RMSprop(parameters, lr=lr)
    return torch.optim.Adam(parameters, lr=lr)


class NetTrainTask(TrainTask):
    """One optimizer step of a scalar network on a batch of rows [x, y] (see :func:`train`)."""

    def __init__(self, model: nn.Module, x: Tensor, y: Tensor, loss: Loss, optimizer: str, lr: float,
                 momentum: float, regularization: float, monitor: Monitor,
                 beta: float | None = None) -> None:
        self.model = model
        self.parameters = [p for p in model.parameters() if p.requires_grad]
        if not self.parameters:
            raise ValueError("the model has no trainable parameters; unfreeze a layer")
        self.loss = loss
        self.regularization = regularization
        self.optimizer = _make_optimizer(optimizer, self.parameters, lr, momentum, beta)
        self.averaged = AveragedModel(model) if optimizer == "averaged-sgd" else None
        self.initial = [p.detach().clone() for p in self.parameters]
        self.initial_norm = float(torch.sqrt(sum(p.square().sum() for p in self.initial)))
        self.x, self.y = x, y
        self.monitor = monitor
        reference = self.parameters[0]
        self.x_test = self.y_test = None
        if monitor.x_test is not None:
            self.x_test = check_finite(as_tensor(monitor.x_test, "x_test").to(reference), "x_test")
            self.y_test = check_finite(as_tensor(monitor.y_test, "y_test").to(reference).reshape(-1),
                                       "y_test")
            if (self.x_test.ndim != 2 or self.x_test.shape[1] != x.shape[1]
                    or self.y_test.shape[0] != self.x_test.shape[0]):
                raise ValueError(
                    f"x_test must be (m, {x.shape[1]}) and y_test (m,), got {tuple(self.x_test.shape)} and "
                    f"{tuple(self.y_test.shape)}"
                )
        elif monitor.y_test is not None:
            raise ValueError("y_test given without x_test")
        self.probe = None
        if monitor.probe is not False:
            probe = x[:64] if monitor.probe is None else as_tensor(monitor.probe, "probe").to(reference)
            self.probe = check_finite(probe, "probe")
        self.directions = None
        if monitor.directions is not None:
            self.directions = check_finite(as_tensor(monitor.directions, "directions").to(reference),
                                           "directions")
            if self.directions.ndim != 2 or self.directions.shape[0] != x.shape[0]:
                raise ValueError(f"directions must have shape ({x.shape[0]}, k), "
                                 f"got {tuple(self.directions.shape)}")
        self.kernel0 = empirical_ntk(model, self.probe) if self.probe is not None else None
        self.steps_done = 0
        self.trace: dict[str, list[Any]] = {key: [] for key in _TRACE_KEYS}
        self.record()

    @property
    def predictor(self) -> nn.Module:
        return self.averaged if self.averaged is not None else self.model

    @torch.no_grad()
    def record(self) -> None:
        """Append the monitored quantities at the current step to the trace."""
        predictor = self.predictor
        nan = float("nan")
        outputs = predictor(self.x)
        self.trace["steps"].append(self.steps_done)
        self.trace["train_loss"].append(float(self.loss.value(outputs, self.y).mean()))
        test = nan
        if self.x_test is not None:
            test = float(self.loss.value(predictor(self.x_test), self.y_test).mean())
        self.trace["test_loss"].append(test)
        moved = torch.sqrt(sum((p - p0).square().sum()
                               for p, p0 in zip(self.parameters, self.initial, strict=True)))
        self.trace["movement"].append(float(moved) / self.initial_norm if self.initial_norm > 0 else nan)
        drift = nan
        if self.kernel0 is not None:
            kernel = empirical_ntk(self.model, self.probe)
            drift = float((kernel - self.kernel0).norm() / self.kernel0.norm())
        self.trace["ntk_drift"].append(drift)
        projections: list[float] = []
        if self.directions is not None:
            projections = (self.directions.T @ (outputs - self.y)).tolist()
        self.trace["projections"].append(projections)

    def step(self, batch: Tensor, generator: torch.Generator) -> dict[str, Tensor]:
        x, y = batch[:, :-1], batch[:, -1]
        if self.averaged is not None:
            self.averaged.update_parameters(self.model)  # the average of theta_0 .. theta_{T-1}
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.loss.value(self.model(x), y).mean()
        loss.backward()
        if self.regularization > 0:
            with torch.no_grad():
                for parameter, start in zip(self.parameters, self.initial, strict=True):
                    parameter.grad.add_(parameter - start, alpha=self.regularization)
        if isinstance(self.optimizer, LangevinSGD):
            self.optimizer.step(generator=generator)  # the loop's generator: saved in checkpoints
        else:
            self.optimizer.step()
        self.steps_done += 1
        if self.steps_done % self.monitor.every == 0:
            self.record()
        return {"loss": loss.detach()}

    def state_dict(self) -> dict[str, Any]:
        state = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "initial": list(self.initial), "steps_done": self.steps_done,
                 "trace": {key: list(values) for key, values in self.trace.items()}}
        if self.kernel0 is not None:
            state["kernel0"] = self.kernel0
        if self.averaged is not None:
            state["averaged"] = self.averaged.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        reference = self.parameters[0]
        self.initial = [t.to(reference) for t in state["initial"]]
        self.initial_norm = float(torch.sqrt(sum(p.square().sum() for p in self.initial)))
        self.steps_done = int(state["steps_done"])
        self.trace = {key: list(state["trace"][key]) for key in _TRACE_KEYS}
        if self.kernel0 is not None:
            self.kernel0 = state["kernel0"].to(reference)
        if self.averaged is not None:
            self.averaged.load_state_dict(state["averaged"])

    def trace_tensors(self) -> dict[str, Tensor]:
        trace = {key: torch.tensor(self.trace[key], dtype=torch.float64)
                 for key in _TRACE_KEYS if key != "projections"}
        trace["steps"] = trace["steps"].to(torch.int64)
        width = max((len(row) for row in self.trace["projections"]), default=0)
        rows = self.trace["projections"]
        trace["projections"] = (torch.tensor(rows, dtype=torch.float64) if width
                                else torch.zeros(len(rows), 0, dtype=torch.float64))
        return trace


def train(model: nn.Module, x: Any, y: Any, *, loss: str | Loss = "mse", optimizer: str = "sgd",
          lr: float = 0.1, n_steps: int = 1000, batch_size: int | None = None, momentum: float = 0.9,
          regularization: float = 0.0, beta: float | None = None, monitor: Monitor | None = None,
          generator: torch.Generator | None = None, out_dir: str | Path | None = None,
          resume: bool = False, overwrite: bool = False, checkpoint_every: int | None = None,
          log_every: int | None = None, progress: bool = True) -> NetTrainResult:
    r"""Train a scalar network ``model`` ``(n, d) -> (n,)`` on ``x`` ``(n, d)``, ``y`` ``(n,)``.

    ``loss``: "mse", "logistic" or "exp" (labels +-1 for the last two). ``optimizer``: one of
    :data:`OPTIMIZERS`, all from torch.optim ("momentum" and "nesterov" use ``momentum``;
    "averaged-sgd" is SGD plus the running average of its iterates). ``lr`` is the step size
    (for a mean-field network, whose gradients are O(1/M) per neuron, use lr = h M to move the
    neurons at the mean-field rate h). ``batch_size=None``: full-batch gradient descent; an
    integer: minibatches of that many rows drawn with replacement. ``regularization`` lambda
    adds lambda (theta - theta_0) to the gradient (weight decay toward the initialization).
    ``beta``: the inverse temperature of ``optimizer="langevin"`` (required there, refused with
    any other optimizer), which adds sqrt(2 lr / beta) xi to every trained parameter each step.
    ``monitor``: what to record (default :class:`Monitor()`: training risk, movement and NTK
    drift every 10 steps). The data move to the model's device and dtype; ``generator`` (default:
    fresh) draws the minibatches; ``out_dir``/``resume``/``overwrite``/``checkpoint_every`` as in
    :func:`measureflow.generative.train.train` (a run resumed from its checkpoint equals the
    uninterrupted run).

    >>> net = TwoLayer(2, 200, generator=torch.Generator().manual_seed(0))
    >>> x = torch.randn(10, 2, generator=torch.Generator().manual_seed(1))
    >>> x = torch.nn.functional.normalize(x, dim=1)
    >>> result = train(net, x, x[:, 0], lr=1.0, n_steps=200, progress=False)
    >>> result.trace["train_loss"][-1] < 1e-2 * result.trace["train_loss"][0]
    tensor(True)
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
    objective = loss_function(loss)
    lr = check_positive(lr, "lr")
    momentum = check_positive(momentum, "momentum", allow_zero=True)
    if momentum >= 1:
        raise ValueError(f"momentum must lie in [0, 1), got {momentum!r}")
    regularization = check_positive(regularization, "regularization", allow_zero=True)
    if optimizer == "langevin":
        if beta is None:
            raise ValueError("optimizer 'langevin' needs beta, the inverse temperature (> 0)")
        beta = check_positive(beta, "beta")
    elif beta is not None:
        raise ValueError(f"beta is the inverse temperature of optimizer 'langevin'; optimizer {optimizer!r} "
                         "takes no beta")
    monitor = Monitor() if monitor is None else monitor
    if not isinstance(monitor, Monitor):
        raise TypeError(f"monitor must be a measureflow.nets.Monitor, got {type(monitor).__name__}")
    check_count(monitor.every, "Monitor.every")
    reference = next(model.parameters(), None)
    if reference is None:
        raise ValueError("the model has no parameters")
    inputs = check_finite(as_tensor(x, "x"), "x").to(device=reference.device, dtype=reference.dtype)
    targets = check_finite(as_tensor(y, "y"), "y").to(inputs).reshape(-1)
    if inputs.ndim != 2 or inputs.shape[0] == 0:
        raise ValueError(f"x must have shape (n, d) with n >= 1, got {tuple(inputs.shape)}")
    if targets.shape[0] != inputs.shape[0]:
        raise ValueError(f"y must have {inputs.shape[0]} entries (one per row of x), got {targets.shape[0]}")
    if isinstance(model, TwoLayer) and inputs.shape[1] != model.dim:
        raise ValueError(f"x has {inputs.shape[1]} columns but the network takes dim = {model.dim}")
    if objective.classification and not bool(((targets == 1) | (targets == -1)).all()):
        raise ValueError(f"loss {objective.name!r} needs labels y in {{-1, +1}}")
    task = NetTrainTask(model, inputs, targets, objective, optimizer, lr, momentum, regularization, monitor,
                        beta)
    if generator is None:
        generator = make_generator(None, inputs.device)
    config = {
        "model": model.config() if isinstance(model, TwoLayer) else type(model).__name__,
        "loss": objective.name, "optimizer": optimizer, "lr": lr,
        "momentum": momentum if optimizer in ("momentum", "nesterov") else None,
        "regularization": regularization, "record_every": monitor.every,
    }
    if beta is not None:  # only for "langevin": older configs (and checkpoints) stay as they were
        config["beta"] = beta
    history = train_loop(
        task, torch.cat([inputs, targets[:, None]], 1), n_steps=n_steps, batch_size=batch_size,
        generator=generator, out_dir=out_dir, checkpoint_every=checkpoint_every,
        log_every=log_every or max(1, min(50, n_steps // 20 or 1)), resume=resume, overwrite=overwrite,
        progress=progress, config=config, kind=KIND, description="train net",
    )
    return NetTrainResult(model=model, averaged=None if task.averaged is None else task.averaged.module,
                          trace=task.trace_tensors(), history=history)


