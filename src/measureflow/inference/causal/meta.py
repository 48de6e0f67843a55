r"""Meta-CGNN: one conditional generator for many cause-effect data sets (Ton, Sejdinovic & Fukumizu,
AAAI 2021).

Instead of fitting a new network to every pair, as CGNN does, one generator

    effect = F(cause, z, c),    c = Phi(D) = rho( 1/m sum_j phi(cause_j, effect_j) ),

is shared by all data sets D, each summarized by a permutation-invariant embedding c (DeepSets:
phi and rho are small networks, the mean over the data set's points makes c independent of their
order). It is trained on N data sets whose direction is known, all presented cause first, by the
MMD between each data set's joint and the model's:

    min_{F, Phi}  1/N sum_i MMD^2( {(x^i_j, y^i_j)}_j , {(x^i_j, F(x^i_j, z_j, Phi(D_i)))}_j ).

A new pair is decided without training: embed it both ways, c_xy = Phi({(x_j, y_j)}) and
c_yx = Phi({(y_j, x_j)}), generate each way, and compare the two fits as CGNN does,

    score = MMD^2_{Y->X} - MMD^2_{X->Y}     (positive: X -> Y).

The model has seen only causal presentations, so a pair presented anticausally is out of its
training distribution and is fitted worse. Its accuracy grows with the number N of training data
sets (``bench_causal.py`` measures it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from measureflow._core import check_count, check_positive, progress_bar, seeded_build, torch_threads
from measureflow.inference.causal.base import DirectionResult, direction_of, standardize, subsample
from measureflow.inference.causal.cgnn import (
    DEFAULT_BANDWIDTHS,
    batched_mmd2,
    fresh_generator,
    minibatch,
    padded_datasets,
)
from measureflow.inference.causal.pairs import MECHANISMS, CausePairs, synthetic_pairs

__all__ = ["MetaCGNN", "meta_cgnn_decide", "meta_training_pairs", "train_meta_cgnn"]

# Mechanisms a meta model is trained on by default: every identifiable one.
TRAINING_MECHANISMS = tuple(m for m in MECHANISMS if m != "linear-gaussian")


def _mlp(sizes: Sequence[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes, sizes[1:], strict=False)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class MetaCGNN(nn.Module):
    r"""The generator F(cause, z, c) and the DeepSets encoder Phi of the module docstring.

    ``embed(cause, effect)``: ``(S, m)`` each -> ``(S, context_dim)``; ``forward(cause, z,
    context)``: ``(S, m)``, ``(S, m, 1)``, ``(S, context_dim)`` -> effects ``(S, m)``.
    """

    def __init__(self, hidden: int = 64, context_dim: int = 16) -> None:
        super().__init__()
        self.hidden = check_count(hidden, "hidden")
        self.context_dim = check_count(context_dim, "context_dim")
        self.phi = _mlp([2, hidden, hidden])
        self.rho = _mlp([hidden, hidden, context_dim])
        self.generator = _mlp([2 + context_dim, hidden, hidden, 1])

    def embed(self, cause: Tensor, effect: Tensor) -> Tensor:
        points = torch.stack([cause, effect], dim=-1)
        return self.rho(self.phi(points).mean(dim=1))

    def forward(self, cause: Tensor, z: Tensor, context: Tensor) -> Tensor:
        inputs = torch.cat([cause.unsqueeze(-1), z, context.unsqueeze(1).expand(-1, cause.shape[1], -1)], -1)
        return self.generator(inputs).squeeze(-1)


def meta_training_pairs(n_datasets: int, n_points: int = 500, *, seed: int = 0,
                        mechanisms: Sequence[str] = TRAINING_MECHANISMS) -> tuple[list[Tensor], list[Tensor]]:
    """``n_datasets`` synthetic data sets cycling over ``mechanisms`` and the three noise levels,
    returned cause first: (causes, effects), standardized ``(n_points,)`` each."""
    n_datasets = check_count(n_datasets, "n_datasets")
    causes, effects = [], []
    levels = ("low", "medium", "high")
    for index in range(n_datasets):
        mechanism = mechanisms[index % len(mechanisms)]
        noise = levels[(index // len(mechanisms)) % len(levels)]
        pairs = synthetic_pairs(mechanism, 1, n_points, noise=noise, seed=seed * 1_000_003 + index)
        x, y = pairs.x[0], pairs.y[0]
        cause, effect = (x, y) if pairs.directions[0] == 1 else (y, x)
        causes.append(cause)
        effects.append(effect)
    return causes, effects


def train_meta_cgnn(causes: list[Tensor], effects: list[Tensor], *, n_steps: int = 2000,
                    datasets_per_step: int = 16, batch_size: int = 128, hidden: int = 64,
                    context_dim: int = 16, learning_rate: float = 1e-3,
                    bandwidths: Sequence[float] = DEFAULT_BANDWIDTHS,
                    generator: torch.Generator | None = None, device: torch.device | str = "cpu",
                    progress: bool = False) -> MetaCGNN:
    """Train :class:`MetaCGNN` on data sets presented cause first (``causes[i]``, ``effects[i]``:
    standardized ``(n_i,)``) by the MMD objective of the module docstring, with Adam. Each step
    takes ``datasets_per_step`` data sets at random and ``batch_size`` points of each; the
    embedding of a data set is computed from the same points that are fitted."""
    n_steps = check_count(n_steps, "n_steps")
    datasets_per_step = check_count(datasets_per_step, "datasets_per_step")
    batch_size = check_count(batch_size, "batch_size", minimum=2)
    learning_rate = check_positive(learning_rate, "learning_rate")
    bandwidths = tuple(check_positive(h, "bandwidth") for h in bandwidths)
    device = torch.device(device)
    generator = fresh_generator(generator)
    cause_rows, effect_rows, lengths = padded_datasets(causes, effects, device, min_width=batch_size)
    model = seeded_build(lambda: MetaCGNN(hidden, context_dim), generator).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
    m = batch_size
    s = min(datasets_per_step, len(causes))
    # One thread: small operations in a long loop (see torch_threads: faster on a busy machine).
    with torch_threads(1, device), progress_bar(n_steps, "meta-cgnn", enabled=progress) as bar:
        for _ in range(n_steps):
            which = torch.randperm(len(causes), generator=generator, device=generator.device)[:s].to(device)
            cause, effect = minibatch(cause_rows, effect_rows, lengths, which, m, generator)
            z = torch.randn(s, m, 1, generator=generator, device=generator.device).to(device)
            generated = model(cause, z, model.embed(cause, effect))
            loss = batched_mmd2(cause, effect, generated, bandwidths, data_term=False).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            bar.update(1)
    if not bool(torch.isfinite(loss)):
        raise FloatingPointError("Meta-CGNN training produced a non-finite MMD; lower learning_rate")
    return model.eval()


@torch.no_grad()
def meta_cgnn_decide(model: MetaCGNN, pairs: CausePairs, *, max_points: int = 1000, n_eval: int = 8,
                     bandwidths: Sequence[float] = DEFAULT_BANDWIDTHS,
                     generator: torch.Generator | None = None) -> list[DirectionResult]:
    """Decide every pair of ``pairs`` with a trained model (no training): both variables
    standardized, at most ``max_points`` observations each (drawn with ``generator``), fits each
    way averaged over ``n_eval`` noise draws. ``fitted`` holds the generated joints of the first
    draw, as :func:`measureflow.inference.causal.cgnn_direction` does."""
    max_points = check_count(max_points, "max_points", minimum=10)
    n_eval = check_count(n_eval, "n_eval")
    bandwidths = tuple(check_positive(h, "bandwidth") for h in bandwidths)
    generator = fresh_generator(generator)
    device = next(model.parameters()).device
    results = []
    for x, y in zip(pairs.x, pairs.y, strict=True):
        x, y = subsample(x, y, max_points, generator)
        x = standardize(x).to(device=device, dtype=torch.float32)
        y = standardize(y).to(device=device, dtype=torch.float32)
        # Row 0: hypothesis X -> Y (cause x); row 1: Y -> X (cause y).
        cause, effect = torch.stack([x, y]), torch.stack([y, x])
        context = model.embed(cause, effect)
        total = torch.zeros(2, dtype=torch.float64, device=device)
        for draw in range(n_eval):
            z = torch.randn(2, cause.shape[1], 1, generator=generator, device=generator.device).to(device)
            generated = model(cause, z, context)
            if draw == 0:
                fitted_y, fitted_x = generated.double().cpu()
            total += batched_mmd2(cause, effect, generated, bandwidths).double()
        mmd_xy, mmd_yx = (total / n_eval).tolist()
        score = mmd_yx - mmd_xy
        x, y = x.double().cpu(), y.double().cpu()
        results.append(DirectionResult(
            method="meta-cgnn", direction=direction_of(score), score=score,
            details={"mmd_xy": mmd_xy, "mmd_yx": mmd_yx, "n_points": int(x.shape[0])},
            fitted={"data": torch.stack([x, y], 1), "xy": torch.stack([x, fitted_y], 1),
                    "yx": torch.stack([fitted_x, y], 1)}))
    return results


def default_meta_model(n_datasets: int = 200, *, n_points: int = 500, n_steps: int = 2000, seed: int = 0,
                       device: torch.device | str = "cpu", progress: bool = False,
                       **options: Any) -> MetaCGNN:
    """A Meta-CGNN trained on ``n_datasets`` synthetic data sets of every identifiable mechanism
    (:func:`meta_training_pairs` with ``seed``), with the defaults of :func:`train_meta_cgnn`."""
    causes, effects = meta_training_pairs(n_datasets, n_points, seed=seed)
    generator = torch.Generator().manual_seed(seed)
    return train_meta_cgnn(causes, effects, n_steps=n_steps, generator=generator, device=device,
                           progress=progress, **options)
