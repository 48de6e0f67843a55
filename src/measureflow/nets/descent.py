r"""Plain full-batch gradient descent on two-layer networks: one network with a stopping rule and the
kernel's drift (:func:`gradient_descent`), and many independent networks as one tensor computation
(:func:`batched_gradient_descent`).

:func:`gradient_descent` is theta <- theta - lr grad R with R the mean loss, the update of
``torch.optim.SGD`` without momentum, as :func:`measureflow.nets.train` runs it with
``batch_size=None``, but with what experiments on the lazy regime read along the way: the risk
and the relative movement ||theta_k - theta_0|| / ||theta_0|| at every step, a stop at the first
step whose risk falls below a target, and the operator-norm distance of the empirical NTK to a
reference kernel.

:func:`batched_gradient_descent`:
B networks f_b(x) = s sum_{j<=M} a_bj sigma(w_bj . x) share the data (x, y) but nothing else; their
parameters are stacked as a ``(B, M)`` and w ``(B, M, d)``, and each step of gradient descent on
the mean risk R_b = (1/n) sum_i l(y_i, f_b(x_i)) is a few batched matrix products:

    g_bi = l'(y_i, f_b(x_i)) / n,
    dR_b/da_bj = s sum_i g_bi sigma(w_bj . x_i),     dR_b/dw_bj = s a_bj sum_i g_bi sigma'(w_bj . x_i) x_i.

This is the same iteration as :func:`measureflow.nets.train` with ``optimizer="sgd"``,
``batch_size=None`` run on each network in turn (a test checks it), without the per-run loop,
progress and bookkeeping that make thousands of tiny runs slow: for statistics over random
initializations (e.g. how often GD reaches zero training loss).

>>> generator = torch.Generator().manual_seed(0)
>>> a, w = batched_init(8, 40, 3, generator=generator)  # 8 networks of width 40 on R^3
>>> x, y = torch.randn(5, 3, generator=generator, dtype=torch.float64), torch.randn(5, dtype=torch.float64)
>>> result = batched_gradient_descent(a, w, x, y, scale=40 ** -0.5, lr=0.5, n_steps=1000)
>>> result.losses.shape, bool((result.losses[-1] < 1e-6).all())
(torch.Size([101, 8]), True)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from measureflow._core import as_tensor, check_count, check_finite, check_positive
from measureflow.nets.activations import Activation
from measureflow.nets.activations import activation as resolve_activation
from measureflow.nets.losses import Loss, loss_function
from measureflow.nets.ntk import empirical_ntk
from measureflow.nets.two_layer import TwoLayer

__all__ = ["BatchedGDResult", "DescentRun", "batched_gradient_descent", "batched_init", "gradient_descent"]


def batched_init(n_networks: int, width: int, dim: int, *, generator: torch.Generator | None = None,
                 dtype: torch.dtype = torch.float64, device: torch.device | str | None = None
                 ) -> tuple[Tensor, Tensor]:
    """B independent initializations as in :class:`~measureflow.nets.TwoLayer`: a_bj uniform on
    {+1, -1}, w_bj ~ N(0, I): ``(B, M)`` and ``(B, M, d)``."""
    for value, name in ((n_networks, "n_networks"), (width, "width"), (dim, "dim")):
        check_count(value, name)
    device = device if device is not None else (generator.device if generator is not None else "cpu")
    signs = torch.randint(0, 2, (n_networks, width), generator=generator, device=device)
    weights = torch.randn(n_networks, width, dim, generator=generator, device=device, dtype=dtype)
    return (2 * signs - 1).to(dtype), weights


@dataclass(frozen=True)
class BatchedGDResult:
    """Final parameters a ``(B, M)``, w ``(B, M, d)``; the risk of every network ``losses`` and
    the norm of its gradient ||grad R_b|| ``gradient_norms``, both ``(T, B)``, at the recorded
    ``steps`` ``(T,)`` (step 0, every ``record_every``, the last)."""

    a: Tensor
    w: Tensor
    steps: Tensor
    losses: Tensor
    gradient_norms: Tensor


def batched_gradient_descent(a: Any, w: Any, x: Any, y: Any, *, scale: Any, lr: float, n_steps: int,
                             activation: str | Activation = "relu", loss: str | Loss = "mse",
                             record_every: int | None = None) -> BatchedGDResult:
    r"""Full-batch GD on the mean risk for B networks f_b = ``scale`` sum_j a_bj sigma(w_bj . x).

    ``a`` ``(B, M)``, ``w`` ``(B, M, d)`` (both trained; not modified), ``x`` ``(n, d)``,
    ``y`` ``(n,)``; ``scale`` s (M^{-1/2} for the NTK scaling, 1/M for mean field, 1 unscaled),
    one number or one per network ``(B,)``. Networks of different widths share one batch by
    zero padding: a neuron with a = 0 and w = 0 gets zero gradients (sigma(0) a-gradient
    terms vanish when sigma(0) = 0, the w-gradient carries the factor a = 0) and stays a zero
    neuron for the ReLU, tanh and erf.
    ``lr`` the step (the same for every network); ``record_every`` default about 100 records.
    The data follow the parameters' dtype and device.
    """
    a = as_tensor(a, "a")
    w = as_tensor(w, "w").to(a.dtype)
    if a.ndim != 2 or w.ndim != 3 or w.shape[:2] != a.shape:
        raise ValueError(f"a must be (B, M) and w (B, M, d) with the same B, M; got {tuple(a.shape)} "
                         f"and {tuple(w.shape)}")
    inputs = as_tensor(x, "x").to(dtype=a.dtype, device=a.device)
    targets = torch.as_tensor(y).to(dtype=a.dtype, device=a.device).reshape(-1)
    if inputs.ndim != 2 or inputs.shape[1] != w.shape[2] or targets.shape[0] != inputs.shape[0]:
        raise ValueError(f"x must be (n, {w.shape[2]}) and y (n,); got {tuple(inputs.shape)} and "
                         f"{tuple(targets.shape)}")
    scales = torch.as_tensor(scale, dtype=a.dtype, device=a.device).reshape(-1)
    if scales.numel() not in (1, a.shape[0]) or not bool((scales > 0).all()):
        raise ValueError(f"scale must be a positive number or {a.shape[0]} positive numbers "
                         "(one per network)")
    scales = scales.expand(a.shape[0])[:, None]  # (B, 1)
    lr = check_positive(lr, "lr")
    n_steps = check_count(n_steps, "n_steps", minimum=0)
    sigma = resolve_activation(activation)
    objective = loss_function(loss)
    record_every = record_every or max(1, n_steps // 100)
    a, w = a.clone(), w.clone()
    n = inputs.shape[0]
    steps, losses, gradient_norms = [], [], []
    for step in range(n_steps + 1):
        features, slopes = sigma.both(w @ inputs.T)  # (B, M, n)
        outputs = scales * (a[:, None, :] @ features)[:, 0]  # (B, n)
        g = objective.derivative(outputs, targets) * (scales / n)  # (B, n), s l' / n
        grad_a = (features @ g[:, :, None])[:, :, 0]
        grad_w = a[:, :, None] * ((slopes * g[:, None, :]) @ inputs)
        if step % record_every == 0 or step == n_steps:
            steps.append(step)
            risk = objective.value(outputs, targets).mean(1)
            if not bool(torch.isfinite(risk).all()):
                raise FloatingPointError(f"the risk is not finite at step {step}; lower lr (now {lr:g})")
            losses.append(risk)
            gradient_norms.append((grad_a.square().sum(1) + grad_w.square().sum((1, 2))).sqrt())
        if step == n_steps:
            break
        a.sub_(lr * grad_a)
        w.sub_(lr * grad_w)
    return BatchedGDResult(a, w, torch.tensor(steps), torch.stack(losses), torch.stack(gradient_norms))


@dataclass(frozen=True)
class DescentRun:
    """One gradient-descent run: ``losses`` and ``movements`` ``(k + 1,)``, the mean loss and
    ||theta_s - theta_0|| / ||theta_0|| at theta_0 .. theta_k (k = ``steps``), and ``kernel_steps``,
    ``kernel_distance`` ``(r,)``: ||K_s - K_ref||_op at the recorded steps s (empty without a
    reference kernel)."""

    losses: Tensor
    movements: Tensor
    steps: int
    kernel_steps: Tensor
    kernel_distance: Tensor


@torch.no_grad()
def gradient_descent(model: TwoLayer, x: Any, y: Any, lr: float, n_steps: int, *, loss: str | Loss = "mse",
                     stop_loss: float | None = None, kernel: Any = None,
                     kernel_every: int = 10) -> DescentRun:
    r"""Full-batch gradient descent theta <- theta - lr grad R(theta), R = (1/n) sum_i l(y_i, f(x_i)).

    ``model`` a :class:`TwoLayer` (its trained layers move, in place), ``x`` ``(n, d)``, ``y``
    ``(n,)`` (moved to the model's dtype and device), ``loss`` a name of
    :data:`measureflow.nets.LOSSES` (default the squared loss (f - y)^2 / 2). Runs ``n_steps``
    steps, or stops at the first iterate whose risk is <= ``stop_loss``. With ``kernel``
    ``(n, n)``, records ||empirical_ntk(model, x) - kernel||_op every ``kernel_every`` steps and
    at the last iterate.

    >>> net = TwoLayer(2, 200, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    >>> x = torch.nn.functional.normalize(torch.randn(6, 2, dtype=torch.float64), dim=1)
    >>> run = gradient_descent(net, x, x[:, 0], lr=1.0, n_steps=500, stop_loss=1e-3)
    >>> bool(run.losses[-1] <= 1e-3) and run.steps < 500
    True
    """
    if not isinstance(model, TwoLayer):
        raise TypeError(f"model must be a measureflow.nets.TwoLayer, got {type(model).__name__}")
    reference = model.w.detach()
    inputs = check_finite(as_tensor(x, "x"), "x").to(reference)
    targets = check_finite(as_tensor(y, "y"), "y").to(reference).reshape(-1)
    if inputs.ndim != 2 or inputs.shape[1] != model.dim or targets.shape[0] != inputs.shape[0]:
        raise ValueError(f"x must be (n, {model.dim}) and y (n,); got {tuple(inputs.shape)} and "
                         f"{tuple(targets.shape)}")
    lr = check_positive(lr, "lr")
    n_steps = check_count(n_steps, "n_steps", minimum=0)
    kernel_every = check_count(kernel_every, "kernel_every")
    reference_kernel = None
    if kernel is not None:
        reference_kernel = check_finite(as_tensor(kernel, "kernel"), "kernel").to(reference)
        if reference_kernel.shape != (inputs.shape[0], inputs.shape[0]):
            raise ValueError(f"kernel must be ({inputs.shape[0]}, {inputs.shape[0]}), got "
                             f"{tuple(reference_kernel.shape)}")
    objective = loss_function(loss)
    parameters = [p for p in model.parameters() if p.requires_grad]
    start = model.parameters_vector().clone()
    scale = start.norm()
    losses: list[Tensor] = []
    movements: list[Tensor] = []
    kernel_steps: list[int] = []
    distances: list[float] = []
    step = 0
    while True:
        with torch.enable_grad():
            risk = objective.value(model(inputs), targets).mean()
            losses.append(risk.detach())
            done = step == n_steps or (stop_loss is not None and float(risk.detach()) <= stop_loss)
            grads = None if done else torch.autograd.grad(risk, parameters)
        if not bool(torch.isfinite(risk)):
            raise FloatingPointError(f"the risk is not finite at step {step}; lower lr (now {lr:g})")
        movements.append((model.parameters_vector() - start).norm() / scale)
        if reference_kernel is not None and (done or step % kernel_every == 0):
            kernel_steps.append(step)
            drift = empirical_ntk(model, inputs) - reference_kernel
            distances.append(float(torch.linalg.matrix_norm(drift, ord=2)))
        if done:
            break
        for parameter, grad in zip(parameters, grads, strict=True):
            parameter.sub_(grad, alpha=lr)
        step += 1
    return DescentRun(losses=torch.stack(losses).cpu(), movements=torch.stack(movements).cpu(), steps=step,
                      kernel_steps=torch.tensor(kernel_steps), kernel_distance=torch.tensor(distances))
