"""What every command shares: turning library errors into one line and exit code 2, the
validation of the options all commands have (seed, device, output folder), and the printed table
and JSON file every command ends with."""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

import torch
import typer
from rich.console import Console
from rich.table import Table
from torch import Tensor

from measureflow._core import atomic_write_json

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "check_choice",
    "check_count",
    "check_device",
    "check_memory",
    "check_out",
    "check_positive_number",
    "check_seed",
    "fail",
    "format_number",
    "interruptible",
    "json_safe",
    "mean_and_standard_error",
    "print_table",
    "user_errors",
    "write_json",
]

EXIT_FAILED = 1  # a check ran and its verdict is FAIL
EXIT_BAD_INPUT = 2  # bad input: nothing was computed or written
EXIT_INTERRUPTED = 130  # Ctrl-C, as a shell reports SIGINT


def fail(message: str) -> NoReturn:
    """Print ``error: message`` as one line on stderr and exit with code 2."""
    typer.echo(f"error: {' '.join(str(message).split())}", err=True)
    raise typer.Exit(EXIT_BAD_INPUT)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn the errors the library raises for bad input into :func:`fail`, without a traceback.

    ``ValueError``/``TypeError`` are how the library reports bad arguments (and diverging
    chains); ``OSError`` covers missing files and folders that cannot be written.
    """
    try:
        yield
    except (ValueError, TypeError, OSError) as error:
        fail(str(error) or type(error).__name__)
    except (MemoryError, torch.OutOfMemoryError) as error:
        fail(f"out of memory ({type(error).__name__}); use smaller sizes")
    except RuntimeError as error:
        # torch's CPU allocator reports a refused allocation as a RuntimeError.
        if "allocate memory" not in str(error):
            raise
        fail("out of memory: torch could not allocate a tensor; use smaller sizes")


def _physical_memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # not a POSIX system
        return None


def check_memory(n_bytes: float, what: str) -> None:
    """A ``ValueError`` before any work when ``what`` needs more than the machine's memory: an
    absurd size would otherwise be killed by the kernel half-way, or crawl in swap."""
    total = _physical_memory()
    if total is not None and n_bytes > total:
        raise ValueError(f"{what} needs about {n_bytes / 2**30:,.1f} GiB, more than this machine's "
                         f"{total / 2**30:,.1f} GiB; use smaller sizes")


@contextlib.contextmanager
def interruptible(folder: Path) -> Iterator[None]:
    """Turn Ctrl-C during training into one line and exit code 130: the training loop has already
    checkpointed the last finished step in ``folder``, and ``--resume`` continues from it."""
    try:
        yield
    except KeyboardInterrupt:
        typer.echo(f"interrupted: the last finished step is saved in {os.fspath(folder)}; "
                   "run the same command with --resume to continue", err=True)
        raise typer.Exit(EXIT_INTERRUPTED) from None


def check_positive_number(value: float, flag: str) -> float:
    """``value`` if it is finite and > 0, else a ``ValueError`` naming the ``flag``."""
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{flag} must be finite and positive, got {value!r}")
    return float(value)


def check_count(value: int, flag: str, minimum: int = 1) -> int:
    if value < minimum:
        raise ValueError(f"{flag} must be an integer >= {minimum}, got {value}")
    return int(value)


def check_seed(seed: int) -> int:
    return check_count(seed, "--seed", minimum=0)


def check_choice(value: str, choices: Sequence[str], flag: str) -> str:
    if value not in choices:
        raise ValueError(f"{flag} must be one of {', '.join(choices)}, got {value!r}")
    return value


def check_device(device: str) -> str:
    """``cpu``, ``cuda`` or ``cuda:N``; CUDA must be available for the latter two."""
    name = device.strip().lower()
    kind, _, index = name.partition(":")
    if kind not in ("cpu", "cuda") or (kind == "cpu" and index) or (index and not index.isdigit()):
        raise ValueError(f"--device must be cpu, cuda or cuda:N, got {device!r}")
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"--device {device} requested but CUDA is not available to this torch "
                f"{torch.__version__}; use --device cpu"
            )
        if index and int(index) >= torch.cuda.device_count():
            raise ValueError(
                f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) visible"
            )
    return name


def check_out(out: str | os.PathLike[str]) -> Path:
    """The output folder; it may exist (files in it are replaced) but must not be a file.

    Nothing is created here: commands write only after their computation succeeded.
    """
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise ValueError(f"--out {os.fspath(out)!r} exists and is not a folder")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ValueError(f"--out {os.fspath(out)!r}: {os.fspath(parent)!r} is a file")
            break
    return path


def json_safe(value: Any) -> Any:
    """``value`` with non-finite floats replaced by ``None`` (strict JSON has no NaN/inf)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    return value


def write_json(path: Path, value: dict[str, Any]) -> None:
    atomic_write_json(path, json_safe(value))


def format_number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def print_table(title: str, rows: Sequence[tuple[str, str]]) -> None:
    """A two-column (quantity, value) table on stdout."""
    table = Table(title=title, show_header=False)
    table.add_column("quantity", style="bold")
    table.add_column("value")
    for name, value in rows:
        table.add_row(name, value)
    Console().print(table)


def mean_and_standard_error(values: Tensor) -> tuple[float, float | None]:
    """The mean of ``values`` ``(n,)`` and its standard error s / sqrt(n) (None for n = 1)."""
    wide = values.detach().double().cpu()
    n = wide.shape[0]
    error = float(wide.std(unbiased=True) / math.sqrt(n)) if n > 1 else None
    return float(wide.mean()), error
