"""Particle-flow steps per second and grid Fokker-Planck solves, next to what a user would write instead.

Particle cases (x ~ N(0, I) in d = 2, seed 0; float32 and float64):

- ``interaction``: the velocity -(1/n) sum_j grad W(x_i - x_j) of the Gaussian interaction energy
  W(z) = -exp(-|z|^2 / 2), n = 10,000 (and n = 50,000 in float32):
  ``mf.flows.Interaction.gaussian(1.0).velocity(x)`` (blocks of direct differences) against two
  plain implementations, the broadcast ``diff = x[:, None] - x[None]`` ((n, n, d) differences) and
  a ``torch.cdist`` kernel matrix K with v_i = -(1/n)(x_i sum_j K_ij - (K x)_i).
- ``svgd``: Liu & Wang's phi toward the ring of 8 Gaussians (radius 4, std 0.5), n = 10,000,
  RBF kernel with the median heuristic: ``mf.flows.SVGD(target).velocity(x)`` (median over a
  2,000-point subsample, blocked kernel products) against a plain ``torch.cdist`` implementation
  of phi_i = (1/n) sum_j [K_ij score_j + (x_i - x_j) K_ij / h^2], with h from the median of the
  full n x n distance matrix (as in Liu & Wang's code), and the same plain phi with h given (the
  kernel arithmetic alone). The agreement column compares each plain phi with measureflow's at
  the plain h (``SVGD(target, bandwidth=h)``), so it checks the arithmetic, not the two medians.

For each: the velocity (best of ``--repeats`` warm calls), one step of the flow (``mf.flows.run``
with ``n_steps=1``, progress and values off; the plain step is x + h v(x)) as steps per second,
and the peak resident memory. The agreement column is max_i |v_plain - v_mf|_inf / max_i
|v_mf|_inf at the same dtype.

Grid cases (float64; times include building the operator from the energy):

- ``fp1d``: ``mf.pde.FokkerPlanck1D(DoubleWell(), beta=2, lo=-3, hi=3, n=1024)`` from a Gaussian
  N(2, 0.25^2) (far up the right wall) to t = 5: ``method="exponential"`` (exact in time) and
  ``"implicit"`` (implicit Euler, max_step 1e-2), against ``scipy.integrate.solve_ivp`` on the same
  semi-discrete system dp/dt = A p (A = ``generator()``): BDF and Radau with the sparse Jacobian,
  LSODA with the banded one. Error = max |p(5) - p_exponential(5)|.
- ``fp2d``: ``mf.pde.FokkerPlanck2D`` on 256 x 256 cells of [-3, 3]^2 for the rotated double well
  L(z) = (u^2 - 1)^2 + v^2 / 2, u = (z_1 + z_2)/sqrt 2, v = (z_1 - z_2)/sqrt 2, beta = 2, from a
  Gaussian at (1.5, -1) with std 0.3, to t = 5 (implicit Euler, default max_step 1e-2), against
  solve_ivp BDF with the sparse generator (stopped after ``--ivp-limit`` seconds, 120 by default).

solve_ivp runs at ``--rtol`` (1e-6) and atol = rtol * 1e-3 (densities are of order 1). Every
case runs in a fresh process under an address-space cap of ``--memory-gb`` (16 GB); the peak
resident memory is read from ``VmHWM`` after resetting it just before the first call; a case that
cannot allocate is reported as out of memory. The first call is timed separately (it includes
``torch.compile`` of measureflow's kernel blocks for SVGD), then the best of ``--repeats`` warm
calls counts. Writes its section of benchmarks/RESULTS.md (temp file + rename). ``--quick``: a
tenth of every particle count, 256 cells in 1-D and 64 x 64 in 2-D (smoke test).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCALE = 1.0  # range of the Gaussian interaction kernel
STEP_SIZE = 0.1  # of the particle flows (one step is timed; its value does not change the cost)
BETA = 2.0
FINAL_TIME = 5.0
SLOW_SECONDS = 20.0

# (group, tool, size, dtype) in the order of the tables; sizes are the full ones.
CASES = [
    ("interaction", "measureflow", 10_000, "float32"), ("interaction", "broadcast", 10_000, "float32"),
    ("interaction", "cdist", 10_000, "float32"),
    ("interaction", "measureflow", 10_000, "float64"), ("interaction", "broadcast", 10_000, "float64"),
    ("interaction", "cdist", 10_000, "float64"),
    ("interaction", "measureflow", 50_000, "float32"), ("interaction", "broadcast", 50_000, "float32"),
    ("interaction", "cdist", 50_000, "float32"),
    ("svgd", "measureflow", 10_000, "float32"), ("svgd", "cdist", 10_000, "float32"),
    ("svgd", "cdist-h", 10_000, "float32"),
    ("svgd", "measureflow", 10_000, "float64"), ("svgd", "cdist", 10_000, "float64"),
    ("svgd", "cdist-h", 10_000, "float64"),
    ("fp1d", "exponential", 1024, "float64"), ("fp1d", "implicit", 1024, "float64"),
    ("fp1d", "BDF", 1024, "float64"), ("fp1d", "Radau", 1024, "float64"),
    ("fp1d", "LSODA", 1024, "float64"),
    ("fp2d", "implicit", 256, "float64"), ("fp2d", "BDF", 256, "float64"),
]
GRID_GROUPS = ("fp1d", "fp2d")
TOOL_NAMES = {
    "measureflow": "measureflow", "broadcast": "plain broadcast", "cdist": "plain cdist",
    "cdist-h": "plain cdist, h given", "exponential": "measureflow exponential",
    "implicit": "measureflow implicit Euler", "BDF": "solve_ivp BDF", "Radau": "solve_ivp Radau",
    "LSODA": "solve_ivp LSODA",
}


class _TooSlow(Exception):
    """Raised inside solve_ivp's right-hand side once the time limit has passed."""


# ------------------------------------------------------------------------------ particle cases

def _particles(n: int, dtype):
    import torch

    return torch.randn(n, 2, generator=torch.Generator().manual_seed(0), dtype=dtype)


def _ring(dtype):
    import measureflow as mf

    return mf.targets.GaussianMixture.ring(8, 4.0, 0.5).to(dtype=dtype)


def _plain_interaction(tool: str):
    """v_i = -(1/n) sum_j grad W(x_i - x_j), W(z) = -exp(-|z|^2 / (2 s^2)), as a user would write it."""
    import torch

    def broadcast(x):
        diff = x[:, None, :] - x[None, :, :]  # (n, n, d)
        grads = diff * torch.exp(-0.5 * diff.square().sum(-1, keepdim=True) / SCALE**2) / SCALE**2
        return -grads.sum(1) / x.shape[0]

    def cdist(x):
        kernel = torch.exp(-0.5 * torch.cdist(x, x).square() / SCALE**2)
        return -(x * kernel.sum(1, keepdim=True) - kernel @ x) / (SCALE**2 * x.shape[0])

    return {"broadcast": broadcast, "cdist": cdist}[tool]


def _plain_svgd(target, bandwidth: float | None):
    """Liu & Wang's phi with k = exp(-|x - y|^2 / (2 h^2)); h = med / sqrt(2 log n) when not given,
    med the median of the full distance matrix (Liu & Wang's code takes the median of the squared
    distances of ``squareform(pdist(x))``, diagonal zeros included)."""
    import torch

    def phi(x):
        n = x.shape[0]
        sq_dist = torch.cdist(x, x).square()
        h = bandwidth
        if h is None:
            h = float(sq_dist.median().sqrt()) / math.sqrt(2 * math.log(n))
        kernel = torch.exp(-sq_dist / (2 * h * h))
        score = -target.grad_energy(x)
        repulsion = (x * kernel.sum(1, keepdim=True) - kernel @ x) / (h * h)
        return (kernel @ score + repulsion) / n

    return phi


def _median_h(x) -> float:
    import torch

    return float(torch.cdist(x, x).square().median().sqrt()) / math.sqrt(2 * math.log(x.shape[0]))


def particle_case(group: str, tool: str, n: int, dtype_name: str):
    """(velocity function, one-step function, reference function or None, notes)."""
    import torch

    import measureflow as mf

    dtype = getattr(torch, dtype_name)
    x = _particles(n, dtype)
    notes: dict = {}
    if group == "interaction":
        functional = mf.flows.Interaction.gaussian(SCALE)
        plain = None if tool == "measureflow" else _plain_interaction(tool)
        reference = None if plain is None else (lambda: functional.velocity(x))
    elif group == "svgd":
        target = _ring(dtype)
        functional = mf.flows.SVGD(target)
        if tool == "measureflow":
            plain = None
            notes["h"] = functional.kernel_bandwidth(x)
            reference = None
        else:
            h = _median_h(x)  # the full median; computed here once for the agreement check
            notes["h"] = h
            plain = _plain_svgd(target, None if tool == "cdist" else h)
            fixed = mf.flows.SVGD(target, bandwidth=h)
            reference = lambda: fixed.velocity(x)  # noqa: E731
    else:
        raise ValueError(f"unknown particle case {group}/{tool}")

    if plain is None:
        def velocity():
            return functional.velocity(x)

        def step():
            return mf.flows.run(functional, x, STEP_SIZE, 1, progress=False, record_values=False).particles
    else:
        def velocity():
            return plain(x)

        def step():
            return x + STEP_SIZE * plain(x)
    return velocity, step, reference, notes


# ---------------------------------------------------------------------------------- grid cases

def _rotated_double_well(z):
    u = (z[:, 0] + z[:, 1]) / math.sqrt(2)
    v = (z[:, 0] - z[:, 1]) / math.sqrt(2)
    return (u.square() - 1).square() + 0.5 * v.square()


def _solver_1d(n: int):
    import measureflow as mf

    return mf.pde.FokkerPlanck1D(mf.targets.DoubleWell(), beta=BETA, lo=-3.0, hi=3.0, n=n)


def _start_1d(solver):
    import torch

    p0 = torch.exp(-0.5 * ((solver.x - 2.0) / 0.25) ** 2)
    return p0 / (p0.sum() * solver.dx)


def _solver_2d(n: int):
    import measureflow as mf

    return mf.pde.FokkerPlanck2D(_rotated_double_well, beta=BETA, lo=-3.0, hi=3.0, n=n)


def _start_2d(solver):
    import torch

    p0 = torch.exp(-0.5 * ((solver.x1[:, None] - 1.5) ** 2 + (solver.x2[None, :] + 1.0) ** 2) / 0.3**2)
    return p0 / (p0.sum() * solver.dx[0] * solver.dx[1])


def _scipy_generator(solver, two_d: bool):
    import scipy.sparse

    if two_d:
        coo = solver.generator()
        indices = coo.indices().numpy()
        return scipy.sparse.csr_matrix((coo.values().numpy(), (indices[0], indices[1])),
                                       shape=tuple(coo.shape))
    return scipy.sparse.csr_matrix(solver.generator().numpy())


def _solve_ivp(method: str, matrix, p0, rtol: float, limit: float):
    """p(5) from solve_ivp on dp/dt = A p and its statistics; raises _TooSlow after ``limit`` s."""
    import numpy as np
    from scipy.integrate import solve_ivp

    start = time.perf_counter()

    def rhs(_t, p):
        if time.perf_counter() - start > limit:
            raise _TooSlow
        return matrix @ p

    options: dict = {}
    if method == "LSODA":
        # LSODA takes a banded Jacobian in LAPACK's packed form: row u + i - j holds A[i, j].
        dense_bands = np.zeros((3, matrix.shape[0]))
        dense_bands[0, 1:] = matrix.diagonal(1)
        dense_bands[1] = matrix.diagonal()
        dense_bands[2, :-1] = matrix.diagonal(-1)
        options = {"jac": lambda _t, _p: dense_bands, "lband": 1, "uband": 1}
    else:
        options = {"jac": matrix.tocsc()}
    result = solve_ivp(rhs, (0.0, FINAL_TIME), p0, method=method, t_eval=[FINAL_TIME], rtol=rtol,
                       atol=rtol * 1e-3, **options)
    if not result.success:
        raise RuntimeError(f"solve_ivp {method} failed: {result.message}")
    return result.y[:, -1], {"rhs evaluations": int(result.nfev), "LU": int(result.nlu)}


def grid_case(group: str, tool: str, n: int, rtol: float, limit: float):
    """(solve function returning (final density as numpy, stats), reference function or None)."""
    import scipy.integrate  # noqa: F401  (imported here so the timed calls do not include imports)

    import measureflow  # noqa: F401

    two_d = group == "fp2d"
    make, start = (_solver_2d, _start_2d) if two_d else (_solver_1d, _start_1d)

    if tool in ("exponential", "implicit"):
        def solve():
            solver = make(n)
            kwargs = {} if two_d else {"method": tool, "max_step": 1e-2}
            solution = solver.solve(start(solver), [0.0, FINAL_TIME], progress=False, **kwargs)
            steps = {} if tool == "exponential" else {"steps": math.ceil(FINAL_TIME / 1e-2)}
            return solution.p[-1].reshape(-1).numpy(), steps
    else:
        def solve():
            solver = make(n)
            matrix = _scipy_generator(solver, two_d)
            return _solve_ivp(tool, matrix, start(solver).reshape(-1).numpy(), rtol, limit)

    if two_d:
        # No exact solution in 2-D: the BDF row is compared with measureflow's implicit Euler.
        reference = None if tool == "implicit" else (
            lambda: grid_case(group, "implicit", n, rtol, limit)[0]()[0])
    else:
        reference = None if tool == "exponential" else (
            lambda: grid_case(group, "exponential", n, rtol, limit)[0]()[0])
    return solve, reference


# ------------------------------------------------------------------------------------- child

def child(group: str, tool: str, n: int, dtype: str, args) -> dict:
    from _results import cap_memory, is_memory_error, peak_rss_kib, reset_peak_rss, timed

    cap_memory(args.memory_gb)
    grid = group in GRID_GROUPS
    if grid:
        function, reference = grid_case(group, tool, n, args.rtol, args.ivp_limit)
        extra, notes = None, {}
    else:
        function, extra, reference, notes = particle_case(group, tool, n, dtype)
    before = reset_peak_rss()
    try:
        value, first = timed(function)
    except _TooSlow:
        return {"status": "too slow", "limit": args.ivp_limit}
    except (MemoryError, RuntimeError) as error:
        if not is_memory_error(error):
            raise
        return {"status": "out of memory", "error": str(error).splitlines()[0][:160]}
    peak = peak_rss_kib()
    repeats = args.repeats if first < SLOW_SECONDS else min(args.repeats, 1)
    best = first
    for _ in range(repeats):
        best = min(best, timed(function)[1])
    result = {"status": "ok", "first": first, "seconds": best, "peak_mib": max(peak - before, 0) / 1024,
              **notes}
    if grid:
        density, stats = value
        volume = (6.0 / n) ** (2 if group == "fp2d" else 1)
        result.update(stats)
        result["mass_error"] = abs(float(density.sum()) * volume - 1.0)
        result["min_density"] = float(density.min())
        if reference is not None:
            result["difference"] = float(abs(density - reference()).max())
    else:
        step_best = math.inf
        for _ in range(max(repeats, 1)):
            step_best = min(step_best, timed(extra)[1])
        result["step_seconds"] = step_best
        if reference is not None:
            mine = reference()
            result["difference"] = float((value - mine).abs().max() / mine.abs().max())
    return result


def run_case(group: str, tool: str, n: int, dtype: str, args) -> dict:
    from _results import run_child

    command = [sys.executable, __file__, "--child", f"{group}:{tool}:{n}:{dtype}",
               "--repeats", str(args.repeats), "--memory-gb", str(args.memory_gb),
               "--rtol", str(args.rtol), "--ivp-limit", str(args.ivp_limit)]
    return run_child(command, args.timeout)


# ------------------------------------------------------------------------------------ report

def machine_info() -> dict[str, str]:
    import numpy
    import scipy
    import torch
    from _results import machine_info as common

    return common({"torch threads": str(torch.get_num_threads()), "numpy": numpy.__version__,
                   "scipy": scipy.__version__})


NEEDS = {  # what the plain implementations would allocate, for the out-of-memory rows
    "broadcast": lambda n, b: f"{2 * n * n * 2 * b / 1e9:.0f} GB for the (n, n, 2) differences and "
                              "their kernel-weighted copy",
    "cdist": lambda n, b: f"{2 * n * n * b / 1e9:.0f} GB for two live (n, n) matrices",
}


def _ratio(mine: dict | None, row: dict, key: str) -> str:
    if mine is None or mine.get("status") != "ok" or row["status"] != "ok" or row is mine:
        return ""
    return f"{row[key] / mine[key]:.2f}"


def render_particles(rows: list[dict]) -> list[str]:
    lines = [
        "| case | n | dtype | tool | velocity (s) | flow steps/s | first call (s) | peak memory (MiB) "
        "| max rel. diff vs measureflow | time / measureflow's | notes |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    ours = {(r["group"], r["n"], r["dtype"]): r for r in rows if r["tool"] == "measureflow"}
    for row in rows:
        head = f"| {row['group']} | {row['n']:,} | {row['dtype']} | {TOOL_NAMES[row['tool']]} |"
        if row["status"] != "ok":
            need = NEEDS.get(row["tool"])
            size = 4 if row["dtype"] == "float32" else 8
            note = row["status"] + (f" (needs about {need(row['n'], size)})" if need and
                                    row["status"] == "out of memory" else f": {row.get('error', '')}")
            lines.append(f"{head} {note} | | | | | | |")
            continue
        mine = ours.get((row["group"], row["n"], row["dtype"]))
        difference = f"{row['difference']:.1e}" if "difference" in row else ""
        notes = f"h = {row['h']:.4g}" if "h" in row else ""
        lines.append(
            f"{head} {row['seconds']:.3g} | {1 / row['step_seconds']:.3g} | {row['first']:.3g} | "
            f"{row['peak_mib']:.0f} | {difference} | {_ratio(mine, row, 'seconds')} | {notes} |"
        )
    return lines


def render_grids(rows: list[dict], args) -> list[str]:
    lines = [
        "| case | cells | solver | time to t = 5 (s) | first call (s) | peak memory (MiB) | "
        "max abs diff | mass error | min density | work | time / measureflow's |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    reference_tool = {"fp1d": "exponential", "fp2d": "implicit"}
    ours = {r["group"]: r for r in rows if r["tool"] == reference_tool[r["group"]]}
    for row in rows:
        cells = f"{row['n']:,}" if row["group"] == "fp1d" else f"{row['n']} x {row['n']}"
        head = f"| {row['group']} | {cells} | {TOOL_NAMES[row['tool']]} |"
        if row["status"] == "too slow":
            lines.append(f"{head} > {row['limit']:g} (stopped) | | | | | | | |")
            continue
        if row["status"] != "ok":
            lines.append(f"{head} {row['status']}: {row.get('error', '')} | | | | | | | |")
            continue
        difference = f"{row['difference']:.1e}" if "difference" in row else ""
        work = ", ".join(f"{row[key]} {key}" for key in ("steps", "rhs evaluations", "LU") if key in row)
        lines.append(
            f"{head} {row['seconds']:.3g} | {row['first']:.3g} | {row['peak_mib']:.0f} | {difference} | "
            f"{row['mass_error']:.1e} | {row['min_density']:.2g} | {work} | "
            f"{_ratio(ours.get(row['group']), row, 'seconds')} |"
        )
    return lines


def render(rows: list[dict], args, wall: float, load: tuple[str, str]) -> str:
    particles = [r for r in rows if r["group"] not in GRID_GROUPS]
    grids = [r for r in rows if r["group"] in GRID_GROUPS]
    lines = [
        "## Flows and grid solvers",
        "",
        f"Written by `benchmarks/bench_flows.py{' --quick' if args.quick else ''}` on "
        f"{datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}. Each row is a fresh process; "
        f"times are the best of {args.repeats} warm calls (the first call separately: for SVGD it "
        "includes measureflow's one-off `torch.compile` of the kernel blocks); peak memory = the "
        "process's peak resident size above its size just before the first call; address space "
        f"capped at {args.memory_gb:g} GB. \"time / measureflow's\" above 1: measureflow faster.",
    ]
    if particles:
        lines += [
            "",
            "Particle flows in d = 2, x ~ N(0, I). `interaction`: Gaussian interaction energy "
            "W(z) = -exp(-|z|^2 / 2), `Interaction.gaussian(1.0).velocity(x)` against the broadcast "
            "`x[:, None] - x[None]` and a `torch.cdist` kernel matrix. `svgd`: Liu & Wang's phi toward "
            "the ring of 8 Gaussians, median-heuristic RBF kernel (measureflow: median over 2,000 "
            "particles; plain cdist: median of the full matrix; h given: the kernel arithmetic "
            "alone). Flow steps/s = 1 / time of one step (`mf.flows.run(..., n_steps=1)`, x + h v(x) "
            "for the plain ones). Max rel. diff = max |v - v_mf| / max |v_mf| at the same dtype "
            "(SVGD: both at the plain h).",
            "",
            *render_particles(particles),
        ]
    if grids:
        lines += [
            "",
            "Fokker-Planck to t = 5, beta = 2 on [-3, 3]^d, float64; time includes building the "
            "operator. `fp1d`: double well (x^2 - 1)^2 from N(2, 0.25^2); max abs diff against the "
            "exponential solution (exact in time). `fp2d`: rotated double well (u^2 - 1)^2 + v^2/2 "
            "from a Gaussian at (1.5, -1), std 0.3; implicit Euler with max_step 1e-2; max abs diff "
            f"of BDF against it. solve_ivp: rtol {args.rtol:g}, atol {args.rtol * 1e-3:g}, the "
            "generator A as its sparse Jacobian (LSODA: banded), stopped after "
            f"{args.ivp_limit:g} s. Mass error = |sum p dx - 1|; densities are of order 1.",
            "",
            *render_grids(grids, args),
        ]
    lines += ["", "Machine: " + ", ".join(f"{k} {v}" for k, v in machine_info().items())
              + f"; load average (1 min) at start / end {load[0]} / {load[1]}; whole benchmark "
              f"{wall:.0f} s.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="a tenth of every particle count, 256 cells in 1-D, 64 x 64 in 2-D")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--memory-gb", type=float, default=16.0)
    parser.add_argument("--rtol", type=float, default=1e-6, help="solve_ivp's rtol (atol = rtol * 1e-3)")
    parser.add_argument("--ivp-limit", type=float, default=120.0,
                        help="seconds after which a solve_ivp run is stopped and reported as slower")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per case (a backstop)")
    parser.add_argument("--only", default=None, help="comma-separated groups (interaction,svgd,fp1d,fp2d)")
    parser.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")
    if args.child:
        group, tool, n, dtype = args.child.split(":")
        print(json.dumps(child(group, tool, int(n), dtype, args)))
        return 0
    from _results import write_section

    wall = time.perf_counter()
    load_start = f"{os.getloadavg()[0]:.2f}"
    groups = None if args.only is None else set(args.only.split(","))
    rows = []
    for group, tool, n, dtype in CASES:
        if groups is not None and group not in groups:
            continue
        if args.quick:
            n = {"fp1d": 256, "fp2d": 64}.get(group, n // 10)
        result = {"group": group, "tool": tool, "n": n, "dtype": dtype,
                  **run_case(group, tool, n, dtype, args)}
        rows.append(result)
        if result["status"] == "ok":
            shown = (f"{result['seconds']:.3g} s (first {result['first']:.3g} s), "
                     f"{result['peak_mib']:.0f} MiB"
                     + (f", diff {result['difference']:.1e}" if "difference" in result else ""))
        else:
            shown = f"{result['status']}: {result.get('error', result.get('limit', ''))}"
        print(f"{group:11s} {n:>7,} {dtype:7s} {tool:12s} {shown}", flush=True)
    text = render(rows, args, time.perf_counter() - wall, (load_start, f"{os.getloadavg()[0]:.2f}"))
    write_section(args.out, "bench_flows", text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    sys.exit(main())
