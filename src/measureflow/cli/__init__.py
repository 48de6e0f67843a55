"""The ``measureflow`` command line: parsing, validation and printing only.

Every command is one function in its own module, registered on :data:`app` below. The app has one
error boundary (:func:`measureflow.cli._common.run_guarded`), whichever way it is called
(:func:`main`, ``python -m measureflow``, ``app()``, typer's ``CliRunner``). Exit codes:

- 0: done;
- 1: a check ran and its verdict is FAIL (``check``, ``demo``);
- 2: bad input, in one line ``error: ...`` on stderr: unknown names, malformed or out-of-range
  values (sizes and seeds above 2**63 - 1 included), missing files, a refused allocation or a
  predicted memory need above the machine's, diverging chains; nothing is written;
- 70: a bug in measureflow, one line ``internal error: Type: message (rerun with --debug for the
  traceback; please report it)``;
- 130: interrupted (Ctrl-C); a training run saves its last finished step first.

``measureflow --debug COMMAND ...`` (or the environment variable ``MEASUREFLOW_DEBUG=1``) prints
the traceback of every error as well.
"""

import functools
import sys
from collections.abc import Sequence
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from measureflow import __version__
from measureflow.cli import causal, checks, diffusion, ebm, flow, flow_model, gan, infer, nets, report, sample
from measureflow.cli._common import EXIT_INTERNAL, run_guarded, set_debug

__all__ = ["EXIT_INTERNAL", "app", "main"]


class _GuardedGroup(TyperGroup):
    """The root group: its ``main`` runs the command behind :func:`run_guarded`, so every
    caller (the console script, ``python -m``, ``CliRunner``) gets the same one-line errors and
    exit codes."""

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True, **extra: Any) -> Any:
        code = run_guarded(lambda: super(_GuardedGroup, self).main(
            args=args, prog_name=prog_name, complete_var=complete_var, standalone_mode=False, **extra))
        if standalone_mode:
            sys.exit(code)
        return code


app = typer.Typer(
    name="measureflow",
    cls=_GuardedGroup,
    help="Optimization and sampling in the space of probability measures.",
    no_args_is_help=True,
    add_completion=False,
    # Errors are printed in one line by the boundary (run_guarded); --debug shows tracebacks.
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"measureflow {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option(
        "--version", callback=_print_version, is_eager=True, help="Print the version and exit.")]
    = False,
    debug: Annotated[bool, typer.Option(
        "--debug", help="Print the traceback of every error (also: MEASUREFLOW_DEBUG=1).")] = False,
) -> None:
    """Optimization and sampling in the space of probability measures."""
    if debug:
        set_debug(True)


app.command("sample")(sample.sample)
app.command("flow")(flow.flow)
app.command("check")(checks.check)
app.command("demo")(checks.demo)
app.command("report")(report.report)
app.command("infer")(infer.infer_command)
app.command("causal")(causal.causal_command)
app.add_typer(diffusion.diffusion_app, name="diffusion")
app.add_typer(ebm.ebm_app, name="ebm")
app.add_typer(flow_model.flow_model_app, name="flow-model")
app.add_typer(gan.gan_app, name="gan")
app.add_typer(nets.nets_app, name="nets")


@functools.cache
def _command() -> Any:
    """The click command built from :data:`app`, once per process (building it inspects every
    command's signature, about 0.2 s)."""
    return typer.main.get_command(app)


def main(args: Sequence[str] | None = None) -> int:
    """Run the command line with ``args`` (e.g. ``["sample", "--n-chains", "10"]``) in this process
    and return its exit code (see the module docstring); every error is printed (one line on
    stderr) and turned into the code, nothing is raised. ``args=None`` is the console script
    (``measureflow``, ``python -m measureflow``): it reads ``sys.argv`` and exits the process
    with the code."""
    code = _command().main(args=sys.argv[1:] if args is None else list(args), prog_name="measureflow",
                        standalone_mode=False)
    if args is None:
        sys.exit(code)
    return code
