"""``measureflow check NAME`` runs one theory check; ``measureflow demo`` runs them all."""

import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

import measureflow as mf
from measureflow._core import atomic_write_json
from measureflow.cli._common import (
    EXIT_FAILED,
    check_choice,
    check_device,
    check_out,
    check_seed,
    json_safe,
    user_errors,
)
from measureflow.report import RESULT_FILE, relative_figures, write_index
from measureflow.report.text import measured_vs_predicted, one_line, plain

__all__ = ["check", "demo", "summary_table"]

_VERDICT_STYLE = {"PASS": "bold green", "FAIL": "bold red", "ERROR": "bold red"}


def _check_names(requested: list[str]) -> list[str]:
    known = mf.checks.names()
    unknown = [name for name in requested if name not in known]
    if unknown:
        choices = f"choose from {', '.join(known)}" if known else "no checks are registered"
        raise ValueError(f"unknown check(s) {', '.join(map(repr, unknown))}; {choices}")
    return requested


def _result_data(result: mf.checks.CheckResult, folder: Path) -> dict[str, Any]:
    """``CheckResult.to_dict()`` with its figures relative to ``folder`` (the result's folder)
    and the registry's one-line ``title`` (the report's summary shows it)."""
    data = result.to_dict()
    data["figures"] = relative_figures(data["figures"], folder)
    data["title"] = mf.checks.CHECKS[result.name].title if result.name in mf.checks.CHECKS else ""
    return json_safe(data)


def summary_table(records: list[dict[str, Any]], title: str) -> Table:
    """One row per check: name, verdict, seconds and a one-line measured vs predicted.

    Every cell stays on one line (the last is cut with an ellipsis to the terminal's width), so
    40 checks take 40 lines even in 80 columns; the full texts are in the result files and
    index.html.
    """
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False,
                  padding=(0, 1), pad_edge=False, collapse_padding=True)
    # The first three columns keep their full width; only the last is cut to what is left.
    widest = max((len(str(data["name"])) for data in records), default=5)
    table.add_column("check", no_wrap=True, min_width=widest)
    table.add_column("verdict", no_wrap=True, min_width=7)
    table.add_column("s", justify="right", no_wrap=True, min_width=6)
    # Wrappable for rich's width calculation (so this column, not the others, gives way); each
    # cell's Text is itself no_wrap with an ellipsis, so it stays on one line.
    table.add_column("measured vs predicted")
    for data in records:
        line = measured_vs_predicted(data.get("measured", ""), data.get("predicted", ""))
        if data["verdict"] == "ERROR":
            line = one_line(data.get("error", ""))
        seconds = "-" if data.get("wall_time") is None else f"{data['wall_time']:.1f}"
        table.add_row(Text(str(data["name"])),
                      Text(data["verdict"], style=_VERDICT_STYLE[data["verdict"]]),
                      seconds, Text(line, no_wrap=True, overflow="ellipsis"))
    return table


def _error_data(name: str, error: BaseException) -> dict[str, Any]:
    """The record of a check that raised instead of giving a verdict."""
    return {
        "name": name,
        "title": mf.checks.CHECKS[name].title,
        "claim": mf.checks.CHECKS[name].title,
        "predicted": "",
        "measured": "",
        "tolerance": "",
        "passed": False,
        "verdict": "ERROR",
        "error": f"{type(error).__name__}: {error}",
        "figures": [],
        "wall_time": None,
    }


def check(
    name: Annotated[str, typer.Argument(
        help="The check to run (one of the checks listed above).", show_default=False)],
    size: Annotated[str, typer.Option(help="quick (seconds) or full (the published figure).")]
    = "quick",
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    out: Annotated[Path | None, typer.Option(help="Output folder (default runs/check/NAME).")]
    = None,
    device: Annotated[str, typer.Option(help="cpu, cuda or cuda:N.")] = "cpu",
) -> None:
    """Run one theory check: print its claim, prediction, measurement and verdict.

    Exit code 0 for PASS, 1 for FAIL, 2 for bad input.
    """
    with user_errors():
        _check_names([name])
        size = check_choice(size, mf.checks.SIZES, "--size")
        seed, device = check_seed(seed), check_device(device)
        folder = check_out(out if out is not None else Path("runs") / "check" / name)
        result = mf.checks.run(name, size=size, seed=seed, device=device, out_dir=folder)
        atomic_write_json(folder / RESULT_FILE, _result_data(result, folder))

    table = Table(title=f"check {name} ({size})", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    for field in ("claim", "predicted", "measured", "tolerance"):
        table.add_row(field, Text(plain(getattr(result, field))))
    table.add_row("verdict", Text(result.verdict, style=_VERDICT_STYLE[result.verdict]))
    table.add_row("seconds", f"{result.wall_time:.2f}")
    table.add_row("written to", Text(str(folder)))
    Console().print(table)
    if not result.passed:
        raise typer.Exit(EXIT_FAILED)


def _check_list(width: int = 76) -> str:
    """The registered checks, one line each (``name  title``, the title cut to ``width``)."""
    names = mf.checks.names()
    pad = max((len(name) for name in names), default=0) + 2
    lines = []
    for name in names:
        title = one_line(mf.checks.CHECKS[name].title)
        room = max(width - pad, 10)
        lines.append(f"{name:<{pad}}{title if len(title) <= room else title[:room - 1] + '…'}")
    return "\n".join(lines)


# ``measureflow check --help`` lists the checks from the registry; typer reads the docstring
# when the command is registered (its rich help keeps the lines as they are).
check.__doc__ = f"{check.__doc__}\nChecks:\n\n{_check_list()}\n"


def demo(
    size: Annotated[str, typer.Option(
        help="quick (seconds per check; a minute or two for those that train a network) or full.")] = "quick",
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("runs") / "demo",
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    device: Annotated[str, typer.Option(help="cpu, cuda or cuda:N.")] = "cpu",
    checks: Annotated[str | None, typer.Option(
        help="Comma-separated checks to run (default: all registered).")] = None,
) -> None:
    """Run every theory check; write a summary, the figures and index.html.

    Exit code 0 when every check passes, 1 when any fails, 2 for bad input.
    """
    with user_errors():
        size = check_choice(size, mf.checks.SIZES, "--size")
        seed, device = check_seed(seed), check_device(device)
        folder = check_out(out)
        if checks is None:
            names = mf.checks.names()
        else:
            names = _check_names([c.strip() for c in checks.split(",") if c.strip()])
            if not names:
                raise ValueError("--checks names no check")

    errors = Console(stderr=True)
    if not names:
        errors.print("no theory checks are registered; nothing to run", markup=False)
    start = time.perf_counter()
    records: list[dict[str, Any]] = []
    for position, name in enumerate(names, 1):
        errors.print(f"[{position}/{len(names)}] {name} ...", markup=False, highlight=False)
        check_folder = folder / name
        try:
            result = mf.checks.run(name, size=size, seed=seed, device=device, out_dir=check_folder)
        except Exception as error:  # one broken check must not hide the others' results
            data = _error_data(name, error)
        else:
            data = _result_data(result, check_folder)
        with user_errors():
            atomic_write_json(check_folder / RESULT_FILE, data)
        records.append(data)
        errors.print(f"[{position}/{len(names)}] {name}: {data['verdict']}", markup=False,
                     highlight=False)
    total_time = time.perf_counter() - start

    table = summary_table(records, f"measureflow demo ({size}, seed {seed}, {device})")
    console = Console()
    if records:
        console.print(table)

    n_passed = sum(data["verdict"] == "PASS" for data in records)
    summary = {
        "size": size,
        "seed": seed,
        "device": device,
        "n_checks": len(records),
        "n_passed": n_passed,
        "passed": n_passed == len(records),
        "wall_time": total_time,
        "checks": [
            {
                **{key: data.get(key) for key in ("name", "claim", "predicted", "measured",
                                                   "tolerance", "verdict", "passed",
                                                   "wall_time")},
                "result": f"{data['name']}/{RESULT_FILE}",
                "figures": relative_figures(
                    [folder / data["name"] / figure for figure in data["figures"]], folder
                ),
            }
            for data in records
        ],
    }
    with user_errors():
        atomic_write_json(folder / "summary.json", json_safe(summary))
        index = write_index(
            folder, title=f"measureflow demo ({size}, seed {seed}, {device})", order=names,
            only=[folder / name / RESULT_FILE for name in names],
        )
    console.print(f"{n_passed} of {len(records)} checks passed; report: {index}", markup=False,
                  highlight=False)
    if n_passed != len(records):
        raise typer.Exit(EXIT_FAILED)
