"""Infinite-dimensional Langevin steps per second against a plain torch loop, and mean-field Langevin
steps per second with the cost of its free-energy (k-NN entropy) evaluation.

``il-1e4`` and ``il-1e6``: the semi-implicit scheme X <- S (X - eta grad L(X) + sqrt(2 eta / beta) xi),
S = diag(1 / (1 + eta lam / mu_k)), mu_k = (k + 1)^-2, on K = 10^4 and 10^6 modes, float32, one
torch thread. The loss is elementwise quadratic, L(x) = (c/2) |x|^2 with the analytic gradient c x
(``mf.targets.from_energy(..., grad_energy=...)``), so the gradient is one O(K) pass and the
sampler's own overhead is what the ratio measures. measureflow: ``mf.sample(target,
"infinite-langevin", n_chains=C, n_steps=S, thin=S, burn_in=0, init=X0, decay=2, lam, beta,
step_size, progress=False, diagnostics=False, record_energy=False)``, one call per repetition timed
whole (the driver's set-up, a copy of X0, a finiteness check of it and of the last state and the
one kept sample, is inside the time). Plain: ``X = X0.clone()``, then S times
``X = s * (X - eta * grad(X) + sqrt(2 eta / beta) * torch.randn(...))`` with the same gradient
function and s computed once. Before timing, both run ``CHECK_STEPS`` steps from the same
generator state; they draw the same noise, so the states agree to float32 round-off (reported as
max |X_ours - X_plain| / max |X_ours|). Peak memory: one more call of each (two steps), the
process's resident peak (VmHWM) above its value just before the call (``_results.reset_peak_rss``);
X0 is held by the benchmark and not counted. Then a warm-up call each and ``--repeats`` alternated
repetitions (ABBA); steps/s: median (range); ratio: the median over repetitions of ours / plain of
the two adjacent runs, by wall clock and by process CPU time. Goal: ours / plain >= 0.95.

The 10^6-mode case runs ``--chains-1e6`` chains (default 100, not 1,000): one state is then
C K x 4 bytes = 400 MB; 1,000 chains would make it 4 GB, and a step of either method holds five to
eight such arrays at once (X0, X, the noise, the gradient and its scaled copy, the new state;
measureflow adds the kept-sample buffer), 24-36 GB, more than the 23 GB of the reference machine.
The section reports the measured peak in state sizes, and the largest chain count that would fit.
Fewer than that were run because the machine is shared and a step of 100 chains already takes
seconds on one core; the steps are elementwise and memory-bound, so the ratio carries over.

``mfl``: mean-field Langevin dynamics of the neurons of a two-layer mean-field network, the flow of
F[rho] = R[rho] + (lambda_0 / 2) int |theta|^2 d rho - (1/beta) H[rho], built from public pieces:
``MeanFieldRisk(x, y) + Potential(lambda_0 |theta|^2 / 2, grad = lambda_0 theta) +
Entropy(beta, method="noise")`` (the entropy by noise: the integrator adds sqrt(2 h / beta) xi).
M = 100 to 100,000 neurons, n = 1,000 points x ~ N(0, I_10), y = tanh(x . u), float32, h = 0.1,
beta = 100, lambda_0 = 0.01. Steps per second of ``mf.flows.run(F, neurons, h, S, progress=False,
record_values=False)``, median (range) of ``--repeats`` calls after a warm-up. Then the cost of one
free-energy evaluation F.value(neurons), split into its terms: the risk, the penalty and the
entropy term (``Entropy.value``: the Kozachenko-Leonenko k-NN estimate, O(M^2 (d + 1)) in float64),
and the entropy's share of the run time if F were recorded every step, t_H / (t_step + t_F), or
every 100 steps, t_H / (100 t_step + t_F). The k-NN entropy at M = 10^5 is timed once (tens of
seconds), the others as the median of three.

Every group runs in a fresh process under an address-space cap (``--memory-gb``). ``--quick``: a
smoke test (small sizes). ``--only il-1e4,il-1e6,mfl`` picks groups. ``--out`` (default
benchmarks/RESULTS.md) receives the section ``bench_infinite_langevin`` (temp file + rename).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SECTION = "bench_infinite_langevin"
GROUPS = ("il-1e4", "il-1e6", "mfl")
CHECK_STEPS = 2
IL = {"step_size": 0.01, "beta": 10.0, "lam": 1.0, "decay": 2.0, "curvature": 1.0}
MFL = {"n": 1000, "dim": 10, "step_size": 0.1, "beta": 100.0, "weight_decay": 0.01}
SIZES = {  # (full, --quick)
    "il-1e4": ({"modes": 10_000, "chains": 1000, "steps": 5}, {"modes": 10_000, "chains": 100, "steps": 5}),
    "il-1e6": ({"modes": 1_000_000, "chains": 100, "steps": 3}, {"modes": 100_000, "chains": 50, "steps": 2}),
    "mfl": ({"widths": (100, 1000, 10_000, 100_000), "steps": (200, 40, 5, 2)},
            {"widths": (100, 1000), "steps": (50, 10)}),
}


# ------------------------------------------------------------------------- infinite-dim Langevin

def _il_problem(size: dict):
    """(target, gradient function, X0 (C, K), contraction s (K,)), float32."""
    import torch

    import measureflow as mf

    curvature = IL["curvature"]

    def energy(x):
        return 0.5 * curvature * x.square().sum(1)

    def gradient(x):
        return curvature * x

    target = mf.targets.from_energy(energy, size["modes"], grad_energy=gradient, name="quadratic")
    x0 = torch.randn(size["chains"], size["modes"], generator=torch.Generator().manual_seed(0))
    mu = torch.arange(1, size["modes"] + 1, dtype=torch.float32).pow(-IL["decay"])
    contraction = 1 / (1 + IL["step_size"] * IL["lam"] / mu)
    return target, gradient, x0, contraction


def _run_ours(target, x0, n_steps: int, generator):
    import measureflow as mf

    result = mf.sample(target, "infinite-langevin", n_chains=x0.shape[0], n_steps=n_steps, thin=n_steps,
                       burn_in=0, init=x0, step_size=IL["step_size"], beta=IL["beta"], lam=IL["lam"],
                       decay=IL["decay"], generator=generator, progress=False, diagnostics=False,
                       record_energy=False)
    return result.samples[-1], result.wall_time  # wall_time: the driver's loop, without mf.sample's set-up


def _run_plain(gradient, x0, contraction, n_steps: int, generator):
    import torch

    step_size, noise_scale = IL["step_size"], math.sqrt(2 * IL["step_size"] / IL["beta"])
    x = x0.clone()
    start = time.perf_counter()
    for _ in range(n_steps):
        x = contraction * (x - step_size * gradient(x)
                           + noise_scale * torch.randn(x.shape, generator=generator, dtype=x.dtype))
    return x, time.perf_counter() - start


def il_child(size: dict, repeats: int) -> dict:
    import torch
    target, gradient, x0, contraction = _il_problem(size)
    ours, _ = _run_ours(target, x0, CHECK_STEPS, torch.Generator().manual_seed(1))
    plain, _ = _run_plain(gradient, x0, contraction, CHECK_STEPS, torch.Generator().manual_seed(1))
    gap = float((ours - plain).abs().max() / ours.abs().max())
    del ours, plain
    generator = torch.Generator().manual_seed(2)
    runners = {"ours": lambda k: _run_ours(target, x0, k, generator),
               "plain": lambda k: _run_plain(gradient, x0, contraction, k, generator)}
    steps = size["steps"]  # (the agreement check above was both methods' warm-up)
    rates: dict[str, list[float]] = {"ours": [], "plain": []}
    cpu_rates: dict[str, list[float]] = {"ours": [], "plain": []}
    loop_rates: dict[str, list[float]] = {"ours": [], "plain": []}
    for repetition in range(repeats):
        for name in ("ours", "plain") if repetition % 4 in (0, 3) else ("plain", "ours"):
            wall, cpu = time.perf_counter(), time.process_time()
            _, loop = runners[name](steps)
            rates[name].append(steps / (time.perf_counter() - wall))
            cpu_rates[name].append(steps / (time.process_time() - cpu))
            loop_rates[name].append(steps / loop)
            print(f"{name}: {rates[name][-1]:.3g} steps/s", file=sys.stderr, flush=True)
    return {"status": "ok", "rates": rates, "cpu_rates": cpu_rates, "loop_rates": loop_rates, "gap": gap,
            "state_mib": x0.numel() * 4 / 2**20, "threads": torch.get_num_threads()}


def il_memory_child(size: dict, method: str) -> dict:
    """A two-step call of one method in this fresh process: its resident peak above that just before
    (X0 is made before and not counted)."""
    import torch
    from _results import peak_rss_kib, reset_peak_rss

    target, gradient, x0, contraction = _il_problem(size)
    generator = torch.Generator().manual_seed(2)
    before = reset_peak_rss()
    if method == "ours":
        _run_ours(target, x0, 2, generator)
    else:
        _run_plain(gradient, x0, contraction, 2, generator)
    return {"status": "ok", "peak_mib": max(peak_rss_kib() - before, 0) / 1024}


# ---------------------------------------------------------------------------- mean-field Langevin

def _mfl_problem(width: int):
    """(the free-energy Sum and its three terms, initial neurons (M, 1 + d)), float32."""
    import torch

    import measureflow as mf
    from measureflow.nets.mean_field import MeanFieldRisk

    generator = torch.Generator().manual_seed(0)
    x = torch.randn(MFL["n"], MFL["dim"], generator=generator)
    teacher = torch.randn(MFL["dim"], generator=generator)
    y = torch.tanh(x @ (teacher / teacher.norm()))
    decay = MFL["weight_decay"]
    risk = MeanFieldRisk(x, y, activation="tanh")
    penalty = mf.flows.Potential(lambda theta: 0.5 * decay * theta.square().sum(1),
                                 grad=lambda theta: decay * theta)
    entropy = mf.flows.Entropy(MFL["beta"], method="noise")
    neurons = torch.randn(width, 1 + MFL["dim"], generator=generator)
    return risk + penalty + entropy, (risk, penalty, entropy), neurons


def _median_time(function, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return times


def mfl_child(size: dict, repeats: int) -> dict:
    import torch

    import measureflow as mf

    rows = []
    for width, steps in zip(size["widths"], size["steps"], strict=True):
        functional, (risk, penalty, entropy), neurons = _mfl_problem(width)
        generator = torch.Generator().manual_seed(1)

        def flow(k: int, functional=functional, neurons=neurons, generator=generator):
            return mf.flows.run(functional, neurons, MFL["step_size"], k, generator=generator, progress=False,
                                record_values=False)

        flow(1)  # warm-up
        flow_times, finals = [], []
        for _ in range(repeats):
            start = time.perf_counter()
            finals.append(flow(steps).particles)
            flow_times.append(time.perf_counter() - start)
        state = finals[-1]  # the terms are timed on moved neurons
        del finals
        knn_repeats = 1 if width >= 50_000 else 3
        terms = {name: _median_time(lambda term=term, state=state: term.value(state),
                                    knn_repeats if name == "entropy" else 3)
                 for name, term in (("risk", risk), ("penalty", penalty), ("entropy", entropy))}
        rows.append({"width": width, "steps": steps, "step_seconds": [t / steps for t in flow_times],
                     "terms": terms})
        print(f"mfl M={width}: {steps / statistics.median(flow_times):.3g} steps/s, entropy "
              f"{statistics.median(terms['entropy']):.3g} s", file=sys.stderr, flush=True)
    return {"status": "ok", "rows": rows, "threads": torch.get_num_threads()}


# ---------------------------------------------------------------------------------------- report

def _median_range(values: list[float], digits: int = 3) -> str:
    return f"{statistics.median(values):.{digits}g} ({min(values):.{digits}g}-{max(values):.{digits}g})"


def render_il(results: dict[str, dict], args) -> list[str]:
    lines = [
        "### Infinite-dimensional Langevin (semi-implicit scheme), float32",
        "",
        f"mu_k = (k + 1)^-{IL['decay']:g}, lam = {IL['lam']:g}, eta = {IL['step_size']:g}, "
        f"beta = {IL['beta']:g}; L(x) = |x|^2 / 2 with the analytic gradient x (one O(K) pass). measureflow: "
        "`mf.sample(target, \"infinite-langevin\", n_chains=C, n_steps=S, thin=S, burn_in=0, init=X0, ...)` "
        "with progress, diagnostics and the energy trace off, timed whole (driver set-up included). "
        "Plain: `X = X0.clone()`, then S times "
        "`X = s * (X - eta * grad(X) + sqrt(2 eta / beta) * torch.randn(...))`. "
        f"{args.repeats} alternated repetitions (ABBA) after the agreement check (the warm-up); steps/s: "
        "median (range); ratio: "
        "median over repetitions of ours / plain of adjacent runs. Peak memory: a two-step call of each "
        "method in its own fresh process, resident peak above that just before the call (X0 made before, "
        f"not counted), also in units of one state C K x 4 bytes. State gap: after {CHECK_STEPS} steps from "
        "the same generator, max |X_ours - X_plain| / max |X_ours|. Loop only: steps / the time of the step "
        "loop (measureflow: `SampleResult.wall_time`, the driver's loop with its kept-sample copy and final "
        "finiteness check, without `mf.sample`'s copy and check of X0; plain: the loop without the clone), "
        "the rate a long run approaches: with S this small the one-off set-up (a few passes over a state) "
        "is a visible part of a whole call. Goal: ours / plain >= 0.95.",
        "",
        "| K modes | chains | state (MiB) | S | measureflow steps/s | plain steps/s | ours / plain (wall) | "
        "ours / plain (CPU) | loop only: ours / plain | peak MiB ours | peak MiB plain | state gap |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    notes = []
    for group in ("il-1e4", "il-1e6"):
        if group not in results:
            continue
        size = args.sizes[group]
        result = results[group]
        if result["status"] != "ok":
            lines.append(f"| {size['modes']:,} | {size['chains']:,} | | {size['steps']} | "
                         f"{result['status']}: {result.get('error', '')} | | | | | | |")
            continue
        rates, cpu = result["rates"], result["cpu_rates"]
        wall_ratio = statistics.median(a / b for a, b in zip(rates["ours"], rates["plain"], strict=True))
        cpu_ratio = statistics.median(a / b for a, b in zip(cpu["ours"], cpu["plain"], strict=True))
        loop = result["loop_rates"]
        loop_ratio = statistics.median(a / b for a, b in zip(loop["ours"], loop["plain"], strict=True))
        states = {name: memory["peak_mib"] / result["state_mib"] if memory["status"] == "ok" else None
                  for name, memory in result["memory"].items()}
        peaks = {name: f"{result['memory'][name]['peak_mib']:,.0f} ({states[name]:.1f} states)"
                 if states[name] is not None else result["memory"][name]["status"] for name in states}
        lines.append(
            f"| {size['modes']:,} | {size['chains']:,} | {result['state_mib']:,.0f} | {size['steps']} | "
            f"{_median_range(rates['ours'])} | {_median_range(rates['plain'])} | {wall_ratio:.3f} | "
            f"{cpu_ratio:.3f} | {loop_ratio:.3f} | {peaks['ours']} | {peaks['plain']} | "
            f"{result['gap']:.1e} |")
        notes.append(f"K = {size['modes']:,}: goal {'met' if wall_ratio >= 0.95 else 'NOT met'} by wall "
                     f"clock ({wall_ratio:.3f}), {'met' if cpu_ratio >= 0.95 else 'NOT met'} by CPU time "
                     f"({cpu_ratio:.3f}), {'met' if loop_ratio >= 0.95 else 'NOT met'} for the step loop "
                     f"alone ({loop_ratio:.3f}).")
        if size["modes"] >= 1_000_000 and states["ours"] is not None:
            per_state = states["ours"] + 1  # + X0, made before the measured call
            full = per_state * 4 * size["modes"] * 1000 / 2**30
            fits = 23 * 2**30 / (per_state * 4 * size["modes"])
            notes.append(
                f"Memory at K = 10^6: measureflow's two-step call peaks at {states['ours']:.1f} state sizes "
                f"above X0, about {per_state:.1f} x C K x 4 bytes with X0: 1,000 chains would need "
                f"{full:.0f} GiB, more than the machine's 23 GiB, so 10^6 x 1,000 does not fit; about "
                f"{fits:.0f} chains would fill the machine alone. It is shared with other jobs (2 cores, and "
                f"a step of 100 chains takes seconds), so {size['chains']} were run; `--chains-1e6 C` runs "
                "more.")
    return lines + [""] + notes + [""]


def render_mfl(result: dict, args) -> list[str]:
    lines = [
        "### Mean-field Langevin: steps/s and the cost of the free energy, float32",
        "",
        "F = `MeanFieldRisk(x, y, activation=\"tanh\") + Potential(lambda_0 |theta|^2 / 2) + "
        f"Entropy(beta, method=\"noise\")`, n = {MFL['n']:,}, d = {MFL['dim']}, y = tanh(x . u), h = "
        f"{MFL['step_size']:g}, beta = {MFL['beta']:g}, lambda_0 = {MFL['weight_decay']:g}. Steps/s of "
        "`mf.flows.run(F, neurons, h, S, progress=False, record_values=False)`: median (range) of "
        f"{args.mfl_repeats} calls after a warm-up. t_F: one F.value(neurons) = risk + penalty + entropy "
        "term (`Entropy.value`, the k-NN entropy in float64); entropy share of the run time if F were "
        "recorded every step, t_H / (t_step + t_F), and every 100 steps, t_H / (100 t_step + t_F).",
        "",
        "| M neurons | S | steps/s | t_step (ms) | risk value (ms) | penalty value (ms) | "
        "entropy value (ms) | entropy share, F every step | entropy share, F every 100 steps |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    if result["status"] != "ok":
        return lines + [f"| {result['status']}: {result.get('error', '')} | | | | | | | | |", ""]
    for row in result["rows"]:
        step = statistics.median(row["step_seconds"])
        terms = {name: statistics.median(values) for name, values in row["terms"].items()}
        total = sum(terms.values())
        entropy = terms["entropy"]
        lines.append(
            f"| {row['width']:,} | {row['steps']} | {_median_range([1 / s for s in row['step_seconds']])} | "
            f"{step * 1e3:.3g} | {terms['risk'] * 1e3:.3g} | {terms['penalty'] * 1e3:.3g} | "
            f"{entropy * 1e3:.4g}{' (once)' if len(row['terms']['entropy']) == 1 else ''} | "
            f"{entropy / (step + total):.1%} | {entropy / (100 * step + total):.1%} |")
    return lines + [""]


def render(results: dict[str, dict], args, wall: float, load: tuple[str, str]) -> str:
    from _results import machine_info

    lines = [
        "## Infinite-dimensional and mean-field Langevin dynamics",
        "",
        f"Written by `benchmarks/bench_infinite_langevin.py{' --quick' if args.quick else ''}` on "
        f"{datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}. CPU, torch threads {args.threads}; the "
        "machine was shared with other jobs while it ran (see the load average below), so absolute times "
        "are slow and noisy; compare the same-run ratios.",
        "",
    ]
    if any(group in results for group in ("il-1e4", "il-1e6")):
        lines += render_il(results, args)
    if "mfl" in results:
        lines += render_mfl(results["mfl"], args)
    machine = machine_info({"torch threads": str(args.threads)})
    lines += ["Machine: " + ", ".join(f"{k} {v}" for k, v in machine.items())
              + f"; load average (1 min) at start / end {load[0]} / {load[1]}; whole benchmark {wall:.0f} s.",
              ""]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke test: small sizes")
    parser.add_argument("--repeats", type=int, default=4,
                        help="alternated repetitions per method (default 4)")
    parser.add_argument("--mfl-repeats", type=int, default=3,
                        help="timed flow calls per width of the mean-field Langevin sweep (default 3)")
    parser.add_argument("--chains-1e6", type=int, default=None,
                        help="chains of the 10^6-mode case (default 250; see the docstring)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--memory-gb", type=float, default=16.0)
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per child (a backstop)")
    parser.add_argument("--only", default=None, help=f"comma-separated groups ({','.join(GROUPS)})")
    parser.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.mfl_repeats < 1:
        parser.error("--repeats and --mfl-repeats must be at least 1")
    args.sizes = {group: dict(SIZES[group][1 if args.quick else 0]) for group in GROUPS}
    if args.chains_1e6 is not None:
        if args.chains_1e6 < 1:
            parser.error("--chains-1e6 must be at least 1")
        args.sizes["il-1e6"]["chains"] = args.chains_1e6
    groups = GROUPS if args.only is None else tuple(args.only.split(","))
    unknown = [group for group in groups if group not in GROUPS]
    if unknown:
        parser.error(f"--only: unknown group(s) {', '.join(unknown)}; choose from {', '.join(GROUPS)}")
    from _results import cap_memory, run_child, run_groups, set_threads, write_section

    if args.child:
        cap_memory(args.memory_gb)
        set_threads(args.threads)
        if args.child == "mfl":
            result = mfl_child(args.sizes["mfl"], args.mfl_repeats)
        elif args.child.startswith("memory:"):
            _, group, method = args.child.split(":")
            result = il_memory_child(args.sizes[group], method)
        else:
            result = il_child(args.sizes[args.child], args.repeats)
        print(json.dumps(result))
        return 0

    def child(name: str) -> dict:
        command = [sys.executable, __file__, "--child", name, "--memory-gb", str(args.memory_gb),
                   "--threads", str(args.threads), "--repeats", str(args.repeats),
                   "--mfl-repeats", str(args.mfl_repeats)]
        if args.chains_1e6 is not None:
            command += ["--chains-1e6", str(args.chains_1e6)]
        if args.quick:
            command.append("--quick")
        return run_child(command, args.timeout)

    def run_case(group: str) -> dict:
        if group == "mfl":
            return child(group)
        memory = {method: child(f"memory:{group}:{method}") for method in ("ours", "plain")}
        result = child(group)
        result["memory"] = memory
        return result

    results, wall, load = run_groups(groups, run_case)
    text = render(results, args, wall, load)
    write_section(args.out, SECTION, text)
    print(text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    sys.exit(main())
