"""Causal direction: CGNN's batched restarts against a per-restart PyTorch loop and cdt, pairs per
minute on the Tuebingen pairs, and Meta-CGNN's accuracy against its number of training data sets.

Group ``restarts``: CGNN on one Tuebingen pair (``pair0001``, 349 points, altitude and temperature;
variables in the order of ``tuebingen_pairs()``) with 10 restarts each way and the same settings
everywhere: one hidden layer of 20 ReLU units on (cause, z), z ~ N(0, 1); ``n_steps`` (1,000)
Adam steps at learning rate 0.03 with cosine decay to 0 (``CosineAnnealingLR``); minibatches of
128 points drawn without replacement; the V-statistic MMD^2 of the joints with the sum of Gaussian
kernels of bandwidths (2, 1, 0.5, 0.25, 0.125) on standardized variables; the final MMD^2 of each
fit on all points, averaged over 8 noise draws. Timed (wall clock and process CPU time):

- ours: ``cgnn_direction(x, y, n_restarts=10, ...)``: the 20 fits as one batched model (weights
  ``(20, ...)`` through ``bmm``, one Adam), the MMD's gradient written out. Timed twice, before and
  after the loops (after a 2-step warm-up call); the ratio uses the mean of the two.
- the loop a PyTorch user writes: for each restart and each direction, ``nn.Sequential(nn.Linear(2,
  20), nn.ReLU(), nn.Linear(20, 1))`` (default initialization) trained by ``torch.optim.Adam`` with
  the same ``CosineAnnealingLR``, minibatch ``torch.randperm(n)[:128]``, the loss written with
  autograd in its fastest fair form: the data-data term dropped (it has no gradient), the squared
  distances formed once per step as (c_i - c_j)^2 + (u_i - v_j)^2 (the two joints share the
  causes), the kernels multiplied rather than divided. Two variants: "as written", one ``exp`` per
  bandwidth, summed; "ladder", measureflow's own trick (the bandwidths halve, so each kernel is the
  previous one to the fourth power: one ``exp`` and two squarings per further bandwidth). Its
  evaluation is ours, written plainly (the data-data term once per direction). Both variants start
  from ``torch.manual_seed(0)`` and draw the same random numbers, so their MMDs agree to round-off
  (a check of the ladder). The goal (issue 19: ours at least 5x the loop) is read against the
  faster variant.
- ``cdt.causality.pairwise.GNN`` (cdt 0.6, the CGNN authors' package) with ``nh=20``,
  ``batch_size=128``, ``train_epochs`` = n_steps / (n // 128) (cdt's epochs are passes over a
  ``DataLoader`` with ``drop_last``: 2 minibatches here, so the same 1,000 steps),
  ``test_epochs=4`` (its score is the MMD summed over the 8 minibatches of those epochs, / 4),
  ``njobs=1, gpus=0`` (without GPUs cdt runs its ``nruns`` one after the other in this process;
  ``njobs`` is then unused). Differences it does not let us remove: constant learning rate 0.01 (its
  ``lr`` option is not passed on to the networks when it runs without GPUs, nor is ``nh``, whose
  default is 20 anyway), no cosine decay, its own kernel sum exp(-gamma |a - b|^2) with gamma in
  (0.01, 0.1, 1, 10, 100), its MMD^2 on the 256 x 256 Gram matrix of both samples (data-data term
  included, autograd), and its final MMDs on minibatches. So its MMDs are on another scale than
  ours; its time per step is what compares. It is slow, so it runs ``--cdt-runs`` (2) restarts and
  the time for 10 is extrapolated (the runs are sequential and alike: linear in their number). Each
  run's two MMDs are read by wrapping cdt's ``GNN_instance`` (the call is unchanged).

Group ``pairs``: pairs per minute on the 99 bivariate Tuebingen pairs through ``decide(pairs,
method, seed=0)`` with its defaults, and the weighted accuracy (95% Clopper-Pearson interval) and
decision-rate AUC from ``evaluate`` as a by-product. IGCI (both estimators) and RECI run on all 99;
ANM and CGNN (8 restarts, 1,000 steps, 16 pairs per batched model, at most 1,000 points) take
seconds to minutes per pair, so they run on a fixed subset of 16 pairs (every sixth, positions 0,
6, ..., 90; their mean size, capped at 1,000, is stated next to the whole set's) and the rate is
reported with the time the whole set would take at that rate. Meta-CGNN: the default model
(``default_meta_model``: 200 synthetic data sets, 2,000 steps; ``decide`` trains exactly it) is
trained once, timed apart, then decides all 99 pairs (``decide(..., meta_model=model)``, which
passes decide's ``max_points=1000`` where ``meta_cgnn_decide`` alone defaults to 500). Next to
them, cdt's IGCI (entropy estimator, Gaussian reference: its default) and RECI on all 99 pairs, as
cdt's ``predict_dataset`` calls them (each variable ``sklearn.preprocessing.scale``-d), and cdt's
IGCI slope ("integral") estimator, which returns 0 on every pair on this numpy (counted). cdt's
ANM is not run: its GP fit collapses (length-scale at its 1e-5 bound) and its score is ~1e-15 on
the pairs tried, at 30 s for a 4,177-point pair.

Group ``meta``: Meta-CGNN's accuracy against the number N of training data sets, N in (10, 30,
100, 300): ``meta_training_pairs(N, 300, seed=0)`` (every identifiable mechanism in turn, noise
levels low/medium/high in turn), ``train_meta_cgnn(..., n_steps=1500)`` (its other defaults, seeded
generator), then ``meta_cgnn_decide`` on 100 held-out synthetic pairs (20 of each identifiable
mechanism, 300 points, noise "medium", seeds 1,000,000 + k, never used for training) and on the 99
Tuebingen pairs (weighted accuracy).

Torch runs on ``--threads`` threads (default 1: the reference machine has 2 cores and is shared,
and every tool here then uses one core). All groups run in this one process. Writes the section
``bench_causal`` of benchmarks/RESULTS.md (temp file + rename) and prints it. ``--quick``: a smoke
test of about two minutes (100 steps, one cdt run, 4 small pairs for ANM and CGNN with 100 steps,
a 100-step default meta model on 20 pairs, N in (10, 100) with 150 steps, 4 held-out pairs per
mechanism and 20 Tuebingen pairs). ``--only restarts,pairs,meta`` picks groups.
"""

from __future__ import annotations

import argparse
import datetime
import math
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
GROUPS = ("restarts", "pairs", "meta")

PAIR = "pair0001"
RESTARTS = 10
HIDDEN = 20
BATCH = 128
LEARNING_RATE = 0.03
BANDWIDTHS = (2.0, 1.0, 0.5, 0.25, 0.125)
N_EVAL = 8
HELD_OUT_SEED = 1_000_000

# Positions in tuebingen_pairs() of the fixed subsets (every sixth pair; quick: four small ones).
SUBSET = {"full": list(range(0, 96, 6)), "quick": [0, 18, 54, 84]}
QUICK_TUEBINGEN = list(range(0, 99, 5))  # 20 pairs
SIZES = {  # mode -> settings
    "full": {"steps": 1000, "cdt_runs": 2, "cgnn_options": {}, "meta_default_steps": 2000,
             "meta_n": (10, 30, 100, 300), "meta_steps": 1500, "held_out_per_mechanism": 20},
    "quick": {"steps": 100, "cdt_runs": 1, "cgnn_options": {"n_steps": 100}, "meta_default_steps": 100,
              "meta_n": (10, 100), "meta_steps": 150, "held_out_per_mechanism": 4},
}


def _per_minute(count: int, seconds: float) -> float:
    return 60.0 * count / seconds if seconds > 0 else math.inf


def _timed(function):
    """``(function(), wall seconds, process CPU seconds)``."""
    wall, cpu = time.perf_counter(), time.process_time()
    value = function()
    return value, time.perf_counter() - wall, time.process_time() - cpu


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values)


def _load_pair():
    """(name, x, y, true direction) of ``PAIR`` in the order of ``tuebingen_pairs()``."""
    from measureflow.inference.causal import tuebingen_pairs

    pairs = tuebingen_pairs()
    index = pairs.names.index(PAIR)
    return PAIR, pairs.x[index], pairs.y[index], pairs.directions[index]


# ------------------------------------------------------------------ group restarts: the plain loop

def kernel_sum(d2):
    """sum_h exp(-d2 / (2 h^2)): one exp per bandwidth, as a user writes it."""
    import torch

    return sum(torch.exp(d2 * (-0.5 / (h * h))) for h in BANDWIDTHS)


def kernel_sum_ladder(d2):
    """The same sum for a halving ladder h, h/2, h/4, ...: each term is the previous one to the 4th power."""
    import torch

    term = torch.exp(d2 * (-0.5 / BANDWIDTHS[0] ** 2))
    total = term
    for _ in BANDWIDTHS[1:]:
        term = term.square().square()
        total = total + term
    return total


def plain_fit(cause, effect, n_steps: int, kernels):
    """One restart in one direction, as a PyTorch user writes it: effect = net(cause, z) trained by
    the MMD^2 of the joints less its data-data term, on minibatches of ``BATCH`` points."""
    import torch
    from torch import nn

    net = nn.Sequential(nn.Linear(2, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, 1))
    optimizer = torch.optim.Adam(net.parameters(), lr=LEARNING_RATE)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, n_steps)
    n = cause.shape[0]
    m = min(BATCH, n)
    for _ in range(n_steps):
        index = torch.randperm(n)[:m]
        c, e = cause[index], effect[index]
        cause_d2 = (c[:, None] - c[None, :]).square()
        g = net(torch.stack([c, torch.randn(m)], 1)).squeeze(1)
        loss = (kernels(cause_d2 + (g[:, None] - g[None, :]).square()).mean()
                - 2 * kernels(cause_d2 + (e[:, None] - g[None, :]).square()).mean())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    return net


def plain_loop(x, y, n_steps: int, kernels) -> dict:
    """10 restarts x 2 directions of :func:`plain_fit`, each evaluated as ours: the full MMD^2 on all
    points, averaged over ``N_EVAL`` noise draws. Returns the per-restart MMDs each way."""
    import torch

    torch.manual_seed(0)
    x = ((x - x.mean()) / x.std()).float()
    y = ((y - y.mean()) / y.std()).float()
    mmds: dict[str, list[float]] = {"xy": [], "yx": []}
    for _ in range(RESTARTS):
        for key, (cause, effect) in (("xy", (x, y)), ("yx", (y, x))):
            net = plain_fit(cause, effect, n_steps, kernels)
            with torch.no_grad():
                cause_d2 = (cause[:, None] - cause[None, :]).square()
                data = kernels(cause_d2 + (effect[:, None] - effect[None, :]).square()).mean()
                total = 0.0
                for _ in range(N_EVAL):
                    g = net(torch.stack([cause, torch.randn(cause.shape[0])], 1)).squeeze(1)
                    total += float(data + kernels(cause_d2 + (g[:, None] - g[None, :]).square()).mean()
                                   - 2 * kernels(cause_d2 + (effect[:, None] - g[None, :]).square()).mean())
                mmds[key].append(total / N_EVAL)
    return mmds


def _summary(mmd_xy: list[float], mmd_yx: list[float]) -> dict:
    score = _mean(mmd_yx) - _mean(mmd_xy)
    return {"direction": 1 if score >= 0 else -1, "mean_xy": _mean(mmd_xy), "mean_yx": _mean(mmd_yx),
            "range_xy": (min(mmd_xy), max(mmd_xy)), "range_yx": (min(mmd_yx), max(mmd_yx)),
            "restarts": len(mmd_xy)}


def run_cdt_gnn(x, y, n_steps: int, runs: int, threads: int) -> dict:
    """cdt's pairwise GNN as the module docstring sets it up; its per-run MMDs read off GNN_instance."""
    import torch

    try:
        import importlib

        import cdt

        # The module, not the class: the package's __init__ rebinds the name GNN to the class.
        cdt_gnn = importlib.import_module("cdt.causality.pairwise.GNN")
    except Exception as error:  # noqa: BLE001 - any import failure is reported, not raised
        return {"status": "failed", "error": f"import: {type(error).__name__}: {error}"[:200]}
    torch.set_num_threads(threads)  # cdt's import must not change it
    n = x.shape[0]
    per_epoch = n // BATCH
    train_epochs, test_epochs = math.ceil(n_steps / per_epoch), math.ceil(N_EVAL / per_epoch)
    recorded: list[list[float]] = []
    original = cdt_gnn.GNN_instance

    def recording(*args, **kwargs):
        out = original(*args, **kwargs)
        recorded.append([float(v) for v in out])
        return out

    model = cdt_gnn.GNN(nh=HIDDEN, lr=LEARNING_RATE, nruns=runs, njobs=1, gpus=0, verbose=False,
                        batch_size=BATCH, train_epochs=train_epochs, test_epochs=test_epochs)
    torch.manual_seed(0)
    cdt_gnn.GNN_instance = recording
    try:
        score, wall, cpu = _timed(lambda: model.predict_proba((x.numpy(), y.numpy())))
    except Exception as error:  # noqa: BLE001 - cdt may not run on these torch/pandas versions
        return {"status": "failed", "error": f"{type(error).__name__}: {error}"[:200]}
    finally:
        cdt_gnn.GNN_instance = original
    return {"status": "ok", "version": cdt.__version__, "wall": [wall], "cpu": [cpu], "score": float(score),
            "train_epochs": train_epochs, "test_epochs": test_epochs, "steps": train_epochs * per_epoch,
            **_summary([r[0] for r in recorded], [r[1] for r in recorded]),
            "direction": 1 if score > 0 else -1}


def run_restarts(size: dict) -> dict:
    import torch

    from measureflow.inference.causal import cgnn_direction

    name, x, y, truth = _load_pair()
    steps = size["steps"]

    def ours():
        return cgnn_direction(x, y, n_restarts=RESTARTS, hidden=HIDDEN, n_steps=steps, batch_size=BATCH,
                              learning_rate=LEARNING_RATE, bandwidths=BANDWIDTHS, n_eval=N_EVAL,
                              generator=torch.Generator().manual_seed(0))

    cgnn_direction(x, y, n_restarts=RESTARTS, n_steps=2, n_eval=1, generator=torch.Generator().manual_seed(1))
    rows = {}
    result, wall, cpu = _timed(ours)
    rows["ours"] = {"status": "ok", "wall": [wall], "cpu": [cpu],
                    **_summary(result.details["mmd_xy"], result.details["mmd_yx"])}
    print(f"ours        {wall:7.1f} s", flush=True)
    for key, kernels in (("loop", kernel_sum), ("ladder", kernel_sum_ladder)):
        mmds, wall, cpu = _timed(lambda kernels=kernels: plain_loop(x, y, steps, kernels))
        rows[key] = {"status": "ok", "wall": [wall], "cpu": [cpu], **_summary(mmds["xy"], mmds["yx"])}
        print(f"{key:11s} {wall:7.1f} s", flush=True)
    result, wall, cpu = _timed(ours)
    rows["ours"]["wall"].append(wall)
    rows["ours"]["cpu"].append(cpu)
    print(f"ours        {wall:7.1f} s", flush=True)
    rows["cdt"] = run_cdt_gnn(x, y, steps, size["cdt_runs"], size["threads"])
    print(f"cdt         {rows['cdt'].get('wall', [math.nan])[0]:7.1f} s {rows['cdt']['status']}", flush=True)
    return {"status": "ok", "pair": name, "n": int(x.shape[0]), "truth": truth, "steps": steps, "rows": rows}


# ------------------------------------------------------------------------------- group pairs

def _cdt_decisions(method, pairs, **options) -> list:
    """cdt's ``predict_proba`` on every pair, each variable scaled as its ``predict_dataset`` does;
    DirectionResults of the sign (positive: x -> y)."""
    from sklearn.preprocessing import scale

    from measureflow.inference.causal import DirectionResult

    results = []
    for x, y in zip(pairs.x, pairs.y, strict=True):
        a, b = scale(x.numpy().reshape(-1, 1)), scale(y.numpy().reshape(-1, 1))
        score = float(method.predict_proba((a, b), **options))
        results.append(DirectionResult("cdt", 1 if score >= 0 else -1, score))
    return results


def run_pairs(size: dict, quick: bool) -> dict:
    import numpy as np
    import torch

    from measureflow.inference.causal import decide, evaluate, tuebingen_pairs
    from measureflow.inference.causal.meta import default_meta_model

    pairs = tuebingen_pairs()
    every = list(range(len(pairs)))
    subset = SUBSET["quick" if quick else "full"]
    meta_positions = QUICK_TUEBINGEN if quick else every
    capped = np.minimum([x.shape[0] for x in pairs.x], 1000)
    rows = []

    def measure(key: str, label: str, positions: list[int], call, warm_up: bool = True) -> None:
        chosen = pairs.subset(positions)
        if warm_up:
            call(pairs.subset(positions[:2]))
        try:
            results, wall, _ = _timed(lambda: call(chosen))
        except Exception as error:  # noqa: BLE001 - one tool failing must not hide the others
            rows.append({"key": key, "label": label, "status": "failed", "error": f"{type(error).__name__}: "
                         f"{error}"[:200]})
            return
        scored = evaluate(results, chosen)
        rows.append({"key": key, "label": label, "status": "ok", "pairs": len(chosen), "seconds": wall,
                     "per_minute": _per_minute(len(chosen), wall), "accuracy": scored.accuracy,
                     "interval": scored.interval, "auc": scored.auc,
                     "mean_points": float(capped[positions].mean()),
                     "zero_scores": sum(r.score == 0 for r in results)})
        print(f"{key:18s} {len(chosen):3d} pairs in {wall:7.1f} s: {rows[-1]['per_minute']:9.1f}/min, "
              f"accuracy {scored.accuracy:.3f}", flush=True)

    measure("igci", "ours `igci` (defaults: slope estimator, uniform reference)", every,
            lambda p: decide(p, "igci"))
    measure("igci-entropy", "ours `igci`, estimator=\"entropy\", reference=\"gaussian\"", every,
            lambda p: decide(p, "igci", estimator="entropy", reference="gaussian"))
    measure("reci", "ours `reci` (defaults: cubic polynomial regression)", every, lambda p: decide(p, "reci"))
    measure("reci-monomial", "ours `reci`, regression=\"monomial\" (cdt's fit)", every,
            lambda p: decide(p, "reci", regression="monomial"))
    measure("anm", "ours `anm` (defaults: GP regression, HSIC gamma p-value, max_points 1000)", subset,
            lambda p: decide(p, "anm"), warm_up=False)
    cgnn_label = ("ours `cgnn` (defaults: 8 restarts, 1,000 steps, 16 pairs per batched model, "
                  "max_points 1000)" if not quick else "ours `cgnn`, n_steps=100 (quick)")
    measure("cgnn", cgnn_label, subset, lambda p: decide(p, "cgnn", **size["cgnn_options"]), warm_up=False)
    model, train_s, _ = _timed(lambda: default_meta_model(200, n_steps=size["meta_default_steps"], seed=0))
    print(f"meta-cgnn training {train_s:7.1f} s", flush=True)
    measure("meta-cgnn", f"ours `meta-cgnn`, the default model ({size['meta_default_steps']:,} steps on 200 "
            "data sets, trained once, timed apart), decisions only (max_points 1000: decide's default)",
            meta_positions,
            lambda p: decide(p, "meta-cgnn", meta_model=model))
    try:
        from cdt.causality.pairwise import IGCI, RECI

        torch.set_num_threads(size["threads"])
        measure("cdt-igci", "cdt `IGCI` (defaults: entropy estimator, Gaussian reference)", every,
                lambda p: _cdt_decisions(IGCI(), p))
        measure("cdt-igci-integral", "cdt `IGCI`, estimator=\"integral\" (its slope estimator)", every,
                lambda p: _cdt_decisions(IGCI(), p, estimator="integral"))
        measure("cdt-reci", "cdt `RECI` (defaults: degree 3)", every, lambda p: _cdt_decisions(RECI(), p))
    except Exception as error:  # noqa: BLE001 - reported in the table
        rows.append({"key": "cdt", "label": "cdt baselines", "status": "failed",
                     "error": f"{type(error).__name__}: {error}"[:200]})
    return {"status": "ok", "rows": rows, "meta_train_s": train_s, "n_pairs": len(pairs),
            "subset": [pairs.names[i] for i in subset], "subset_mean_points": float(capped[subset].mean()),
            "whole_mean_points": float(capped.mean())}


# -------------------------------------------------------------------------------- group meta

def held_out_pairs(per_mechanism: int):
    """``per_mechanism`` pairs of each identifiable mechanism k, 300 points, noise "medium", from the
    seed ``HELD_OUT_SEED + k`` (``meta_training_pairs(N, seed=0)`` draws data set i from seed i < N)."""
    from measureflow.inference.causal import CausePairs, synthetic_pairs
    from measureflow.inference.causal.meta import TRAINING_MECHANISMS

    parts = [synthetic_pairs(mechanism, per_mechanism, 300, noise="medium", seed=HELD_OUT_SEED + k)
             for k, mechanism in enumerate(TRAINING_MECHANISMS)]
    return CausePairs([n for p in parts for n in p.names], [v for p in parts for v in p.x],
                      [v for p in parts for v in p.y], [d for p in parts for d in p.directions],
                      [w for p in parts for w in p.weights]), TRAINING_MECHANISMS


def run_meta(size: dict, quick: bool) -> dict:
    import torch

    from measureflow.inference.causal import evaluate, tuebingen_pairs
    from measureflow.inference.causal.meta import meta_cgnn_decide, meta_training_pairs, train_meta_cgnn

    synthetic, mechanisms = held_out_pairs(size["held_out_per_mechanism"])
    tuebingen = tuebingen_pairs(indices=QUICK_TUEBINGEN if quick else None)
    rows = []
    for n_datasets in size["meta_n"]:
        causes, effects = meta_training_pairs(n_datasets, 300, seed=0)
        model, train_s, _ = _timed(lambda causes=causes, effects=effects: train_meta_cgnn(
            causes, effects, n_steps=size["meta_steps"], generator=torch.Generator().manual_seed(0)))
        decided = meta_cgnn_decide(model, synthetic, generator=torch.Generator().manual_seed(1))
        scored = evaluate(decided, synthetic)
        by_mechanism = {}
        for mechanism in mechanisms:
            mine = [i for i, name in enumerate(synthetic.names) if name.rsplit("-", 1)[0] == mechanism]
            by_mechanism[mechanism] = _mean(decided[i].direction == synthetic.directions[i] for i in mine)
        real = evaluate(meta_cgnn_decide(model, tuebingen, generator=torch.Generator().manual_seed(1)),
                        tuebingen)
        rows.append({"n": n_datasets, "train_s": train_s, "synthetic": scored.accuracy,
                     "synthetic_interval": scored.interval, "by_mechanism": by_mechanism,
                     "tuebingen": real.accuracy, "tuebingen_interval": real.interval,
                     "tuebingen_auc": real.auc})
        print(f"meta N={n_datasets:4d}: trained in {train_s:6.1f} s, synthetic {scored.accuracy:.3f}, "
              f"Tuebingen {real.accuracy:.3f}", flush=True)
    return {"status": "ok", "rows": rows, "steps": size["meta_steps"], "mechanisms": list(mechanisms),
            "synthetic_pairs": len(synthetic), "tuebingen_pairs": len(tuebingen)}


# ------------------------------------------------------------------------------------- report

TOOL_LABELS = {
    "ours": "measureflow `cgnn_direction(n_restarts=10)` (one batched model)",
    "loop": "plain PyTorch loop, one exp per bandwidth (as written)",
    "ladder": "plain PyTorch loop, squaring ladder (fastest)",
    "cdt": "cdt `GNN` (pairwise CGNN)",
}


def _range(pair: tuple[float, float]) -> str:
    return f"{pair[0]:.4f}-{pair[1]:.4f}"


def render_restarts(result: dict) -> list[str]:
    rows = result["rows"]
    ours = rows["ours"]
    ours_wall, ours_cpu = _mean(ours["wall"]), _mean(ours["cpu"])
    truth = "X -> Y" if result["truth"] == 1 else "Y -> X"
    lines = [
        f"### CGNN with {RESTARTS} restarts on one Tuebingen pair",
        "",
        f"`{result['pair']}` ({result['n']} points; true direction {truth} in the order of "
        f"`tuebingen_pairs()`), {result['steps']:,} steps, hidden {HIDDEN}, minibatch {BATCH} without "
        f"replacement, Adam at {LEARNING_RATE} with cosine decay (cdt: constant 0.01), bandwidths "
        f"{', '.join(f'{h:g}' for h in BANDWIDTHS)}, final MMD^2 on all points over {N_EVAL} noise draws "
        "(cdt: its own kernel and minibatch MMDs; see the script's docstring). Time for 10 restarts x 2 "
        "directions, wall clock and process CPU time (one thread: CPU time is the less load-sensitive). "
        "measureflow: mean of two runs, before and after the loops. cdt: "
        + (f"{rows['cdt']['restarts']} restart(s) timed, the 10-restart time extrapolated linearly."
           if rows["cdt"]["status"] == "ok" else "see its row."),
        "",
        "| tool | restarts timed | wall for 10 restarts (s) | CPU for 10 restarts (s) | this / measureflow "
        "(wall) | this / measureflow (CPU) | decision | mean MMD^2 X->Y (restart range) | mean MMD^2 Y->X "
        "(restart range) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    best_ratio = None
    for key in ("ours", "loop", "ladder", "cdt"):
        row = rows[key]
        if row["status"] != "ok":
            lines.append(f"| {TOOL_LABELS[key]} | {row['status']}: {row.get('error', '')} | | | | | | | |")
            continue
        scale = RESTARTS / row["restarts"]
        wall, cpu = _mean(row["wall"]) * scale, _mean(row["cpu"]) * scale
        ratio_wall, ratio_cpu = wall / ours_wall, cpu / ours_cpu
        if key in ("loop", "ladder"):
            best_ratio = ratio_wall if best_ratio is None else min(best_ratio, ratio_wall)
        shown = (f"{', '.join(f'{w:.1f}' for w in row['wall'])} (mean {ours_wall:.1f})" if key == "ours"
                 else f"{wall:.1f}")
        label = TOOL_LABELS[key] + (f" {row['version']}, score {row['score']:+.3f}" if key == "cdt" else "")
        ratios = "| 1 | 1 |" if key == "ours" else f"| {ratio_wall:.1f} | {ratio_cpu:.1f} |"
        decision = "X -> Y" if row["direction"] == 1 else "Y -> X"
        lines.append(f"| {label} | {row['restarts']} | {shown} | {cpu:.1f} {ratios} {decision} | "
                     f"{row['mean_xy']:.4f} ({_range(row['range_xy'])}) | "
                     f"{row['mean_yx']:.4f} ({_range(row['range_yx'])}) |")
    if best_ratio is not None:
        verdict = "met" if best_ratio >= 5 else "not met"
        lines += ["", "Goal (issue 19): measureflow at least 5x the per-restart loop. Measured against the "
                  f"faster loop: {best_ratio:.1f}x by wall clock ({verdict})."]
    if rows["cdt"]["status"] == "ok":
        cdt = rows["cdt"]
        lines += ["", f"cdt ran {cdt['train_epochs']} training epochs ({cdt['steps']:,} steps) and "
                  f"{cdt['test_epochs']} test epochs per network; its score (BA - AB) / (BA + AB) = "
                  f"{cdt['score']:+.3f} (positive: X -> Y)."]
    return lines + [""]


def render_pairs(result: dict, quick: bool) -> list[str]:
    lines = [
        "### Pairs per minute on the Tuebingen pairs",
        "",
        f"`decide(pairs, method, seed=0)` on the {result['n_pairs']} bivariate Tuebingen pairs "
        "(`tuebingen_pairs()`), timed whole; weighted accuracy with its 95% Clopper-Pearson interval at "
        "the effective number of pairs, and the decision-rate AUC, from `evaluate` on the pairs decided. "
        f"ANM and CGNN run on a fixed subset ({', '.join(result['subset'])}; mean size capped at 1,000: "
        f"{result['subset_mean_points']:.0f} "
        f"points, the whole set {result['whole_mean_points']:.0f}); the last column is the time the "
        "whole set would take at the measured rate. Meta-CGNN's model was trained once in "
        f"{result['meta_train_s']:.0f} s (not in its rate)"
        + (" and decides 20 pairs (quick)." if quick else "."),
        "",
        "| method | pairs | seconds | pairs per minute | whole set at this rate (min) | weighted accuracy "
        "(95% CI) | decision-rate AUC |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        if row["status"] != "ok":
            lines.append(f"| {row['label']} | {row['status']}: {row['error']} | | | | | |")
            continue
        low, high = row["interval"]
        note = f"; score 0 on {row['zero_scores']} of {row['pairs']} pairs" if row["zero_scores"] else ""
        whole = result["n_pairs"] / row["per_minute"]
        lines.append(f"| {row['label']} | {row['pairs']} | {row['seconds']:.3g} | {row['per_minute']:,.1f} | "
                     f"{whole:.3g} | {row['accuracy']:.3f} ({low:.2f}-{high:.2f}){note} | {row['auc']:.3f} |")
    meta = next((r for r in result["rows"] if r["key"] == "meta-cgnn" and r["status"] == "ok"), None)
    if meta is not None:
        total = result["meta_train_s"] + result["n_pairs"] / meta["per_minute"] * 60
        lines += ["", f"Meta-CGNN including its training: {result['n_pairs']} pairs in about {total:.0f} s "
                  f"({_per_minute(result['n_pairs'], total):.1f} pairs per minute)."]
    lines += ["", "cdt's ANM is not in the table: its GP fit collapses on these pairs (length-scale at its "
              "1e-5 bound) and its score is ~1e-15 (measured by hand on two pairs, 30 s on a 4,177-point "
              "pair)."]
    return lines + [""]


def render_meta(result: dict) -> list[str]:
    mechanisms = result["mechanisms"]
    lines = [
        "### Meta-CGNN accuracy against the number of training data sets N",
        "",
        f"`meta_training_pairs(N, 300, seed=0)`, `train_meta_cgnn(..., n_steps={result['steps']:,})` (other "
        f"defaults), then `meta_cgnn_decide` on {result['synthetic_pairs']} held-out synthetic pairs "
        f"({result['synthetic_pairs'] // len(mechanisms)} of each identifiable mechanism, 300 points, noise "
        f"\"medium\", seeds {HELD_OUT_SEED:,} + k) and on {result['tuebingen_pairs']} Tuebingen pairs "
        "(weighted accuracy). Accuracy with its 95% Clopper-Pearson interval.",
        "",
        "| N | training (s) | held-out synthetic | " + " | ".join(mechanisms)
        + " | Tuebingen (weighted) | Tuebingen AUC |",
        "|---|---|---|" + "---|" * len(mechanisms) + "---|---|",
    ]
    for row in result["rows"]:
        s_low, s_high = row["synthetic_interval"]
        t_low, t_high = row["tuebingen_interval"]
        lines.append(f"| {row['n']} | {row['train_s']:.0f} | {row['synthetic']:.2f} "
                     f"({s_low:.2f}-{s_high:.2f}) | "
                     + " | ".join(f"{row['by_mechanism'][m]:.2f}" for m in mechanisms)
                     + f" | {row['tuebingen']:.2f} ({t_low:.2f}-{t_high:.2f}) | {row['tuebingen_auc']:.2f} |")
    return lines + [""]


def machine_info() -> dict[str, str]:
    import numpy as np
    import sklearn
    import torch
    from _results import machine_info as common

    extra = {"torch threads": str(torch.get_num_threads()), "numpy": np.__version__,
             "scikit-learn": sklearn.__version__}
    try:
        from importlib.metadata import version

        extra["cdt"] = version("cdt")
    except Exception:  # noqa: BLE001 - cdt is optional
        pass
    return common(extra)


def render(results: dict[str, dict], args, wall: float, load: tuple[str, str]) -> str:
    flags = (" --quick" if args.quick else "") + (f" --only {args.only}" if args.only else "")
    lines = [
        "## Causal direction: CGNN, Meta-CGNN and the baselines",
        "",
        f"Written by `benchmarks/bench_causal.py{flags}` on "
        f"{datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}. CPU, torch threads {args.threads}, "
        "one process; the settings of each group are in the script's docstring.",
        "",
    ]
    if args.note:
        lines += [args.note, ""]
    for group, result in results.items():
        if result["status"] != "ok":
            lines += [f"### {group}", "", f"{result['status']}: {result.get('error', '')}", ""]
        elif group == "restarts":
            lines += render_restarts(result)
        elif group == "pairs":
            lines += render_pairs(result, args.quick)
        else:
            lines += render_meta(result)
    lines += ["Machine: " + ", ".join(f"{k} {v}" for k, v in machine_info().items())
              + f"; load average (1 min) at start / end {load[0]} / {load[1]}; whole run {wall:.0f} s.", ""]
    return "\n".join(lines)



def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke test, about two minutes")
    parser.add_argument("--only", default=None, help=f"comma-separated groups ({','.join(GROUPS)})")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--cdt-runs", type=int, default=None,
                        help="restarts of cdt's GNN timed (default 2, quick 1); 10 are extrapolated")
    parser.add_argument("--note", default="", help="a sentence added under the section's header")
    parser.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    args = parser.parse_args(argv)
    if args.threads < 1 or (args.cdt_runs is not None and args.cdt_runs < 1):
        parser.error("--threads and --cdt-runs must be at least 1")
    groups = GROUPS if args.only is None else tuple(args.only.split(","))
    unknown = [group for group in groups if group not in GROUPS]
    if unknown:
        parser.error(f"--only: unknown group(s) {', '.join(unknown)}; choose from {', '.join(GROUPS)}")
    size = dict(SIZES["quick" if args.quick else "full"])
    if args.cdt_runs is not None:
        size["cdt_runs"] = args.cdt_runs
    size["threads"] = args.threads

    from _results import run_groups, set_threads, write_section

    set_threads(args.threads)

    def run_case(group: str) -> dict:
        try:
            if group == "restarts":
                return run_restarts(size)
            if group == "pairs":
                return run_pairs(size, args.quick)
            return run_meta(size, args.quick)
        except Exception as error:  # noqa: BLE001 - the section reports a failed group and goes on
            return {"status": "failed", "error": f"{type(error).__name__}: {error}"[:300]}

    results, wall, load = run_groups([group for group in GROUPS if group in groups], run_case)
    text = render(results, args, wall, load)
    write_section(args.out, "bench_causal", text)
    print(text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    sys.exit(main())
