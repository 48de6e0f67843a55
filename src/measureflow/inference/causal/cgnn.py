r"""CGNN: the causal direction of a pair from how well a generative network fits each way
(Goudet, Kalainathan, Caillou, Guyon, Lopez-Paz & Sebag, 2017).

For the hypothesis X -> Y, a generator fits Y = f(X, Z), Z ~ N(0, 1), by minimizing the MMD between
the data's joint law and the model's, {(x_i, y_i)} against {(x_i, f(x_i, z_i))}; for Y -> X, a
generator g fits X = g(Y, Z) the same way. The direction whose fit reaches the smaller MMD wins:

    score = mean_r MMD^2_{Y->X}(r) - mean_r MMD^2_{X->Y}(r),     direction = sign(score),

averaged over ``n_restarts`` independent fits r (different initial weights and noise), because a
single fit's MMD varies with its optimization. With a cause-to-effect mechanism that the network
class can represent, the causal fit reaches the MMD's sampling floor while the anticausal
conditional, which is not of the form "function of the input plus independent noise", stays above
it.

The MMD is the biased (V-statistic) estimate with a sum of Gaussian kernels over several
bandwidths, on standardized variables, so that no single length-scale decides:

    MMD^2 = 1/n^2 sum_ij [k(u_i, u_j) + k(v_i, v_j) - 2 k(u_i, v_j)],   k = sum_h exp(-|a - b|^2 / (2 h^2)).

Vectorization. All fits (2 directions x ``n_restarts``, and several pairs at once with
:func:`cgnn_fits`) are one batched model: weights ``(B, ...)`` used through batched matrix
products, and one Adam optimizer, whose per-coordinate update makes the batched fits exactly the
same as separate ones. Each step draws a minibatch of ``batch_size`` points of every data set
(without replacement; a data set shorter than that is taken whole and topped up with random
repeats, so that a pair's fit does not depend on the lengths of the pairs batched with it); the
final MMD of each fit is measured on all points (at most ``max_points``) and averaged over
``n_eval`` noise draws. The loop runs on one CPU thread (:func:`measureflow._core.torch_threads`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from measureflow._core import check_count, check_positive, progress_bar, torch_threads
from measureflow.inference.causal.base import (
    DirectionResult,
    check_pair,
    direction_of,
    standardize,
    subsample,
)

__all__ = ["DEFAULT_BANDWIDTHS", "BatchedGenerators", "batched_mmd2", "cgnn_direction", "cgnn_fits"]

# On standardized 2-D data (median pairwise distance about 1.5) these span the fine structure of
# the noise to the global shape. Halving from one to the next makes each kernel the fourth power
# of the previous one, so one exp serves the whole ladder (see _kernel_sum).
DEFAULT_BANDWIDTHS = (2.0, 1.0, 0.5, 0.25, 0.125)
# Kernel-matrix entries per chunk of models in the MMD's forward on a CPU: 2^18 floats (1 MiB) stay
# in cache (a GPU takes all models at once).
_CHUNK_ENTRIES = 1 << 18


class BatchedGenerators(nn.Module):
    r"""``n_models`` independent one-hidden-layer networks effect = f_b(cause, z), evaluated together:

        f_b(c, z) = W2_b relu(W1_b [c, z] + b1_b) + b2_b,

    with input ``cause`` ``(B, m)`` and noise ``z`` ``(B, m, noise_dim)``, output ``(B, m)``. Weights
    start as ``nn.Linear``'s default (uniform in +-1/sqrt(fan_in)), drawn with ``generator``.
    """

    def __init__(self, n_models: int, hidden: int = 20, noise_dim: int = 1, *,
                 generator: torch.Generator | None = None, device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.n_models = check_count(n_models, "n_models")
        self.hidden = check_count(hidden, "hidden")
        self.noise_dim = check_count(noise_dim, "noise_dim")
        fan_in = 1 + noise_dim

        def uniform(shape: tuple[int, ...], bound: float) -> nn.Parameter:
            draw = torch.rand(shape, generator=generator, device=generator.device if generator else "cpu",
                              dtype=dtype)
            return nn.Parameter(((2 * draw - 1) * bound).to(device))

        self.w1 = uniform((n_models, fan_in, hidden), 1 / math.sqrt(fan_in))
        self.b1 = uniform((n_models, 1, hidden), 1 / math.sqrt(fan_in))
        self.w2 = uniform((n_models, hidden, 1), 1 / math.sqrt(hidden))
        self.b2 = uniform((n_models, 1, 1), 1 / math.sqrt(hidden))

    def forward(self, cause: Tensor, z: Tensor, rows: slice = slice(None)) -> Tensor:
        """Outputs ``(B', m)`` of the models ``rows`` (all by default) at ``cause`` ``(B', m)``."""
        return _generate(self.w1[rows], self.b1[rows], self.w2[rows], self.b2[rows], cause, z)


def _generate(w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor, cause: Tensor, z: Tensor) -> Tensor:
    inputs = torch.cat([cause.unsqueeze(-1), z], dim=-1)
    return torch.baddbmm(b2, torch.relu(torch.baddbmm(b1, inputs, w1)), w2).squeeze(-1)


def _is_halving_ladder(bandwidths: Sequence[float]) -> bool:
    return all(b == a / 2 for a, b in zip(bandwidths, bandwidths[1:], strict=False))


def _kernel_sum(d2: Tensor, bandwidths: Sequence[float]) -> Tensor:
    """sum_h exp(-d2 / (2 h^2)), elementwise.

    For a ladder h, h/2, h/4, ... each term is the previous one to the fourth power (two squarings,
    much cheaper than an exp); any other list takes one exp per bandwidth.
    """
    if len(bandwidths) > 1 and _is_halving_ladder(bandwidths):
        term = torch.exp(d2 * (-0.5 / (bandwidths[0] ** 2)))
        total = term
        for _ in bandwidths[1:]:
            term = term.square().square()
            total = total + term
        return total
    return sum(torch.exp(d2 * (-0.5 / (h * h))) for h in bandwidths)


def batched_mmd2(cause: Tensor, effect: Tensor, generated: Tensor, bandwidths: Sequence[float], *,
                 data_term: bool = True) -> Tensor:
    r"""The V-statistic MMD^2 between the joints {(c_i, e_i)} and {(c_i, g_i)}, for a batch of data sets.

    ``cause``, ``effect``, ``generated``: ``(B, m)`` (row b is one data set and one model's output
    at the same causes); returns ``(B,)``. Both samples share the causes, so the squared distance
    of two points is (c_i - c_j)^2 plus that of the second coordinates. ``data_term=False`` leaves
    out the data-data mean, which does not depend on the model (for training: same gradient).
    """
    cause_d2 = (cause.unsqueeze(2) - cause.unsqueeze(1)).square()

    def mean_kernel(a: Tensor, b: Tensor) -> Tensor:
        return _kernel_sum(cause_d2 + (a.unsqueeze(2) - b.unsqueeze(1)).square(), bandwidths).mean(dim=(1, 2))

    value = mean_kernel(generated, generated) - 2 * mean_kernel(effect, generated)
    return value + mean_kernel(effect, effect) if data_term else value


def _weighted_kernels(d2: Tensor, bandwidths: Sequence[float]) -> tuple[Tensor, Tensor]:
    """K = sum_h exp(-d2 / (2 h^2)) and W = sum_h exp(-d2 / (2 h^2)) / h^2 (the derivative's weights).

    In place where possible (no autograd here): a few passes over the (B, m, m) block per bandwidth.
    """
    if len(bandwidths) > 1 and _is_halving_ladder(bandwidths):
        term = d2.mul(-0.5 / (bandwidths[0] ** 2)).exp_()
        kernel, weights = term.clone(), term.mul(1 / bandwidths[0] ** 2)
        for h in bandwidths[1:]:
            term.square_().square_()
            kernel.add_(term)
            weights.add_(term, alpha=1 / (h * h))
        return kernel, weights
    terms = [torch.exp(d2 * (-0.5 / (h * h))) for h in bandwidths]
    return sum(terms), sum(t / (h * h) for t, h in zip(terms, bandwidths, strict=True))


class _MMDToData(torch.autograd.Function):
    r"""MMD^2 less its data-data term, per row, with its gradient in the generated values formed in
    the forward pass (two matrix-vector products), so that no (B, m, m) matrix is kept for backward:

        L_b = 1/m^2 sum_ij [K(g_i, g_j) - 2 K(e_i, g_j)],
        dL_b / dg_j = 2/m^2 sum_i [W(g_i, g_j) (g_i - g_j) - W(e_i, g_j) (e_i - g_j)],

    with K and W of :func:`_weighted_kernels` on (c_i - c_j)^2 + (u_i - v_j)^2.
    """

    @staticmethod
    def forward(ctx: Any, cause_d2: Tensor, effect: Tensor, generated: Tensor,
                bandwidths: tuple[float, ...]) -> Tensor:
        m = generated.shape[1]
        value = torch.zeros(generated.shape[0], dtype=generated.dtype, device=generated.device)
        gradient = torch.zeros_like(generated)
        # Rows in chunks of about _CHUNK_ENTRIES matrix entries: each chunk's matrices stay in cache.
        rows = generated.shape[0] if generated.is_cuda else max(1, _CHUNK_ENTRIES // (m * m))
        for start in range(0, generated.shape[0], rows):
            part = slice(start, start + rows)
            g, c_d2 = generated[part], cause_d2[part]
            for source, sign in ((g, 1.0), (effect[part], -2.0)):
                d2 = (source.unsqueeze(2) - g.unsqueeze(1)).square_().add_(c_d2)
                kernel, weights = _weighted_kernels(d2, bandwidths)
                value[part] += sign * kernel.mean(dim=(1, 2))
                # sum_i W_ij (a_i - g_j); the symmetric g-g term counts twice (g_j is in both arguments).
                pulled = torch.bmm(source.unsqueeze(1), weights).squeeze(1) - weights.sum(dim=1) * g
                gradient[part] += (2.0 if sign > 0 else -2.0) * pulled / m**2
        ctx.save_for_backward(gradient)
        return value

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> tuple[None, None, Tensor, None]:
        (gradient,) = ctx.saved_tensors
        return None, None, grad_output.unsqueeze(1) * gradient, None


def _training_loss(w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor, cause: Tensor, effect: Tensor,
                         z: Tensor, bandwidths: tuple[float, ...]) -> Tensor:
    """Sum over models of MMD^2 less its data-data term (no gradient, same minimizer), with the
    MMD's gradient written out (:class:`_MMDToData`): 3x faster than autograd through the kernel
    matrices, and level with ``torch.compile`` of that (1.25x behind at 264 models) without its
    compile time."""
    generated = _generate(w1, b1, w2, b2, cause, z)
    cause_d2 = (cause.unsqueeze(2) - cause.unsqueeze(1)).square()
    return _MMDToData.apply(cause_d2, effect, generated, bandwidths).sum()


def fresh_generator(generator: torch.Generator | None) -> torch.Generator:
    """``generator``, or a CPU generator with a seed drawn from the global RNG when ``None``."""
    if generator is None:
        return torch.Generator().manual_seed(int(torch.randint(2**62, ())))
    return generator


def padded_datasets(causes: list[Tensor], effects: list[Tensor], device: torch.device,
                    min_width: int = 0) -> tuple[Tensor, Tensor, Tensor]:
    """Data sets of different lengths as float32 rows ``(D, width)`` of causes and of effects, each
    row its data set repeated end to end (width = the longest length, at least ``min_width``), and
    the lengths ``(D,)``: :func:`minibatch` draws a short data set's repeats after all its points."""
    if not causes or len(effects) != len(causes):
        raise ValueError(f"causes and effects must be equally long non-empty lists, got {len(causes)} "
                         f"and {len(effects)}")
    lengths = torch.tensor([c.shape[0] for c in causes], device=device)
    width = max(int(lengths.max()), min_width)
    cause_rows = torch.zeros(len(causes), width, device=device)
    effect_rows = torch.zeros_like(cause_rows)
    for row, (c, e) in enumerate(zip(causes, effects, strict=True)):
        repeats = -(-width // c.shape[0])
        cause_rows[row] = c.to(device=device, dtype=torch.float32).repeat(repeats)[:width]
        effect_rows[row] = e.to(device=device, dtype=torch.float32).repeat(repeats)[:width]
    return cause_rows, effect_rows, lengths


def minibatch(cause_rows: Tensor, effect_rows: Tensor, lengths: Tensor, which: Tensor, m: int,
              generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """For each data set in ``which`` ``(S,)``, m of its points: causes and effects ``(S, m)``.

    Each row takes the m smallest of uniform keys, the repeats beyond a data set's length getting
    keys raised by 1: a data set of at least m points gives m distinct points (without
    replacement), a shorter one all its points and then random repeats. So every data set is fitted
    on minibatches of the same size m whatever the lengths of the others in the batch.
    """
    keys = torch.rand(which.shape[0], cause_rows.shape[1], generator=generator, device=generator.device)
    positions = torch.arange(cause_rows.shape[1], device=cause_rows.device)
    keys = keys.to(cause_rows.device) + (positions[None, :] >= lengths[which, None])
    index = keys.topk(m, dim=1, largest=False).indices
    return cause_rows[which].gather(1, index), effect_rows[which].gather(1, index)


def cgnn_fits(causes: list[Tensor], effects: list[Tensor], *, n_restarts: int = 8, hidden: int = 20,
              n_steps: int = 1000, batch_size: int = 128, learning_rate: float = 0.03,
              bandwidths: Sequence[float] = DEFAULT_BANDWIDTHS, n_eval: int = 8,
              generator: torch.Generator | None = None, device: torch.device | str = "cpu",
              progress: bool = False) -> tuple[Tensor, list[Tensor]]:
    r"""Fit effect = f(cause, Z) by MMD on each of D data sets, ``n_restarts`` times each, as one batch.

    ``causes[d]``, ``effects[d]``: standardized ``(n_d,)`` tensors. Returns the final MMD^2 of every
    fit ``(D, n_restarts)`` (float64, CPU; mean over ``n_eval`` noise draws on all n_d points) and,
    for each data set, the generated effects of its first restart ``(n_d,)`` (for a figure).
    """
    n_restarts = check_count(n_restarts, "n_restarts")
    n_steps = check_count(n_steps, "n_steps")
    batch_size = check_count(batch_size, "batch_size", minimum=2)
    n_eval = check_count(n_eval, "n_eval")
    learning_rate = check_positive(learning_rate, "learning_rate")
    bandwidths = tuple(check_positive(h, "bandwidth") for h in bandwidths)
    if not bandwidths:
        raise ValueError("bandwidths must hold at least one positive number")
    device = torch.device(device)
    generator = fresh_generator(generator)
    gen_device = generator.device
    dtype = torch.float32
    cause_rows, effect_rows, lengths = padded_datasets(causes, effects, device, min_width=batch_size)
    n_datasets = len(causes)
    all_rows = torch.arange(n_datasets, device=device)
    n_models = n_datasets * n_restarts
    model = BatchedGenerators(n_models, hidden, generator=generator, device=device, dtype=dtype)
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
    # Cosine decay to 0: large steps early, and a final fit not blurred by the step's noise.
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, n_steps)
    m = batch_size
    parameters = (model.w1, model.b1, model.w2, model.b2)
    # One thread: small operations in a long loop (see torch_threads: 3x faster on a busy machine).
    with torch_threads(1, device), progress_bar(n_steps, "cgnn", enabled=progress) as bar:
        for _ in range(n_steps):
            cause, effect = minibatch(cause_rows, effect_rows, lengths, all_rows, m, generator)
            cause = cause.repeat_interleave(n_restarts, dim=0)
            effect = effect.repeat_interleave(n_restarts, dim=0)
            z = torch.randn(n_models, m, 1, generator=generator, device=gen_device, dtype=dtype).to(device)
            loss = _training_loss(*parameters, cause, effect, z, bandwidths)
            optimizer.zero_grad(set_to_none=True)
            # A sum of independent losses: each fit gets exactly its own gradient.
            loss.backward()
            optimizer.step()
            schedule.step()
            bar.update(1)
    if not bool(torch.isfinite(loss)):
        raise FloatingPointError("CGNN training produced a non-finite MMD; lower learning_rate")
    with torch_threads(1, device):
        return _evaluate(model, causes, effects, n_restarts, n_eval, bandwidths, generator, device, dtype)


def _mean_kernel_inplace(a: Tensor, b: Tensor, cause_d2: Tensor, bandwidths: tuple[float, ...]) -> Tensor:
    """mean_ij sum_h exp(-((c_i - c_j)^2 + (a_i - b_j)^2) / (2 h^2)) per row of ``a``, ``b`` ``(B, n)``
    with ``cause_d2`` ``(n, n)`` shared, without autograd: the (B, n, n) block is built and reduced
    in place (the kernel of the ladder is :func:`_weighted_kernels`' without its weights)."""
    d2 = (a.unsqueeze(2) - b.unsqueeze(1)).square_().add_(cause_d2)
    if len(bandwidths) > 1 and _is_halving_ladder(bandwidths):
        term = d2.mul_(-0.5 / bandwidths[0] ** 2).exp_()
        total = term.clone()
        for _ in bandwidths[1:]:
            total.add_(term.square_().square_())
        return total.mean(dim=(1, 2))
    return _kernel_sum(d2, bandwidths).mean(dim=(1, 2))


@torch.no_grad()
def _evaluate(model: BatchedGenerators, causes: list[Tensor], effects: list[Tensor], n_restarts: int,
              n_eval: int, bandwidths: tuple[float, ...], generator: torch.Generator,
              device: torch.device, dtype: torch.dtype) -> tuple[Tensor, list[Tensor]]:
    """Each data set's n_restarts fits: MMD^2 on all its points, averaged over n_eval noise draws.
    The causes' distances and the data-data term are computed once per data set."""
    mmds = torch.zeros(len(causes), n_restarts, dtype=torch.float64)
    samples = []
    for d, (cause, effect) in enumerate(zip(causes, effects, strict=True)):
        rows = slice(d * n_restarts, (d + 1) * n_restarts)
        n = cause.shape[0]
        c = cause.to(device=device, dtype=dtype)
        e = effect.to(device=device, dtype=dtype).expand(n_restarts, n)
        cause_d2 = (c[:, None] - c[None, :]).square()
        data_term = _mean_kernel_inplace(e[:1], e[:1], cause_d2, bandwidths).double()
        total = torch.zeros(n_restarts, dtype=torch.float64, device=device)
        for draw in range(n_eval):
            z = torch.randn(n_restarts, n, 1, generator=generator, device=generator.device, dtype=dtype)
            generated = model(c.expand(n_restarts, n), z.to(device), rows)
            if draw == 0:
                samples.append(generated[0].double().cpu())
            total += (_mean_kernel_inplace(generated, generated, cause_d2, bandwidths).double()
                      - 2 * _mean_kernel_inplace(e, generated, cause_d2, bandwidths).double())
        mmds[d] = (total / n_eval + data_term).cpu()
    return mmds, samples


def cgnn_direction(x: Any, y: Any, *, n_restarts: int = 8, hidden: int = 20, n_steps: int = 1000,
                   batch_size: int = 128, learning_rate: float = 0.03,
                   bandwidths: Sequence[float] = DEFAULT_BANDWIDTHS, n_eval: int = 8, max_points: int = 1000,
                   generator: torch.Generator | None = None, device: torch.device | str = "cpu",
                   progress: bool = False) -> DirectionResult:
    """The CGNN decision on one pair (see the module docstring): both variables standardized, at
    most ``max_points`` observations kept (drawn with ``generator``), ``n_restarts`` fits each way.

    ``details``: ``mmd_xy`` and ``mmd_yx`` (per restart), their means; ``fitted``: ``data``
    ``(n, 2)`` standardized, ``xy`` = (x, f(x, z)) and ``yx`` = (g(y, z), y) of the first restarts.
    """
    x, y = check_pair(x, y)
    generator = fresh_generator(generator)
    x, y = subsample(x, y, check_count(max_points, "max_points", minimum=10), generator)
    x, y = standardize(x), standardize(y)
    mmds, samples = cgnn_fits([x, y], [y, x], n_restarts=n_restarts, hidden=hidden, n_steps=n_steps,
                              batch_size=batch_size, learning_rate=learning_rate, bandwidths=bandwidths,
                              n_eval=n_eval, generator=generator, device=device, progress=progress)
    return _result(x, y, mmds[0], mmds[1], samples[0], samples[1])


def _result(x: Tensor, y: Tensor, mmd_xy: Tensor, mmd_yx: Tensor, fitted_y: Tensor,
            fitted_x: Tensor) -> DirectionResult:
    score = float(mmd_yx.mean() - mmd_xy.mean())
    return DirectionResult(
        method="cgnn", direction=direction_of(score), score=score,
        details={"mmd_xy": mmd_xy.tolist(), "mmd_yx": mmd_yx.tolist(), "mean_mmd_xy": float(mmd_xy.mean()),
                 "mean_mmd_yx": float(mmd_yx.mean()), "n_points": int(x.shape[0])},
        fitted={"data": torch.stack([x, y], 1), "xy": torch.stack([x, fitted_y], 1),
                "yx": torch.stack([fitted_x, y], 1)})
