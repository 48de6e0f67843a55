r"""Many independent two-layer networks trained at once: streaming averaged SGD over replicas.

:func:`measureflow.nets.train` runs one network through the shared training loop (progress,
checkpoints, monitoring). A rate check needs many short runs -- several seeds at several
horizons T, each a run of T single-sample steps -- and there the loop's per-step bookkeeping
dominates. :func:`averaged_sgd_replicas` runs R networks of one architecture side by side on
stacked parameters ``a`` ``(R, M)``, ``w`` ``(R, M, d)``, each on its own stream of samples,
with its own regularization lambda_r and horizon T_r. Each replica follows exactly the update
of ``train(..., optimizer="averaged-sgd", batch_size=1)`` (Nitanda & Suzuki 2020, the algorithm
box of the text) for the squared loss l(y, f) = (f - y)^2 / 2 (f_t the network at theta_t):

    theta_{t+1} = theta_t - alpha [ (f_t(x_t) - y_t) grad_theta f_t(x_t) + lambda (theta_t - theta_0) ],
    theta_bar_T = (1 / T) sum_{t=0}^{T-1} theta_t,

with, for f(x) = s sum_j a_j sigma(w_j . x), grad_{a_j} f = s sigma(w_j . x) and
grad_{w_j} f = s a_j sigma'(w_j . x) x (only the layers in ``model.trained`` move).
:func:`~measureflow.nets.symmetrize` gives the initialization of that paper, under which f_{theta_0} = 0.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from measureflow._core import as_tensor, check_finite, check_positive
from measureflow.nets.two_layer import TwoLayer

__all__ = ["ReplicaSGDResult", "averaged_sgd_replicas"]


@dataclass(frozen=True)
class ReplicaSGDResult:
    """Per replica r: ``models[r]`` the last iterate theta_{T_r} and ``averaged[r]`` the average
    theta_bar_{T_r} = (1/T_r) sum_{t < T_r} theta_t, as :class:`TwoLayer` networks; ``n_steps``
    the horizons T_r ``(R,)``."""

    models: list[TwoLayer]
    averaged: list[TwoLayer]
    n_steps: Tensor


def _replica_models(models: Sequence[TwoLayer]) -> list[TwoLayer]:
    if isinstance(models, TwoLayer) or not isinstance(models, Sequence) or not models:
        raise TypeError("models must be a non-empty sequence of TwoLayer networks")
    for model in models:
        if not isinstance(model, TwoLayer):
            raise TypeError(f"models must hold TwoLayer networks, got {type(model).__name__}")
    first = models[0]
    for index, model in enumerate(models):
        same_place = model.w.dtype == first.w.dtype and model.w.device == first.w.device
        if model.config() != first.config() or not same_place:
            raise ValueError(
                f"all models must share one architecture, dtype and device; model {index} has "
                f"{model.config()} on {model.w.dtype}/{model.w.device}, model 0 {first.config()} on "
                f"{first.w.dtype}/{first.w.device}"
            )
    return list(models)


def _per_replica(value: Any, name: str, count: int, reference: Tensor, *, integer: bool = False) -> Tensor:
    tensor = as_tensor(value, name, dtype=torch.float64)
    if tensor.ndim == 0:
        tensor = tensor.expand(count)
    if tensor.shape != (count,):
        raise ValueError(
            f"{name} must be a number or have shape ({count},) (one per replica), got {tuple(tensor.shape)}"
        )
    check_finite(tensor, name)
    if integer:
        if bool((tensor != tensor.round()).any()) or bool((tensor < 1).any()):
            raise ValueError(f"{name} must hold positive integers, got {tensor.tolist()}")
        return tensor.to(dtype=torch.int64, device=reference.device)
    if bool((tensor < 0).any()):
        raise ValueError(f"{name} must be non-negative, got {tensor.tolist()}")
    return tensor.to(dtype=reference.dtype, device=reference.device)


@torch.no_grad()
def averaged_sgd_replicas(models: Sequence[TwoLayer], x: Any, y: Any, *, lr: float, regularization: Any = 0.0,
                          n_steps: Any = None) -> ReplicaSGDResult:
    r"""Averaged SGD with regularization toward the initialization for R networks at once.

    ``models``: R :class:`TwoLayer` networks of one architecture (their current parameters are
    theta_0; they are not modified). ``x`` ``(T, R, d)`` and ``y`` ``(T, R)``: sample t of
    replica r is (x[t, r], y[t, r]) (a fresh draw per step is the streaming setting of the
    text). ``lr`` alpha (constant step), ``regularization`` lambda and ``n_steps`` T_r: a number
    or one value per replica ``(R,)``; ``n_steps`` defaults to T (replica r uses the first T_r
    samples of its stream). The update is the one in the module docstring, step for step the
    same as ``train(model, ..., optimizer="averaged-sgd", batch_size=1, lr=alpha,
    regularization=lambda)`` fed the same samples. Replicas are processed in order of decreasing
    horizon so that each step only touches the replicas still running: the cost is
    O(M d sum_r T_r) arithmetic and O(max_r T_r) tensor operations.

    >>> nets = [TwoLayer(2, 8, generator=torch.Generator().manual_seed(s)) for s in range(3)]
    >>> x = torch.randn(50, 3, 2); y = x[..., 0]
    >>> out = averaged_sgd_replicas(nets, x, y, lr=0.5, regularization=1e-2, n_steps=[50, 20, 10])
    >>> len(out.averaged), out.n_steps.tolist()
    (3, [50, 20, 10])
    """
    models = _replica_models(models)
    first = models[0]
    reference = first.w.detach()
    count = len(models)
    inputs = check_finite(as_tensor(x, "x"), "x").to(reference)
    targets = check_finite(as_tensor(y, "y"), "y").to(reference)
    if inputs.ndim != 3 or inputs.shape[1] != count or inputs.shape[2] != first.dim or inputs.shape[0] == 0:
        raise ValueError(
            f"x must have shape (T, {count}, {first.dim}) with T >= 1, got {tuple(inputs.shape)}"
        )
    if targets.shape != inputs.shape[:2]:
        raise ValueError(f"y must have shape {tuple(inputs.shape[:2])}, got {tuple(targets.shape)}")
    alpha = check_positive(lr, "lr")
    lam = _per_replica(regularization, "regularization", count, reference)
    horizons = _per_replica(inputs.shape[0] if n_steps is None else n_steps, "n_steps", count, reference,
                            integer=True)
    if int(horizons.max()) > inputs.shape[0]:
        raise ValueError(
            f"n_steps must not exceed the stream length T = {inputs.shape[0]}, got {horizons.tolist()}"
        )

    # Longest horizon first: at step t the running replicas are a prefix order[:active].
    order = torch.argsort(horizons.cpu(), descending=True, stable=True).to(reference.device)
    sorted_steps = horizons[order].cpu()
    a0 = torch.stack([model.a.detach() for model in models])[order].clone()
    w0 = torch.stack([model.w.detach() for model in models])[order].clone()
    a, w = a0.clone(), w0.clone()
    a_sum, w_sum = torch.zeros_like(a), torch.zeros_like(w)
    lam = lam[order]
    inputs, targets = inputs[:, order], targets[:, order]
    scale = first.scale
    act = first.activation
    train_a, train_w = "a" in first.trained, "w" in first.trained
    active = count
    for step in range(int(sorted_steps[0])):
        while active > 0 and int(sorted_steps[active - 1]) <= step:
            active -= 1
        xa, ya = inputs[step, :active], targets[step, :active]  # (m, d), (m,)
        av, wv = a[:active], w[:active]
        a_sum[:active] += av
        w_sum[:active] += wv
        pre = torch.einsum("rjd,rd->rj", wv, xa)  # (m, M)
        value, slope = act.both(pre)
        residual = scale * (value * av).sum(1) - ya  # f(x_t) - y_t: (m,)
        decay = lam[:active, None]
        grad_a = residual[:, None] * scale * value + decay * (av - a0[:active]) if train_a else None
        if train_w:
            coefficient = (residual[:, None] * scale) * av * slope  # (m, M)
            grad_w = coefficient[:, :, None] * xa[:, None, :] + decay[:, :, None] * (wv - w0[:active])
            wv.sub_(alpha * grad_w)
        if train_a:
            av.sub_(alpha * grad_a)
    denominator = sorted_steps.to(device=reference.device, dtype=reference.dtype)
    a_bar, w_bar = a_sum / denominator[:, None], w_sum / denominator[:, None, None]
    inverse = torch.argsort(order)
    finals, averages = [], []
    for index in range(count):
        position = int(inverse[index])
        finals.append(_with_parameters(models[index], a[position], w[position]))
        averages.append(_with_parameters(models[index], a_bar[position], w_bar[position]))
    return ReplicaSGDResult(models=finals, averaged=averages, n_steps=horizons.cpu())


def _with_parameters(model: TwoLayer, a: Tensor, w: Tensor) -> TwoLayer:
    clone = copy.deepcopy(model)
    with torch.no_grad():
        clone.a.copy_(a)
        clone.w.copy_(w)
    return clone
