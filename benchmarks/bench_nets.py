"""Two-layer networks: the empirical NTK Gram matrix and mean-field particle-flow steps, next to what a
PyTorch user would write instead.

``ntk``: the empirical NTK Gram matrix K = J J^T (J the (n, P) Jacobian of the outputs in the
trained parameters) of ``TwoLayer(d, M)`` (ReLU, NTK scaling, both layers trained, P = M (d + 1))
at n = 2,000 inputs x ~ N(0, I_d), M = 10,000, d = 10, float32. Methods:

- ``closed``: ``mf.nets.empirical_ntk(net, x)``, the closed form S S^T + ((D a^2) D^T) * (X X^T)
  blocked over neurons (4 n^2 M flops, never a Jacobian);
- ``func``: the same function on a trivial ``nn.Module`` wrapping the network, so that its generic
  ``torch.func`` path runs (per-example Jacobians by ``vmap(jacrev)`` over blocks, then J J^T);
- ``tutorial``: the peer a PyTorch user writes, the recipe of PyTorch's "Neural Tangent Kernels"
  tutorial: ``vmap(jacrev(f))`` of ``torch.func.functional_call`` over all inputs, then J J^T
  (timed like the loop: the Jacobian in full, the product on r rows and scaled);
- ``loop``: the plain per-example loop as its best users write it: for each input,
  ``torch.autograd.grad`` of f(x_i) in the parameters, written into a preallocated row of J, then
  ``J @ J.T``.

``ntk-d100``: the same at d = 100 (P = 1,010,000), closed form against the loop only: the
closed form's cost 4 n^2 M does not depend on d while the loop's product grows like d + 1 (J is
8 GB; the torch.func path would need about twice that and is left out).

Both Jacobian methods end in the same dense product J J^T (2 n^2 P flops: a minute or more on one
core), so they are timed on ``--rows`` r of the n rows of K and scaled: each computes the rows
K[:r] = J[:r] J^T, which needs the whole J (built for all n inputs, measured in full), and the
estimate for the full Gram matrix adds n / r - 1 more products of r rows of J with J^T, timed as the
loop's own product J[:r] J^T of the same repetition (the same shapes for both methods). ``func`` is
one library call ``empirical_ntk(wrapped, x[:r], x)``, which also rebuilds the r rows of J for
x1 (an r / n overcount of its Jacobian time). The closed form is timed in full. Timing: the three
methods run in one process, alternated (order reversed on alternate repetitions, ``--repeats``)
after a warm-up call of each on 16 inputs; median (range). Memory: each method once more in a fresh
process (the same warm-up, then the same call), its peak resident size (VmHWM) above its value
just before the call (``_results.reset_peak_rss``), under an address-space cap. The rows K[:r] of
the first repetition are compared with the closed form's: max |K - K_closed| / max |K_closed|
(float32 sums of P terms: ~1e-5 is agreement).

neural-tangents is not in the comparison: its latest release (0.6.5) fails to import under the
jax 0.10.2 that ``.[bench]`` installs (``from jax.core import Jaxpr``) and pulls tensorflow and
tf2jax; under jax 0.4.30, which it was written for, tf2jax and blackjax 1.7.1 (bench_samplers)
fail to import. The section says whether it is importable when the script runs.

``mean-field``: gradient-flow steps per second of the neurons of the mean-field network at
M = 100,000, on n = 1,000 points x ~ N(0, I_10), y = relu(x . u) for a fixed unit vector u (a
single-neuron teacher), float32, step h = 0.1: ``mf.flows.run(mf.nets.MeanFieldRisk(x, y),
particles, h, S, progress=False, record_values=False)`` against the same update as a plain loop,
f = relu(X W^T) a / M, loss (1/2n) sum (f - y)^2, ``loss.backward()``, ``torch.optim.SGD(lr=h M)``
(the flow step h is that gradient step). Both start from the neurons of
``TwoLayer(10, M, scaling="mean-field")``; before timing, both run ``CHECK_STEPS`` steps and the
relative gap max |theta_ours - theta_plain| / max |theta_ours - theta_0| is reported. Then one warm-up
call each and ``--mf-repeats`` alternated repetitions (ABBA) of S steps; steps/s: median (range);
ratio: the median over repetitions of ours / plain of the two adjacent runs, by wall clock and by
process CPU time. Goal: ours / plain >= 0.95. One fresh process.

Torch threads: ``--threads`` (default 1: the reference machine has 2 cores and is shared). Writes
the section ``bench_nets`` of benchmarks/RESULTS.md (temp file + rename) and prints it.
``--quick``: a smoke test (small sizes). ``--only ntk,mean-field`` picks groups. ``--profile``:
cProfile and torch.profiler tables of a few steps of measureflow's flow, printed, nothing written.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
GROUPS = ("ntk", "ntk-d100", "mean-field")
NTK_GROUPS = ("ntk", "ntk-d100")
METHODS = ("closed", "func", "tutorial", "loop")
METHOD_NAMES = {
    "closed": "measureflow closed form (`empirical_ntk(TwoLayer)`)",
    "func": "measureflow torch.func path (`empirical_ntk(wrapped)`)",
    "tutorial": "PyTorch's NTK recipe: `vmap(jacrev(functional_call))` over all inputs, then `J @ J.T`",
    "loop": "plain per-example `autograd.grad` loop, then `J @ J.T`",
}
WARM_UP_POINTS = 16
CHECK_STEPS = 3
STEP_SIZE = 0.1
SIZES = {  # (full, --quick)
    "ntk": ({"n": 2000, "width": 10_000, "dim": 10, "rows": 125},
            {"n": 400, "width": 2000, "dim": 10, "rows": 50}),
    # d = 100: J alone is 8 GB, and the torch.func path's blocks need about twice that; it is left out.
    "ntk-d100": ({"n": 2000, "width": 10_000, "dim": 100, "rows": 125, "methods": ("closed", "loop")},
                 {"n": 400, "width": 2000, "dim": 100, "rows": 50, "methods": ("closed", "loop")}),
    "mean-field": ({"n": 1000, "width": 100_000, "dim": 10, "steps": 2},
                   {"n": 200, "width": 10_000, "dim": 10, "steps": 3}),
}


# ------------------------------------------------------------------------------------------- NTK

def _ntk_problem(size: dict):
    """The network (seed 0) and its inputs (seed 1), float32."""
    import torch

    import measureflow as mf

    net = mf.nets.TwoLayer(size["dim"], size["width"], generator=torch.Generator().manual_seed(0))
    x = torch.randn(size["n"], size["dim"], generator=torch.Generator().manual_seed(1))
    return net, x


def _wrapped(net):
    """A module that is not a TwoLayer, computing the same function (the generic torch.func path)."""
    from torch import nn

    class Wrapped(nn.Module):
        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner(x)

    return Wrapped(net)


def _jacobian_loop(net, x):
    """J (n, P): one ``torch.autograd.grad`` per input, written into a preallocated row."""
    import torch

    params = [p for p in net.parameters() if p.requires_grad]
    jacobian = torch.empty(x.shape[0], sum(p.numel() for p in params), dtype=x.dtype)
    for i in range(x.shape[0]):
        grads = torch.autograd.grad(net(x[i : i + 1])[0], params)
        torch.cat([g.reshape(-1) for g in grads], out=jacobian[i])
    return jacobian


def _jacobian_vmap(net, x):
    """J (n, P) as PyTorch's "Neural Tangent Kernels" tutorial builds it: ``torch.func.functional_call``
    of the network on one input, ``vmap(jacrev(...))`` over all inputs at once, leaves flattened."""
    import torch
    from torch.func import functional_call, jacrev, vmap

    params = {name: p.detach() for name, p in net.named_parameters() if p.requires_grad}

    def single(parameters, point):
        return functional_call(net, parameters, (point[None],))[0]

    jacobians = vmap(jacrev(single), (None, 0))(params, x)
    return torch.cat([j.reshape(x.shape[0], -1) for j in jacobians.values()], 1)


def _time(function):
    start = time.perf_counter()
    value = function()
    return value, time.perf_counter() - start


def _ntk_methods(size: dict) -> dict:
    """method -> a function running it once at full size (rows K[:r] for the Jacobian methods), after
    a warm-up call of each on 16 inputs."""
    import measureflow as mf

    net, x = _ntk_problem(size)
    wrapped = _wrapped(net)
    rows = size["rows"]
    small = x[:WARM_UP_POINTS]
    mf.nets.empirical_ntk(net, small)
    mf.nets.empirical_ntk(wrapped, small[:4], small)
    warm = _jacobian_loop(net, small)
    warm[:4] @ warm.T
    _jacobian_vmap(net, small)

    def closed() -> dict:
        kernel, seconds = _time(lambda: mf.nets.empirical_ntk(net, x))
        return {"kernel": kernel[:rows].clone(), "seconds": seconds}

    def func() -> dict:
        kernel, seconds = _time(lambda: mf.nets.empirical_ntk(wrapped, x[:rows], x))
        return {"kernel": kernel, "seconds": seconds}

    def tutorial() -> dict:
        jacobian, build = _time(lambda: _jacobian_vmap(net, x))
        kernel, product = _time(lambda: jacobian[:rows] @ jacobian.T)
        return {"kernel": kernel, "seconds": build + product, "build": build, "product": product}

    def loop() -> dict:
        jacobian, build = _time(lambda: _jacobian_loop(net, x))
        kernel, product = _time(lambda: jacobian[:rows] @ jacobian.T)
        return {"kernel": kernel, "seconds": build + product, "build": build, "product": product}

    methods = {"closed": closed, "func": func, "tutorial": tutorial, "loop": loop}
    return {method: methods[method] for method in size.get("methods", METHODS)}


def ntk_memory_child(method: str, size: dict) -> dict:
    """One call of one method in this fresh process: its peak resident memory above the size before."""
    from _results import peak_rss_kib, reset_peak_rss

    run = _ntk_methods(size)[method]
    before = reset_peak_rss()
    record = run()
    return {"status": "ok", "peak_mib": max(peak_rss_kib() - before, 0) / 1024, "seconds": record["seconds"]}


def ntk_child(size: dict, repeats: int) -> dict:
    """Every method in this one process, alternated (order reversed on alternate repetitions); the
    rows K[:r] of each for the agreement check."""
    import torch

    methods = _ntk_methods(size)
    names = tuple(methods)
    n, rows = size["n"], size["rows"]
    runs: dict[str, list[dict]] = {method: [] for method in METHODS}
    kernels = {}
    for repetition in range(repeats):
        for method in names if repetition % 2 == 0 else names[::-1]:
            record = methods[method]()
            kernels.setdefault(method, record.pop("kernel"))
            runs[method].append(record)
            print(f"ntk {method} repetition {repetition + 1}: {record['seconds']:.1f} s", file=sys.stderr,
                  flush=True)
    # The rest of K: n / r - 1 more products of r rows of J with J^T, timed in the loop's run of the
    # same repetition (the same shapes for both Jacobian methods; the loop's own r rows are in its
    # time already).
    for repetition, record in enumerate(runs["loop"]):
        product = record["product"]
        record["estimate"] = record["build"] + (n / rows) * product
        if runs["func"]:
            func_record = runs["func"][repetition]
            func_record["product"] = product
            func_record["estimate"] = func_record["seconds"] + (n / rows - 1) * product
    for record in runs["tutorial"]:  # its own product of r rows, like the loop's
        record["estimate"] = record["build"] + (n / rows) * record["product"]
    for record in runs["closed"]:
        record["estimate"] = record["seconds"]
    reference = kernels["closed"]
    differences = {method: float((kernels[method] - reference).abs().max() / reference.abs().max())
                   for method in names if method != "closed"}
    return {"status": "ok", "runs": runs, "differences": differences, "threads": torch.get_num_threads(),
            "neural_tangents": importlib.util.find_spec("neural_tangents") is not None}


def ntk_group(args, group: str) -> dict:
    """The peak memory of each method in a fresh process, then the alternated timings in one."""
    from _results import run_child

    common = ["--memory-gb", str(args.memory_gb), "--threads", str(args.threads)] + (
        ["--quick"] if args.quick else [])
    memory = {}
    for method in args.sizes[group].get("methods", METHODS):
        memory[method] = run_child(
            [sys.executable, __file__, "--child", f"ntk-memory:{group}:{method}", *common], args.timeout)
        print(f"{group} {method} memory: {memory[method]['status']}", file=sys.stderr, flush=True)
    result = run_child([sys.executable, __file__, "--child", f"ntk:{group}", "--repeats", str(args.repeats),
                        *common], args.timeout)
    result["memory"] = memory
    return result


# ----------------------------------------------------------------------------------- mean field

def _mean_field_problem(size: dict):
    """(functional, initial neurons (M, 1 + d), x, y), float32."""
    import torch

    import measureflow as mf

    generator = torch.Generator().manual_seed(0)
    x = torch.randn(size["n"], size["dim"], generator=generator)
    teacher = torch.randn(size["dim"], generator=generator)
    y = torch.relu(x @ (teacher / teacher.norm()))
    net = mf.nets.TwoLayer(size["dim"], size["width"], scaling="mean-field", generator=generator)
    return mf.nets.MeanFieldRisk(x, y), mf.nets.neurons_of(net), x, y


def _run_ours(functional, particles, n_steps: int):
    import measureflow as mf

    return mf.flows.run(functional, particles, STEP_SIZE, n_steps, progress=False,
                        record_values=False).particles


def _run_plain(x, y, particles, n_steps: int):
    """Full-batch gradient descent on f = relu(X W^T) a / M with torch.optim.SGD(lr = h M)."""
    import torch

    width = particles.shape[0]
    a = particles[:, 0].clone().requires_grad_(True)
    w = particles[:, 1:].clone().requires_grad_(True)
    optimizer = torch.optim.SGD([a, w], lr=STEP_SIZE * width)
    for _ in range(n_steps):
        optimizer.zero_grad(set_to_none=True)
        loss = 0.5 * (torch.relu(x @ w.T) @ a / width - y).square().mean()
        loss.backward()
        optimizer.step()
    return torch.cat([a.detach()[:, None], w.detach()], 1)


def mean_field_child(size: dict, repeats: int) -> dict:
    import torch

    functional, particles, x, y = _mean_field_problem(size)
    ours = _run_ours(functional, particles, CHECK_STEPS)
    plain = _run_plain(x, y, particles, CHECK_STEPS)
    gap = float((ours - plain).abs().max() / (ours - particles).abs().max())
    runners = {"ours": lambda k: _run_ours(functional, particles, k),
               "plain": lambda k: _run_plain(x, y, particles, k)}
    for runner in runners.values():  # warm-up
        runner(1)
    steps = size["steps"]
    rates: dict[str, list[float]] = {"ours": [], "plain": []}
    cpu_rates: dict[str, list[float]] = {"ours": [], "plain": []}
    for repetition in range(repeats):
        order = ("ours", "plain") if repetition % 4 in (0, 3) else ("plain", "ours")
        for name in order:
            wall, cpu = time.perf_counter(), time.process_time()
            runners[name](steps)
            rates[name].append(steps / (time.perf_counter() - wall))
            cpu_rates[name].append(steps / (time.process_time() - cpu))
    return {"status": "ok", "steps": steps, "rates": rates, "cpu_rates": cpu_rates, "gap": gap,
            "threads": torch.get_num_threads()}


def profile_mean_field(size: dict) -> None:
    import cProfile
    import pstats

    import torch

    functional, particles, x, y = _mean_field_problem(size)
    _run_ours(functional, particles, 1)
    profiler = cProfile.Profile()
    profiler.enable()
    _run_ours(functional, particles, size["steps"])
    profiler.disable()
    pstats.Stats(profiler).strip_dirs().sort_stats("tottime").print_stats(15)
    for name, runner in (("measureflow", lambda: _run_ours(functional, particles, size["steps"])),
                         ("plain", lambda: _run_plain(x, y, particles, size["steps"]))):
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as torch_profile:
            runner()
        print(f"--- {name}")
        print(torch_profile.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


# ---------------------------------------------------------------------------------------- report

def _median_range(values: list[float], digits: int = 3) -> str:
    return f"{statistics.median(values):.{digits}g} ({min(values):.{digits}g}-{max(values):.{digits}g})"


def render_ntk(result: dict, size: dict) -> list[str]:
    n, width, dim, rows = size["n"], size["width"], size["dim"], size["rows"]
    n_params = width * (dim + 1)
    lines = [
        f"### Empirical NTK Gram matrix: n = {n:,}, M = {width:,}, d = {dim}, P = {n_params:,}, float32",
        "",
        f"`TwoLayer({dim}, {width:,})` (ReLU, NTK scaling, both layers trained), x ~ N(0, I). The "
        f"Jacobian methods are timed on the rows K[:{rows}] (which need J for all {n:,} inputs, "
        f"built in full) and scaled: time + ({n:,} / {rows} - 1) x the product J[:{rows}] J^T, timed in "
        "the loop's run of the same repetition (the same shapes for both; the torch.func path's single "
        f"library call also rebuilds the {rows} rows of J, a {rows / n:.0%} overcount of its Jacobian "
        "time). The closed form is timed in full. The methods run in one process, alternated (order "
        "reversed on alternate repetitions) after a warm-up each; median (range). Peak memory: each "
        "method once more in a fresh process, its resident size's peak above that just before the "
        f"call (the rows' call for the Jacobian methods: the whole K would add {n * n * 4 / 2**20:,.0f} "
        f"MiB; J alone is n P x 4 bytes = {n * n_params * 4 / 2**20:,.0f} MiB). Max rel. diff = "
        f"max |K - K_closed| / max |K_closed| over the rows K[:{rows}].",
        "",
        "| method | time for the n x n Gram (s) | measured part (s) | peak memory (MiB) | max rel. diff "
        "vs closed form | loop time / method time |",
        "|---|---|---|---|---|---|",
    ]
    runs = result["runs"]
    loop = statistics.median(r["estimate"] for r in runs["loop"]) if runs["loop"] else None
    for method in METHODS:
        if not runs[method]:
            lines.append(f"| {METHOD_NAMES[method]} | not run at this size (J alone is "
                         f"{n * n_params * 4 / 2**30:.1f} GiB; its blocked Jacobians need about twice that) "
                         "| | | | |")
            continue
        estimates = [r["estimate"] for r in runs[method]]
        if method == "closed":
            measured = "the whole Gram matrix"
        elif method in ("loop", "tutorial"):
            measured = (f"J build {_median_range([r['build'] for r in runs[method]])}, product "
                        f"{_median_range([r['product'] for r in runs[method]])}")
        else:
            measured = (f"call {_median_range([r['seconds'] for r in runs[method]])}, product "
                        f"{_median_range([r['product'] for r in runs[method]])}")
        memory = result["memory"][method]
        peak = f"{memory['peak_mib']:,.0f}" if memory["status"] == "ok" else memory["status"]
        difference = result["differences"].get(method)
        ratio = "" if loop is None else f"{loop / statistics.median(estimates):.1f}"
        lines.append(f"| {METHOD_NAMES[method]} | {_median_range(estimates)} | {measured} | {peak} | "
                     f"{'' if difference is None else f'{difference:.1e}'} | {ratio} |")
    status = ("installed, but this script has no runner for it" if result["neural_tangents"] else
              "not installed")
    if dim == 10:
        lines.append(f"| neural-tangents `empirical_ntk_fn` | not run: {status} (see below) | | | | |")
    lines.append("")
    if runs["closed"] and loop is not None:
        speedup = loop / statistics.median(r["estimate"] for r in runs["closed"])
        lines.append(
            f"Closed form vs the per-example loop: {speedup:.1f}x (goal: at least 20x: "
            f"{'met' if speedup >= 20 else 'NOT met'}). The product J J^T alone costs 2 n^2 P = "
            f"2 n^2 M (d + 1) flops against the closed form's 4 n^2 M, so at d = {dim} the arithmetic "
            f"bounds the gain near (d + 1) / 2 = {(dim + 1) / 2:.1f}x plus the loop's Jacobian time; "
            "the gain grows with d (the loop also needs n M (d + 1) x 4 bytes for J, 8 GB at d = 100).")
        if runs["tutorial"]:
            recipe = statistics.median(r["estimate"] for r in runs["tutorial"])
            closed = statistics.median(r["estimate"] for r in runs["closed"])
            lines.append("")
            lines.append(f"Closed form vs PyTorch's own NTK recipe (the peer a PyTorch user writes): "
                         f"{recipe / closed:.1f}x.")
        lines.append("")
    return lines


def render_mean_field(result: dict, size: dict) -> list[str]:
    rates, cpu = result["rates"], result["cpu_rates"]
    wall_ratio = statistics.median(a / b for a, b in zip(rates["ours"], rates["plain"], strict=True))
    cpu_ratio = statistics.median(a / b for a, b in zip(cpu["ours"], cpu["plain"], strict=True))
    return [
        f"### Mean-field particle flow: M = {size['width']:,} neurons, n = {size['n']:,}, "
        f"d = {size['dim']}, float32",
        "",
        "x ~ N(0, I), y = relu(x . u) for a fixed unit vector u, step h = 0.1. measureflow: "
        "`mf.flows.run(mf.nets.MeanFieldRisk(x, y), neurons, h, S, progress=False, "
        "record_values=False)`, one call per repetition timed whole. Plain: f = relu(X W^T) a / M, "
        "loss (1/2n) sum (f - y)^2, `loss.backward()`, `torch.optim.SGD(lr=h M)`, from the same "
        f"neurons. {len(rates['ours'])} alternated repetitions (ABBA) of S = {result['steps']} steps "
        "after a warm-up each; steps/s: median (range); ratio: median over repetitions of ours / plain "
        "of the two adjacent runs, by wall clock and by process CPU time. Same computation: after "
        f"{CHECK_STEPS} steps, max |theta_ours - theta_plain| / max |theta_ours - theta_0| = "
        f"{result['gap']:.1e} (float32 round-off of the movement). Goal: ours / plain >= 0.95.",
        "",
        "| M | n | d | measureflow `flows.run` steps/s | plain SGD loop steps/s | ours / plain (wall) "
        "| ours / plain (CPU time) | particle gap after 3 steps |",
        "|---|---|---|---|---|---|---|---|",
        f"| {size['width']:,} | {size['n']:,} | {size['dim']} | {_median_range(rates['ours'])} | "
        f"{_median_range(rates['plain'])} | {wall_ratio:.3f} | {cpu_ratio:.3f} | {result['gap']:.1e} |",
        "",
        f"Goal {'met' if wall_ratio >= 0.95 else 'NOT met'} by wall clock ({wall_ratio:.3f}), "
        f"{'met' if cpu_ratio >= 0.95 else 'NOT met'} by CPU time ({cpu_ratio:.3f}).",
        "",
    ]


def render(results: dict[str, dict], args, wall: float, load: tuple[str, str]) -> str:
    from _results import machine_info

    lines = [
        "## Two-layer networks: empirical NTK and mean-field flow",
        "",
        f"Written by `benchmarks/bench_nets.py{' --quick' if args.quick else ''}` on "
        f"{datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}. CPU, torch threads {args.threads}; "
        "the machine was shared with other jobs while it ran (see the load average below), so "
        "absolute times are slow and noisy; compare the same-run ratios.",
        "",
    ]
    for group in NTK_GROUPS:
        if group not in results:
            continue
        result = results[group]
        if result["status"] != "ok":
            lines += [f"Empirical NTK ({group}): {result['status']}: {result.get('error', '')}", ""]
        else:
            lines += render_ntk(result, args.sizes[group])
    if "mean-field" in results:
        result = results["mean-field"]
        if result["status"] != "ok":
            lines += [f"Mean-field flow: {result['status']}: {result.get('error', '')}", ""]
        else:
            lines += render_mean_field(result, args.sizes["mean-field"])
    lines += [
        "neural-tangents (the brief asked for its `empirical_ntk_fn` beside these when `make bench` "
        "installs jax) is left out: its latest release, 0.6.5, fails to import under the jax 0.10.2 "
        "that the `[bench]` extra installs (`ImportError: cannot import name 'Jaxpr' from "
        "'jax.core'`) and pulls in tensorflow 2.21 and tf2jax 0.3.8; pinning jax 0.4.30 instead "
        "breaks tf2jax (`jax.extend.sharding`) and blackjax 1.7.1 (`jax.shard_map`), which "
        "bench_samplers.py needs. It is not in the `[bench]` extra.",
        "",
    ]
    machine = machine_info({"torch threads": str(args.threads)})
    lines += ["Machine: " + ", ".join(f"{k} {v}" for k, v in machine.items())
              + f"; load average (1 min) at start / end {load[0]} / {load[1]}; "
              f"whole benchmark {wall:.0f} s.", ""]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke test: small sizes")
    parser.add_argument("--repeats", type=int, default=3,
                        help="repetitions of each NTK method, each in a fresh process (default 3)")
    parser.add_argument("--mf-repeats", type=int, default=4,
                        help="alternated repetitions of each mean-field loop (default 4)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--memory-gb", type=float, default=16.0)
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per child (a backstop)")
    parser.add_argument("--only", default=None, help=f"comma-separated groups ({','.join(GROUPS)})")
    parser.add_argument("--profile", action="store_true",
                        help="print cProfile and torch.profiler tables of the mean-field flow and exit")
    parser.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.mf_repeats < 1:
        parser.error("--repeats and --mf-repeats must be at least 1")
    args.sizes = {group: SIZES[group][1 if args.quick else 0] for group in GROUPS}
    groups = GROUPS if args.only is None else tuple(args.only.split(","))
    unknown = [group for group in groups if group not in GROUPS]
    if unknown:
        parser.error(f"--only: unknown group(s) {', '.join(unknown)}; choose from {', '.join(GROUPS)}")
    from _results import cap_memory, run_groups, set_threads, write_section

    if args.child:
        cap_memory(args.memory_gb)
        set_threads(args.threads)
        if args.child.startswith("ntk:"):
            result = ntk_child(args.sizes[args.child.partition(":")[2]], args.repeats)
        elif args.child.startswith("ntk-memory:"):
            _, group, method = args.child.split(":")
            result = ntk_memory_child(method, args.sizes[group])
        else:
            result = mean_field_child(args.sizes["mean-field"], args.mf_repeats)
        print(json.dumps(result))
        return 0
    if args.profile:
        set_threads(args.threads)
        profile_mean_field(args.sizes["mean-field"])
        return 0

    def run_case(group: str) -> dict:
        from _results import run_child

        if group in NTK_GROUPS:
            return ntk_group(args, group)
        command = [sys.executable, __file__, "--child", group, "--memory-gb", str(args.memory_gb),
                   "--threads", str(args.threads), "--repeats", str(args.repeats),
                   "--mf-repeats", str(args.mf_repeats)]
        if args.quick:
            command.append("--quick")
        return run_child(command, args.timeout)

    results, wall, load = run_groups(groups, run_case)
    text = render(results, args, wall, load)
    write_section(args.out, "bench_nets", text)
    print(text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    sys.exit(main())
