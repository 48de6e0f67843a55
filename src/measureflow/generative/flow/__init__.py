r"""Normalizing flows (zuko's neural spline and masked affine autoregressive flows) trained by
maximum likelihood: the pushforward q = (T^{-1})_# N(0, I) with the exact change-of-variables
density log q(x) = log N(T(x); 0, I) + log|det dT/dx (x)|.

:func:`build_flow` makes a flow from its config, :func:`flow_log_prob` and :func:`flow_sample`
compute with it, :func:`train_flow` fits one on the shared training loop, and importing this
package registers :class:`FlowFamily`, so ``TrainedModel.load(path, family="flow")`` reads the
checkpoints it writes.
"""

from measureflow.generative.flow.family import FlowFamily
from measureflow.generative.flow.model import (
    FLOW_NAMES,
    build_flow,
    check_flow_config,
    default_flow_config,
    flow_log_prob,
    flow_sample,
)
from measureflow.generative.flow.training import CHECKPOINT_KIND, FlowTask, train_flow

__all__ = [
    "CHECKPOINT_KIND",
    "FLOW_NAMES",
    "FlowFamily",
    "FlowTask",
    "build_flow",
    "check_flow_config",
    "default_flow_config",
    "flow_log_prob",
    "flow_sample",
    "train_flow",
]
