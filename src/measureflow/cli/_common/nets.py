"""The settings of ``measureflow nets train`` and their validation: the optimizer name table with
its default rates, the learning-rate convention of the mean-field scaling, and the default data
of each loss. The command itself lives in :mod:`measureflow.cli.nets`.

Learning rates: under the mean-field scaling every neuron's gradient is O(1/M), so for the
gradient methods (sgd, momentum, nesterov, averaged-sgd) ``--lr`` is the mean-field step h and
the optimizer gets lr = h M: the neurons then move at rate h whatever the width, and the run is
the forward-Euler discretization of the mean-field particle flow. Adaptive methods (adagrad,
rmsprop, adam) divide the gradient by its own scale, so they get ``--lr`` as it is.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from measureflow.cli._common.base import check_choice, check_count, check_positive_number, check_seed
from measureflow.data import DATA_SUFFIXES, SUPERVISED_NAMES
from measureflow.data.supervised import SUPERVISED_SETS
from measureflow.nets import ACTIVATIONS, LOSSES, OPTIMIZERS, SCALINGS

__all__ = ["DEFAULT_NETS_N", "OPTIMIZER_CHOICES", "NetsTrainSettings", "OptimizerChoice"]


@dataclass(frozen=True)
class OptimizerChoice:
    """An ``--optimizer`` name: its default ``--lr`` in each scaling, and whether a mean-field run
    multiplies ``--lr`` by the width (gradient methods: yes; adaptive methods normalize the
    gradient by its own scale: no)."""

    ntk_lr: float
    mean_field_lr: float
    mean_field_times_width: bool

    def default_lr(self, scaling: str) -> float:
        return self.mean_field_lr if scaling == "mean-field" else self.ntk_lr


# Default rates, tried on every named set (width 512, 1000 full-batch steps, seed 0): gradient
# descent at lr 1 is stable in the NTK scaling (the mean risk's Hessian in function space is
# K/n, whose top eigenvalue is at most trace(K)/n = mean |x|^2, below 2 for these sets), while
# mean-field steps h >= 0.5 oscillate on the squared loss once the neurons have grown; h = 0.25
# does not. Momentum 0.9 multiplies the step by about 1/(1 - 0.9), hence a tenth of these rates.
OPTIMIZER_CHOICES: dict[str, OptimizerChoice] = {
    "sgd": OptimizerChoice(1.0, 0.25, True),
    "momentum": OptimizerChoice(0.1, 0.025, True),
    "nesterov": OptimizerChoice(0.1, 0.025, True),
    "averaged-sgd": OptimizerChoice(1.0, 0.25, True),
    "adagrad": OptimizerChoice(0.1, 0.1, False),
    "rmsprop": OptimizerChoice(1e-3, 1e-3, False),
    "adam": OptimizerChoice(1e-2, 1e-2, False),
    # Langevin SGD: the rates of SGD, plus sqrt(2 lr / beta) xi (for mean field lr = h M, the
    # mean-field Langevin dynamics at inverse temperature beta / M per neuron).
    "langevin": OptimizerChoice(1.0, 0.25, True),
}

_REGRESSION_DATA = "sine"
_CLASSIFICATION_DATA = "moons"
DEFAULT_NETS_N = 200  # points drawn of a named set when --n-data is not given


@dataclass(frozen=True)
class NetsTrainSettings:
    """The settings of ``nets train``, validated on construction (ValueError naming the flag);
    recorded in ``result.json`` under ``settings``."""

    scaling: str
    width: int
    data: str | None
    n: int | None
    noise: float | None
    activation: str
    loss: str
    optimizer: str
    lr: float | None
    steps: int
    batch_size: int | None
    regularization: float
    beta: float | None
    test_fraction: float
    record_every: int
    checkpoint_every: int | None
    seed: int
    out: str | None
    resume: bool
    overwrite: bool
    device: str
    progress: bool

    def __post_init__(self) -> None:
        check_choice(self.scaling, SCALINGS, "--scaling")
        check_count(self.width, "--width")
        check_choice(self.activation, tuple(ACTIVATIONS), "--activation")
        check_choice(self.loss, tuple(LOSSES), "--loss")
        check_choice(self.optimizer, OPTIMIZERS, "--optimizer")
        if self.lr is not None:
            check_positive_number(self.lr, "--lr")
        check_count(self.steps, "--steps")
        if self.batch_size is not None:
            check_count(self.batch_size, "--batch-size")
        if not (math.isfinite(self.regularization) and self.regularization >= 0):
            raise ValueError(f"--regularization must be finite and >= 0, got {self.regularization!r}")
        if self.optimizer == "langevin":
            if self.beta is None:
                raise ValueError("--optimizer langevin needs --beta, the inverse temperature (> 0)")
            check_positive_number(self.beta, "--beta")
        elif self.beta is not None:
            raise ValueError(f"--beta applies to --optimizer langevin, not {self.optimizer}")
        if not (math.isfinite(self.test_fraction) and 0 <= self.test_fraction < 1):
            raise ValueError(f"--test-fraction must lie in [0, 1), got {self.test_fraction!r}")
        check_count(self.record_every, "--record-every")
        if self.checkpoint_every is not None:
            check_count(self.checkpoint_every, "--checkpoint-every")
        check_seed(self.seed)
        if self.n is not None:
            check_count(self.n, "--n-data", minimum=2)
        if self.resume and self.overwrite:
            raise ValueError("--resume continues the run in --out and --overwrite replaces it; pass one")
        name = self.data_name
        if name in SUPERVISED_SETS:
            if self.classification and SUPERVISED_SETS[name].task != "classification":
                sets = ", ".join(key for key, value in SUPERVISED_SETS.items()
                                 if value.task == "classification")
                raise ValueError(f"--loss {self.loss} needs labels +-1, and --data {name} is a regression "
                                 f"set; use {sets}, a labelled file, or --loss mse")
            if self.noise is not None and not (math.isfinite(self.noise) and self.noise >= 0):
                raise ValueError(f"--noise must be finite and >= 0, got {self.noise!r}")
        else:
            if Path(name).suffix.lower() not in DATA_SUFFIXES:
                raise ValueError(f"unknown --data {name!r}; use one of {', '.join(SUPERVISED_NAMES)} or a "
                                 f"path to a file ending in {' or '.join(DATA_SUFFIXES)}")
            if self.noise is not None:
                raise ValueError("--noise applies to the named data sets, not to a file")

    @property
    def classification(self) -> bool:
        return bool(LOSSES[self.loss].classification)

    @property
    def data_name(self) -> str:
        """--data, or the default set for the loss (sine for mse, moons for logistic and exp)."""
        if self.data is not None:
            return self.data
        return _CLASSIFICATION_DATA if self.classification else _REGRESSION_DATA

    @property
    def step_size(self) -> float:
        """--lr, or the optimizer's default."""
        return self.lr if self.lr is not None else OPTIMIZER_CHOICES[self.optimizer].default_lr(self.scaling)

    @property
    def optimizer_lr(self) -> float:
        """The learning rate the optimizer gets: h M for gradient methods in the mean-field
        scaling, --lr otherwise."""
        if self.scaling == "mean-field" and OPTIMIZER_CHOICES[self.optimizer].mean_field_times_width:
            return self.step_size * self.width
        return self.step_size

    @property
    def folder(self) -> Path:
        if self.out is not None:
            return Path(self.out)
        return Path("runs") / "nets" / f"{Path(self.data_name).stem or self.data_name}-{self.scaling}"

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "data": self.data_name, "lr": self.step_size,
                "out": str(self.folder)}
