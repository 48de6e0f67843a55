"""MCMC sample diagnostics on chain histories ``(n_steps, n_chains, d)``: ESS and R-hat.

Two families, every function ``(n_steps, n_chains, d) -> (d,)``, computed in float64:

- the classical ones, :func:`ess` (ESS of the mean) and :func:`rhat` (split R-hat), as in the
  Stan reference manual and Gelman et al., Bayesian Data Analysis, 3rd ed., sec. 11.4-11.5;
  they equal ArviZ's ``ess(method="mean")`` and ``rhat(method="split")``;
- the rank-normalized ones of Vehtari, Gelman, Simpson, Carpenter & Buerkner (2021), "Rank-
  normalization, folding, and localization: an improved R-hat for assessing convergence of
  MCMC", Bayesian Analysis 16(2): :func:`rhat_rank`, :func:`ess_bulk` and :func:`ess_tail`,
  which equal ArviZ's defaults ``rhat(method="rank")``, ``ess(method="bulk")`` and
  ``ess(method="tail")`` (and what Stan and NumPyro print). They depend on the draws only
  through their ranks, so they stay defined for heavy tails and infinite variance, and the
  folded and quantile versions see chains that agree in location but not in scale.
"""

from __future__ import annotations

import concurrent.futures
import math

import numpy as np
import torch
from torch import Tensor

from measureflow._core import as_tensor, check_finite

__all__ = [
    "autocorrelation", "ess", "ess_bulk", "ess_tail", "rank_diagnostics", "rhat", "rhat_rank",
]


def _as_chains(chains, name: str = "chains", min_steps: int = 4, float64: bool = True) -> Tensor:
    tensor = as_tensor(chains, name)
    if tensor.ndim == 2:
        raise ValueError(
            f"{name} must have shape (n_steps, n_chains, d), got {tuple(tensor.shape)}; "
            "for one coordinate add a trailing axis: chains[..., None]"
        )
    if tensor.ndim != 3:
        raise ValueError(f"{name} must have shape (n_steps, n_chains, d), got {tuple(tensor.shape)}")
    if tensor.shape[0] < min_steps:
        raise ValueError(f"{name} needs at least {min_steps} steps per chain, got {tensor.shape[0]}")
    check_finite(tensor, name)
    # Sums of squares over long chains lose digits in float32.
    return tensor.to(torch.float64) if float64 else tensor


def autocorrelation(chains) -> Tensor:
    """Per-chain autocovariance by FFT, normalized by n (the biased, positive-definite form).

    ``chains`` ``(n, m, d)`` -> ``(n, m, d)``, lag 0 first. Zero-padding to 2n avoids the
    circular wrap-around of the FFT.
    """
    x = _as_chains(chains, min_steps=2)
    n = x.shape[0]
    centred = x - x.mean(0)
    size = 1 << (2 * n - 1).bit_length()
    spectrum = torch.fft.rfft(centred, n=size, dim=0)
    return torch.fft.irfft(spectrum * spectrum.conj(), n=size, dim=0)[:n] / n


def _fft_size(n: int) -> int:
    """The smallest 2^a 3^b 5^c >= 2n - 1: room for every lag without wrap-around, and a length
    the FFT handles fast (up to 1.6x shorter than the next power of two)."""
    target = 2 * n - 1
    best = 1 << (target - 1).bit_length()
    power5 = 1
    while power5 < best:
        power35 = power5
        while power35 < best:
            size = power35
            while size < target:
                size *= 2
            best = min(best, size)
            power35 *= 3
        power5 *= 5
    return best


def _chain_mean_autocovariance(x: Tensor) -> Tensor:
    """The autocovariances of :func:`autocorrelation` averaged over chains, ``(n, m, d) -> (n, d)``.

    The average is taken on the power spectra, so only one inverse FFT per coordinate is done;
    time is moved to the last, contiguous axis for the transforms.
    """
    n = x.shape[0]
    centred = (x - x.mean(0)).permute(2, 1, 0)  # (d, m, n)
    size = _fft_size(n)
    spectrum = torch.fft.rfft(centred, n=size, dim=-1)
    power = (spectrum.real.square() + spectrum.imag.square()).mean(1)  # (d, size // 2 + 1)
    return (torch.fft.irfft(power, n=size, dim=-1)[:, :n] / n).T


def _split(x: Tensor) -> Tensor:
    """Cut each chain into its first and last halves (the odd middle draw dropped): 2m chains."""
    half = x.shape[0] // 2
    return torch.cat([x[:half], x[-half:]], dim=1)


def ess(chains) -> Tensor:
    """Effective sample size of the mean per coordinate, ``(n_steps, n_chains, d) -> (d,)``.

    Computed on split chains (each chain cut in two halves, as Stan and ArviZ do, so that a
    drift within a chain lowers the ESS). With W the mean within-chain variance, B/n the
    variance of the chain means and var+ = (n - 1)/n W + B/n, the combined autocorrelation is
    rho_t = 1 - (W - mean_chains acov_t) / var+. Geyer's initial monotone sequence sums the
    pairs P_k = rho_{2k} + rho_{2k+1} while positive, made non-increasing, plus the even term
    of the first non-positive pair when that term is positive; then
    ESS = m n / tau with tau = -1 + 2 sum_k P_k (+ that term), tau >= 1 / log10(m n); the
    sequence is cut near the chain's end as ArviZ cuts it (see ``_ess_of_split``). Equal to
    ``arviz.ess(..., method="mean")`` up to float64 round-off (tested).

    >>> import torch, measureflow as mf
    >>> draws = torch.randn(1000, 4, 1, generator=torch.Generator().manual_seed(0))
    >>> 3000 < float(mf.metrics.ess(draws)) < 5000
    True
    """
    return _blockwise(lambda x: _ess_of_split(_split(x)), _as_chains(chains))


def _ess_of_split(x: Tensor) -> Tensor:
    """ESS of already split float64 chains ``(n, m, d) -> (d,)``, as ArviZ's ``_ess`` computes it.

    Geyer's sequence is read as ArviZ 0.23 reads it: pairs P_k = rho_2k + rho_2k+1 are examined
    for k = 1, 2, ... while P_{k-1} > 0 and 2k - 1 < n - 3; with L the last pair examined (the
    first non-positive one, or the last the length allows), tau = -1 + 2 sum_{k<L} P~_k + r,
    P~ the running minimum of P (Geyer's monotone sequence) and r = rho_2L when it is positive
    or when P_L >= 0 (a pair cut off by the length, not by its sign), else 0. A constant input
    (zero variance, e.g. an indicator that never changes) has ESS m n.
    """
    return _geyer_ess(_chain_mean_autocovariance(x), x.mean(0).var(0, unbiased=True), x.shape[1])


def _geyer_ess(mean_acov: Tensor, between_over_n: Tensor, m: int) -> Tensor:
    """The ESS of :func:`_ess_of_split` from the chain-averaged autocovariances ``(n, d)`` of m
    split chains and the variance of their chain means ``(d,)`` (B/n), both float64."""
    n = mean_acov.shape[0]
    within = mean_acov[0] * n / (n - 1)
    var_plus = (n - 1) / n * within + between_over_n
    safe_var = torch.where(var_plus > 0, var_plus, torch.ones_like(var_plus))
    rho = 1 - (within - mean_acov) / safe_var
    rho[0] = 1.0
    n_pairs = n // 2
    pairs = rho[: 2 * n_pairs].reshape(n_pairs, 2, -1).sum(1)
    # Pairs examined after P_0: k = 1 .. k_max, with 2k - 1 < n - 3.
    k_max = max((n - 1) // 2 - 1, 0)
    leading = torch.cumprod((pairs > 0).to(pairs.dtype), dim=0).sum(0).long()  # first P_k <= 0
    last = leading.clamp(max=k_max)  # L
    k = torch.arange(n_pairs, device=rho.device)[:, None]
    inside = k < last  # the pairs summed, all positive
    monotone = torch.cummin(torch.where(inside, pairs, torch.full_like(pairs, math.inf)), dim=0)
    summed = torch.where(inside, monotone.values, torch.zeros_like(pairs)).sum(0)
    even = rho.gather(0, (2 * last)[None])[0]
    pair_last = pairs.gather(0, last.clamp(max=n_pairs - 1)[None])[0]
    tail = torch.where((even > 0) | ((last > 0) & (pair_last >= 0)), even, torch.zeros_like(even))
    tau = -1 + 2 * summed + tail
    total = n * m
    result = total / tau.clamp_min(1.0 / math.log10(total))
    return torch.where(var_plus > 0, result, torch.full_like(result, float(total)))


def rhat(chains) -> Tensor:
    """Split R-hat per coordinate, ``(n_steps, n_chains, d) -> (d,)``.

    Each chain is cut in two halves (the odd middle draw dropped), giving 2m chains of length
    h; R-hat = sqrt(var+ / W) with var+ = (h - 1)/h W + B/h. Values near 1 (below about 1.01)
    say the chains agree with each other and with themselves over time.
    """
    return _blockwise(lambda x: _rhat_of_split(_split(x)), _as_chains(chains))


def _rhat_of_split(split: Tensor) -> Tensor:
    """sqrt(var+ / W) of already split chains ``(h, m, d) -> (d,)``; NaN where W = 0."""
    half = split.shape[0]
    within = split.var(0, unbiased=True).mean(0)
    between_over_h = split.mean(0).var(0, unbiased=True)
    var_plus = (half - 1) / half * within + between_over_h
    return torch.sqrt(var_plus / within)


# Rank-based diagnostics sort the pooled draws of each coordinate; coordinates are taken in
# blocks of about this many draws so that the float64 copies stay a few hundred MB at most.
_BLOCK_NUMBERS = 1 << 24


def _blockwise(function, x: Tensor) -> Tensor:
    """``function`` ``(n, m, d_block) -> (d_block,)`` over blocks of coordinates of ``x``."""
    width = max(1, _BLOCK_NUMBERS // max(1, x.shape[0] * x.shape[1]))
    if x.shape[2] <= width:
        return function(x)
    return torch.cat([function(block) for block in x.split(width, dim=2)])


def _average_ranks(values: Tensor) -> tuple[Tensor, Tensor]:
    """Ranks 1..S along the last axis of ``values`` ``(d, S)``, tied values sharing their mean
    rank (``scipy.stats.rankdata(method="average")``), and the sorted values.

    Within a run of equal sorted values at 0-based positions first..last, each member gets
    (first + last) / 2 + 1. One sort; the rest is linear.
    """
    size = values.shape[-1]
    ordered, order = torch.sort(values, dim=-1)
    position = torch.arange(size, device=values.device).expand_as(order)
    starts = torch.ones_like(ordered, dtype=torch.bool)
    starts[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    if bool(starts.all()):  # no ties: the ranks are the positions
        mean_rank = position.to(torch.float64) + 1
    else:
        ends = torch.ones_like(starts)
        ends[:, :-1] = starts[:, 1:]
        first = torch.where(starts, position, 0).cummax(-1).values
        last = torch.where(ends, position, size - 1).flip(-1).cummin(-1).values.flip(-1)
        mean_rank = (first + last).to(torch.float64) / 2 + 1
    return torch.empty_like(mean_rank).scatter_(-1, order, mean_rank), ordered


def _rank_normalize(x: Tensor) -> tuple[Tensor, Tensor]:
    """z = Phi^-1((r - 3/8) / (S + 1/4)), r the average rank of each draw among the S draws of
    its coordinate pooled over all chains (Blom's offset; Vehtari et al. 2021, eq. 14).

    ``(n, m, d) -> (n, m, d)``, and the pooled draws sorted, ``(d, S)``.
    """
    n, m, d = x.shape
    size = n * m
    ranks, ordered = _average_ranks(x.permute(2, 0, 1).reshape(d, size))
    z = torch.special.ndtri((ranks - 0.375) / (size + 0.25))
    return z.reshape(d, n, m).permute(1, 2, 0), ordered


def _order_statistic(x: Tensor, ordered: Tensor | None, k: int) -> Tensor:
    """The k-th smallest (0-based) draw of each coordinate, from the sorted pool when given."""
    if ordered is not None:
        return ordered[:, k]
    return torch.kthvalue(x.reshape(-1, x.shape[-1]), k + 1, dim=0).values


def _median(x: Tensor, ordered: Tensor | None = None) -> Tensor:
    """Median of each coordinate over all draws of all chains, ``(n, m, d) -> (d,)``
    (``ordered``: the same draws sorted, ``(d, S)``, if already at hand).

    For an even count, (a + b) / 2 of the two middle values a <= b, rounded as numpy rounds it:
    the folded draws |x - median| of the two middle values then tie exactly as in ArviZ.
    """
    size = x.shape[0] * x.shape[1]
    if size % 2:
        return _order_statistic(x, ordered, size // 2)
    return (_order_statistic(x, ordered, size // 2 - 1) + _order_statistic(x, ordered, size // 2)) / 2


def _quantile(x: Tensor, prob: float, ordered: Tensor | None = None) -> Tensor:
    """The type-7 ``prob``-quantile (R's and numpy's default) of each coordinate over all draws
    of all chains, ``(n, m, d) -> (d,)`` (``ordered`` as in :func:`_median`).

    Sorted values v_1 <= ... <= v_S, a = S p + (1 - p), k = floor(a) in [1, S - 1],
    g = a - k: (1 - g) v_k + g v_{k+1}. Evaluated in the order of
    ``scipy.stats.mstats.mquantiles(alphap=1, betap=1)``, which ArviZ uses, so that draws tied
    at the quantile land on the same side of it as there (the rounding of g decides it).
    """
    k, gamma = _type7(x.shape[0] * x.shape[1], prob)
    return (1.0 - gamma) * _order_statistic(x, ordered, k - 1) + gamma * _order_statistic(x, ordered, k)


def _type7(size: int, prob: float) -> tuple[int, float]:
    """(k, g) of the type-7 ``prob``-quantile of ``size`` values (see :func:`_quantile`)."""
    aleph = size * prob + (1.0 - prob)
    k = math.floor(min(max(aleph, 1.0), size - 1.0))
    return k, min(max(aleph - k, 0.0), 1.0)


def _rank_diagnostics(x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(rank R-hat, bulk ESS, tail ESS) of float64 chains ``(n, m, d)``, sharing their work:
    one sort for the rank-normalized split draws (which also gives the median and, for an even
    n, the quantiles) and one for the folded draws."""
    split = _split(x)
    z, ordered = _rank_normalize(split)
    folded = (split - _median(split, ordered)).abs()
    z_folded, _ = _rank_normalize(folded)
    # torch.maximum propagates NaN, as numpy's max of a NaN R-hat does.
    rhat_value = torch.maximum(_rhat_of_split(z), _rhat_of_split(z_folded))
    # The quantiles are of all draws, the middle one of an odd-length chain included.
    pool = ordered if split.shape[0] * 2 == x.shape[0] else None
    return rhat_value, _ess_of_split(z), _ess_tail(x, pool)


def _ess_tail(x: Tensor, ordered: Tensor | None = None) -> Tensor:
    low, high = _quantile(x, 0.05, ordered), _quantile(x, 0.95, ordered)
    # Both indicators stacked on the coordinate axis: one ESS pass for the pair.
    indicators = torch.cat([x <= low, x <= high], dim=2).to(torch.float64)
    both = _ess_of_split(_split(indicators))
    return torch.minimum(both[: x.shape[2]], both[x.shape[2]:])


def rank_diagnostics(chains) -> tuple[Tensor, Tensor, Tensor]:
    """``(rhat_rank(chains), ess_bulk(chains), ess_tail(chains))`` at the cost of about one of
    them: the three share their sorts. ``(n_steps, n_chains, d)`` -> three ``(d,)``."""
    x = _as_chains(chains, float64=False)
    if _on_numpy(x):
        return tuple(_numpy_rank_parts(x, rhat=True, bulk=True, tail=True))
    x = x.to(torch.float64)
    width = max(1, _BLOCK_NUMBERS // (x.shape[0] * x.shape[1]))
    parts = [_rank_diagnostics(block) for block in x.split(width, dim=2)]
    return tuple(torch.cat(values) for values in zip(*parts, strict=True))


def rhat_rank(chains) -> Tensor:
    """Rank-normalized split R-hat per coordinate, ``(n_steps, n_chains, d) -> (d,)``.

    The chains are split in halves (2m chains of h draws, the odd middle draw dropped). The
    bulk R-hat is the split R-hat of the rank-normalized draws z = Phi^-1((r - 3/8) / (S + 1/4))
    (r the rank among all S = 2 m h split draws); the tail R-hat is the same for the folded
    draws |x - median(x)|, which sees chains that differ in scale. The result is
    max(bulk, tail) (Vehtari et al. 2021, sec. 4.2), equal to ArviZ's ``rhat(method="rank")``.
    Below 1.01 is the usual bar for trusting the chains. Defined for one chain too (its two
    halves are compared), where ArviZ returns NaN. NaN when the draws of a coordinate are all
    equal.

    >>> import torch, measureflow as mf
    >>> draws = torch.randn(1000, 4, 1, generator=torch.Generator().manual_seed(0))
    >>> float(mf.metrics.rhat_rank(draws)) < 1.01
    True
    """
    x = _as_chains(chains, float64=False)
    if _on_numpy(x):
        return _numpy_rank_parts(x, rhat=True)[0]
    return _blockwise(_rhat_rank, x.to(torch.float64))


def _rhat_rank(x: Tensor) -> Tensor:
    split = _split(x)
    z, ordered = _rank_normalize(split)
    z_folded, _ = _rank_normalize((split - _median(split, ordered)).abs())
    return torch.maximum(_rhat_of_split(z), _rhat_of_split(z_folded))


def ess_bulk(chains) -> Tensor:
    """Bulk effective sample size per coordinate, ``(n_steps, n_chains, d) -> (d,)``.

    The ESS of the mean (as in :func:`ess`) of the split, rank-normalized draws (see
    :func:`rhat_rank`): an ESS for the centre of the distribution that is defined whatever its
    moments. Equal to ArviZ's ``ess(method="bulk")``. Stan asks for at least 100 per chain.
    """
    x = _as_chains(chains, float64=False)
    if _on_numpy(x):
        return _numpy_rank_parts(x, bulk=True)[0]
    return _blockwise(lambda block: _ess_of_split(_rank_normalize(_split(block))[0]), x.to(torch.float64))


def ess_tail(chains) -> Tensor:
    """Tail effective sample size per coordinate, ``(n_steps, n_chains, d) -> (d,)``.

    min(ESS(I(x <= q_0.05)), ESS(I(x <= q_0.95))): the ESS of the mean of the indicators of the
    5% and 95% quantiles q (type-7 quantiles of all draws, computed before splitting), each on
    split chains (Vehtari et al. 2021, sec. 4.3). It says how well the chains estimate the 90%
    central interval. Equal to ArviZ's ``ess(method="tail")``; Stan asks for 100 per chain.
    """
    x = _as_chains(chains, float64=False)
    if _on_numpy(x):
        return _numpy_rank_parts(x, tail=True)[0]
    return _blockwise(_ess_tail, x.to(torch.float64))


# --- The rank diagnostics on the CPU ---
# torch's CPU sort with indices takes seconds for the ~10^7 pooled draws of a typical run, and
# its CPU FFT is a few times slower than numpy's pocketfft. On the CPU the same estimators are
# therefore computed with numpy: the ranks from one sort of plain 64-bit integers (a float32
# draw's order-preserving bit pattern above its position, sorted by numpy's SIMD sort), the
# folded ranks from merging two runs that this sort already leaves ordered, and the chain-
# averaged power spectra chunk by chunk. Same numbers as the torch path up to float64 round-off
# in the FFTs (tested); other devices keep the torch path, whose sort and FFT are fast there.
_NUMPY_ON_CPU = True


def _on_numpy(x: Tensor) -> bool:
    return _NUMPY_ON_CPU and x.device.type == "cpu"


def _numpy_rank_parts(x: Tensor, rhat: bool = False, bulk: bool = False, tail: bool = False) -> list[Tensor]:
    """The requested ones of (rank R-hat, bulk ESS, tail ESS), in that order, each ``(d,)``
    float64, of validated CPU chains ``x`` ``(n, m, d)`` of any float dtype.

    Coordinates go in blocks of about ``_BLOCK_NUMBERS`` draws, as on the torch path. Each
    part is computed the same way whichever others are asked for, so that
    :func:`rank_diagnostics` equals the three separate functions exactly.
    """
    if x.dtype not in (torch.float32, torch.float64):
        x = x.to(torch.float32)  # float16 and bfloat16 widen exactly; numpy has no bfloat16
    draws = x.detach().numpy()
    n, m, d = draws.shape
    half = n // 2
    # Long chains one coordinate at a time: numpy's one-row paths are the fast ones, and the
    # per-call overhead is nothing next to the work on 2^16 or more draws.
    width = 1 if n * m >= 1 << 16 else max(1, _BLOCK_NUMBERS // (n * m))
    # Blom scores of the ranks 1..S of the S = 2 m h split draws, shared by all coordinates.
    size = 2 * m * half
    scores = _blom(np.arange(1, size + 1, dtype=np.float64), size) if rhat or bulk else None

    def block(start: int) -> list[Tensor | None]:
        rows = draws[:, :, start:start + width].transpose(2, 1, 0)  # (B, m, n), a view
        # Split as ArviZ splits: the first halves of all chains, then the last halves.
        split = np.concatenate([rows[..., :half], rows[..., n - half:]], axis=1)  # (B, 2m, h)
        found: list[Tensor | None] = [None, None, None]
        ordered = None
        if rhat or bulk:
            order, ordered = _numpy_sort(split.reshape(split.shape[0], -1))
            z = _numpy_scatter(order, scores, _numpy_ties(ordered), split.shape)
            if rhat:
                order_folded, folded = _numpy_folded(order, ordered)
                z_folded = _numpy_scatter(order_folded, scores, _numpy_ties(folded), split.shape)
                # torch.maximum propagates NaN, as numpy's max of a NaN R-hat does.
                found[0] = torch.maximum(_numpy_rhat(z), _numpy_rhat(z_folded))
            if bulk:
                found[1] = _numpy_ess(z, lambda chunk: chunk)
        if tail:
            # The quantiles are of all draws, the middle one of an odd-length chain included.
            found[2] = _numpy_ess_tail(split, rows, ordered if 2 * half == n else None)
        return found

    starts = range(0, d, width)
    # numpy's sorts, gathers and FFTs release the GIL: blocks run on torch's threads in parallel,
    # with no more than about _BLOCK_NUMBERS draws in flight (each costs some 80 bytes at peak).
    workers = min(len(starts), torch.get_num_threads(), max(1, _BLOCK_NUMBERS // (n * m)))
    if workers > 1 and n * m >= 1 << 16:
        with concurrent.futures.ThreadPoolExecutor(workers) as pool:
            blocks = list(pool.map(block, starts))
    else:
        blocks = [block(start) for start in starts]
    wanted = [i for i, asked in enumerate((rhat, bulk, tail)) if asked]
    return [torch.cat([found[i] for found in blocks]) for i in wanted]


def _blom(ranks: np.ndarray, size: int) -> np.ndarray:
    """Phi^-1((r - 3/8) / (S + 1/4)) for float64 ranks r among S draws, by the same ndtri and
    in the same order of operations as :func:`_rank_normalize`."""
    return torch.special.ndtri(torch.from_numpy((ranks - 0.375) / (size + 0.25))).numpy()


def _numpy_sort(pool: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sort each row of ``pool`` ``(B, S)``: ``(order, ordered)``, the flat positions in ``pool``
    of its draws in sorted order ``(B, S)`` (int64) and the sorted draws ``(B, S)`` (float64).

    Draws that are float32 numbers (float32 chains, or float64 ones that hold float32 values)
    are sorted as keys k(x) 2^32 + j, j the position in the row and k the float32 bit pattern
    with the sign bit flipped for x >= 0 and all bits flipped for x < 0, which orders as x
    does (-0.0 just below +0.0); the sorted keys hold both the order and the sorted values.
    Other float64 draws (and rows of over 2^32 draws) fall back to ``np.argsort``, several
    times slower.
    """
    rows, size = pool.shape
    offsets = np.arange(0, rows * size, size, dtype=np.int64)[:, None]
    single = pool
    if pool.dtype == np.float64:
        with np.errstate(over="ignore", under="ignore", invalid="ignore"):
            single = pool.astype(np.float32)
        if not np.array_equal(single, pool):
            single = None
    if single is None or size > 1 << 32:
        order = np.argsort(pool, axis=-1)
        ordered = np.take_along_axis(pool, order, axis=-1).astype(np.float64, copy=False)
        order += offsets
        return order, ordered
    bits = np.ascontiguousarray(single).view(np.int32)
    high = (bits >> 31).view(np.uint32)  # all ones for x < 0, else zeros
    high |= np.uint32(1 << 31)
    high ^= bits.view(np.uint32)
    keys = high.astype(np.uint64)
    keys <<= np.uint64(32)
    keys |= np.arange(size, dtype=np.uint64)
    keys.sort(axis=-1)
    high = (keys >> np.uint64(32)).astype(np.uint32)
    # Undo k: flip the sign bit back where it is set (x >= 0), every bit elsewhere.
    high ^= ((high >> np.uint32(31)) - np.uint32(1)) | np.uint32(1 << 31)
    ordered = high.view(np.float32).astype(np.float64)
    keys &= np.uint64(0xFFFFFFFF)
    order = keys.view(np.int64)
    order += offsets
    return order, ordered


def _numpy_ties(ordered: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The tied draws of sorted rows ``ordered`` ``(B, S)``: their flat positions in ``ordered``
    and the Blom scores of their average ranks (as :func:`_average_ranks` ranks them). Every
    other draw at 0-based position j has rank j + 1. Linear in S, and in the ties only beyond
    the one comparison of neighbours."""
    size = ordered.shape[1]
    row, col = np.nonzero(ordered[:, 1:] == ordered[:, :-1])  # draws col and col + 1 are equal
    # Neighbouring equal pairs chain into one run of equal values.
    opens = np.ones(col.size, dtype=bool)
    opens[1:] = (col[1:] != col[:-1] + 1) | (row[1:] != row[:-1])
    closes = np.ones(col.size, dtype=bool)
    closes[:-1] = opens[1:]
    run = np.cumsum(opens) - 1
    # A run at 0-based positions first..last shares the rank (first + last) / 2 + 1.
    run_scores = _blom((col[opens] + (col[closes] + 1)).astype(np.float64) / 2 + 1, size)
    flat = row * size + col
    return np.concatenate([flat, flat + 1]), np.tile(run_scores[run], 2)


def _numpy_scatter(order: np.ndarray, scores: np.ndarray, ties: tuple[np.ndarray, np.ndarray],
                   shape: tuple[int, ...]) -> np.ndarray:
    """The Blom scores of the draws in their own places, laid out as ``shape``: the draw at
    flat place ``order[i, j]`` (``(B, S)``) is the j-th smallest of row i, with score
    ``scores[j]`` (ranks 1..S) unless it is tied (``ties`` from :func:`_numpy_ties`)."""
    result = np.empty(math.prod(shape))
    # Flat values: numpy scatters them about twice as fast as broadcast ones.
    result[order.reshape(-1)] = np.broadcast_to(scores, order.shape).reshape(-1)
    positions, values = ties
    result[order.ravel()[positions]] = values
    return result.reshape(shape)


def _numpy_folded(order: np.ndarray, ordered: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The folded draws |x - median| of each row sorted, ``(order, ordered)`` as
    :func:`_numpy_sort` gives them, from the sorted draws ``order`` and ``ordered`` ``(B, S)``.

    The folded values of the sorted draws fall, then rise: the draws below the median read
    backwards and those from the median on are two sorted runs (rounding is monotone, so the
    computed values are sorted too), which a stable sort merges in about linear time.
    S = 2 m h is even, so the median is (a + b) / 2 of the two middle draws, as in
    :func:`_median`.
    """
    rows, size = ordered.shape
    median = (ordered[:, size // 2 - 1] + ordered[:, size // 2]) / 2
    below = np.count_nonzero(ordered < median[:, None], axis=-1)
    # The two runs, of the draws and of their places: the draws below the median reversed, then
    # the rest (by slices for one row, several times faster than the gathers).
    if rows == 1:
        cut = int(below[0])
        runs = np.concatenate([ordered[0, :cut][::-1], ordered[0, cut:]])[None]
        places = np.concatenate([order[0, :cut][::-1], order[0, cut:]])[None]
    else:
        position = np.arange(size, dtype=np.int64)
        source = np.where(position < below[:, None], below[:, None] - 1 - position, position)
        runs = np.take_along_axis(ordered, source, axis=-1)
        places = np.take_along_axis(order, source, axis=-1)
    runs -= median[:, None]
    np.abs(runs, out=runs)
    merge = np.argsort(runs, axis=-1, kind="stable")
    return _take_rows(places, merge), _take_rows(runs, merge)


def _take_rows(values: np.ndarray, index: np.ndarray) -> np.ndarray:
    """``values[i, index[i, j]]`` for ``(B, S)`` arrays (one row by plain indexing, the fast path)."""
    if values.shape[0] == 1:
        return values[0][index[0]][None]
    return np.take_along_axis(values, index, axis=-1)


def _numpy_rhat(z: np.ndarray) -> Tensor:
    """:func:`_rhat_of_split` of split chains laid out ``(B, 2m, h)``, time last."""
    chains = torch.from_numpy(z)
    half = z.shape[-1]
    within = chains.var(-1, unbiased=True).mean(-1)
    between_over_h = chains.mean(-1).var(-1, unbiased=True)
    return torch.sqrt(((half - 1) / half * within + between_over_h) / within)


# Chains per FFT chunk: about this many padded numbers, so that spectra stay in tens of MB.
_FFT_NUMBERS = 1 << 20


def _numpy_ess(draws: np.ndarray, series, n_series: int | None = None) -> Tensor:
    """:func:`_ess_of_split` of split chains ``draws`` laid out ``(B, 2m, h)``, time last.

    ``series`` maps a chunk of chains ``draws[:, a:b]`` to the float64 series ``(R, b - a, h)``
    whose ESS is wanted (R = ``n_series``, B by default), so that derived series (the tail
    indicators) exist one chunk at a time. The power spectra of the centred chains, zero-padded
    as in :func:`_chain_mean_autocovariance`, are summed over chains chunk by chunk; one
    inverse FFT per series gives the chain-averaged autocovariances.
    """
    n_series = draws.shape[0] if n_series is None else n_series
    n_chains, length = draws.shape[1], draws.shape[2]
    size = _fft_size(length)
    step = max(1, _FFT_NUMBERS // (n_series * size))
    power = np.zeros((n_series, size // 2 + 1))
    means = []
    for start in range(0, n_chains, step):
        chunk = series(draws[:, start:start + step])
        mean = chunk.mean(-1, keepdims=True)
        spectrum = np.fft.rfft(chunk - mean, n=size, axis=-1)
        # |X|^2 summed over the chunk's chains, without temporaries of the spectrum's size.
        power += np.einsum("rcf,rcf->rf", spectrum.real, spectrum.real)
        power += np.einsum("rcf,rcf->rf", spectrum.imag, spectrum.imag)
        means.append(mean[..., 0])
    mean_acov = np.fft.irfft(power / n_chains, n=size, axis=-1)[:, :length] / length
    between_over_n = np.concatenate(means, axis=1).var(-1, ddof=1)
    return _geyer_ess(torch.from_numpy(np.ascontiguousarray(mean_acov.T)), torch.from_numpy(between_over_n),
                      n_chains)


def _numpy_ess_tail(split: np.ndarray, rows: np.ndarray, ordered: np.ndarray | None) -> Tensor:
    """:func:`_ess_tail` of split chains ``(B, 2m, h)``; ``rows`` ``(B, m, n)`` all the draws,
    ``ordered`` ``(B, S)`` all of them sorted when at hand (else found by ``np.partition``)."""
    blocks = split.shape[0]
    size = rows.shape[1] * rows.shape[2]
    probs = (0.05, 0.95)
    positions = [_type7(size, prob) for prob in probs]
    if ordered is None:
        needed = sorted({k + step for k, _ in positions for step in (-1, 0)})
        ordered = np.partition(rows.reshape(blocks, size), needed, axis=-1)

    def stat(k: int) -> np.ndarray:  # the k-th smallest draw (0-based), in float64
        return ordered[:, k].astype(np.float64)

    quantiles = np.stack([(1.0 - gamma) * stat(k - 1) + gamma * stat(k) for k, gamma in positions],
                         axis=1)[:, :, None, None]  # (B, 2, 1, 1)

    def indicators(chunk: np.ndarray) -> np.ndarray:
        # x <= q compares a float32 draw with a float64 quantile exactly (numpy widens x).
        return (chunk[:, None] <= quantiles).reshape(2 * blocks, *chunk.shape[1:]).astype(np.float64)

    both = _numpy_ess(split, indicators, 2 * blocks)
    return torch.minimum(both[0::2], both[1::2])
