r"""One type for every learned model, :class:`TrainedModel`, and the :class:`ModelFamily` of each family.

A trained generative model is more than a network. To draw samples in the data's own units, or
score data with the model's density, one needs:

- the network and the exponential moving average (EMA) of its weights (the EMA samples);
- the affine standardizer z = (x - mean) / std the model was trained behind, so that samples
  x = mean + std z come back in data units and log p_data(x) = log p_model(z) - sum_i log std_i;
- the data's event shape and kind (``"vector"`` points or ``"image"`` grids) and where it came from;
- the training config and the checkpoint's provenance (family, step, file, format version).

:class:`TrainedModel` holds all of that for every family. What differs between families is
small and lives in one :class:`ModelFamily` per family, registered under the checkpoint kind the
family's training writes (``"diffusion"``, ``"gan"``, ``"ebm"``, ``"flow"``):

- ``build(config)``: the network of the recorded architecture (weights then loaded);
- ``sample(network, config, n, generator, **options)``: draws in model units;
- ``log_prob(network, config, x, **options)``: the model's log density in model units, for the
  families that have one (diffusion through the probability-flow ODE, normalizing flows exactly);
- ``event_shape(config)`` when the config does not record the data's shape.

A family registers itself with :func:`register_family` when its package is imported;
``measureflow.generative`` imports every family, so :meth:`TrainedModel.load` reads any
checkpoint written by :func:`measureflow.generative.train.train` or :meth:`TrainedModel.save`.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from measureflow._core import check_count, seeded_build
from measureflow.data import Standardizer
from measureflow.generative.train import CHECKPOINT_VERSION, load_checkpoint, save_checkpoint

__all__ = ["ModelFamily", "TrainedModel", "family_names", "get_family", "register_family"]


class ModelFamily(abc.ABC):
    """How one family of generative models is rebuilt from its config, sampled and scored.

    Subclasses set ``kind`` (the checkpoint kind their training writes) and implement
    :meth:`build` and :meth:`sample`; a family with a tractable density sets
    ``has_log_prob = True`` and implements :meth:`log_prob`. All tensors are in model
    (standardized) units; :class:`TrainedModel` converts to and from the data's units.
    """

    kind: ClassVar[str]
    has_log_prob: ClassVar[bool] = False

    @abc.abstractmethod
    def build(self, config: dict[str, Any]) -> nn.Module:
        """The network of the architecture ``config`` records (its weights are loaded after)."""

    @abc.abstractmethod
    def sample(self, network: nn.Module, config: dict[str, Any], n: int, *,
               generator: torch.Generator | None, **options: Any) -> Tensor:
        """``n`` draws ``(n, *event_shape)`` from the model in model units."""

    def log_prob(self, network: nn.Module, config: dict[str, Any], x: Tensor, *,
                 generator: torch.Generator | None = None, **options: Any) -> Tensor:
        """log p_model(x) ``(n,)`` for ``x`` ``(n, *event_shape)`` in model units."""
        with_density = [name for name in family_names() if get_family(name).has_log_prob]
        raise ValueError(f"a {self.kind} model has no tractable density; log_prob is defined for the "
                         f"families {', '.join(with_density)}")

    def event_shape(self, config: dict[str, Any]) -> tuple[int, ...]:
        """The shape of one sample; by default the ``event_shape`` the training data recorded."""
        data = config.get("data") or {}
        shape = data.get("event_shape", config.get("event_shape"))
        if shape is None:
            raise ValueError(f"the {self.kind} checkpoint's config records no event shape")
        return tuple(int(size) for size in shape)


_FAMILIES: dict[str, ModelFamily] = {}


def register_family(family: ModelFamily) -> ModelFamily:
    """Make ``family`` the one :meth:`TrainedModel.load` uses for checkpoints of ``family.kind``."""
    if not isinstance(family, ModelFamily):
        raise TypeError(f"family must be a ModelFamily, got {type(family).__name__}")
    _FAMILIES[family.kind] = family
    return family


def family_names() -> tuple[str, ...]:
    """The registered checkpoint kinds, sorted."""
    return tuple(sorted(_FAMILIES))


def get_family(kind: str) -> ModelFamily:
    """The family registered for the checkpoint kind ``kind``."""
    if kind not in _FAMILIES:
        raise ValueError(f"no model family {kind!r}; measureflow reads {', '.join(family_names())}")
    return _FAMILIES[kind]


def _floating_dtype(state: dict[str, Any]) -> torch.dtype | None:
    dtypes = {value.dtype for value in state.values()
              if isinstance(value, Tensor) and value.is_floating_point()}
    return dtypes.pop() if len(dtypes) == 1 else None


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:200]


@dataclass(eq=False)
class TrainedModel:
    r"""A trained generative model of any family, ready to sample and (where defined) to score.

    ``network`` holds the EMA weights (eval mode, no gradients): it is what samples. ``trained``
    holds the last iterate's weights when the checkpoint stored them (None otherwise).
    ``standardizer`` maps data to model units (None: the model works in data units);
    ``event_shape`` and ``data_kind`` (``"vector"`` or ``"image"``) describe one sample;
    ``config`` is the training config; ``provenance`` records the family, training step,
    checkpoint path and format version.

    :meth:`sample` and :meth:`log_prob` work in the data's own units:

        x = mean + std z,   z ~ model;       log p_data(x) = log p_model((x - mean) / std) - sum_i log std_i.
    """

    family: ModelFamily
    network: nn.Module
    config: dict[str, Any]
    standardizer: Standardizer | None = None
    trained: nn.Module | None = None
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        """The family's checkpoint kind (``"diffusion"``, ``"gan"``, ``"ebm"``, ``"flow"``...)."""
        return self.family.kind

    @property
    def event_shape(self) -> tuple[int, ...]:
        return self.family.event_shape(self.config)

    @property
    def data_kind(self) -> str:
        """``"image"`` for ``(C, H, W)`` samples, ``"vector"`` otherwise (unless the data recorded one)."""
        data = self.config.get("data") or {}
        return str(data.get("kind", "image" if len(self.event_shape) == 3 else "vector"))

    @property
    def data_spec(self) -> str | None:
        """The training data's name or file as given at training time (None when not recorded)."""
        return (self.config.get("data") or {}).get("spec")

    @property
    def step(self) -> int:
        return int(self.provenance.get("step", 0))

    @property
    def device(self) -> torch.device:
        return next(iter(self.network.parameters()), torch.empty(0)).device

    @property
    def has_log_prob(self) -> bool:
        return self.family.has_log_prob

    def to_data_units(self, z: Tensor) -> Tensor:
        return z if self.standardizer is None else self.standardizer.inverse(z)

    def to_model_units(self, x: Tensor) -> Tensor:
        return x if self.standardizer is None else self.standardizer.forward(x)

    @property
    def log_std_sum(self) -> float:
        """sum_i log std_i of the standardizer (0 without one)."""
        return 0.0 if self.standardizer is None else self.standardizer.log_abs_det()

    def sample_model_units(self, n: int, *, generator: torch.Generator | None = None,
                           **options: Any) -> Tensor:
        """``n`` draws ``(n, *event_shape)`` in model (standardized) units; ``options`` go to the family."""
        check_count(n, "n")
        samples = self.family.sample(self.network, self.config, n, generator=generator, **options)
        n_bad = int((~torch.isfinite(samples.reshape(n, -1))).any(dim=1).sum())
        if n_bad:
            raise ValueError(f"the {self.kind} model produced {n_bad} of {n} samples with NaN or infinite "
                             "values; the model or the sampler settings diverged")
        return samples

    def sample(self, n: int, *, generator: torch.Generator | None = None, **options: Any) -> Tensor:
        """``n`` draws ``(n, *event_shape)`` in the data's units (``options``: the family's sampler
        settings, e.g. ``method``/``n_steps`` for diffusion, ``n_steps``/``step_size`` for an EBM)."""
        return self.to_data_units(self.sample_model_units(n, generator=generator, **options))

    def log_prob(self, x: Tensor, *, generator: torch.Generator | None = None, **options: Any) -> Tensor:
        """log p(x) ``(n,)`` of data ``x`` ``(n, *event_shape)`` in the data's units (the families
        with a density only)."""
        if not isinstance(x, Tensor) or tuple(x.shape[1:]) != self.event_shape or x.shape[0] < 1:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"x must have shape (n, {', '.join(map(str, self.event_shape))}), got {shape}")
        if not bool(torch.isfinite(x).all()):
            raise ValueError("x contains NaN or infinite values; all must be finite")
        z = self.to_model_units(x.to(self.device))
        values = self.family.log_prob(self.network, self.config, z, generator=generator, **options)
        return values - self.log_std_sum

    def to(self, device: torch.device | str) -> TrainedModel:
        """Move the networks to ``device`` (in place) and return self."""
        self.network.to(device)
        if self.trained is not None:
            self.trained.to(device)
        return self

    # ------------------------------------------------------------------ files

    def save(self, path: str | Path) -> Path:
        """Write the model as a checkpoint (atomically) that :meth:`load` reads: the config, the
        step, the EMA weights under ``"ema"`` and the last iterate's under ``"model"`` (when held)."""
        payload: dict[str, Any] = {"kind": self.kind, "config": self.config, "step": self.step,
                                   "ema": {"model": self.network.state_dict()}}
        if self.trained is not None:
            payload["model"] = self.trained.state_dict()
        return save_checkpoint(path, payload)

    @classmethod
    def load(cls, path: str | Path, *, family: str | None = None,
             device: torch.device | str = "cpu") -> TrainedModel:
        """Read the model of a checkpoint (a ``checkpoint.pt``, a run folder holding one, or a file
        written by :meth:`save`) with ``weights_only=True``, onto ``device``.

        ``family`` (a checkpoint kind) refuses a checkpoint of another family. Every failure
        (missing, truncated or corrupt file, another family or a newer version, weights that do
        not fit the recorded network) is a ``ValueError`` naming the file.
        """
        where = repr(str(path))
        payload = load_checkpoint(path, kind=family, map_location="cpu")
        kind = payload["kind"]
        if kind not in _FAMILIES:
            raise ValueError(f"checkpoint {where} holds a {kind!r} model; measureflow reads the families "
                             f"{', '.join(family_names())}")
        model_family = _FAMILIES[kind]
        config = payload["config"]
        if not isinstance(config, dict):
            raise ValueError(f"checkpoint {where} has a malformed config")
        ema = payload.get("ema")
        if not isinstance(ema, dict) or not isinstance(ema.get("model"), dict):
            raise ValueError(f"checkpoint {where} has no EMA weights ('ema' entry)")
        network = cls._rebuild(model_family, config, ema["model"], where)
        trained = None
        if isinstance(payload.get("model"), dict):
            trained = cls._rebuild(model_family, config, payload["model"], where)
        stored = config.get("standardizer")
        try:
            standardizer = Standardizer.from_dict(stored) if stored is not None else None
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"checkpoint {where} has a malformed standardizer "
                             f"({_first_line(error)})") from None
        provenance = {"family": kind, "step": int(payload["step"]), "path": str(path),
                      "version": int(payload.get("version", CHECKPOINT_VERSION))}
        model = cls(model_family, network, config, standardizer, trained, provenance)
        return model.to(device)

    @staticmethod
    def _rebuild(family: ModelFamily, config: dict[str, Any], state: dict[str, Any], where: str) -> nn.Module:
        bad = [name for name, value in state.items()
               if isinstance(value, Tensor) and value.is_floating_point()
               and not bool(torch.isfinite(value).all())]
        if bad:
            raise ValueError(f"checkpoint {where} holds NaN or infinite weights ({', '.join(bad[:3])}"
                             f"{', ...' if len(bad) > 3 else ''}); it cannot be sampled or scored")
        try:
            # The initial weights are overwritten at once: build them without moving the caller's RNG.
            network = seeded_build(lambda: family.build(config), torch.Generator().manual_seed(0))
            dtype = _floating_dtype(state)
            if dtype is not None:
                network = network.to(dtype=dtype)
            network.load_state_dict(state)
        except (KeyError, RuntimeError, TypeError, ValueError, IndexError) as error:
            raise ValueError(f"checkpoint {where} does not hold a {family.kind} model this version can read "
                             f"({_first_line(error)})") from None
        return network.eval().requires_grad_(False)
