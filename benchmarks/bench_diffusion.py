"""Diffusion-model training steps per second and sampler quality per network evaluation, next to
a plain PyTorch loop and diffusers' DDPM/DDIM schedulers.

Training (``mlp``, ``unet``): steps per second of measureflow's shared loop
``mf.generative.train.train`` driving ``DiffusionTask`` (progress bar off, no checkpoints:
``out_dir=None``) against the loop a user would write by hand: the same network (the default
4 x 256 ``MLPScore`` on standardized 8 Gaussians at batch 512; the default ``UNet8`` on the 1,437
training digits at batch 128), Adam at 2e-3, the same linear warm-up + cosine learning-rate
schedule (``LambdaLR``), gradient-norm clipping at 1, a per-parameter EMA ``lerp_`` at 0.999 and
the denoising loss written inline: batch = ``data[torch.randint(...)]``, t ~ U(t_min, 1),
x_t = alpha(t) x0 + sigma(t) z with VP's closed-form alpha and sigma, loss = mean (eps(x_t, t) -
z)^2. Both run 150 (MLP) or 30 (U-Net) steps per repetition from the same initial weights (the
schedule's horizon is ten times that); the two alternate (ABBA...) over ``--repeats``
repetitions after one discarded warm-up each, and the median steps/s counts. The mean loss of
each side's last repetition is shown as a sanity check: both draw rows, times and noise from a
generator seeded alike, in the same order, so equal losses mean the same computation.

Sampling (``samplers``): one 2-D MLP is trained on standardized 8 Gaussians (100,000 draws,
``train_diffusion`` with its defaults: VP SDE beta in [0.1, 20], batch 512, EMA) for 6,000
steps; then, at NFE in {10, 20, 50, 100, 200} network evaluations, 5,000
samples from each of: measureflow's reverse SDE (Euler-Maruyama, NFE = steps), probability-flow
ODE (Heun, NFE = 2 x steps; Euler, NFE = steps), predictor-corrector (1 Langevin corrector,
NFE = 2 x steps), and diffusers' ``DDPMScheduler`` and ``DDIMScheduler`` (eta = 0; default
"leading" timestep spacing and "trailing") with ``set_timesteps(NFE)`` driving the same EMA
network as a noise predictor (``prediction_type="epsilon"``, ``clip_sample=False`` since the
standardized data reach beyond [-1, 1]); plus the adaptive dopri5 probability flow at two
tolerances (its NFE is whatever it spent). DDPM's linear betas beta_k = linspace(1e-4, 0.02,
1000)[k] are beta(k / 999) / N for our beta(t) = 0.1 + 19.9 t and N = 1000, so alphas_cumprod[k]
~ exp(-int_0^{(k+1)/N} beta) = alpha((k+1)/N)^2: diffusers' integer timestep k is fed to the
network as t = (k + 1) / N (the largest gap |alphas_cumprod[k] - alpha(t_k)^2| is reported).
Every sampler starts from the same prior draw x_T in each repetition. Quality: biased MMD^2
(Gaussian kernel, bandwidth 0.3, standardized units) of the 5,000 samples of the first
repetition to one fresh set of 5,000 data points, divided by the noise floor (mean of 4
data-vs-data MMD^2 between fresh sets of 5,000). Speed: 5,000 / seconds of that call (the cases
of one NFE run back to back); ``--sample-repeats R`` (default 2) times every call R times (the
order reversed on alternate repetitions) and takes the median. The same sweep is repeated, for
quality only, with the exact score of the diffused standardized mixture in place of the network
(diffusers then gets eps = -sigma(t) s(x, t)): the samplers' discretization error without the
learning error.

Each group runs in a fresh process (``--child``) under an address-space cap. Torch threads:
``--threads`` (default: torch's own choice, which follows ``OMP_NUM_THREADS``). Writes the
section ``bench_diffusion`` of benchmarks/RESULTS.md (temp file + rename) and prints it.
``--quick``: a smoke test (few steps, 1,000 samples, NFE 10 and 20). ``--profile mlp|unet``:
cProfile of measureflow's loop only, printed, nothing written.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import math
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
GROUPS = ("mlp", "unet", "samplers")
TOY = "8gaussians"
N_TOY_TRAIN = 100_000
LEARNING_RATE = 2e-3
EMA_DECAY = 0.999
GRAD_CLIP = 1.0
WARMUP = 100
BANDWIDTH = 0.3
N_FLOOR = 4
N_TRAIN_TIMESTEPS = 1000  # DDPM's N
NFES = (10, 20, 50, 100, 200)
DOPRI_TOLERANCES = (1e-3, 1e-4)
TRAIN_BATCH = {"mlp": 512, "unet": 128}
TRAIN_LABEL = {"mlp": f"2-D MLP 4 x 256, {TOY} (standardized), batch 512",
               "unet": "digits U-Net (UNet8), 1,437 training images, batch 128"}


# ------------------------------------------------------------------------------------- training

def _training_data(group: str):
    """(data (n, ...) float32, network config) of a training case."""
    import torch

    from measureflow.data.dataset import Standardizer
    from measureflow.data.images import digits
    from measureflow.data.toys import toy_2d
    from measureflow.generative.diffusion.training import default_net_config

    if group == "mlp":
        raw = toy_2d(TOY, N_TOY_TRAIN, torch.Generator().manual_seed(0))
        data = Standardizer.fit(raw).forward(raw)
    else:
        data = digits("train")[0]
    return data.contiguous(), default_net_config(tuple(data.shape[1:]))


def _fresh_net(config: dict):
    import torch

    from measureflow.generative.diffusion.training import build_score_net

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return build_score_net(config)


def _cosine_with_warmup(n_steps: int, warmup: int):
    """The factor of the learning rate a user would hand to LambdaLR: linear warm-up, then cosine."""
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * min((step - warmup) / max(1, n_steps - warmup), 1.0)))

    return factor


def _run_ours(data, config: dict, batch: int, n_steps: int, horizon: int) -> tuple[float, float]:
    """Seconds of one ``train`` call of ``n_steps`` steps and its mean loss."""
    import torch

    from measureflow.generative.diffusion.sde import VPSDE
    from measureflow.generative.diffusion.training import DiffusionTask
    from measureflow.generative.train import train

    task = DiffusionTask(_fresh_net(config), VPSDE(), n_steps=horizon, learning_rate=LEARNING_RATE,
                         ema_decay=EMA_DECAY, grad_clip=GRAD_CLIP, warmup=WARMUP)
    generator = torch.Generator().manual_seed(1)
    start = time.perf_counter()
    history = train(task, data, n_steps=n_steps, batch_size=batch, generator=generator,
                    out_dir=None, progress=False, config={}, kind="diffusion")
    seconds = time.perf_counter() - start
    return seconds, float(sum(float(v) for v in history.losses["loss"]) / len(history.losses["loss"]))



def _run_plain(data, config: dict, batch: int, n_steps: int, horizon: int) -> tuple[float, float]:
    """Seconds of ``n_steps`` steps of the hand-written loop and its mean loss."""
    import torch

    net = _fresh_net(config)
    ema = copy.deepcopy(net).requires_grad_(False)
    optimizer = torch.optim.Adam(net.parameters(), lr=LEARNING_RATE)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, _cosine_with_warmup(horizon, min(WARMUP, max(1, horizon // 10))))
    generator = torch.Generator().manual_seed(1)
    beta_min, beta_max, t_min = 0.1, 20.0, 1e-3
    n = data.shape[0]
    view = (batch,) + (1,) * (data.dim() - 1)
    losses = []
    start = time.perf_counter()
    for _ in range(n_steps):
        x0 = data[torch.randint(0, n, (batch,), generator=generator)]
        t = t_min + (1 - t_min) * torch.rand(batch, generator=generator)
        integral = beta_min * t + 0.5 * (beta_max - beta_min) * t * t
        alpha, sigma = torch.exp(-0.5 * integral), torch.sqrt(-torch.expm1(-integral))
        z = torch.randn(x0.shape, generator=generator)
        x_t = alpha.view(view) * x0 + sigma.view(view) * z
        loss = (net(x_t, t) - z).square().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), GRAD_CLIP)
        optimizer.step()
        scheduler.step()
        with torch.no_grad():
            for shadow, weight in zip(ema.parameters(), net.parameters(), strict=True):
                shadow.lerp_(weight, 1 - EMA_DECAY)
        losses.append(loss.detach())
    seconds = time.perf_counter() - start
    return seconds, float(torch.stack(losses).mean())


def train_child(group: str, args) -> dict:
    data, config = _training_data(group)
    batch, steps = TRAIN_BATCH[group], args.train_steps[group]
    horizon = 10 * steps  # the schedule's length: warm-up ends inside the timed steps, no decay to 0
    runners = {"ours": _run_ours, "plain": _run_plain}
    for runner in runners.values():  # warm-up: allocator, first-call dispatch, lazy imports
        runner(data, config, batch, max(5, steps // 10), horizon)
    rates: dict[str, list[float]] = {"ours": [], "plain": []}
    last_loss: dict[str, float] = {}
    for repetition in range(args.repeats):
        order = ("ours", "plain") if repetition % 4 in (0, 3) else ("plain", "ours")
        for name in order:
            seconds, loss = runners[name](data, config, batch, steps, horizon)
            rates[name].append(steps / seconds)
            last_loss[name] = loss
    n_parameters = sum(p.numel() for p in _fresh_net(config).parameters())
    return {"status": "ok", "steps": steps, "rates": rates, "loss": last_loss, "parameters": n_parameters,
            "net": config}


def profile_ours(group: str, args) -> None:
    import cProfile
    import pstats

    data, config = _training_data(group)
    batch, steps = TRAIN_BATCH[group], args.train_steps[group]
    _run_ours(data, config, batch, max(5, steps // 10), 10 * steps)
    profiler = cProfile.Profile()
    profiler.enable()
    _run_ours(data, config, batch, steps, 10 * steps)
    profiler.disable()
    stats = pstats.Stats(profiler).strip_dirs()
    stats.sort_stats("tottime").print_stats(25)
    stats.sort_stats("cumulative").print_stats(40)


# ------------------------------------------------------------------------------------- sampling

def _diffusers_loop(scheduler_class, options: dict):
    """``run(net, x_T, nfe, generator) -> (x_0, nfe)`` for one diffusers scheduler."""
    import torch

    scheduler = scheduler_class(num_train_timesteps=N_TRAIN_TIMESTEPS, beta_start=1e-4, beta_end=0.02,
                                beta_schedule="linear", prediction_type="epsilon", clip_sample=False,
                                **options)

    @torch.no_grad()
    def run(net, x_T, nfe: int, generator):  # noqa: N803
        scheduler.set_timesteps(nfe)
        x = x_T.clone()
        for k in scheduler.timesteps:
            t = torch.full((x.shape[0],), (int(k) + 1) / N_TRAIN_TIMESTEPS, dtype=x.dtype)
            x = scheduler.step(net(x, t), k, x, generator=generator).prev_sample
        return x, len(scheduler.timesteps)

    return run, scheduler


def _mapping_gap(scheduler, sde) -> float:
    """max_k |alphas_cumprod[k] - alpha((k + 1) / N)^2| (float64)."""
    import torch

    k = torch.arange(N_TRAIN_TIMESTEPS, dtype=torch.float64)
    alpha, _ = sde.marginal_coefficients((k + 1) / N_TRAIN_TIMESTEPS)
    return float((scheduler.alphas_cumprod.double() - alpha.square()).abs().max())


def sampler_cases(score, net, sde):
    """name -> (kind, run(x_T, nfe, generator) -> (samples, nfe spent)); kind "fixed" or "adaptive"."""
    from diffusers import DDIMScheduler, DDPMScheduler

    from measureflow.generative.diffusion.sampling import (
        predictor_corrector,
        probability_flow,
        reverse_sde,
    )

    def ours(function):
        def run(x_T, nfe, generator):  # noqa: N803
            result = function(x_T, nfe, generator)
            return result.x, result.n_evaluations
        return run

    ddpm, ddpm_scheduler = _diffusers_loop(DDPMScheduler, {})
    ddim, _ = _diffusers_loop(DDIMScheduler, {})
    ddim_trailing, _ = _diffusers_loop(DDIMScheduler, {"timestep_spacing": "trailing"})
    cases = {
        "measureflow reverse SDE (Euler-Maruyama)": ("fixed", ours(
            lambda x, nfe, g: reverse_sde(score, sde, x, nfe, generator=g))),
        "measureflow PF ODE Heun": ("fixed", ours(
            lambda x, nfe, g: probability_flow(score, sde, x, nfe // 2))),
        "measureflow PF ODE Euler": ("fixed", ours(
            lambda x, nfe, g: probability_flow(score, sde, x, nfe, method="euler"))),
        "measureflow predictor-corrector (1 corrector)": ("fixed", ours(
            lambda x, nfe, g: predictor_corrector(score, sde, x, nfe // 2, n_corrector=1, generator=g))),
        "diffusers DDPM": ("fixed", lambda x, nfe, g: ddpm(net, x, nfe, g)),
        "diffusers DDIM (leading)": ("fixed", lambda x, nfe, g: ddim(net, x, nfe, g)),
        "diffusers DDIM (trailing)": ("fixed", lambda x, nfe, g: ddim_trailing(net, x, nfe, g)),
    }
    for tolerance in DOPRI_TOLERANCES:
        cases[f"measureflow PF ODE dopri5 (rtol = atol = {tolerance:g})"] = ("adaptive", ours(
            lambda x, nfe, g, tol=tolerance: probability_flow(score, sde, x, method="dopri5", rtol=tol,
                                                              atol=tol)))
    return cases, ddpm_scheduler


def _sweep(cases: dict, sde, n: int, nfes, repeats: int, distance) -> list[dict]:
    """Every case at every NFE (adaptive ones once): quality of the first repetition, median time."""
    import torch

    # NFE outer, sampler inner: the cases compared at one NFE run back to back (less drift between them).
    keys = [(name, nfe) for nfe in nfes for name, (kind, _) in cases.items() if kind == "fixed"]
    keys += [(name, 0) for name, (kind, _) in cases.items() if kind == "adaptive"]
    seconds: dict = {key: [] for key in keys}
    spent: dict = {}
    ratio: dict = {}
    warm = sde.prior_sample((16, 2), torch.Generator().manual_seed(0))
    for _, run in cases.values():  # first-call dispatch and lazy imports, on a few points
        run(warm, 10, torch.Generator().manual_seed(0))
    for repetition in range(repeats):
        x_T = sde.prior_sample((n, 2), torch.Generator().manual_seed(1000 + repetition))
        for name, nfe in keys if repetition % 2 == 0 else keys[::-1]:
            noise = torch.Generator().manual_seed(2000 + repetition)
            start = time.perf_counter()
            samples, used = cases[name][1](x_T, nfe, noise)
            seconds[(name, nfe)].append(time.perf_counter() - start)
            if repetition == 0:
                spent[(name, nfe)] = used
                ratio[(name, nfe)] = distance(samples)
    return [{"sampler": name, "nfe_asked": nfe, "nfe": spent[(name, nfe)], "mmd_ratio": ratio[(name, nfe)],
             "samples_per_s": n / statistics.median(seconds[(name, nfe)])} for name, nfe in keys]


def _exact_score(standardizer, sde):
    """The exact score of the diffused standardized mixture and its noise prediction -sigma s."""
    import torch

    from measureflow.data.toys import toy_mixture
    from measureflow.generative.diffusion.score import GaussianMixtureScore

    spec = toy_mixture(TOY)
    mean, std = standardizer.mean.double(), standardizer.std.double()
    score = GaussianMixtureScore((spec.means - mean) / std, spec.covs / (std[:, None] * std[None, :]),
                                 spec.weights, sde)

    def net(x, t):
        return -sde.marginal_coefficients(t)[1][:, None] * score(x, t)

    return score, torch.no_grad()(net)


def samplers_child(args) -> dict:
    import torch

    from measureflow.data.dataset import Standardizer
    from measureflow.data.toys import toy_2d
    from measureflow.generative.diffusion.sde import VPSDE
    from measureflow.generative.diffusion.training import train_diffusion
    from measureflow.metrics import mmd2

    generator = torch.Generator().manual_seed(args.seed)
    raw = toy_2d(TOY, N_TOY_TRAIN, generator)
    standardizer = Standardizer.fit(raw)
    sde = VPSDE()
    start = time.perf_counter()
    score, history = train_diffusion(standardizer.forward(raw), n_steps=args.model_steps, generator=generator,
                                     sde=sde, progress=False)
    train_seconds = time.perf_counter() - start
    n = args.n_samples

    def fresh():
        return standardizer.forward(toy_2d(TOY, n, generator))

    floors = [float(mmd2(fresh(), fresh(), bandwidth=BANDWIDTH, unbiased=False)) for _ in range(N_FLOOR)]
    floor = statistics.fmean(floors)
    reference = fresh()

    def distance(x) -> float:
        return float(mmd2(x.float(), reference, bandwidth=BANDWIDTH, unbiased=False)) / floor

    cases, ddpm_scheduler = sampler_cases(score, score.net, sde)
    learned = _sweep(cases, sde, n, args.nfes, args.sample_repeats, distance)
    exact_cases, _ = sampler_cases(*_exact_score(standardizer, sde), sde)
    exact = _sweep(exact_cases, sde, n, args.nfes, 1, distance)
    return {"status": "ok", "rows": learned, "exact_rows": exact, "floor": floor, "floors": floors,
            "train_seconds": train_seconds, "final_loss": float(history.losses["loss"][-1]),
            "mapping_gap": _mapping_gap(ddpm_scheduler, sde), "n": n, "model_steps": args.model_steps}


# ------------------------------------------------------------------------------- running cases

def child(group: str, args) -> dict:
    import torch
    from _results import cap_memory, set_threads

    cap_memory(args.memory_gb)
    set_threads(args.threads)
    result = samplers_child(args) if group == "samplers" else train_child(group, args)
    result["threads"] = torch.get_num_threads()
    return result


def run_case(group: str, args) -> dict:
    from _results import run_child

    command = [sys.executable, __file__, "--child", group, "--repeats", str(args.repeats),
               "--sample-repeats", str(args.sample_repeats),
               "--memory-gb", str(args.memory_gb), "--seed", str(args.seed)]
    if args.quick:
        command.append("--quick")
    if args.threads is not None:
        command += ["--threads", str(args.threads)]
    return run_child(command, args.timeout)


# ---------------------------------------------------------------------------------------- report

def render_training(results: dict[str, dict], args) -> list[str]:
    lines = [
        "| case | parameters | steps per repetition | measureflow `train` steps/s (range) | plain loop "
        "steps/s (range) | measureflow / plain (medians) | mean loss (ours / plain) |",
        "|---|---|---|---|---|---|---|",
    ]
    for group, result in results.items():
        if result["status"] != "ok":
            failure = f"{result['status']}: {result.get('error', '')}"
            lines.append(f"| {TRAIN_LABEL[group]} | {failure} | | | | | |")
            continue
        ours, plain = (statistics.median(result["rates"][name]) for name in ("ours", "plain"))
        spans = {name: f"{min(result['rates'][name]):.1f}-{max(result['rates'][name]):.1f}"
                 for name in ("ours", "plain")}
        lines.append(
            f"| {TRAIN_LABEL[group]} | {result['parameters']:,} | {result['steps']} | {ours:.1f} "
            f"({spans['ours']}) | {plain:.1f} ({spans['plain']}) | {ours / plain:.3f} | "
            f"{result['loss']['ours']:.5f} / {result['loss']['plain']:.5f} |")
    return lines


def _grid(rows: list[dict], cell) -> tuple[list[str], dict, list[int], list[str]]:
    """A sampler x NFE markdown table of ``cell(row, nfe)`` for the fixed-step rows."""
    fixed = [row for row in rows if row["nfe_asked"] > 0]
    nfes = sorted({row["nfe_asked"] for row in fixed})
    names = list(dict.fromkeys(row["sampler"] for row in fixed))
    table = {(row["sampler"], row["nfe_asked"]): row for row in fixed}
    lines = ["| sampler | " + " | ".join(f"NFE {nfe}" for nfe in nfes) + " |", "|---|" + "---|" * len(nfes)]
    lines += [f"| {name} | " + " | ".join(cell(table[(name, nfe)], nfe) for nfe in nfes) + " |"
              for name in names]
    return lines, table, nfes, names


def _quality(row: dict, nfe: int) -> str:
    return f"{row['mmd_ratio']:.2f}" + ("" if row["nfe"] == nfe else f" ({row['nfe']})")


def _verdicts(rows: list[dict]) -> str:
    _, table, nfes, names = _grid(rows, _quality)
    found = []
    for nfe in nfes:
        ours = min((table[(name, nfe)] for name in names if name.startswith("measureflow")),
                   key=lambda row: row["mmd_ratio"])
        ddim = min((table[(name, nfe)] for name in names if "DDIM" in name), key=lambda row: row["mmd_ratio"])
        sign = "<=" if ours["mmd_ratio"] <= ddim["mmd_ratio"] else ">"
        found.append(f"NFE {nfe}: {ours['sampler'].removeprefix('measureflow ')} {ours['mmd_ratio']:.2f} "
                     f"{sign} {ddim['mmd_ratio']:.2f}")
    return "; ".join(found)


def render_samplers(result: dict) -> list[str]:
    if result["status"] != "ok":
        return [f"Sampler comparison {result['status']}: {result.get('error', '')}"]
    learned, exact = result["rows"], result["exact_rows"]
    quality, _, _, _ = _grid(learned, _quality)
    speed, _, _, _ = _grid(learned, lambda row, nfe: f"{row['samples_per_s']:,.0f}")
    exact_quality, _, _, _ = _grid(exact, _quality)
    exact_adaptive = {row["sampler"]: row for row in exact if row["nfe_asked"] == 0}
    lines = ["Learned model, MMD^2 / noise floor (1 = as close as fresh data; the NFE spent in parentheses "
             "where it differs):", "", *quality, "",
             f"Learned model, samples per second ({result['n']:,} per call, median):", "", *speed, "",
             "The same samplers with the exact score of the diffused mixture in place of the network "
             "(discretization error alone; diffusers gets eps = -sigma(t) s(x, t)), MMD^2 / noise floor:", "",
             *exact_quality, "",
             "Adaptive probability flow (dopri5): NFE and MMD^2 / floor with the learned model (samples/s) "
             "and with the exact score:", "",
             "| solver | NFE (learned) | MMD^2 / floor (learned) | samples/s | NFE (exact) "
             "| MMD^2 / floor (exact) |",
             "|---|---|---|---|---|---|"]
    for row in (row for row in learned if row["nfe_asked"] == 0):
        other = exact_adaptive[row["sampler"]]
        lines.append(f"| {row['sampler'].removeprefix('measureflow PF ODE ')} | {row['nfe']} | "
                     f"{row['mmd_ratio']:.2f} | {row['samples_per_s']:,.0f} | {other['nfe']} | "
                     f"{other['mmd_ratio']:.2f} |")
    lines += ["", "Best measureflow sampler vs the better DDIM at equal NFE (MMD^2 / floor), learned model: "
              + _verdicts(learned) + ". Exact score: " + _verdicts(exact) + "."]
    return lines


def render(results: dict[str, dict], args, wall: float, load: tuple[str, str]) -> str:
    import diffusers
    from _results import machine_info

    training = {group: results[group] for group in ("mlp", "unet") if group in results}
    threads = next((r["threads"] for r in results.values() if "threads" in r), "?")
    lines = [
        "## Diffusion models",
        "",
        f"Written by `benchmarks/bench_diffusion.py{' --quick' if args.quick else ''}` on "
        f"{datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}. Each group runs in a fresh process; "
        "float32, CPU.",
    ]
    if training:
        lines += [
            "",
            "Training steps per second: measureflow's shared loop (`generative.train.train` driving "
            "`DiffusionTask`, progress off, no checkpoints) against a hand-written PyTorch loop with the "
            "same network and initial weights, Adam 2e-3, warm-up + cosine `LambdaLR`, gradient clipping "
            "at 1, per-parameter EMA `lerp_` (0.999) and the noise-prediction loss written inline "
            "(batches by `torch.randint`). Median over "
            f"{args.repeats} alternated repetitions (ABBA order) after a warm-up each. Goal: measureflow / "
            "plain >= 0.95.",
            "",
            *render_training(training, args),
        ]
    if "samplers" in results:
        result = results["samplers"]
        setup = ""
        if result["status"] == "ok":
            setup = (f"The model: `train_diffusion` defaults (VP SDE, beta in [0.1, 20], 4 x 256 MLP, batch "
                     f"512, EMA 0.999), {result['model_steps']:,} steps on 100,000 standardized 8-Gaussian "
                     f"draws ({result['train_seconds']:.0f} s, final loss {result['final_loss']:.3f}). "
                     f"Noise floor (biased MMD^2, bandwidth 0.3, {result['n']:,} vs {result['n']:,}, mean "
                     f"of {N_FLOOR}) = {result['floor']:.2e} (replicates "
                     f"{min(result['floors']) / result['floor']:.2f}-"
                     f"{max(result['floors']) / result['floor']:.2f} x their mean, the scale of the noise "
                     "in a ratio). diffusers' timestep k is fed as t = (k + 1) / "
                     f"1000; max_k |alphas_cumprod[k] - alpha(t_k)^2| = {result['mapping_gap']:.1e}. ")
        lines += [
            "",
            "Sampling at equal network evaluations (NFE), one network for all: measureflow's reverse SDE "
            "(NFE = steps), probability flow Heun (2 per step) and Euler (1), predictor-corrector with one "
            "Langevin corrector (2 per step); diffusers' DDPM and DDIM (eta 0) schedulers with "
            "`set_timesteps(NFE)`, epsilon prediction, `clip_sample=False`. " + setup
            + "Same prior draw for every sampler; quality from the first repetition; speed "
            + ("from one timed call per case, the samplers of one NFE back to back."
               if args.sample_repeats == 1 else
               f"the median of {args.sample_repeats} calls (order reversed on alternate repetitions)."),
            "",
            *render_samplers(result),
        ]
    machine = machine_info({"diffusers": diffusers.__version__, "torch threads": str(threads)})
    lines += ["", "Machine: " + ", ".join(f"{k} {v}" for k, v in machine.items())
              + f"; load average (1 min) at start / end {load[0]} / {load[1]}; "
              f"whole benchmark {wall:.0f} s.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: few steps, 1,000 samples, NFE 10 and 20")
    parser.add_argument("--repeats", type=int, default=4, help="alternated repetitions of each training loop")
    parser.add_argument("--sample-repeats", type=int, default=2,
                        help="timed calls of every sampler case (their median counts)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--memory-gb", type=float, default=16.0)
    parser.add_argument("--timeout", type=float, default=1200.0, help="seconds per group (a backstop)")
    parser.add_argument("--only", default=None, help=f"comma-separated groups ({','.join(GROUPS)})")
    parser.add_argument("--profile", choices=["mlp", "unet"], default=None,
                        help="print a cProfile of measureflow's training loop and exit")
    parser.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for name in ("repeats", "sample_repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    args.train_steps = {"mlp": 20, "unet": 5} if args.quick else {"mlp": 150, "unet": 30}
    args.model_steps = 200 if args.quick else 6000
    args.n_samples = 1000 if args.quick else 5000
    args.nfes = (10, 20) if args.quick else NFES
    if args.child:
        print(json.dumps(child(args.child, args)))
        return 0
    if args.profile:
        from _results import set_threads

        set_threads(args.threads)
        profile_ours(args.profile, args)
        return 0
    from _results import run_groups, write_section

    groups = GROUPS if args.only is None else tuple(args.only.split(","))
    unknown = set(groups) - set(GROUPS)
    if unknown:
        parser.error(f"--only: unknown groups {sorted(unknown)}; choose from {', '.join(GROUPS)}")
    results, wall, load = run_groups([group for group in GROUPS if group in groups],
                                     lambda group: run_case(group, args))
    text = render(results, args, wall, load)
    write_section(args.out, "bench_diffusion", text)
    print(text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    sys.exit(main())
