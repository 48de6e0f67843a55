r"""The two-layer network of the lazy (NTK) and mean-field analyses.

    f(x) = s(M) sum_{j=1}^M a_j sigma(w_j . x),     s(M) = M^{-1/2} (NTK) or M^{-1} (mean field),

initialized as in the text (seed 001): a_j uniform on {+1, -1}, w_j ~ N(0, I_d), independently.
Under the NTK scaling the network moves a distance O(M^{-1/2}) per parameter to fit the data
(lazy training: it stays close to its linearization at the initialization); under the
mean-field scaling f is the integral of a sigma(w . x) against the empirical measure of the
neurons (a_j, w_j), which move by O(1): training is a Wasserstein gradient flow of that measure
(:class:`measureflow.nets.MeanFieldRisk`).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from measureflow._core import check_count
from measureflow.nets.activations import Activation, SmoothReLU, activation

__all__ = ["LAYERS", "SCALINGS", "TwoLayer", "symmetrize"]

SCALINGS = ("ntk", "mean-field")
LAYERS = ("a", "w")


def _layers(train: Any) -> tuple[str, ...]:
    if isinstance(train, str):
        train = (train,)
    try:
        layers = tuple(train)
    except TypeError:
        raise TypeError(f"train must be a tuple of layer names from {LAYERS}, got {train!r}") from None
    unknown = [layer for layer in layers if layer not in LAYERS]
    if unknown or len(set(layers)) != len(layers):
        raise ValueError(f"train must name distinct layers among {LAYERS} ('a' outer, 'w' inner), "
                         f"got {train!r}")
    return tuple(layer for layer in LAYERS if layer in layers)


class TwoLayer(nn.Module):
    r"""f(x) = s(M) sum_j a_j sigma(w_j . x) on inputs ``(n, dim)`` -> ``(n,)``.

    Parameters ``a`` ``(M,)`` (outer layer) and ``w`` ``(M, dim)`` (inner layer), drawn from
    a_j ~ U{+1, -1} and w_j ~ N(0, I) with ``generator``; ``scaling`` "ntk" gives s(M) = M^{-1/2},
    "mean-field" s(M) = 1/M. ``train`` names the layers that learn; a frozen layer keeps
    ``requires_grad=False`` (so torch.optim, the NTK and ``parameters_vector`` see only the
    trained ones). ``activation`` is a name of :data:`measureflow.nets.ACTIVATIONS` or an
    :class:`~measureflow.nets.Activation`. ``dtype``/``device`` place the parameters (default
    float32 on the CPU).

    >>> net = TwoLayer(2, 1000, generator=torch.Generator().manual_seed(0))
    >>> net(torch.randn(5, 2)).shape
    torch.Size([5])
    >>> sorted(set(net.a.tolist()))
    [-1.0, 1.0]
    """

    def __init__(self, dim: int, width: int, activation: str | Activation = "relu", scaling: str = "ntk",
                 train: Any = LAYERS, *, generator: torch.Generator | None = None,
                 dtype: torch.dtype | None = None, device: torch.device | str | None = None) -> None:
        super().__init__()
        self.dim = check_count(dim, "dim")
        self.width = check_count(width, "width")
        self.activation = _activation(activation)  # the argument shadows the module function
        if scaling not in SCALINGS:
            raise ValueError(f"scaling must be one of {', '.join(SCALINGS)}, got {scaling!r}")
        self.scaling = scaling
        self.trained = _layers(train)
        dtype = dtype or torch.get_default_dtype()
        draw_device = generator.device if generator is not None else torch.device("cpu")
        signs = torch.randint(0, 2, (self.width,), generator=generator, device=draw_device)
        weights = torch.randn(self.width, self.dim, generator=generator, device=draw_device, dtype=dtype)
        self.a = nn.Parameter((2 * signs - 1).to(dtype=dtype, device=device or draw_device),
                              requires_grad="a" in self.trained)
        self.w = nn.Parameter(weights.to(device=device or draw_device), requires_grad="w" in self.trained)

    @property
    def scale(self) -> float:
        """s(M): M^{-1/2} (NTK) or M^{-1} (mean field)."""
        return 1 / math.sqrt(self.width) if self.scaling == "ntk" else 1 / self.width

    def features(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(sigma(x W^T), sigma'(x W^T)), each ``(n, M)``."""
        return self.activation.both(x @ self.w.T)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"x must have shape (n, {self.dim}), got {tuple(x.shape)}")
        return self.scale * (self.activation(x @ self.w.T) @ self.a)

    def parameters_vector(self) -> Tensor:
        """The trained parameters flattened in the order (a, w): ``(P,)``."""
        return torch.cat([getattr(self, layer).detach().reshape(-1) for layer in self.trained])

    def extra_repr(self) -> str:
        return (f"dim={self.dim}, width={self.width}, activation={self.activation.name}, "
                f"scaling={self.scaling!r}, train={self.trained}")

    def config(self) -> dict[str, Any]:
        """The constructor's settings as plain data (for checkpoints and result files)."""
        sharpness = getattr(self.activation, "sharpness", None)
        return {"dim": self.dim, "width": self.width, "activation": self.activation.name,
                "sharpness": sharpness, "scaling": self.scaling, "train": list(self.trained)}

    @classmethod
    def from_config(cls, config: dict[str, Any], **kwargs: Any) -> TwoLayer:
        """A network with the settings of :meth:`config` (freshly initialized: load weights after)."""
        act: str | Activation = config["activation"]
        if act == "smooth-relu" and config.get("sharpness") is not None:
            act = SmoothReLU(float(config["sharpness"]))
        return cls(int(config["dim"]), int(config["width"]), act, config["scaling"],
                   tuple(config["train"]), **kwargs)


_activation = activation


def symmetrize(model: TwoLayer) -> TwoLayer:
    r"""Make the network output zero at initialization, in place: neurons M/2 + j copy neuron j
    with the opposite outer weight, w_{M/2+j} = w_j and a_{M/2+j} = -a_j, so f_{theta_0} = 0.

    This is the symmetric initialization of Nitanda & Suzuki (2020) (also Chizat, Oyallon & Bach
    2019): the lazy predictor then starts from f_0 = 0 instead of a random Gaussian-process draw,
    and the NTK at initialization keeps the law of a width-M/2 network's kernel (each pair adds
    twice the same term). ``model.width`` must be even. Returns ``model``.

    >>> net = symmetrize(TwoLayer(3, 10, generator=torch.Generator().manual_seed(0), dtype=torch.float64))
    >>> bool(net(torch.randn(4, 3, dtype=torch.float64)).abs().max() < 1e-12)  # zero up to rounding
    True
    """
    if not isinstance(model, TwoLayer):
        raise TypeError(f"model must be a TwoLayer, got {type(model).__name__}")
    if model.width % 2:
        raise ValueError(f"symmetrize needs an even width, got {model.width}")
    half = model.width // 2
    with torch.no_grad():
        model.w[half:] = model.w[:half]
        model.a[half:] = -model.a[:half]
    return model
