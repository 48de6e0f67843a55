r"""The table of cause-effect methods, deciding many pairs at once, and scoring the decisions.

:func:`decide` runs one method on every pair of a :class:`CausePairs`. CGNN trains the fits of
several pairs as one batched model (``pairs_per_batch`` at a time); Meta-CGNN trains its one model
once (or takes one) and then decides every pair without training; the baselines run pair by pair.

Scoring follows Mooij et al. (JMLR 2016):

- the weighted accuracy  sum_i w_i 1[d_i = t_i] / sum_i w_i;
- the decision-rate curve: pairs ranked by |score| (most confident first), the weighted accuracy
  of the first k decisions against the decision rate r_k = sum_{i<=k} w_i / sum_i w_i, and its
  area ``auc`` = sum_k accuracy_k (r_k - r_{k-1}) (1 for a perfect ranking, about 0.5 for chance);
- a test of "better than chance": under H0 every decision is a fair coin, so the weighted
  accuracy has mean 1/2 and variance 1/(4 n_eff) with n_eff = (sum w)^2 / sum w^2 (the number of
  pairs when all weights are 1); the one-sided p-value is the binomial tail at n_eff trials
  (Clopper-Pearson interval for the accuracy at the same n_eff).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy import stats

from measureflow._core import check_count, progress_bar
from measureflow.inference.causal.base import DirectionResult, check_pair, standardize, subsample
from measureflow.inference.causal.baselines import anm_direction, igci_direction, reci_direction
from measureflow.inference.causal.cgnn import _result, cgnn_direction, cgnn_fits
from measureflow.inference.causal.meta import MetaCGNN, default_meta_model, meta_cgnn_decide
from measureflow.inference.causal.pairs import CausePairs

__all__ = ["METHODS", "Evaluation", "decide", "evaluate"]


@dataclass(frozen=True)
class MethodEntry:
    """One method: its single-pair function (None for Meta-CGNN, which needs a trained model) and a title."""

    function: Callable[..., DirectionResult] | None
    title: str


METHODS: dict[str, MethodEntry] = {
    "cgnn": MethodEntry(cgnn_direction, "CGNN: MMD fits of a generator each way (Goudet et al. 2017)"),
    "meta-cgnn": MethodEntry(None, "Meta-CGNN: one generator conditioned on a DeepSets embedding "
                                   "(Ton et al. 2021)"),
    "anm": MethodEntry(anm_direction, "additive noise model: regression + HSIC test of the residual"),
    "igci": MethodEntry(igci_direction, "IGCI: information-geometric slope/entropy criterion"),
    "reci": MethodEntry(reci_direction, "RECI: regression error of the min-max scaled variables"),
}


def _check_method(method: str) -> str:
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    return method


def _cgnn_many(pairs: CausePairs, generator: torch.Generator, device: Any, progress: bool,
               pairs_per_batch: int, max_points: int, **options: Any) -> list[DirectionResult]:
    results: list[DirectionResult] = []
    prepared = []
    for x, y in zip(pairs.x, pairs.y, strict=True):
        x, y = check_pair(x, y)
        x, y = subsample(x, y, max_points, generator)
        prepared.append((standardize(x), standardize(y)))
    chunks = [prepared[i:i + pairs_per_batch] for i in range(0, len(prepared), pairs_per_batch)]
    with progress_bar(len(chunks), "cgnn pairs", enabled=progress and len(chunks) > 1) as bar:
        for chunk in chunks:
            xs = [x for x, _ in chunk]
            ys = [y for _, y in chunk]
            # Data sets 0..P-1 fit X -> Y, P..2P-1 fit Y -> X.
            mmds, samples = cgnn_fits(xs + ys, ys + xs, generator=generator, device=device,
                                      progress=progress and len(chunks) == 1, **options)
            p = len(chunk)
            for i, (x, y) in enumerate(chunk):
                results.append(_result(x, y, mmds[i], mmds[p + i], samples[i], samples[p + i]))
            bar.update(1)
    return results


def decide(pairs: CausePairs, method: str, *, seed: int = 0, device: torch.device | str = "cpu",
           progress: bool = False, pairs_per_batch: int = 16, max_points: int = 1000,
           meta_model: MetaCGNN | None = None, meta_datasets: int = 200,
           **options: Any) -> list[DirectionResult]:
    """Decide every pair with ``method`` (a key of :data:`METHODS`), reproducibly from ``seed``.

    ``options`` go to the method (``n_steps``, ``n_restarts`` for CGNN; ``estimator`` for IGCI...).
    Methods that subsample (CGNN, Meta-CGNN, ANM) use at most ``max_points`` observations per pair.
    Meta-CGNN uses
    ``meta_model`` when given, else trains one on ``meta_datasets`` synthetic data sets
    (:func:`measureflow.inference.causal.meta.default_meta_model`; ``options`` then go to its training).
    """
    _check_method(method)
    if len(pairs) == 0:
        raise ValueError("no pairs to decide")
    pairs_per_batch = check_count(pairs_per_batch, "pairs_per_batch")
    max_points = check_count(max_points, "max_points", minimum=10)
    generator = torch.Generator().manual_seed(seed)
    if method == "cgnn":
        return _cgnn_many(pairs, generator, device, progress, pairs_per_batch, max_points, **options)
    if method == "meta-cgnn":
        if meta_model is None:
            meta_model = default_meta_model(check_count(meta_datasets, "meta_datasets"), seed=seed,
                                            device=device, progress=progress, **options)
        elif options:
            raise ValueError(f"options {sorted(options)} train a Meta-CGNN; a trained meta_model takes none")
        return meta_cgnn_decide(meta_model, pairs, max_points=max_points, generator=generator)
    function = METHODS[method].function
    assert function is not None
    if "max_points" in inspect.signature(function).parameters:
        options["max_points"] = max_points
    results = []
    with progress_bar(len(pairs), f"{method} pairs", enabled=progress) as bar:
        for x, y in zip(pairs.x, pairs.y, strict=True):
            results.append(function(x, y, generator=generator, **options))
            bar.update(1)
    return results


@dataclass(frozen=True)
class Evaluation:
    """Decisions scored against the truth (module docstring): weighted ``accuracy``, its
    two-sided ``interval`` (95% Clopper-Pearson at ``n_effective`` trials), the one-sided
    ``p_value`` of "no better than chance", the decision-rate ``curve`` (``rates``, ``accuracies``)
    and its area ``auc``."""

    accuracy: float
    interval: tuple[float, float]
    p_value: float
    n_pairs: int
    n_effective: float
    auc: float
    rates: list[float]
    accuracies: list[float]

    def to_dict(self) -> dict[str, Any]:
        return {"accuracy": self.accuracy, "interval_95": list(self.interval),
                "p_value_vs_chance": self.p_value,
                "n_pairs": self.n_pairs, "n_effective": self.n_effective, "auc": self.auc,
                "decision_rate": self.rates, "accuracy_at_rate": self.accuracies}


def evaluate(results: list[DirectionResult], pairs: CausePairs) -> Evaluation:
    """Score ``results`` (one per pair, in order) against ``pairs.directions`` and ``pairs.weights``."""
    if pairs.directions is None:
        raise ValueError("these pairs have no known directions to score against (give a truth file)")
    if len(results) != len(pairs):
        raise ValueError(f"{len(results)} decisions for {len(pairs)} pairs")
    weights = np.asarray(pairs.weights, dtype=np.float64)
    if not np.all(np.isfinite(weights)) or np.any(weights < 0) or weights.sum() <= 0:
        raise ValueError("pair weights must be finite, >= 0 and not all 0")
    correct = np.array([r.direction == t for r, t in zip(results, pairs.directions, strict=True)],
                       dtype=np.float64)
    total = weights.sum()
    accuracy = float((weights * correct).sum() / total)
    n_effective = float(total**2 / (weights**2).sum())
    trials = max(1, round(n_effective))
    successes = round(accuracy * trials)
    test = stats.binomtest(successes, trials, 0.5, alternative="greater")
    interval = stats.binomtest(successes, trials).proportion_ci(confidence_level=0.95, method="exact")
    order = np.argsort(-np.abs([r.score for r in results]), kind="stable")
    cum_weight = np.cumsum(weights[order])
    cum_correct = np.cumsum((weights * correct)[order])
    keep = weights[order] > 0
    rates = cum_weight / total
    accuracies = np.where(cum_weight > 0, cum_correct / np.maximum(cum_weight, 1e-300), 0.0)
    steps = np.diff(np.concatenate([[0.0], rates]))
    auc = float((accuracies * steps).sum())
    return Evaluation(accuracy=accuracy, interval=(float(interval.low), float(interval.high)),
                      p_value=float(test.pvalue), n_pairs=len(pairs), n_effective=n_effective, auc=auc,
                      rates=rates[keep].tolist(), accuracies=accuracies[keep].tolist())
