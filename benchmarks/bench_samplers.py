"""Chain-steps per second of measureflow's ULA and MALA next to BlackJAX, in one process.

Two targets, both float32: (a) ``ring``, the 2-D mixture of 8 Gaussians on a circle (radius 4,
std 0.5); (b) ``mix100``, the 100-D equal-weight mixture of N(+1, I) and N(-1, I). 10,000 chains
run 1,000 steps from standard normal starting points, keeping every ``THIN``-th position of
every chain (the energy trace, diagnostics and the burn-in are off on both sides; no burn-in, so
MALA runs at the fixed step size given here, tuned beforehand for about 0.57 acceptance).

measureflow goes through the public driver ``mf.sample`` (so trace recording, the progress bar
and the divergence checks are timed), eager (``compile=False``) and compiled (``compile=True``).
BlackJAX: ``blackjax.mala`` and, for ULA, ``blackjax.sgld`` with the exact gradient of the
log-density (SGLD with a full gradient is ULA), each vmapped over chains with one PRNG key per
chain and step, run by ``jax.lax.scan`` over the kept samples and ``jax.lax.fori_loop`` over the
``THIN`` steps between them, jit-compiled ahead of time. Both sides keep the same samples.

Compilation is excluded from the throughput (reported separately: the measureflow figure is the
first run on the shapes minus a warm run's time for the same steps). Each configuration is timed
``--repeats`` times, the tools interleaved, and the best time counts. Writes
its section of ``benchmarks/RESULTS.md`` (temp file + rename). ``--quick``: 1,000 chains x 100 steps.
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import sys
import time
from pathlib import Path

# Cold compiles: without this the compile column would depend on inductor's on-disk cache
# left by earlier runs.
os.environ.setdefault("TORCHINDUCTOR_FX_GRAPH_CACHE", "0")
os.environ.setdefault("TORCHINDUCTOR_AUTOGRAD_CACHE", "0")

import torch  # noqa: E402

import measureflow as mf  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import machine_info as common_machine_info  # noqa: E402
from _results import write_section  # noqa: E402

HERE = Path(__file__).resolve().parent
THIN = 10
# ULA: a fixed step size. MALA: tuned for ~0.57 acceptance (measureflow's dual averaging on
# 1,000 chains); the acceptance both tools reach is printed in the table as a cross-check.
STEP_SIZES = {("ring", "ula"): 0.01, ("ring", "mala"): 0.3,
              ("mix100", "ula"): 0.01, ("mix100", "mala"): 0.29}


def make_targets() -> dict[str, tuple[mf.targets.Target, torch.Tensor, torch.Tensor]]:
    """name -> (measureflow target, means (K, d), stds (K,)), float32."""
    ring = mf.targets.GaussianMixture.ring(8, 4.0, 0.5)
    mix100 = mf.targets.GaussianMixture(
        means=torch.stack([torch.ones(100), -torch.ones(100)]), covs=torch.ones(2)
    )
    return {
        "ring": (ring, ring.means.float(), ring.variances.sqrt().float()),
        "mix100": (mix100, mix100.means.float(), mix100.variances.sqrt().float()),
    }


# --------------------------------------------------------------------------------- measureflow

def run_measureflow(target, sampler: str, step_size: float, n_chains: int, n_steps: int,
                    compile: bool, progress: bool) -> tuple[float, float | None]:
    """Seconds for one ``mf.sample`` call and the mean acceptance (MALA)."""
    start = time.perf_counter()
    result = mf.sample(
        target, sampler, n_chains=n_chains, n_steps=n_steps, step_size=step_size, burn_in=0,
        thin=THIN, seed=0, progress=progress, compile=compile, record_energy=False,
        diagnostics=False,
    )
    seconds = time.perf_counter() - start
    assert result.samples.shape == (n_steps // THIN, n_chains, target.dim)
    acceptance = None if result.acceptance is None else float(result.acceptance.mean())
    return seconds, acceptance


# --------------------------------------------------------------------------------------- JAX

def make_blackjax(means, stds, sampler: str, step_size: float, n_chains: int, n_steps: int):
    """An ahead-of-time compiled ``run(key, x0) -> (kept (n_kept, n_chains, d), acceptance)``
    and the compile time in seconds."""
    import blackjax
    import jax
    import jax.numpy as jnp
    from jax.scipy.special import logsumexp

    means = jnp.asarray(means.numpy())
    inv_var = jnp.asarray((1.0 / stds.square()).numpy())
    n_modes, dim = means.shape
    log_w = jnp.full((n_modes,), -math.log(n_modes), dtype=jnp.float32)
    log_norm = (-dim * jnp.log(jnp.asarray(stds.numpy())) - 0.5 * dim * math.log(2 * math.pi))

    def logdensity(x):  # one chain, x (d,): log sum_k w_k N(x; m_k, s_k^2 I)
        quadratic = jnp.sum((x - means) ** 2, axis=-1) * inv_var
        return logsumexp(log_w + log_norm - 0.5 * quadratic)

    n_kept = n_steps // THIN
    if sampler == "ula":
        algorithm = blackjax.sgld(lambda x, _minibatch: jax.grad(logdensity)(x))

        def one_step(key, state):
            return algorithm.step(key, state, None, step_size), jnp.zeros((), jnp.float32)

        def init(x0):
            return jax.vmap(algorithm.init)(x0)

        def position(state):
            return state
    else:
        algorithm = blackjax.mala(logdensity, step_size)

        def one_step(key, state):
            new_state, info = algorithm.step(key, state)
            return new_state, info.is_accepted.astype(jnp.float32)

        def init(x0):
            return jax.vmap(algorithm.init)(x0)

        def position(state):
            return state.position

    batched_step = jax.vmap(one_step)

    def run(key, x0):
        def inner(_, carry):
            key, state, accepted = carry
            key, sub = jax.random.split(key)
            state, is_accepted = batched_step(jax.random.split(sub, n_chains), state)
            return key, state, accepted + is_accepted

        def outer(carry, _):
            carry = jax.lax.fori_loop(0, THIN, inner, carry)
            return carry, position(carry[1])

        carry = (key, init(x0), jnp.zeros((n_chains,), jnp.float32))
        (_, _, accepted), kept = jax.lax.scan(outer, carry, None, length=n_kept)
        return kept, jnp.mean(accepted) / n_steps

    key = jax.random.key(0)
    x0 = jax.random.normal(jax.random.key(1), (n_chains, dim), dtype=jnp.float32)
    start = time.perf_counter()
    compiled = jax.jit(run).lower(key, x0).compile()
    compile_seconds = time.perf_counter() - start

    def timed() -> tuple[float, float]:
        start = time.perf_counter()
        kept, acceptance = compiled(key, x0)
        kept.block_until_ready()
        seconds = time.perf_counter() - start
        assert kept.shape == (n_kept, n_chains, dim)
        return seconds, float(acceptance)

    return timed, compile_seconds


# ----------------------------------------------------------------------------------- report

def machine_info() -> dict[str, str]:
    import jax

    try:
        import blackjax
        blackjax_version = blackjax.__version__
    except Exception:  # pragma: no cover
        blackjax_version = "?"
    return common_machine_info({"torch threads": str(torch.get_num_threads()),
                                "jax / jaxlib": f"{jax.__version__} / {getattr(jax.lib, '__version__', '?')}",
                                "blackjax": blackjax_version})


def render(rows: list[dict], info: dict[str, str], args, load: tuple[str, str],
           wall: float) -> str:
    lines = [
        "## Samplers",
        "",
        f"Written by `benchmarks/bench_samplers.py{' --quick' if args.quick else ''}` on "
        f"{datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}; {args.n_chains} chains x "
        f"{args.n_steps} steps, float32, every {THIN}th position kept (both tools), no burn-in, "
        f"best of {args.repeats} interleaved repeats. Throughput = chains x steps / seconds of one "
        "whole run (measureflow: the `mf.sample` call, driver overhead included). Compile = the "
        "first run on these shapes minus a warm run (measureflow; inductor's FX graph cache off, "
        "its C++ kernel cache may still hold kernels from earlier runs), "
        "`jit(...).lower().compile()` (JAX); eager rows run fewer steps where marked (a rate). "
        "Ratio = measureflow / BlackJAX in the same run.",
        "",
        "| target | sampler | h | tool | mode | chain-steps/s | ratio vs BlackJAX | "
        "acceptance | compile (s) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        acceptance = "" if row["acceptance"] is None else f"{row['acceptance']:.3f}"
        ratio = "" if row["ratio"] is None else f"{row['ratio']:.2f}"
        compile_s = "" if row["compile"] is None else f"{row['compile']:.1f}"
        lines.append(
            f"| {row['target']} | {row['sampler']} | {row['h']:g} | {row['tool']} | "
            f"{row['mode']} | {row['rate']:.3g} | {ratio} | {acceptance} | {compile_s} |"
        )
    lines += ["", "Machine:", ""]
    lines += [f"- {key}: {value}" for key, value in info.items()]
    lines += [
        f"- load average (1 min) at start / end: {load[0]} / {load[1]} "
        "(the machine is shared; absolute figures drift, same-run ratios are the stable ones)",
        f"- whole benchmark: {wall:.0f} s",
        "",
    ]
    return "\n".join(lines)


def load_average() -> str:
    try:
        return f"{os.getloadavg()[0]:.1f}"
    except OSError:  # pragma: no cover
        return "?"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1,000 chains x 100 steps (smoke test)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--eager", choices=["on", "off"], default="on",
                        help="also time measureflow with compile=False")
    parser.add_argument("--eager-steps", type=int, default=100,
                        help="steps of the eager runs (their rate; eager torch is slow on a "
                             "loaded machine, so it runs a tenth of the steps by default)")
    parser.add_argument("--progress", choices=["on", "off"], default="on",
                        help="measureflow's progress bar (on: its cost is timed)")
    parser.add_argument("--only", default=None, help="comma-separated target:sampler pairs")
    parser.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    args = parser.parse_args(argv)
    args.n_chains, args.n_steps = (1000, 100) if args.quick else (10_000, 1000)
    progress = args.progress == "on"

    wall_start = time.perf_counter()
    load_start = load_average()
    targets = make_targets()
    modes = [("compiled", True)] + ([("eager", False)] if args.eager == "on" else [])
    cases = [(name, sampler) for name in targets for sampler in ("ula", "mala")]
    if args.only:
        wanted = {tuple(pair.split(":")) for pair in args.only.split(",")}
        cases = [case for case in cases if case in wanted]
    rows = []
    for name, sampler in cases:
        target, means, stds = targets[name]
        h = STEP_SIZES[(name, sampler)]
        runners = {}
        compile_times = {}
        timed_jax, compile_times["blackjax"] = make_blackjax(
            means, stds, sampler, h, args.n_chains, args.n_steps
        )
        runners["blackjax"] = timed_jax
        for mode, compiled in modes:
            n_steps = args.n_steps if compiled else min(args.eager_steps, args.n_steps)

            def runner(compiled=compiled, steps=n_steps, target=target, sampler=sampler, h=h):
                return run_measureflow(target, sampler, h, args.n_chains, steps, compiled, progress)
            # The first call on these shapes compiles; a second short call is warm.
            first, _ = runner(steps=THIN)
            warm, _ = runner(steps=THIN)
            compile_times[mode] = max(first - warm, 0.0) if compiled else None
            runners[mode] = runner
        best: dict[str, tuple[float, float | None]] = {}
        for _ in range(args.repeats):
            for tool, runner in runners.items():
                seconds, acceptance = runner()
                if tool not in best or seconds < best[tool][0]:
                    best[tool] = (seconds, acceptance)
        jax_rate = args.n_chains * args.n_steps / best["blackjax"][0]
        for tool in runners:
            steps = args.n_steps if tool != "eager" else min(args.eager_steps, args.n_steps)
            rate = args.n_chains * steps / best[tool][0]
            rows.append({
                "target": name, "sampler": sampler, "h": h,
                "tool": "BlackJAX" if tool == "blackjax" else "measureflow",
                "mode": "jit" if tool == "blackjax" else (
                    f"eager ({steps} steps)" if tool == "eager" and steps != args.n_steps else tool
                ),
                "rate": rate, "ratio": None if tool == "blackjax" else rate / jax_rate,
                "acceptance": best[tool][1] if sampler == "mala" else None,
                "compile": compile_times[tool],
            })
            print(f"{name:7s} {sampler:5s} {rows[-1]['tool']:12s} {rows[-1]['mode']:9s} "
                  f"{rate:10.3g} chain-steps/s"
                  + ("" if rows[-1]["ratio"] is None else f"  ratio {rows[-1]['ratio']:.2f}"),
                  flush=True)
    text = render(rows, machine_info(), args, (load_start, load_average()),
                  time.perf_counter() - wall_start)
    write_section(args.out, "bench_samplers", text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
