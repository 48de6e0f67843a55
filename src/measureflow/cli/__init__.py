"""The ``measureflow`` command line: parsing, validation and printing only.

Every command is one function in its own module, registered on :data:`app` below. Bad input
(unknown names, invalid numbers, missing files, diverging chains) ends with one line
``error: ...`` on stderr and exit code 2, before anything is written.
"""

from typing import Annotated

import typer

from measureflow import __version__
from measureflow.cli import checks, diffusion, ebm, flow, flow_model, gan, nets, report, sample

__all__ = ["app", "main"]

app = typer.Typer(
    name="measureflow",
    help="Optimization and sampling in the space of probability measures.",
    no_args_is_help=True,
    add_completion=False,
    # Errors in user input are caught and printed in one line; anything else is a bug and shows
    # the plain Python traceback.
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
) -> None:
    """Optimization and sampling in the space of probability measures."""


app.command("sample")(sample.sample)
app.command("flow")(flow.flow)
app.command("check")(checks.check)
app.command("demo")(checks.demo)
app.command("report")(report.report)
app.add_typer(diffusion.diffusion_app, name="diffusion")
app.add_typer(ebm.ebm_app, name="ebm")
app.add_typer(flow_model.flow_model_app, name="flow-model")
app.add_typer(gan.gan_app, name="gan")
app.add_typer(nets.nets_app, name="nets")


def main() -> None:
    """The console-script entry point (``measureflow`` and ``python -m measureflow``)."""
    app(prog_name="measureflow")
