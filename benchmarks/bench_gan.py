"""GAN training: generator updates per second of measureflow's ``train_gan`` next to a plain PyTorch
loop of the same networks, for every loss, on 2-D data and on the 8 x 8 digits.

Cases: the ten losses (js, ns, kl, rkl, pearson, hellinger, wgan, wgan-gp, gmmn, mmd-gan) on two
data sets: ``2d``, 100,000 standardized draws of the ring of 8 Gaussians, and ``digits``, the
1,437 training images ``(n, 1, 8, 8)`` in [-1, 1] as ``measureflow.data.digits`` returns them.
Batch 256 and every other setting at ``train_gan``'s defaults (``objective.defaults``: optimizer,
learning rates, ``n_critic``, clipping at 0.01, gradient-penalty weight 10, EMA 0.999;
``default_net_config``: 3 x 128 MLPs and latent 8 in 2-D, 3 x 256 and latent 32 for digits;
MMD-GAN's critic spectrally normalized with 16 features).

measureflow: one ``train_gan(x, loss=..., n_steps=S, generator=..., progress=False)`` call (no
``out_dir``), timed as a whole (its set-up included: validation, networks, GMMN's median
bandwidth). Plain: the loop a user would write with the same ``nets.Generator`` and ``nets.Critic``
built from the same config and initial weights, the same optimizers, batch and ``n_critic``, the
losses written out in torch (BCE-with-logits form for js/ns, the simplified f*(g(v)) of each
f-GAN, E fake - E real and the interpolate gradient penalty for WGAN, the Gram-matrix unbiased
MMD^2 with a sum of Gaussian kernels for GMMN and MMD-GAN), batches by ``data[torch.randint(...)]``
(``n_critic`` slices of one draw), the critic frozen (``requires_grad_(False)``) during the
generator step, a per-parameter EMA ``lerp_``. Both draw rows, latents and interpolation weights
from one generator seeded alike, in the same order, and seed the networks as ``train_gan`` does
(one draw from that generator seeds the global RNG), so they compute the same numbers: before
timing, each case runs both for the first ``CHECK_STEPS`` steps and records the largest
difference of the per-step losses (generator loss, critic loss, gradient penalty), relative to
max(1, |loss|).

Each timed repetition runs S generator updates (S per case in ``STEPS``: about half a second per
repetition on one core); the two loops alternate (ABBA...) over ``--repeats`` repetitions after
one discarded warm-up each. Shown: the median updates/s of each (wall clock) and the median over
repetitions of the ratio measureflow / plain of the two adjacent runs, by wall clock and by
process CPU time (less disturbed by other processes on a shared machine). The mean generator
loss of each side's last repetition is shown as a sanity check.

Each data set runs in a fresh process (``--child``) under an address-space cap. Torch threads:
``--threads`` (default: torch's own choice, which follows ``OMP_NUM_THREADS``). Writes the
section ``bench_gan`` of benchmarks/RESULTS.md (temp file + rename) and prints it. ``--quick``:
a smoke test (a tenth of the steps, 2 repetitions). ``--only 2d,digits:mmd-gan`` picks data sets
or cases. ``--profile 2d:mmd-gan``: cProfile and torch.profiler tables of measureflow's loop for
that case, printed, nothing written.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
GROUPS = ("2d", "digits")
LOSSES = ("js", "ns", "kl", "rkl", "pearson", "hellinger", "wgan", "wgan-gp", "gmmn", "mmd-gan")
TOY = "8gaussians"
N_TOY_TRAIN = 100_000
BATCH = 256
EMA_DECAY = 0.999
CLIP_VALUE = 0.01
GP_WEIGHT = 10.0
CHECK_STEPS = 5
# The median heuristic of GMMN's kernel (as train_gan: at most 2,000 points drawn with a generator
# seeded 0, median pairwise distance times these factors) and MMD-GAN's factors of the batch's
# root-mean-square feature distance.
MEDIAN_POINTS = 2000
GMMN_FACTORS = (1 / 16, 1 / 8, 1 / 4, 1 / 2, 1.0, 2.0)
FEATURE_FACTORS = (0.25, 0.5, 1.0, 2.0, 4.0)
# Generator updates per timed repetition: about half a second each on one core of the reference
# machine (an f-GAN update costs ~5 ms in 2-D and ~14 ms on digits, mmd-gan's ~70 and ~105 ms).
STEPS = {
    "2d": {**dict.fromkeys(LOSSES[:6], 100), "wgan": 36, "wgan-gp": 18, "gmmn": 40, "mmd-gan": 7},
    "digits": {**dict.fromkeys(LOSSES[:6], 36), "wgan": 12, "wgan-gp": 6, "gmmn": 30, "mmd-gan": 5},
}
GROUP_LABEL = {"2d": f"{TOY} (standardized, {N_TOY_TRAIN:,} points)",
               "digits": "digits (1,437 training images, (n, 1, 8, 8))"}


def _data(group: str):
    """The training data of a group: (n, 2) standardized toy draws or (n, 1, 8, 8) digits, float32."""
    import torch

    from measureflow.data.dataset import Standardizer
    from measureflow.data.images import digits
    from measureflow.data.toys import toy_2d

    if group == "2d":
        raw = toy_2d(TOY, N_TOY_TRAIN, torch.Generator().manual_seed(0))
        return Standardizer.fit(raw).forward(raw).contiguous()
    return digits("train")[0].contiguous()


# ------------------------------------------------------------------------------------ the loops

def _run_ours(data, loss: str, n_steps: int, seed: int, log_every: int = 50) -> dict:
    """One ``train_gan`` call; its logged losses (window means) and the windows' lengths."""
    import torch

    from measureflow.generative.gan.training import train_gan

    generator = torch.Generator().manual_seed(seed)
    _, history = train_gan(data, loss=loss, n_steps=n_steps, generator=generator, batch_size=BATCH,
                           progress=False, log_every=log_every)
    ends = history.steps
    lengths = [end - begin for begin, end in zip([0, *ends[:-1]], ends, strict=True)]
    return {"losses": history.losses, "lengths": lengths}


def _mmd2(x, y, bandwidths):
    """Unbiased MMD^2 of the rows of x (n, ...) and y (m, ...), k = sum_h exp(-|a - b|^2 / (2 h^2)),
    through one Gram matrix of the pooled sample."""
    import torch

    x, y = x.reshape(x.shape[0], -1), y.reshape(y.shape[0], -1)
    n, m = x.shape[0], y.shape[0]
    z = torch.cat([x, y])
    gram = z @ z.T
    norms = gram.diagonal()
    d2 = (norms[:, None] + norms[None, :] - 2 * gram).clamp_min(0)
    # Exponents clamped at -80 as the library does (subnormal results slow exp down tenfold).
    kernel = sum(torch.exp((d2 * (-0.5 / (h * h))).clamp_min(-80.0)) for h in bandwidths)
    k_xx, k_yy, k_xy = kernel[:n, :n], kernel[n:, n:], kernel[:n, n:]
    return ((k_xx.sum() - k_xx.trace()) / (n * (n - 1)) + (k_yy.sum() - k_yy.trace()) / (m * (m - 1))
            - 2 * k_xy.mean())


def _critic_objective(loss: str, real, fake):
    """The critic's loss to minimize from raw outputs, each f-GAN's -(E_P g(v) - E_Q f*(g(v)))
    written out in closed form."""
    import torch
    import torch.nn.functional as F

    if loss in ("js", "ns"):  # binary cross-entropy with logits: -E log D(x) - E log(1 - D(G z))
        return F.softplus(-real).mean() + F.softplus(fake).mean()
    if loss == "kl":  # g(v) = v, f*(t) = exp(t - 1)
        return torch.exp(fake - 1).mean() - real.mean()
    if loss == "rkl":  # g(v) = -exp(-v), f*(g(v)) = v - 1
        return torch.exp(-real).mean() + fake.mean() - 1
    if loss == "pearson":  # g(v) = v, f*(t) = t^2 / 4 + t
        return (0.25 * fake.square() + fake).mean() - real.mean()
    if loss == "hellinger":  # g(v) = 1 - exp(-v), f*(g(v)) = exp(v) - 1
        return torch.expm1(-real).mean() + torch.expm1(fake).mean()
    return fake.mean() - real.mean()  # wgan, wgan-gp


def _generator_objective(loss: str, fake):
    """The generator's loss: -E f*(g(v)) (js: E log(1 - D)), -E log D for ns, -E v for WGAN."""
    import torch
    import torch.nn.functional as F

    if loss == "js":
        return -F.softplus(fake).mean()
    if loss == "ns":
        return F.softplus(-fake).mean()
    if loss == "kl":
        return -torch.exp(fake - 1).mean()
    if loss == "rkl":
        return 1 - fake.mean()
    if loss == "pearson":
        return -(0.25 * fake.square() + fake).mean()
    if loss == "hellinger":
        return -torch.expm1(fake).mean()
    return -fake.mean()  # wgan, wgan-gp


def _run_plain(data, loss: str, n_steps: int, seed: int) -> dict:
    """``n_steps`` generator updates of the hand-written loop; its per-step losses."""
    import torch

    from measureflow.generative.gan.nets import Critic, Generator
    from measureflow.generative.gan.objectives import make_objective
    from measureflow.generative.gan.training import default_net_config

    settings, shape = vars(make_objective(loss).defaults), tuple(data.shape[1:])
    net = default_net_config(shape)
    n_critic = settings["n_critic"]
    generator = torch.Generator().manual_seed(seed)
    # train_gan's seeding: one draw from the run's generator seeds the networks' initialization.
    init_seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(init_seed)
        model = Generator(net["latent_dim"], shape, hidden=net["hidden"], depth=net["depth"])
        critic = None
        if loss == "mmd-gan":
            critic = Critic(shape, net["critic_hidden"], net["critic_depth"], out_dim=net["features"],
                            spectral_norm=True)
        elif loss != "gmmn":
            critic = Critic(shape, net["critic_hidden"], net["critic_depth"])

    def optimizer(parameters, learning_rate):
        if settings["optimizer"] == "rmsprop":
            return torch.optim.RMSprop(parameters, lr=learning_rate)
        return torch.optim.Adam(parameters, lr=learning_rate, betas=settings["betas"])

    model_optimizer = optimizer(model.parameters(), settings["generator_lr"])
    critic_optimizer = None if critic is None else optimizer(critic.parameters(), settings["critic_lr"])
    ema = copy.deepcopy(model).requires_grad_(False)
    n, latent = data.shape[0], net["latent_dim"]
    flat = data.reshape(n, -1)
    if loss == "gmmn":
        pool = flat
        if n > MEDIAN_POINTS:
            pool = flat[torch.randperm(n, generator=torch.Generator().manual_seed(0))[:MEDIAN_POINTS]]
        median = float(torch.pdist(pool.double()).median())
        bandwidths = [median * factor for factor in GMMN_FACTORS]

    def features(x):
        return torch.cat([x.reshape(x.shape[0], -1), critic(x)], dim=1)

    def feature_bandwidths(a, b):
        with torch.no_grad():
            scale = float((2 * torch.cat([a, b]).var(dim=0).sum()).sqrt().clamp_min(1e-6))
        return [scale * factor for factor in FEATURE_FACTORS]

    u_shape = (BATCH,) + (1,) * (data.dim() - 1)
    generator_losses, critic_losses, penalties = [], [], []
    for _ in range(n_steps):
        batch = data[torch.randint(n, (BATCH * max(n_critic, 1),), generator=generator)]
        if critic is not None:
            if loss == "mmd-gan":   # spectral norm: power iterations in training mode only
                critic.train()
            critic.requires_grad_(True)
            for real in batch.split(BATCH):
                with torch.no_grad():
                    fake = model(torch.randn(BATCH, latent, generator=generator))
                if loss == "mmd-gan":
                    # One pass over both halves: one power iteration of the spectral norm per step.
                    pooled = features(torch.cat([real, fake]))
                    real_features, fake_features = pooled[:BATCH], pooled[BATCH:]
                    objective = -_mmd2(real_features, fake_features,
                                       feature_bandwidths(real_features, fake_features))
                    total = objective
                else:
                    out = critic(torch.cat([real, fake]))   # one pass, as train_gan does
                    objective = _critic_objective(loss, out[:BATCH], out[BATCH:])
                    total = objective
                    if loss == "wgan-gp":
                        u = torch.rand(u_shape, generator=generator)
                        x_hat = (u * real + (1 - u) * fake).requires_grad_(True)
                        (grad,) = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)
                        penalty = (grad.reshape(BATCH, -1).norm(dim=1) - 1).square().mean()
                        total = objective + GP_WEIGHT * penalty
                        penalties.append(penalty.detach())
                critic_optimizer.zero_grad(set_to_none=True)
                total.backward()
                critic_optimizer.step()
                if loss == "wgan":
                    with torch.no_grad():
                        for parameter in critic.parameters():
                            parameter.clamp_(-CLIP_VALUE, CLIP_VALUE)
                critic_losses.append(objective.detach())
            if loss == "mmd-gan":
                critic.eval()
            critic.requires_grad_(False)
        fake = model(torch.randn(BATCH, latent, generator=generator))
        if loss == "gmmn":
            generator_loss = _mmd2(batch[:BATCH], fake, bandwidths)
        elif loss == "mmd-gan":
            real_features, fake_features = features(batch[-BATCH:]), features(fake)
            generator_loss = _mmd2(real_features, fake_features,
                                   feature_bandwidths(real_features, fake_features))
        else:
            generator_loss = _generator_objective(loss, critic(fake))
        model_optimizer.zero_grad(set_to_none=True)
        generator_loss.backward()
        model_optimizer.step()
        with torch.no_grad():
            for shadow, weight in zip(ema.parameters(), model.parameters(), strict=True):
                shadow.lerp_(weight, 1 - EMA_DECAY)
        generator_losses.append(generator_loss.detach())
    losses = {"generator_loss": torch.stack(generator_losses)}
    if critic is not None:
        # train_gan logs per generator update the mean over its n_critic critic steps.
        losses["critic_loss"] = torch.stack(critic_losses).reshape(n_steps, n_critic).mean(dim=1)
    if penalties:
        losses["penalty"] = GP_WEIGHT * torch.stack(penalties).reshape(n_steps, n_critic).mean(dim=1)
    return {"per_step": losses}


def _mean_loss(record: dict) -> float:
    if "per_step" in record:
        return float(record["per_step"]["generator_loss"].mean())
    means, lengths = record["losses"]["generator_loss"], record["lengths"]
    return sum(mean * length for mean, length in zip(means, lengths, strict=True)) / sum(lengths)


def first_steps_gap(data, loss: str, seed: int) -> dict[str, float]:
    """Largest |ours - plain| / max(1, |plain|) of each per-step loss over the first CHECK_STEPS steps."""
    ours = _run_ours(data, loss, CHECK_STEPS, seed, log_every=1)
    plain = _run_plain(data, loss, CHECK_STEPS, seed)
    if set(plain["per_step"]) != set(ours["losses"]):
        raise RuntimeError(f"the loops log different losses: train_gan {sorted(ours['losses'])}, plain "
                           f"{sorted(plain['per_step'])}")
    gaps = {}
    for key, values in plain["per_step"].items():
        theirs = [float(value) for value in values]
        mine = ours["losses"][key]
        gaps[key] = max(abs(a - b) / max(1.0, abs(b)) for a, b in zip(mine, theirs, strict=True))
    return gaps


def loss_child(group: str, loss: str, data, args) -> dict:
    steps = max(2, args.steps[group][loss])
    gaps = first_steps_gap(data, loss, args.seed)
    runners = {"ours": _run_ours, "plain": _run_plain}
    for runner in runners.values():  # warm-up: allocator, first-call dispatch, lazy imports
        runner(data, loss, max(2, steps // 5), args.seed)
    rates: dict[str, list[float]] = {"ours": [], "plain": []}
    cpu_rates: dict[str, list[float]] = {"ours": [], "plain": []}
    last_loss: dict[str, float] = {}
    for repetition in range(args.repeats):
        order = ("ours", "plain") if repetition % 4 in (0, 3) else ("plain", "ours")
        for name in order:
            wall, cpu = time.perf_counter(), time.process_time()
            record = runners[name](data, loss, steps, args.seed)
            rates[name].append(steps / (time.perf_counter() - wall))
            cpu_rates[name].append(steps / (time.process_time() - cpu))
            last_loss[name] = _mean_loss(record)
    return {"status": "ok", "steps": steps, "rates": rates, "cpu_rates": cpu_rates, "loss": last_loss,
            "gaps": gaps}


def group_child(group: str, args) -> dict:
    from measureflow.generative.gan.objectives import LOSS_NAMES, make_objective

    if tuple(LOSS_NAMES) != LOSSES:
        raise RuntimeError(f"measureflow's losses {LOSS_NAMES} differ from this benchmark's {LOSSES}")
    data = _data(group)
    cases = {}
    for loss in args.losses[group]:
        start = time.perf_counter()
        try:
            cases[loss] = loss_child(group, loss, data, args)
        except (RuntimeError, ValueError) as error:
            cases[loss] = {"status": "failed", "error": str(error).splitlines()[0][:160]}
        cases[loss]["n_critic"] = make_objective(loss).defaults.n_critic
        cases[loss]["seconds"] = time.perf_counter() - start
        print(f"{group}:{loss} {cases[loss]['status']} in {cases[loss]['seconds']:.0f} s", file=sys.stderr,
              flush=True)
    return {"status": "ok", "cases": cases}


def profile_ours(case: str, args) -> None:
    import cProfile
    import pstats

    import torch

    group, loss = case.split(":")
    data = _data(group)
    steps = max(2, args.steps[group][loss])
    _run_ours(data, loss, max(2, steps // 5), args.seed)
    profiler = cProfile.Profile()
    profiler.enable()
    _run_ours(data, loss, steps, args.seed)
    profiler.disable()
    stats = pstats.Stats(profiler).strip_dirs()
    stats.sort_stats("tottime").print_stats(25)
    stats.sort_stats("cumulative").print_stats(40)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as torch_profile:
        _run_ours(data, loss, steps, args.seed)
    print(torch_profile.key_averages().table(sort_by="self_cpu_time_total", row_limit=30))


# ------------------------------------------------------------------------------- running cases

def child(group: str, args) -> dict:
    import torch
    from _results import cap_memory, set_threads

    cap_memory(args.memory_gb)
    set_threads(args.threads)
    result = group_child(group, args)
    result["threads"] = torch.get_num_threads()
    return result


def run_case(group: str, args) -> dict:
    from _results import run_child

    command = [sys.executable, __file__, "--child", group, "--repeats", str(args.repeats),
               "--memory-gb", str(args.memory_gb), "--seed", str(args.seed),
               "--only", ",".join(f"{group}:{loss}" for loss in args.losses[group])]
    if args.quick:
        command.append("--quick")
    if args.threads is not None:
        command += ["--threads", str(args.threads)]
    return run_child(command, args.timeout)


# ---------------------------------------------------------------------------------------- report

def _gap(gaps: dict[str, float]) -> str:
    return ", ".join(f"{key.removesuffix('_loss')} {value:.0e}" for key, value in gaps.items())


def _ratio(case: dict, key: str = "rates") -> float:
    """The median over repetitions of ours / plain, each repetition's two runs adjacent in time."""
    return statistics.median(a / b for a, b in zip(case[key]["ours"], case[key]["plain"], strict=True))


def render_group(group: str, result: dict) -> list[str]:
    lines = [
        f"{GROUP_LABEL[group]}:",
        "",
        "| loss | n_critic | updates per repetition | measureflow `train_gan` updates/s (range) | plain loop "
        "updates/s (range) | measureflow / plain (wall) | measureflow / plain (CPU time) "
        "| first-steps loss gap (max relative) | mean generator loss (ours / plain) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    if result["status"] != "ok":
        return lines + [f"| {result['status']}: {result.get('error', '')} | | | | | | | | |"]
    for loss, case in result["cases"].items():
        if case["status"] != "ok":
            lines.append(f"| {loss} | {case['n_critic']} | {case['status']}: {case.get('error', '')} "
                         "| | | | | | |")
            continue
        ours, plain = (statistics.median(case["rates"][name]) for name in ("ours", "plain"))
        spans = {name: f"{min(case['rates'][name]):.1f}-{max(case['rates'][name]):.1f}"
                 for name in ("ours", "plain")}
        lines.append(
            f"| {loss} | {case['n_critic']} | {case['steps']} | {ours:.1f} ({spans['ours']}) | {plain:.1f} "
            f"({spans['plain']}) | {_ratio(case):.3f} | {_ratio(case, 'cpu_rates'):.3f} | "
            f"{_gap(case['gaps'])} | {case['loss']['ours']:.5f} / {case['loss']['plain']:.5f} |")
    return lines


def _verdict(results: dict[str, dict]) -> str:
    cases = {f"{group}:{loss}": case for group, result in results.items() if result["status"] == "ok"
             for loss, case in result["cases"].items() if case["status"] == "ok"}
    if not cases:
        return "No case finished."
    found = []
    for key, label in (("rates", "wall clock"), ("cpu_rates", "CPU time")):
        ratios = {name: _ratio(case, key) for name, case in cases.items()}
        worst = min(ratios, key=ratios.get)
        below = [f"{name} {ratio:.3f}" for name, ratio in ratios.items() if ratio < 0.95]
        found.append(f"By {label}: lowest ratio {ratios[worst]:.3f} ({worst}); "
                     + (f"below the goal: {', '.join(below)}." if below else "every case meets the goal."))
    gap = max(max(case["gaps"].values()) for case in cases.values())
    found.append(f"Largest first-steps loss gap over all cases: {gap:.1e} "
                 + ("(below 1e-5: both loops compute the same numbers)." if gap < 1e-5 else
                    "(ABOVE 1e-5: the loops do not compute the same thing; the comparison is suspect)."))
    return " ".join(found)


def render(results: dict[str, dict], args, wall: float, load: tuple[str, str]) -> str:
    from _results import machine_info

    threads = next((r["threads"] for r in results.values() if "threads" in r), "?")
    lines = [
        "## Adversarial and kernel generative models (GAN)",
        "",
        f"Written by `benchmarks/bench_gan.py{' --quick' if args.quick else ''}` on "
        f"{datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}. Each data set runs in a fresh process; "
        "float32, CPU.",
        "",
        "Generator updates per second: measureflow's `train_gan` (one call per repetition, timed whole; "
        "progress off, no checkpoints; batch 256 and every other option at its defaults, "
        "each objective's `defaults`: optimizer, learning rates, n_critic, clipping, gradient-penalty "
        "weight 10, "
        "EMA 0.999) against a hand-written PyTorch loop with the same `nets.Generator` / `nets.Critic`, "
        "config and initial weights, the same optimizers, batch and n_critic, the losses written out in "
        "torch (BCE-with-logits for js/ns, closed-form f*(g(v)) for the f-GANs, the interpolate gradient "
        "penalty, Gram-matrix unbiased MMD^2), the critic frozen during the generator step, a "
        "per-parameter EMA `lerp_`, batches by `torch.randint`. Each update of a critic-based loss "
        f"includes its n_critic critic steps. {args.repeats} alternated repetitions (ABBA order) after a "
        "warm-up each; updates/s: median (range); ratio: the median over repetitions of measureflow / "
        "plain from the two adjacent runs of a repetition. Goal: measureflow / plain >= 0.95.",
        "",
        "Same computation: both loops draw rows, latents and interpolation weights from one generator "
        "seeded alike, in the same order, and initialize the networks from the same seed; before timing, "
        f"each case runs both for {CHECK_STEPS} updates and compares the per-step losses (generator, "
        "critic, gradient penalty x 10 for wgan-gp): the largest |ours - plain| / max(1, |plain|) is the gap "
        "column (float32 round-off of the differently written formulas, ~1e-7, means the same numbers).",
        "",
        "Rates are wall clock; the CPU-time ratio (process CPU seconds of the same runs) is shown beside "
        "it because it is less disturbed by other processes on a shared machine (not immune: a busy "
        "sibling core still slows a run).",
        "",
    ]
    for group in GROUPS:
        if group in results:
            lines += [*render_group(group, results[group]), ""]
    lines += [_verdict(results), ""]
    machine = machine_info({"torch threads": str(threads)})
    lines += ["Machine: " + ", ".join(f"{k} {v}" for k, v in machine.items())
              + f"; load average (1 min) at start / end {load[0]} / {load[1]}; "
              f"whole benchmark {wall:.0f} s.", ""]
    return "\n".join(lines)


def _selection(only: str | None, parser) -> dict[str, tuple[str, ...]]:
    """group -> losses picked by ``--only`` (data sets ``2d`` or cases ``2d:wgan``)."""
    if only is None:
        return {group: LOSSES for group in GROUPS}
    picked: dict[str, list[str]] = {}
    for item in only.split(","):
        group, _, loss = item.partition(":")
        if group not in GROUPS or (loss and loss not in LOSSES):
            parser.error(f"--only: unknown case {item!r}; use a data set ({', '.join(GROUPS)}) or "
                         f"data:loss with a loss in {', '.join(LOSSES)}")
        chosen = picked.setdefault(group, [])
        chosen += [name for name in ((loss,) if loss else LOSSES) if name not in chosen]
    return {group: tuple(loss for loss in LOSSES if loss in picked[group]) for group in GROUPS
            if group in picked}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: a tenth of the steps, 2 repetitions")
    parser.add_argument("--repeats", type=int, default=None,
                        help="alternated repetitions of each loop (default 5, 2 with --quick)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--memory-gb", type=float, default=16.0)
    parser.add_argument("--timeout", type=float, default=1200.0, help="seconds per data set (a backstop)")
    parser.add_argument("--only", default=None,
                        help=f"comma-separated data sets ({','.join(GROUPS)}) or cases data:loss")
    parser.add_argument("--profile", default=None, metavar="DATA:LOSS",
                        help="print cProfile and torch.profiler tables of measureflow's loop and exit")
    parser.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.repeats is None:
        args.repeats = 2 if args.quick else 5
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")
    args.losses = _selection(args.only, parser)
    args.steps = {group: {loss: max(2, steps // 10) if args.quick else steps for loss, steps in table.items()}
                  for group, table in STEPS.items()}
    if args.child:
        print(json.dumps(child(args.child, args)))
        return 0
    if args.profile:
        group, _, loss = args.profile.partition(":")
        if group not in GROUPS or loss not in LOSSES:
            parser.error(f"--profile: expected DATA:LOSS with DATA in {', '.join(GROUPS)} and LOSS in "
                         f"{', '.join(LOSSES)}, got {args.profile!r}")
        from _results import set_threads

        set_threads(args.threads)
        profile_ours(args.profile, args)
        return 0
    from _results import run_groups, write_section

    results, wall, load = run_groups([group for group in GROUPS if group in args.losses],
                                     lambda group: run_case(group, args))
    text = render(results, args, wall, load)
    write_section(args.out, "bench_gan", text)
    print(text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    sys.exit(main())
