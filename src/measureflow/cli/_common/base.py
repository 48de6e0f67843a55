"""What every command shares: turning library errors into one line and exit code 2, the
validation of the options all commands have (seed, device, output folder), and the printed table
and JSON file every command ends with."""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

import torch
import typer
from rich.console import Console
from rich.table import Table
from torch import Tensor

from measureflow._core import atomic_write_json, remove_stale_temporaries

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_FAILED",
    "EXIT_INTERNAL",
    "EXIT_INTERRUPTED",
    "MAX_INT",
    "debug_enabled",
    "run_guarded",
    "set_debug",
    "user_message",
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
    "merge_alias",
    "print_table",
    "user_errors",
    "write_json",
]

EXIT_FAILED = 1  # a check ran and its verdict is FAIL
EXIT_BAD_INPUT = 2  # bad input: nothing was computed or written
EXIT_INTERNAL = 70  # a bug in measureflow (sysexits' EX_SOFTWARE): "internal error: ..."
EXIT_INTERRUPTED = 130  # Ctrl-C, as a shell reports SIGINT

# torch takes sizes and seeds as signed 64-bit integers; a larger Python int fails deep inside
# torch with "Overflow when unpacking long long", so the options are bounded here.
MAX_INT = 2**63 - 1

# --debug (or MEASUREFLOW_DEBUG=1): tracebacks for every error. Set by the root callback, reset
# by each run_guarded call (the in-process entry point may run many commands in one process).
_STATE = {"debug": False}


def set_debug(value: bool) -> None:
    _STATE["debug"] = bool(value)


def debug_enabled() -> bool:
    """--debug was given, or the environment sets MEASUREFLOW_DEBUG to anything but '' or 0."""
    return _STATE["debug"] or os.environ.get("MEASUREFLOW_DEBUG", "").strip() not in ("", "0")


def _one_line(message: str) -> str:
    return " ".join(str(message).split())


def fail(message: str) -> NoReturn:
    """Print ``error: message`` as one line on stderr and exit with code 2."""
    typer.echo(f"error: {_one_line(message)}", err=True)
    raise typer.Exit(EXIT_BAD_INPUT)


_ALLOCATION = ("allocate memory", "not enough memory", "out of memory", "can't allocate")
_OVERFLOW = ("overflow when unpacking long", "value cannot be converted to type", "too large to convert")


def user_message(error: BaseException) -> str | None:
    """The one-line message of an error the user caused, or None for a bug (which the caller
    reports as an internal error).

    User errors: ``ValueError``/``TypeError`` (how the library reports bad arguments and
    diverging runs), ``OSError`` (missing files, unwritable folders), a refused allocation
    (``MemoryError``, ``torch.OutOfMemoryError``, or torch's CPU allocator's ``RuntimeError``)
    and an integer too large for torch (``OverflowError``, or torch's "Overflow when unpacking
    long long").
    """
    text = str(error)
    lowered = text.lower()
    torch_overflow = isinstance(error, (ValueError, TypeError, RuntimeError))
    overflow = torch_overflow and any(key in lowered for key in _OVERFLOW)
    if overflow or isinstance(error, OverflowError):
        return (f"a number given is too large for torch, which takes integers up to 2**63 - 1 = {MAX_INT}; "
                "use smaller sizes and seeds")
    if isinstance(error, (MemoryError, torch.OutOfMemoryError)) or (
            isinstance(error, RuntimeError) and any(key in lowered for key in _ALLOCATION)):
        # torch's allocators name the size they were refused: "you tried to allocate N bytes" (CPU),
        # "Tried to allocate 1.50 GiB" (CUDA).
        found = re.search(r"tried to allocate (\d+) bytes", text, flags=re.IGNORECASE)
        cuda = re.search(r"tried to allocate ([\d.]+ [KMGT]iB)", text, flags=re.IGNORECASE)
        size = (f" {int(found.group(1)) / 2**30:,.1f} GiB" if found else f" {cuda.group(1)}" if cuda else "")
        return f"out of memory: torch could not allocate{size or ' a tensor'}; use smaller sizes"
    if isinstance(error, (ValueError, TypeError, OSError)):
        return _one_line(text) or type(error).__name__
    return None


def _rename_flags(message: str, flags: Mapping[str, str] | None) -> str:
    """``message`` with the library's argument names (``n_steps``) replaced by the command's
    option names (``--steps``)."""
    for name, flag in (flags or {}).items():
        message = re.sub(rf"(?<![\w-]){re.escape(name)}(?!\w)", flag, message)
    return message


@contextlib.contextmanager
def user_errors(flags: Mapping[str, str] | None = None) -> Iterator[None]:
    """Turn the errors a user can cause (:func:`user_message`) into :func:`fail`, one line
    without a traceback (with one before it under --debug); anything else propagates to the
    boundary of :func:`run_guarded`. ``flags`` maps the library's argument names in messages to
    the command's options, e.g. ``{"n_steps": "--steps"}``.
    """
    try:
        yield
    except Exception as error:
        message = user_message(error)
        if message is None:
            raise
        if debug_enabled():
            traceback.print_exc()
        fail(_rename_flags(message, flags))


def run_guarded(call: Callable[[], Any]) -> int:
    """Run ``call`` (a click ``main`` with ``standalone_mode=False``) behind the command line's one
    error boundary and return the exit code; nothing escapes but the exit code.

    - success: 0, or the code of a ``typer.Exit``;
    - a usage error (unknown option, malformed value) or any error the user caused
      (:func:`user_message`): one line ``error: ...`` on stderr, code 2 (2 is also click's code
      for usage errors);
    - Ctrl-C: ``interrupted``, code 130;
    - anything else is a bug: one line ``internal error: Type: message (rerun with --debug for
      the traceback; please report it)``, code 70 (:data:`EXIT_INTERNAL`); with --debug or
      MEASUREFLOW_DEBUG=1 the full traceback instead.
    """
    from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError

    set_debug(False)
    try:
        result = call()
    except NoArgsIsHelpError as error:
        error.show()
        return error.exit_code
    except UsageError as error:
        hint = f" (see '{error.ctx.command_path} --help')" if error.ctx is not None else ""
        typer.echo(f"error: {_one_line(error.format_message())}{hint}", err=True)
        return EXIT_BAD_INPUT
    except ClickException as error:
        typer.echo(f"error: {_one_line(error.format_message())}", err=True)
        return EXIT_BAD_INPUT
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("interrupted", err=True)
        return EXIT_INTERRUPTED
    except SystemExit as error:  # e.g. a user target file calling sys.exit
        return error.code if isinstance(error.code, int) else EXIT_BAD_INPUT
    except Exception as error:
        message = user_message(error)
        if debug_enabled():
            traceback.print_exc()
        if message is not None:
            typer.echo(f"error: {message}", err=True)
            return EXIT_BAD_INPUT
        if not debug_enabled():
            detail = _one_line(str(error))[:300]
            typer.echo(f"internal error: {type(error).__name__}: {detail} (rerun with --debug for the "
                       "traceback; please report it)", err=True)
        return EXIT_INTERNAL
    return result if isinstance(result, int) else 0


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


def check_count(value: int, flag: str, minimum: int = 1, maximum: int = MAX_INT) -> int:
    """``value`` if it is an integer in [minimum, maximum], else a ``ValueError`` naming ``flag``
    (the default maximum is torch's: larger ints fail deep inside torch)."""
    if value < minimum:
        raise ValueError(f"{flag} must be an integer >= {minimum}, got {value}")
    if value > maximum:
        raise ValueError(f"{flag} must be at most {maximum:,}, got {value:,}")
    return int(value)


def check_seed(seed: int) -> int:
    """A seed in [0, 2**63 - 1] (what torch.Generator.manual_seed takes, as every seed here)."""
    return check_count(seed, "--seed", minimum=0)


def merge_alias(value: Any, old_value: Any, flag: str, old_flag: str, default: Any) -> Any:
    """The value of an option that was renamed: ``flag``'s, or that of its hidden old name
    ``old_flag`` (kept for one release), or ``default`` when neither was given; both given is a
    ``ValueError``. Both options default to None so that "not given" can be told apart."""
    if old_value is None:
        return default if value is None else value
    if value is not None:
        raise ValueError(f"{flag} and {old_flag} (its old name) were both given; pass {flag} only")
    return old_value


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


def check_out(out: str | os.PathLike[str], command: str | None = None, *, overwrite: bool = False,
              marker: str = "result.json") -> Path:
    """The output folder; it may exist (files in it are replaced) but must not be a file, and
    ``--out ''`` is refused (it would write into the current folder).

    With ``command`` given (the command that is about to write there): a folder whose ``marker``
    file (the summary that marks a complete run) was written by another command is refused
    unless ``overwrite`` (--overwrite), and the temporary files of writes that an earlier run
    left behind when it was killed are removed (:func:`remove_stale_temporaries`). Nothing is
    created here: commands write only after their computation succeeded.
    """
    if not os.fspath(out).strip():
        raise ValueError("--out is empty; give the folder to write into (e.g. --out runs/x)")
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise ValueError(f"--out {os.fspath(out)!r} exists and is not a folder")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ValueError(f"--out {os.fspath(out)!r}: {os.fspath(parent)!r} is a file")
            break
    if command is not None:
        if not overwrite:
            _refuse_foreign_run(path, command, marker)
        remove_stale_temporaries(path)
    return path


def _refuse_foreign_run(folder: Path, command: str, marker: str) -> None:
    summary = folder / marker
    if not summary.exists():
        return
    try:
        written_by = json.loads(summary.read_text(encoding="utf-8")).get("command")
    except (OSError, ValueError, AttributeError):
        written_by = None
    if written_by != command:
        other = (f"a run of '{written_by}'" if isinstance(written_by, str)
                 else f"a {marker} this command did not write")
        raise ValueError(f"--out {os.fspath(folder)!r} holds {other}; choose another --out, or pass "
                         "--overwrite to replace its files")


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
