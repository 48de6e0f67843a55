"""Time and peak memory of measureflow's distances next to the tools a user would call instead.

Cases (2-D float32 samples unless stated; x ~ N(0, I), y ~ N((0.1, 0), I)):

- MMD^2, Gaussian kernel with bandwidth 1, V-statistic (what the others compute), n = m =
  10,000 and 100,000: ``mf.metrics.mmd2`` against GeomLoss's ``SamplesLoss("gaussian",
  backend="tensorized")`` (which returns half the V-statistic) and a plain ``torch.cdist``
  implementation of the three kernel matrices.
- Exact W2, n = 2,000, float64: ``mf.metrics.wasserstein(x, y, p=2)`` against POT called directly
  (``ot.dist`` + ``ot.emd2`` with the same iteration cap, on numpy arrays): the wrapper's overhead.
- Debiased Sinkhorn divergence, n = 10,000, eps = 0.1 on the squared-distance cost:
  ``mf.metrics.sinkhorn_divergence`` against POT's ``empirical_sinkhorn_divergence`` (dense numpy,
  float64, its default matrix-scaling solver) and GeomLoss's ``SamplesLoss("sinkhorn", p=2,
  debias=True, backend="tensorized")``.
  Conventions differ (GeomLoss uses the cost |x-y|^2/2 and blur^2 = eps/2 on that cost; POT's
  divergence drops the entropic term), so the values column shows each tool's own number.
- Sliced W2, n = 100,000, 200 random directions: ``mf.metrics.sliced_wasserstein`` against POT's
  ``sliced_wasserstein_distance`` (numpy).

Every case runs in a fresh process (so the peak resident memory, read from ``VmHWM`` after resetting
it just before the call, belongs to that case alone) under an
address-space cap of ``--memory-gb`` (default 16 GB of this machine's 24): a tool that needs
more fails with an allocation error and is reported as out of memory, with what it would need.
The first call is timed separately (it includes measureflow's ``torch.compile`` of the MMD
blocks); then the best of ``--repeats`` warm calls counts. Writes its section of
benchmarks/RESULTS.md (temp file + rename). ``--quick``: a tenth of every n (smoke test).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BANDWIDTH = 1.0
SINKHORN_EPS = 0.1
N_PROJECTIONS = 200
SLOW_SECONDS = 20.0

# (group, tool, n) in the order of the table.
CASES = [
    ("mmd", "measureflow", 10_000), ("mmd", "geomloss", 10_000), ("mmd", "cdist", 10_000),
    ("mmd", "measureflow", 100_000), ("mmd", "geomloss", 100_000), ("mmd", "cdist", 100_000),
    ("w2", "measureflow", 2_000), ("w2", "pot", 2_000),
    ("sinkhorn", "measureflow", 10_000), ("sinkhorn", "pot", 10_000), ("sinkhorn", "geomloss", 10_000),
    ("sliced", "measureflow", 100_000), ("sliced", "pot", 100_000),
]


def _data(n: int, dtype):
    import torch

    generator = torch.Generator().manual_seed(0)
    x = torch.randn(n, 2, generator=generator, dtype=dtype)
    y = torch.randn(n, 2, generator=generator, dtype=dtype) + torch.tensor([0.1, 0.0], dtype=dtype)
    return x, y


def _function(group: str, tool: str, n: int):
    """Build the inputs and return a no-argument function computing the case's value."""
    import numpy as np
    import torch

    import measureflow as mf

    if group == "mmd":
        x, y = _data(n, torch.float32)
        if tool == "measureflow":
            return lambda: float(mf.metrics.mmd2(x, y, bandwidth=BANDWIDTH, unbiased=False))
        if tool == "geomloss":
            from geomloss import SamplesLoss

            loss = SamplesLoss("gaussian", blur=BANDWIDTH, backend="tensorized")
            return lambda: 2 * float(loss(x, y))
        if tool == "cdist":
            def plain() -> float:
                def mean_kernel(a, b):
                    return torch.exp(-torch.cdist(a, b).square() / (2 * BANDWIDTH**2)).mean()
                return float(mean_kernel(x, x) + mean_kernel(y, y) - 2 * mean_kernel(x, y))
            return plain
    if group == "w2":
        x, y = _data(n, torch.float64)
        if tool == "measureflow":
            return lambda: float(mf.metrics.wasserstein(x, y, p=2))
        if tool == "pot":
            import ot

            xs, ys = x.numpy(), y.numpy()
            weights = np.full(n, 1.0 / n)
            # The pivot cap measureflow passes (POT's default 1e5 stops short from n ~ 5,000).
            cap = max(1_000_000, 10 * n * n)
            return lambda: float(np.sqrt(ot.emd2(weights, weights, ot.dist(xs, ys), numItermax=cap)))
    if group == "sinkhorn":
        x, y = _data(n, torch.float32)
        if tool == "measureflow":
            return lambda: float(mf.metrics.sinkhorn_divergence(x, y, eps=SINKHORN_EPS))
        if tool == "pot":
            import ot

            xs, ys = x.double().numpy(), y.double().numpy()
            # The plain (not log-domain) solver: in float64 exp(-C/eps) does not underflow
            # harmfully at this eps, and POT's numpy log-domain solver is ~100x slower.
            return lambda: float(ot.bregman.empirical_sinkhorn_divergence(
                xs, ys, SINKHORN_EPS, numIterMax=1000, stopThr=1e-6))
        if tool == "geomloss":
            from geomloss import SamplesLoss

            # GeomLoss: cost |x-y|^2 / 2 and eps = blur^2 on it; the same problem scaled by 1/2.
            loss = SamplesLoss("sinkhorn", p=2, blur=(SINKHORN_EPS / 2) ** 0.5, debias=True,
                               backend="tensorized")
            return lambda: 2 * float(loss(x, y))
    if group == "sliced":
        x, y = _data(n, torch.float32)
        if tool == "measureflow":
            generator = torch.Generator().manual_seed(0)
            return lambda: float(mf.metrics.sliced_wasserstein(x, y, p=2, n_projections=N_PROJECTIONS,
                                                               generator=generator))
        if tool == "pot":
            import ot

            xs, ys = x.numpy(), y.numpy()
            return lambda: float(ot.sliced_wasserstein_distance(xs, ys, n_projections=N_PROJECTIONS,
                                                                 p=2, seed=0))
    raise ValueError(f"unknown case {group}/{tool}")


def child(group: str, tool: str, n: int, repeats: int, memory_gb: float) -> dict:
    from _results import cap_memory, is_memory_error, peak_rss_kib, reset_peak_rss, timed

    cap_memory(memory_gb)
    function = _function(group, tool, n)
    before = reset_peak_rss()
    try:
        value, first = timed(function)
    except (MemoryError, RuntimeError) as error:
        if not is_memory_error(error):
            raise
        return {"status": "out of memory", "error": str(error).splitlines()[0][:160]}
    peak = peak_rss_kib()
    best = first
    # A call slower than SLOW_SECONDS is timed once more at most: its noise is small by comparison.
    for _ in range(repeats if first < SLOW_SECONDS else min(repeats, 1)):
        best = min(best, timed(function)[1])
    return {"status": "ok", "value": value, "first": first, "seconds": best,
            "peak_mib": max(peak - before, 0) / 1024}


def run_case(group: str, tool: str, n: int, args) -> dict:
    from _results import run_child

    command = [sys.executable, __file__, "--child", f"{group}:{tool}:{n}",
               "--repeats", str(args.repeats), "--memory-gb", str(args.memory_gb)]
    return run_child(command, args.timeout)


def _versions() -> dict[str, str]:
    import geomloss
    import ot
    import torch
    from _results import machine_info

    return machine_info({"POT": ot.__version__, "geomloss": geomloss.__version__,
                         "torch threads": str(torch.get_num_threads())})


NEEDS = {  # what a dense method would allocate, for the out-of-memory rows
    ("mmd", "geomloss"): lambda n: f"{3 * n * n * 4 / 1e9:.0f} GB for the three float32 kernel matrices",
    ("mmd", "cdist"): lambda n: f"{n * n * 4 / 1e9:.0f} GB per float32 kernel matrix",
}


def render(rows: list[dict], args, wall: float, load: tuple[str, str]) -> str:
    lines = [
        "## Metrics",
        "",
        f"Written by `benchmarks/bench_metrics.py{' --quick' if args.quick else ''}` on "
        f"{datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}. Each row is a fresh process; "
        f"time = best of {args.repeats} warm calls (first call separately: it includes "
        "measureflow's one-off `torch.compile` of the MMD blocks); peak memory = the process's "
        "peak resident size above its size just before the first call; address space capped at "
        f"{args.memory_gb:g} GB. Ratio = the other tool's time / measureflow's (above 1: "
        "measureflow faster). Values are each tool's own convention (see the script's docstring).",
        "",
        "| case | n | tool | time (s) | first call (s) | peak memory (MiB) | value | ratio |",
        "|---|---|---|---|---|---|---|---|",
    ]
    ours = {(row["group"], row["n"]): row for row in rows if row["tool"] == "measureflow"}
    for row in rows:
        mine = ours.get((row["group"], row["n"]))
        if row["status"] != "ok":
            need = NEEDS.get((row["group"], row["tool"]))
            note = row["status"] + (f" (needs {need(row['n'])})" if need else f": {row.get('error', '')}")
            lines.append(f"| {row['group']} | {row['n']:,} | {row['tool']} | {note} | | | | |")
            continue
        ratio = "" if row["tool"] == "measureflow" or mine is None or mine["status"] != "ok" else (
            f"{row['seconds'] / mine['seconds']:.2f}")
        lines.append(
            f"| {row['group']} | {row['n']:,} | {row['tool']} | {row['seconds']:.3g} | {row['first']:.3g} | "
            f"{row['peak_mib']:.0f} | {row['value']:.6g} | {ratio} |"
        )
    lines += ["", "Machine: " + ", ".join(f"{k} {v}" for k, v in _versions().items())
              + f"; load average (1 min) at start / end {load[0]} / {load[1]}; whole benchmark "
              f"{wall:.0f} s.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of every n (smoke test)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--memory-gb", type=float, default=16.0)
    parser.add_argument("--timeout", type=float, default=1800.0)
    parser.add_argument("--only", default=None, help="comma-separated groups (mmd,w2,sinkhorn,sliced)")
    parser.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        group, tool, n = args.child.split(":")
        print(json.dumps(child(group, tool, int(n), args.repeats, args.memory_gb)))
        return 0
    from _results import write_section

    wall = time.perf_counter()
    load_start = f"{os.getloadavg()[0]:.1f}"
    groups = None if args.only is None else set(args.only.split(","))
    rows = []
    for group, tool, n in CASES:
        if groups is not None and group not in groups:
            continue
        n = max(n // 10, 100) if args.quick else n
        result = {"group": group, "tool": tool, "n": n, **run_case(group, tool, n, args)}
        rows.append(result)
        shown = (f"{result['seconds']:.3g} s (first {result['first']:.3g} s), "
                 f"{result['peak_mib']:.0f} MiB, value {result['value']:.6g}"
                 if result["status"] == "ok" else f"{result['status']}: {result.get('error', '')}")
        print(f"{group:8s} {n:>7,} {tool:12s} {shown}", flush=True)
    text = render(rows, args, time.perf_counter() - wall, (load_start, f"{os.getloadavg()[0]:.1f}"))
    write_section(args.out, "bench_metrics", text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    sys.exit(main())
