r"""Normalizing flows on vectors: the pushforward of a Gaussian by a learned diffeomorphism.

A flow is a bijection T_theta: R^d -> R^d, data x to base noise z = T_theta(x), with the base
measure nu = N(0, I_d). The model is the pushforward q_theta = (T_theta^{-1})_# nu, whose density
is exact by the change of variables (Papamakarios et al. 2021, "Normalizing flows for
probabilistic modeling and inference", JMLR 22, eq. 2-3):

    log q_theta(x) = log N(T_theta(x); 0, I_d) + log |det dT_theta/dx (x)|,

and a sample is x = T_theta^{-1}(z) with z ~ N(0, I_d). T_theta is a composition of
autoregressive layers, so its Jacobian is triangular and the log-determinant is a sum of the
log-slopes of the one-dimensional maps (Papamakarios et al. 2017, MAF, eq. 5).

Two architectures from zuko (Rozet et al., https://github.com/probabilists/zuko), each layer
reversing the order of the features of the previous one:

- ``"maf"``: masked affine autoregressive flow, z_i = exp(a_i(x_<i)) x_i + b_i(x_<i)
  (Papamakarios et al. 2017);
- ``"nsf"``: neural spline flow, z_i = s_i(x_i; x_<i) with s_i a monotone rational-quadratic
  spline of ``bins`` bins on [-5, 5] and the identity outside (Durkan et al. 2019). Train it on
  standardized data, so that the data lie in the splines' domain.

For d = 1 there is no x_<i: zuko makes every layer an element-wise map with free parameters (the
``hidden`` layers are then unused). A one-dimensional ``"nsf"`` is a composition of learned
splines, flexible enough for any smooth density on [-5, 5]; a one-dimensional ``"maf"`` is a
composition of affine maps, i.e. a Gaussian fit.

A flow is described by a JSON-safe config ``{"name": "nsf"|"maf", "features": d, "transforms":
K, "hidden": [h1, h2, ...], "bins": B}`` (``bins`` for ``"nsf"`` only); :func:`build_flow` makes
the module, :func:`flow_log_prob` and :func:`flow_sample` compute with it. zuko's own ``sample``
draws from the global RNG; :func:`flow_sample` draws the base noise from the generator it is
given and pushes it through T^{-1}, so sampling is reproducible and leaves the global RNG alone.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from measureflow._core import check_count

__all__ = ["FLOW_NAMES", "build_flow", "check_flow_config", "default_flow_config", "flow_log_prob",
           "flow_sample"]

FLOW_NAMES = ("nsf", "maf")
_KEYS = {"nsf": {"name", "features", "transforms", "hidden", "bins"},
         "maf": {"name", "features", "transforms", "hidden"}}


def default_flow_config(features: int, name: str = "nsf") -> dict[str, Any]:
    """A flow for vectors of ``features`` coordinates: 4 layers of 2 x 64 hidden units (NSF with
    8 bins), enough to fit the 2-D toys in a minute on one core.

    >>> default_flow_config(2)
    {'name': 'nsf', 'features': 2, 'transforms': 4, 'hidden': [64, 64], 'bins': 8}
    """
    config: dict[str, Any] = {"name": name, "features": int(features), "transforms": 4, "hidden": [64, 64]}
    if name == "nsf":
        config["bins"] = 8
    return check_flow_config(config)


def check_flow_config(config: Any) -> dict[str, Any]:
    """``config`` validated (a ``ValueError`` naming the bad entry) and copied, ``hidden`` as a list."""
    if not isinstance(config, dict):
        raise TypeError(f"a flow config must be a dict, got {type(config).__name__}")
    name = config.get("name")
    if name not in FLOW_NAMES:
        raise ValueError(f"unknown flow {name!r}; choose one of {', '.join(FLOW_NAMES)}")
    unknown = sorted(set(config) - _KEYS[name])
    missing = sorted(_KEYS[name] - set(config))
    if unknown or missing:
        raise ValueError(f"the {name} flow's config takes the keys {', '.join(sorted(_KEYS[name]))}; "
                         f"unknown: {unknown or 'none'}, missing: {missing or 'none'}")
    hidden = config["hidden"]
    if not isinstance(hidden, (list, tuple)) or not hidden:
        raise ValueError(f"the flow's hidden must be a non-empty list of layer widths, got {hidden!r}")
    checked = {"name": name, "features": check_count(config["features"], "the flow's features"),
               "transforms": check_count(config["transforms"], "the flow's transforms"),
               "hidden": [check_count(width, "the flow's hidden widths") for width in hidden]}
    if name == "nsf":
        checked["bins"] = check_count(config["bins"], "the flow's bins", minimum=2)
    return checked


def build_flow(config: dict[str, Any]) -> nn.Module:
    r"""The zuko flow described by ``config`` (see the module docstring), initialized from the
    global RNG (wrap the call in :func:`measureflow._core.seeded_build` to seed it).

    Calling the module, ``flow()``, gives the distribution q_theta (``.log_prob``, ``.transform``
    x -> z, ``.base`` N(0, I)).

    >>> flow = build_flow({"name": "maf", "features": 2, "transforms": 2, "hidden": [16]})
    >>> tuple(flow().log_prob(torch.zeros(5, 2)).shape)
    (5,)
    """
    checked = check_flow_config(config)
    # zuko patches torch.distributions.Transform when imported: import it only when a flow is
    # built, so that importing measureflow leaves torch as it is.
    import zuko

    options = {"transforms": checked["transforms"], "hidden_features": tuple(checked["hidden"])}
    if checked["name"] == "nsf":
        return zuko.flows.NSF(checked["features"], bins=checked["bins"], **options)
    return zuko.flows.MAF(checked["features"], **options)


def _parameter(network: nn.Module) -> Tensor:
    return next(iter(network.parameters()))


def flow_log_prob(network: nn.Module, x: Tensor) -> Tensor:
    r"""log q_theta(x) = log N(T(x); 0, I) + log|det dT/dx (x)| ``(n,)`` for ``x`` ``(n, d)``,
    computed in the dtype and on the device of the flow's parameters."""
    parameter = _parameter(network)
    return network().log_prob(x.to(device=parameter.device, dtype=parameter.dtype))


def flow_sample(network: nn.Module, n: int, *, generator: torch.Generator | None = None) -> Tensor:
    r"""``n`` draws x = T^{-1}(z), z ~ N(0, I_d), ``(n, d)``, in the flow's dtype and device.

    The noise z is drawn from ``generator`` (on its device, then moved to the flow's), never from
    the global RNG unless ``generator`` is None. Gradients flow through T^{-1} when the
    parameters require them (a reparametrized sample).

    >>> flow = build_flow({"name": "maf", "features": 2, "transforms": 2, "hidden": [16]})
    >>> a = flow_sample(flow, 3, generator=torch.Generator().manual_seed(0))
    >>> b = flow_sample(flow, 3, generator=torch.Generator().manual_seed(0))
    >>> bool(torch.equal(a, b)), tuple(a.shape)
    (True, (3, 2))
    """
    check_count(n, "n")
    distribution = network()
    base = distribution.base
    if not isinstance(getattr(base, "base_dist", None), torch.distributions.Normal):
        raise TypeError(f"flow_sample needs a Gaussian base distribution, got {type(base).__name__}")
    loc, scale = base.mean, base.stddev  # (d,) each: N(loc, diag(scale^2))
    device = generator.device if generator is not None else loc.device
    noise = torch.randn((n, *loc.shape), generator=generator, dtype=loc.dtype, device=device)
    return distribution.transform.inv(loc + scale * noise.to(loc.device))

