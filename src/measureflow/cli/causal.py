"""``measureflow causal``: decide which variable of each pair causes the other (CGNN, Meta-CGNN, ANM,
IGCI, RECI), on pairs from a CSV file, the Tuebingen benchmark or a synthetic mechanism; write the
decisions, and with a known truth the weighted accuracy and the decision-rate curve."""

from __future__ import annotations

import dataclasses
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from measureflow._core import atomic_write_text
from measureflow.cli._common import (
    check_choice,
    check_count,
    check_device,
    check_memory,
    check_out,
    check_seed,
    print_table,
    user_errors,
    write_json,
)
from measureflow.inference.causal.api import METHODS, decide, evaluate
from measureflow.inference.causal.pairs import (
    MECHANISMS,
    NOISE_LEVELS,
    CausePairs,
    read_pairs_csv,
    read_truth_csv,
    synthetic_pairs,
    tuebingen_pairs,
)
from measureflow.report import save_figure
from measureflow.report.causal import decision_rate_figure, joints_figure

__all__ = ["CausalSettings", "causal_command"]

_FLAGS = {"n_steps": "--steps", "n_restarts": "--restarts", "max_points": "--max-points",
          "meta_datasets": "--meta-datasets", "n_pairs": "--n-pairs", "n_points": "--n-points"}
DATASETS = ("tuebingen",)


@dataclass(frozen=True)
class CausalSettings:
    """The settings of one ``causal`` command, validated on construction (ValueError naming the flag)."""

    data: str | None
    dataset: str | None
    synthetic: str | None
    truth: str | None
    method: str
    n_pairs: int | None
    n_points: int
    noise: str
    steps: int | None
    restarts: int | None
    max_points: int
    meta_datasets: int
    figures: int
    seed: int
    device: str
    out: str
    progress: bool
    overwrite: bool

    def __post_init__(self) -> None:
        sources = [flag for flag, value in (("--data", self.data), ("--dataset", self.dataset),
                                            ("--synthetic", self.synthetic)) if value is not None]
        if len(sources) > 1:
            raise ValueError(f"give one source of pairs, not {' and '.join(sources)}")
        if self.dataset is not None:
            check_choice(self.dataset, DATASETS, "--dataset")
        if self.synthetic is not None:
            check_choice(self.synthetic, MECHANISMS, "--synthetic")
        if self.truth is not None and self.data is None:
            raise ValueError("--truth goes with --data (the Tuebingen and synthetic pairs carry their truth)")
        check_choice(self.method, tuple(METHODS), "--method")
        if self.n_pairs is not None:
            check_count(self.n_pairs, "--n-pairs", maximum=100_000)
            if self.data is not None:
                raise ValueError("--n-pairs applies to --dataset and --synthetic, not to --data")
        check_count(self.n_points, "--n-points", minimum=10, maximum=100_000)
        _noise_value(self.noise)
        if self.steps is not None:
            check_count(self.steps, "--steps")
            if self.method not in ("cgnn", "meta-cgnn"):
                raise ValueError(f"--steps applies to --method cgnn and meta-cgnn, not {self.method}")
        if self.restarts is not None:
            check_count(self.restarts, "--restarts")
            if self.method != "cgnn":
                raise ValueError(f"--restarts applies to --method cgnn, not {self.method}")
        check_count(self.max_points, "--max-points", minimum=10, maximum=20_000)
        check_count(self.meta_datasets, "--meta-datasets", maximum=100_000)
        check_count(self.figures, "--figures", minimum=0, maximum=20)
        check_seed(self.seed)

    def pairs(self) -> CausePairs:
        if self.data is not None:
            pairs = read_pairs_csv(self.data)
            return pairs if self.truth is None else read_truth_csv(self.truth, pairs)
        if self.synthetic is not None or self.dataset is None:
            mechanism = self.synthetic or "additive"
            return synthetic_pairs(mechanism, self.n_pairs or 20, self.n_points,
                                   noise=_noise_value(self.noise), seed=self.seed)
        pairs = tuebingen_pairs(seed=self.seed)
        if self.n_pairs is not None:
            pairs = pairs.subset(range(min(self.n_pairs, len(pairs))))
        return pairs

    def method_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {"max_points": self.max_points}
        if self.steps is not None:
            options["n_steps"] = self.steps
        if self.restarts is not None:
            options["n_restarts"] = self.restarts
        if self.method == "meta-cgnn":
            options["meta_datasets"] = self.meta_datasets
        return options


def _noise_value(text: str) -> float | str:
    if text in NOISE_LEVELS:
        return text
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise ValueError(f"--noise must be one of {', '.join(NOISE_LEVELS)} or a number > 0, got {text!r}")
    return value


def _decisions_csv(pairs: CausePairs, results: list[Any]) -> str:
    out = io.StringIO()
    out.write("pair,direction,score\n")
    for name, result in zip(pairs.names, results, strict=True):
        out.write(f"{name},{result.direction},{result.score:.10g}\n")
    return out.getvalue()


def causal_command(
    data: Annotated[str | None, typer.Option(
        help="CSV file of pairs in long format: header pair,x,y and one row per observation.")] = None,
    dataset: Annotated[str | None, typer.Option(
        help="A benchmark: tuebingen (the 99 bivariate Tuebingen pairs, read from the cdt package).")] = None,
    synthetic: Annotated[str | None, typer.Option(
        help=f"Synthetic pairs of one mechanism: {', '.join(MECHANISMS)} (the default source: additive).")]
    = None,
    truth: Annotated[str | None, typer.Option(
        help="With --data: CSV with header pair,direction[,weight]; 1 means x causes y, -1 y causes x.")]
    = None,
    method: Annotated[str, typer.Option(
        help="Method: " + "; ".join(f"{name} ({entry.title})" for name, entry in METHODS.items()) + ".")]
    = "cgnn",
    n_pairs: Annotated[int | None, typer.Option(
        "--n-pairs", help="Synthetic: how many pairs (default 20); tuebingen: the first N pairs.")] = None,
    n_points: Annotated[int, typer.Option("--n-points", help="Synthetic: observations per pair.")] = 500,
    noise: Annotated[str, typer.Option(
        help=f"Synthetic: noise level, {', '.join(NOISE_LEVELS)} or a number (sd relative to the signal).")]
    = "medium",
    steps: Annotated[int | None, typer.Option(help="Training steps of cgnn and meta-cgnn.")] = None,
    restarts: Annotated[int | None, typer.Option(help="CGNN: fits per direction (default 8).")] = None,
    max_points: Annotated[int, typer.Option(
        "--max-points", help="Observations used per pair by cgnn, meta-cgnn and anm (a random subset).")]
    = 1000,
    meta_datasets: Annotated[int, typer.Option(
        "--meta-datasets", help="Meta-CGNN: synthetic data sets it is trained on.")] = 200,
    figures: Annotated[int, typer.Option(help="Pairs drawn in joints.png.")] = 4,
    seed: Annotated[int, typer.Option(help="Random seed (pairs, subsets, training).")] = 0,
    out: Annotated[str | None, typer.Option(help="Output folder (default runs/causal/SOURCE-METHOD).")]
    = None,
    overwrite: Annotated[bool, typer.Option(
        "--overwrite", help="Write into an --out that holds another command's run.")] = False,
    device: Annotated[str, typer.Option(help="cpu, cuda or cuda:N.")] = "cpu",
    no_progress: Annotated[bool, typer.Option("--no-progress", help="Hide the progress bars.")] = False,
) -> None:
    """Decide the causal direction of each pair; write decisions.csv (pair,direction,score),
    joints.png, and with a known truth the accuracy in result.json and decision_rate.png."""
    with user_errors(_FLAGS):
        source = Path(data).stem if data else dataset or synthetic or "additive"
        settings = CausalSettings(
            data=data, dataset=dataset, synthetic=synthetic, truth=truth, method=method, n_pairs=n_pairs,
            n_points=n_points, noise=noise, steps=steps, restarts=restarts, max_points=max_points,
            meta_datasets=meta_datasets, figures=figures, seed=seed, device=check_device(device),
            out=str(out if out is not None else Path("runs") / "causal" / f"{source}-{method}"),
            progress=not no_progress, overwrite=overwrite)
        folder = check_out(settings.out, "causal", overwrite=settings.overwrite)
        # CGNN's evaluation holds a few (restarts, n, n) kernel matrices of one pair at a time.
        check_memory(4.0 * 8 * (settings.restarts or 8) * settings.max_points**2,
                     f"kernel matrices of {settings.max_points:,} points")
        pairs = settings.pairs()
        results = decide(pairs, settings.method, seed=settings.seed, device=settings.device,
                         progress=settings.progress, **settings.method_options())
        evaluation = evaluate(results, pairs) if pairs.directions is not None else None
        shown = list(range(min(settings.figures, len(pairs))))
        joints = None
        if shown:
            joints = joints_figure([pairs.names[i] for i in shown], [(pairs.x[i], pairs.y[i]) for i in shown],
                                   [results[i] for i in shown],
                                   None if pairs.directions is None else [pairs.directions[i] for i in shown],
                                   title=f"{source}: {settings.method}")
        curve = None
        if evaluation is not None:
            lines = {settings.method: (evaluation.rates, evaluation.accuracies, evaluation.auc)}
            curve = decision_rate_figure(lines, title=f"{source}: decision rate",
                                         n_effective=evaluation.n_effective)
        summary = {"command": "causal", "settings": dataclasses.asdict(settings), "n_pairs": len(pairs),
                   "evaluation": None if evaluation is None else evaluation.to_dict(),
                   "decisions": [{"pair": name, **result.to_dict()} for name, result in
                                 zip(pairs.names, results, strict=True)],
                   "files": {"decisions": "decisions.csv (pair,direction,score; direction 1: x causes y)"},
                   "figures": (["joints.png"] if joints is not None else [])
                   + (["decision_rate.png"] if curve is not None else [])}
        (folder / "result.json").unlink(missing_ok=True)  # result.json marks a complete run: written last
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(folder / "decisions.csv", _decisions_csv(pairs, results))
        if joints is not None:
            save_figure(joints, folder / "joints.png")
        if curve is not None:
            save_figure(curve, folder / "decision_rate.png")
        write_json(folder / "result.json", summary)
    rows = [("pairs", str(len(pairs))), ("method", settings.method),
            ("x -> y decisions", str(sum(r.direction == 1 for r in results)))]
    if evaluation is not None:
        low, high = evaluation.interval
        rows += [("weighted accuracy", f"{evaluation.accuracy:.3f} (95% CI {low:.2f}-{high:.2f})"),
                 ("p-value vs chance", f"{evaluation.p_value:.3g}"),
                 ("decision-rate AUC", f"{evaluation.auc:.3f}")]
    rows.append(("written to", str(folder)))
    print_table(f"causal direction: {source}", rows)
