r"""Networks for generative models: time-conditioned noise predictors and scalar energies.

- :class:`SinusoidalEmbedding` maps a time t to (sin(w_j t), cos(w_j t)) with geometric
  frequencies w_j (Vaswani et al. 2017; Ho et al. 2020).
- :class:`MLPScore` predicts the noise eps(x, t) ``(n, d)`` of a vector sample: a residual MLP
  whose every hidden layer receives a learned shift from the time embedding.
- :class:`UNet8` predicts eps(x, t) for ``(n, C, 8, 8)`` images: a small U-Net (8x8 -> 4x4 ->
  2x2 and back, skip connections, residual blocks with GroupNorm, SiLU and the time embedding).
- :class:`EnergyMLP` is a smooth scalar energy E(x) ``(n,)`` for energy-based models (SiLU
  everywhere, so grad_x E exists and is continuous, as Langevin dynamics needs).

The noise predictors' last layer starts at zero, so a fresh model predicts eps = 0 and the
denoising loss starts at E|z|^2 = d instead of at a random, possibly huge, value.

Initialization uses torch's default (global) random number generator, as every torch module
does; this module never seeds it. A caller who needs a reproducible initialization seeds
around the construction, e.g. ``with torch.random.fork_rng(devices=[]): torch.manual_seed(s);
net = MLPScore(2)``, which leaves the caller's global RNG as it was.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from measureflow._core import check_count

__all__ = ["EnergyMLP", "MLPScore", "SinusoidalEmbedding", "UNet8"]


def _check_scale(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value <= 0:
        raise ValueError(f"{name} must be a finite positive number, got {value!r}")
    return float(value)


def _check_times(t: Tensor, n: int, x: Tensor) -> Tensor:
    """``t`` as an ``(n,)`` tensor in the dtype and on the device of ``x`` (a 0-dim t is broadcast)."""
    if not isinstance(t, Tensor):
        raise TypeError(f"t must be a torch tensor of shape ({n},), got {type(t).__name__}")
    if t.ndim == 0:
        t = t.expand(n)
    if tuple(t.shape) != (n,):
        raise ValueError(f"t must have shape ({n},) (one time per sample) or (), got {tuple(t.shape)}")
    return t.to(dtype=x.dtype, device=x.device)


class SinusoidalEmbedding(nn.Module):
    r"""t ``(n,)`` -> [sin(w_0 t), ..., sin(w_{h-1} t), cos(w_0 t), ..., cos(w_{h-1} t)] ``(n, dim)``
    with h = dim / 2 and w_j = max_period^(-j / h), frequencies from 1 down to about 1/max_period.

    The input is used as is; callers scale continuous times in [0, 1] up (``time_scale``) so
    the fastest frequencies resolve small time differences.

    >>> SinusoidalEmbedding(4)(torch.tensor([0.0, 1.0]))
    tensor([[0.0000, 0.0000, 1.0000, 1.0000],
            [0.8415, 0.0100, 0.5403, 0.9999]])
    """

    def __init__(self, dim: int, max_period: float = 10_000.0) -> None:
        super().__init__()
        self.dim = check_count(dim, "dim", minimum=2)
        if self.dim % 2:
            raise ValueError(f"dim must be even (sin and cos pairs), got {dim}")
        self.max_period = _check_scale(max_period, "max_period")

    def forward(self, t: Tensor) -> Tensor:
        if not isinstance(t, Tensor) or t.ndim != 1:
            shape = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
            raise ValueError(f"t must have shape (n,), got {shape}")
        dtype = t.dtype if t.is_floating_point() else torch.get_default_dtype()
        # Computed per call in t's dtype (a few dozen numbers): exact in float64, no buffer that
        # a .float()/.double() of the model would round.
        half = self.dim // 2
        exponents = torch.arange(half, dtype=dtype, device=t.device) / half
        frequencies = torch.exp(-math.log(self.max_period) * exponents)
        angles = t.to(dtype)[:, None] * frequencies[None, :]
        return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, max_period={self.max_period:g}"


class MLPScore(nn.Module):
    r"""A noise predictor eps(x, t) for vectors: x ``(n, dim)``, t ``(n,)`` -> ``(n, dim)``.

    e = SiLU(W_e Emb(time_scale t)) is a ``time_dim`` feature of the time; with h_0 = W_in x,

        h_{l+1} = h_l + W_l SiLU(h_l + c_l(e)),   l = 0..depth-1,
        eps = W_out SiLU(h_depth),

    where c_l(e) (``hidden`` numbers, all depth of them from one linear map of e) shifts the
    input of every hidden layer, so each layer is conditioned on t. W_out starts at zero.
    About (depth + 1) * hidden^2 parameters (335k for the defaults with dim = 2).

    With ``context_dim > 0`` the network is conditional, eps(x, t, y) for a context y ``(n,
    context_dim)`` (e.g. an observation, for a posterior p(x | y)): e = SiLU(W_e Emb(time_scale t) +
    W_y y), so the context shifts every layer as the time does.

    >>> net = MLPScore(2, hidden=32, depth=2)
    >>> net(torch.zeros(5, 2), torch.rand(5)).shape
    torch.Size([5, 2])
    """

    def __init__(self, dim: int, hidden: int = 256, depth: int = 4, time_dim: int = 64,
                 time_scale: float = 1000.0, context_dim: int = 0) -> None:
        super().__init__()
        self.dim = check_count(dim, "dim")
        self.context_dim = check_count(context_dim, "context_dim", minimum=0)
        self.hidden = check_count(hidden, "hidden")
        self.depth = check_count(depth, "depth")
        self.time_scale = _check_scale(time_scale, "time_scale")
        self.embedding = SinusoidalEmbedding(time_dim)
        self.time_layer = nn.Linear(time_dim, time_dim)
        self.context_layer = nn.Linear(self.context_dim, time_dim, bias=False) if self.context_dim else None
        self.shifts = nn.Linear(time_dim, self.depth * self.hidden)
        self.input = nn.Linear(self.dim, self.hidden)
        self.layers = nn.ModuleList(nn.Linear(self.hidden, self.hidden) for _ in range(self.depth))
        self.output = nn.Linear(self.hidden, self.dim)
        nn.init.zeros_(self.output.weight)
        nn.init.zeros_(self.output.bias)

    def forward(self, x: Tensor, t: Tensor, context: Tensor | None = None) -> Tensor:
        if not isinstance(x, Tensor) or x.ndim != 2 or x.shape[1] != self.dim:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"x must have shape (n, {self.dim}), got {shape}")
        t = _check_times(t, x.shape[0], x)
        pre = self.time_layer(self.embedding(t * self.time_scale))
        if self.context_layer is not None:
            if context is None or context.shape != (x.shape[0], self.context_dim):
                got = None if context is None else tuple(context.shape)
                raise ValueError(f"this network is conditional: context must have shape ({x.shape[0]}, "
                                 f"{self.context_dim}), got {got}")
            pre = pre + self.context_layer(context)
        elif context is not None:
            raise ValueError("this network takes no context (built with context_dim=0)")
        features = F.silu(pre)
        shifts = self.shifts(features).chunk(self.depth, dim=1)
        h = self.input(x)
        for layer, shift in zip(self.layers, shifts, strict=True):
            h = h + layer(F.silu(h + shift))
        return self.output(F.silu(h))


def _groups(channels: int) -> int:
    """The largest of 8, 4, 2, 1 groups that divides ``channels``."""
    return next(g for g in (8, 4, 2, 1) if channels % g == 0)


class _ResBlock(nn.Module):
    """GroupNorm -> SiLU -> conv3x3 (+ per-channel time shift) -> GroupNorm -> SiLU -> conv3x3,
    added to a (1x1-projected when the width changes) skip path."""

    def __init__(self, channels_in: int, channels_out: int, time_dim: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(channels_in), channels_in)
        self.conv1 = nn.Conv2d(channels_in, channels_out, 3, padding=1)
        self.time = nn.Linear(time_dim, channels_out)
        self.norm2 = nn.GroupNorm(_groups(channels_out), channels_out)
        self.conv2 = nn.Conv2d(channels_out, channels_out, 3, padding=1)
        self.skip = nn.Conv2d(channels_in, channels_out, 1) if channels_in != channels_out else nn.Identity()

    def forward(self, x: Tensor, features: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.time(features)[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class UNet8(nn.Module):
    r"""A noise predictor eps(x, t) for small images: x ``(n, channels, 8, 8)``, t ``(n,)`` -> same
    shape as x.

    Widths ``base`` at 8x8 and ``2 base`` at 4x4 and 2x2; down by 2x2 average pooling, up by
    nearest-neighbour upsampling; the activations after each encoder block are concatenated
    into the decoder at the same resolution (U-Net skips, Ronneberger et al. 2015). Every
    residual block adds a per-channel shift computed from the time feature
    MLP(Emb(time_scale t)) of width ``time_dim``. The output convolution starts at zero. About
    377k parameters for the defaults (128k with ``base=16``), small enough to train on a CPU.

    >>> net = UNet8(base=16, time_dim=32)
    >>> net(torch.zeros(3, 1, 8, 8), torch.rand(3)).shape
    torch.Size([3, 1, 8, 8])
    """

    def __init__(self, channels: int = 1, base: int = 32, time_dim: int = 128,
                 time_scale: float = 1000.0) -> None:
        super().__init__()
        self.channels = check_count(channels, "channels")
        self.base = check_count(base, "base")
        self.time_scale = _check_scale(time_scale, "time_scale")
        wide = 2 * self.base
        self.embedding = SinusoidalEmbedding(time_dim)
        self.time_mlp = nn.Sequential(nn.Linear(time_dim, time_dim), nn.SiLU(), nn.Linear(time_dim, time_dim))
        self.input = nn.Conv2d(self.channels, self.base, 3, padding=1)
        self.down8 = _ResBlock(self.base, self.base, time_dim)        # 8x8
        self.down4 = _ResBlock(self.base, wide, time_dim)             # 4x4
        self.middle = _ResBlock(wide, wide, time_dim)                 # 2x2
        self.up4 = _ResBlock(wide + wide, wide, time_dim)             # 4x4, with the 4x4 skip
        self.up8 = _ResBlock(wide + self.base, self.base, time_dim)   # 8x8, with the 8x8 skip
        self.output_norm = nn.GroupNorm(_groups(self.base), self.base)
        self.output = nn.Conv2d(self.base, self.channels, 3, padding=1)
        nn.init.zeros_(self.output.weight)
        nn.init.zeros_(self.output.bias)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        expected = (self.channels, 8, 8)
        if not isinstance(x, Tensor) or x.ndim != 4 or tuple(x.shape[1:]) != expected:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"x must have shape (n, {self.channels}, 8, 8), got {shape}")
        t = _check_times(t, x.shape[0], x)
        features = self.time_mlp(self.embedding(t * self.time_scale))
        skip8 = self.down8(self.input(x), features)                           # (n, b, 8, 8)
        skip4 = self.down4(F.avg_pool2d(skip8, 2), features)                  # (n, 2b, 4, 4)
        h = self.middle(F.avg_pool2d(skip4, 2), features)                     # (n, 2b, 2, 2)
        h = self.up4(torch.cat([F.interpolate(h, scale_factor=2.0, mode="nearest"), skip4], 1), features)
        h = self.up8(torch.cat([F.interpolate(h, scale_factor=2.0, mode="nearest"), skip8], 1), features)
        return self.output(F.silu(self.output_norm(h)))


class EnergyMLP(nn.Module):
    r"""A scalar energy E(x): x ``(n, dim)`` -> ``(n,)``; ``depth`` hidden layers of width ``hidden``
    with SiLU activations, then a linear read-out. Smooth in x, so grad_x E (Langevin, MALA)
    is continuous.

    >>> net = EnergyMLP(2, hidden=16, depth=2)
    >>> net(torch.zeros(4, 2)).shape
    torch.Size([4])
    """

    def __init__(self, dim: int, hidden: int = 128, depth: int = 3) -> None:
        super().__init__()
        self.dim = check_count(dim, "dim")
        self.hidden = check_count(hidden, "hidden")
        self.depth = check_count(depth, "depth")
        layers: list[nn.Module] = []
        width = self.dim
        for _ in range(self.depth):
            layers += [nn.Linear(width, self.hidden), nn.SiLU()]
            width = self.hidden
        layers.append(nn.Linear(width, 1))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        if not isinstance(x, Tensor) or x.ndim != 2 or x.shape[1] != self.dim:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"x must have shape (n, {self.dim}), got {shape}")
        return self.layers(x).squeeze(-1)
