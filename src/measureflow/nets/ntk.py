r"""Neural tangent kernels: the empirical Gram matrix of parameter gradients, the infinite-width
kernel of the two-layer network, and the lazy-limit (kernel gradient flow) predictor.

For a network f_theta the empirical NTK is K_theta(x, x') = <grad_theta f(x), grad_theta f(x')>.
For :class:`~measureflow.nets.TwoLayer` with s(M) = M^{-1/2} and both layers trained,

    K_M(x, x') = (1/M) sum_j [ sigma(w_j.x) sigma(w_j.x') + a_j^2 sigma'(w_j.x) sigma'(w_j.x') x.x' ],

an average of M i.i.d. terms (a_j^2 = 1) whose mean is the infinite-width kernel of the text

    K_inf(x, x') = E_w[sigma(w.x) sigma(w.x')] + (x.x') E_w[sigma'(w.x) sigma'(w.x')],  w ~ N(0, I),

(the first term from the outer layer a, the second from the inner layer w). Only the Gaussian
pair (u, v) = (w.x, w.x') enters, with variances |x|^2, |x'|^2 and covariance x.x'.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from measureflow._core import as_tensor, check_finite, check_positive
from measureflow.nets.activations import Activation, Erf, ReLU
from measureflow.nets.activations import activation as _activation
from measureflow.nets.two_layer import LAYERS, TwoLayer, _layers

__all__ = ["NTKPrediction", "analytic_ntk", "empirical_ntk", "ntk_regression"]

# Elements of one block of intermediate arrays: bounds the memory of every blocked loop here.
_BLOCK_ELEMENTS = 2**24


def _inputs(x: Any, name: str, dim: int | None = None) -> Tensor:
    tensor = as_tensor(x, name)
    if tensor.ndim != 2 or tensor.shape[0] == 0 or (dim is not None and tensor.shape[1] != dim):
        wanted = f"(n, {dim})" if dim is not None else "(n, d)"
        raise ValueError(f"{name} must have shape {wanted} with n >= 1, got {tuple(tensor.shape)}")
    return check_finite(tensor, name)


def _pair(x1: Any, x2: Any, dim: int | None = None) -> tuple[Tensor, Tensor]:
    first = _inputs(x1, "x1", dim)
    second = first if x2 is None else _inputs(x2, "x2", first.shape[1])
    return first, second.to(first.dtype)


# ---------------------------------------------------------------------------------------------
# Empirical NTK


def empirical_ntk(model: nn.Module, x1: Any, x2: Any = None, *, block_size: int | None = None) -> Tensor:
    r"""The Gram matrix K_ij = <grad_theta f(x1_i), grad_theta f(x2_j)> over the trained parameters,
    ``(n1, n2)``.

    ``x2=None`` means ``x2 = x1``. For a :class:`~measureflow.nets.TwoLayer` the closed form is
    used: with S = sigma(X W^T), D = sigma'(X W^T) ``(n, M)`` and s = s(M),

        K = s^2 [ S_1 S_2^T  (if a is trained)  +  ((D_1 diag(a^2)) D_2^T) * (X_1 X_2^T)  (if w is trained) ],

    two matrix products blocked over neurons (memory O((n1 + n2) block + n1 n2)), never n
    Jacobians. Any other ``nn.Module`` mapping ``(n, d) -> (n,)`` goes through ``torch.func``:
    per-example Jacobians by ``vmap(jacrev)`` over blocks of ``block_size`` inputs (memory
    O(block P) for the intermediates, P the number of trained parameters), then K = J_1 J_2^T.
    The result has the parameters' dtype and device.

    >>> net = TwoLayer(3, 50, generator=torch.Generator().manual_seed(0))
    >>> x = torch.randn(4, 3)
    >>> K = empirical_ntk(net, x)
    >>> J = torch.stack([torch.cat([g.reshape(-1) for g in torch.autograd.grad(net(x[i:i+1])[0],
    ...     (net.a, net.w))]) for i in range(4)])
    >>> torch.testing.assert_close(K, J @ J.T)
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if isinstance(model, TwoLayer):
        return _two_layer_ntk(model, *_pair(x1, x2, model.dim), block_size)
    return _functorch_ntk(model, *_pair(x1, x2), block_size)


def _two_layer_ntk(model: TwoLayer, x1: Tensor, x2: Tensor, block_size: int | None) -> Tensor:
    w, a = model.w.detach(), model.a.detach()
    x1, x2 = x1.to(device=w.device, dtype=w.dtype), x2.to(device=w.device, dtype=w.dtype)
    n1, n2 = x1.shape[0], x2.shape[0]
    block = block_size or max(1, _BLOCK_ELEMENTS // (n1 + n2))
    outer = "a" in model.trained
    inner = "w" in model.trained
    kernel_a = torch.zeros(n1, n2, dtype=w.dtype, device=w.device)
    kernel_w = torch.zeros(n1, n2, dtype=w.dtype, device=w.device)
    if not (outer or inner):
        return kernel_a
    for start in range(0, model.width, block):
        w_block, a_block = w[start : start + block], a[start : start + block]
        s1, d1 = model.activation.both(x1 @ w_block.T)
        s2, d2 = (s1, d1) if x2 is x1 else model.activation.both(x2 @ w_block.T)
        if outer:
            kernel_a.addmm_(s1, s2.T)
        if inner:
            kernel_w.addmm_(d1 * a_block.square(), d2.T)
    total = kernel_a
    if inner:
        total = total + kernel_w * (x1 @ x2.T)
    return total * model.scale**2


def _functorch_ntk(model: nn.Module, x1: Tensor, x2: Tensor, block_size: int | None) -> Tensor:
    from torch.func import functional_call, jacrev, vmap

    params = {name: p.detach() for name, p in model.named_parameters() if p.requires_grad}
    if not params:
        raise ValueError("the model has no trainable parameters (requires_grad=True); its NTK is zero")
    frozen = {name: p.detach() for name, p in model.named_parameters() if not p.requires_grad}
    buffers = {name: b for name, b in model.named_buffers()}
    reference = next(iter(params.values()))
    n_params = sum(p.numel() for p in params.values())

    def single(theta: dict[str, Tensor], point: Tensor) -> Tensor:
        out = functional_call(model, ({**theta, **frozen}, buffers), (point[None],))
        return out.reshape(())

    probe = functional_call(model, ({**params, **frozen}, buffers), (x1[:2].to(reference),))
    if probe.numel() != min(2, x1.shape[0]):
        raise ValueError(
            f"empirical_ntk needs a scalar-output model (n, d) -> (n,) or (n, 1); got output shape "
            f"{tuple(probe.shape)} for 2 inputs"
        )
    block = block_size or max(1, min(256, _BLOCK_ELEMENTS // (4 * n_params)))
    jacobian = vmap(jacrev(single), in_dims=(None, 0))

    def flat_jacobians(x: Tensor) -> Tensor:
        rows = []
        for start in range(0, x.shape[0], block):
            parts = jacobian(params, x[start : start + block].to(reference))
            rows.append(torch.cat([part.reshape(part.shape[0], -1) for part in parts.values()], 1))
        return torch.cat(rows)

    j2 = flat_jacobians(x2)
    if x2 is x1:
        return j2 @ j2.T
    out = torch.empty(x1.shape[0], x2.shape[0], dtype=j2.dtype, device=j2.device)
    for start in range(0, x1.shape[0], block):
        j1 = flat_jacobians(x1[start : start + block])
        out[start : start + block] = j1 @ j2.T
    return out


# ---------------------------------------------------------------------------------------------
# Infinite-width NTK


def analytic_ntk(x1: Any, x2: Any = None, activation: str | Activation = "relu", *,
                 train: Any = LAYERS, n_quadrature: int | None = None) -> Tensor:
    r"""The infinite-width NTK of the two-layer network, ``(n1, n2)``, in x1's dtype and device.

        K_inf(x, x') = [a trained] E[sigma(u) sigma(v)] + [w trained] (x.x') E[sigma'(u) sigma'(v)],

    (u, v) = (w.x, w.x'), w ~ N(0, I): centred Gaussian with variances |x|^2, |x'|^2 and
    covariance c = x.x'. It is the limit of :func:`empirical_ntk` of ``TwoLayer(..., scaling="ntk")``
    as the width grows. Closed forms (theta the angle between x and x'):

    - ReLU (arc-cosine kernels of degree 1 and 0, Cho & Saul 2009):
      E[relu(u) relu(v)] = |x||x'| (sin theta + (pi - theta) cos theta) / (2 pi),
      E[1{u>0} 1{v>0}] = (pi - theta) / (2 pi);
    - erf (Williams 1997): E[erf(u) erf(v)] = (2/pi) arcsin(2c / sqrt((1 + 2|x|^2)(1 + 2|x'|^2))),
      E[erf'(u) erf'(v)] = (4/pi) det(I + 2 Sigma)^{-1/2} = (4/pi) / sqrt((1 + 2|x|^2)(1 + 2|x'|^2) - 4c^2).

    Any other activation: 2-D Gauss-Hermite quadrature with ``n_quadrature`` nodes per axis on
    u = |x| z_1, v = |x'| (rho z_1 + sqrt(1 - rho^2) z_2), exact for polynomials of degree
    < 2 n_quadrature in (z_1, z_2). As |x| grows, sigma(|x| z) varies on the scale 1/|x| in z
    and the nodes needed grow like |x|^2: the default is min(256, max(48, 48 r^2)) with r the
    largest input norm. Measured on erf against its closed form (relative, max over entries):
    1e-9 or better for r <= 2, 1e-6 at r = 3 (256 nodes, the most numpy's node computation
    allows); scale larger inputs down (the kernel is not scale-invariant, so change the data,
    not the kernel) or pass ``n_quadrature``.

    >>> x = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    >>> analytic_ntk(x)  # orthogonal unit vectors: 1/(2 pi) off the diagonal, 1/2 + 1/2 on it
    tensor([[1.0000, 0.1592],
            [0.1592, 1.0000]], dtype=torch.float64)
    """
    first, second = _pair(x1, x2)
    act = _activation(activation)
    layers = _layers(train)
    norm1 = first.norm(dim=1)[:, None]
    norm2 = second.norm(dim=1)[None, :]
    if n_quadrature is None:
        largest = max(float(norm1.max()), float(norm2.max()))
        n_quadrature = int(min(256, max(48, math.ceil(48 * largest**2))))
    if isinstance(n_quadrature, bool) or not isinstance(n_quadrature, int) or not 2 <= n_quadrature <= 256:
        raise ValueError(f"n_quadrature must be an integer in [2, 256], got {n_quadrature!r}")
    inner = first @ second.T
    if isinstance(act, ReLU):
        product = norm1 * norm2
        cos = torch.where(product > 0, inner / product.clamp_min(torch.finfo(inner.dtype).tiny), 0.0)
        theta = torch.arccos(cos.clamp(-1.0, 1.0))
        value = product * (torch.sin(theta) + (math.pi - theta) * torch.cos(theta)) / (2 * math.pi)
        slope = torch.where(product > 0, (math.pi - theta) / (2 * math.pi), 0.0)
    elif isinstance(act, Erf):
        scale = torch.sqrt((1 + 2 * norm1.square()) * (1 + 2 * norm2.square()))
        value = (2 / math.pi) * torch.arcsin((2 * inner / scale).clamp(-1.0, 1.0))
        slope = (4 / math.pi) / torch.sqrt(scale.square() - 4 * inner.square())
    else:
        value, slope = _gauss_hermite(act, first, second, norm1, norm2, inner, n_quadrature, layers)
    kernel = torch.zeros_like(inner)
    if "a" in layers:
        kernel = kernel + value
    if "w" in layers:
        kernel = kernel + inner * slope
    return kernel


def _gauss_hermite(act: Activation, x1: Tensor, x2: Tensor, norm1: Tensor, norm2: Tensor, inner: Tensor,
                   n_nodes: int, layers: tuple[str, ...]) -> tuple[Tensor, Tensor]:
    nodes_np, weights_np = np.polynomial.hermite_e.hermegauss(n_nodes)
    nodes = torch.as_tensor(nodes_np, dtype=x1.dtype, device=x1.device)
    weights = torch.as_tensor(weights_np / math.sqrt(2 * math.pi), dtype=x1.dtype, device=x1.device)
    product = norm1 * norm2
    rho = torch.where(product > 0, inner / product.clamp_min(torch.finfo(inner.dtype).tiny), 0.0).clamp(-1, 1)
    sine = torch.sqrt(1 - rho.square())
    n1, n2 = inner.shape
    value = torch.zeros_like(inner)
    slope = torch.zeros_like(inner)
    q = n_nodes
    rows = max(1, _BLOCK_ELEMENTS // (n2 * q * q))
    first_s, first_d = act.both(norm1 * nodes)  # (n1, Q): sigma(|x| z_1)
    for start in range(0, n1, rows):
        stop = min(start + rows, n1)
        # v = |x'| (rho z_1 + sqrt(1 - rho^2) z_2): (b, n2, Q, Q) over (z_1, z_2)
        v = norm2[..., None, None] * (rho[start:stop, :, None, None] * nodes[:, None]
                                      + sine[start:stop, :, None, None] * nodes)
        second_s, second_d = act.both(v)
        inner_sum_s = second_s @ weights  # (b, n2, Q): sum over z_2
        inner_sum_d = second_d @ weights
        if "a" in layers:
            value[start:stop] = torch.einsum("iq,ijq,q->ij", first_s[start:stop], inner_sum_s, weights)
        if "w" in layers:
            slope[start:stop] = torch.einsum("iq,ijq,q->ij", first_d[start:stop], inner_sum_d, weights)
    return value, slope


# ---------------------------------------------------------------------------------------------
# Lazy-limit prediction


@dataclass(frozen=True)
class NTKPrediction:
    """The kernel gradient-flow predictor: ``train`` ``(n,)`` at the training points, ``test``
    ``(m,)`` at the test points (None without ``K_test``), ``coefficients`` c ``(n,)`` with
    f = f_0 + K c, and ``time`` (None at convergence)."""

    train: Tensor
    test: Tensor | None
    coefficients: Tensor
    time: float | None


def ntk_regression(K_train: Any, y: Any, K_test: Any = None, t: float | None = None, ridge: float = 0.0, *,
                   f0_train: Any = None, f0_test: Any = None) -> NTKPrediction:
    r"""The lazy-limit predictor: kernel gradient flow of the squared loss, at time ``t`` or at convergence.

    In the NTK regime the network evolves as its linearization, whose outputs on the training
    points follow df/dt = -K (f - y) for the loss (1/2) sum_i (f(x_i) - y_i)^2 (for the mean
    loss (1/2n) sum_i, pass ``t / n``; gradient descent with step eta for k steps is t = eta k).
    The solution is f_t = f_0 + (I - exp(-t K)) (y - f_0) on the training points, and
    f_t(x) = f_0(x) + K(x, X) c_t elsewhere, with c_t = K^{-1} (I - exp(-t K)) (y - f_0).

    With ``ridge`` r > 0 the flow also decays toward f_0 (weight decay toward the initialization,
    d(f - f_0)/dt = -K (f - y) - r (f - f_0)): in the eigenbasis K = U diag(lambda) U^T,

        c_t = U diag( (1 - exp(-t (lambda + r))) / (lambda + r) ) U^T (y - f_0),

    which for t = None (t -> infinity) is kernel ridge regression c = (K + r I)^{-1} (y - f_0).
    Directions with lambda + r <= 1e-12 lambda_max (a singular K without ridge) get the
    pseudo-inverse at convergence. ``K_train`` ``(n, n)``, ``y`` ``(n,)``, ``K_test`` ``(m, n)``,
    ``f0_train`` ``(n,)`` and ``f0_test`` ``(m,)`` the outputs at initialization (default 0).

    >>> K = torch.tensor([[2.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    >>> y = torch.tensor([1.0, 1.0], dtype=torch.float64)
    >>> ntk_regression(K, y, t=1.0).train  # 1 - exp(-t lambda)
    tensor([0.8647, 0.6321], dtype=torch.float64)
    """
    kernel = as_tensor(K_train, "K_train")
    if kernel.ndim != 2 or kernel.shape[0] != kernel.shape[1] or kernel.shape[0] == 0:
        raise ValueError(f"K_train must be a square (n, n) matrix, got shape {tuple(kernel.shape)}")
    check_finite(kernel, "K_train")
    n = kernel.shape[0]
    targets = check_finite(as_tensor(y, "y").to(kernel), "y")
    if targets.shape != (n,):
        raise ValueError(f"y must have shape ({n},) to match K_train, got {tuple(targets.shape)}")
    ridge = check_positive(ridge, "ridge", allow_zero=True)
    if t is not None:
        t = check_positive(t, "t", allow_zero=True)
    f0 = (torch.zeros_like(targets) if f0_train is None
          else check_finite(as_tensor(f0_train, "f0_train").to(kernel), "f0_train"))
    if f0.shape != (n,):
        raise ValueError(f"f0_train must have shape ({n},), got {tuple(f0.shape)}")
    cross = None
    if K_test is not None:
        cross = check_finite(as_tensor(K_test, "K_test").to(kernel), "K_test")
        if cross.ndim != 2 or cross.shape[1] != n:
            raise ValueError(f"K_test must have shape (m, {n}), got {tuple(cross.shape)}")
    work = torch.float64 if kernel.dtype != torch.float64 else kernel.dtype
    symmetric = 0.5 * (kernel + kernel.T).to(work)
    eigenvalues, eigenvectors = torch.linalg.eigh(symmetric)
    shifted = eigenvalues + ridge
    floor = 1e-12 * float(eigenvalues.abs().max().clamp_min(torch.finfo(work).tiny))
    usable = shifted > floor
    safe = torch.where(usable, shifted, torch.ones_like(shifted))
    if t is None:
        gain = torch.where(usable, 1 / safe, torch.zeros_like(safe))
    else:
        # -expm1(-t s) / s, whose limit for s -> 0 is t
        gain = torch.where(usable, -torch.expm1(-t * safe) / safe, torch.full_like(safe, t))
    residual = (targets - f0).to(work)
    coefficients = eigenvectors @ (gain * (eigenvectors.T @ residual))
    train = f0 + (symmetric @ coefficients).to(kernel.dtype)
    test = None
    if cross is not None:
        base = torch.zeros(cross.shape[0], dtype=kernel.dtype, device=kernel.device)
        if f0_test is not None:
            base = check_finite(as_tensor(f0_test, "f0_test").to(kernel), "f0_test")
            if base.shape != (cross.shape[0],):
                raise ValueError(f"f0_test must have shape ({cross.shape[0]},), got {tuple(base.shape)}")
        test = base + (cross.to(work) @ coefficients).to(kernel.dtype)
    return NTKPrediction(train=train, test=test, coefficients=coefficients.to(kernel.dtype), time=t)
