"""``measureflow report DIR``: rewrite DIR/index.html from the result.json files under DIR."""

from pathlib import Path
from typing import Annotated

import typer

import measureflow as mf
from measureflow.cli._common import check_out, user_errors
from measureflow.report import find_results, write_index

__all__ = ["report"]


def report(
    folder: Annotated[Path, typer.Argument(
        metavar="DIR", help="A run folder (of sample, check or demo).")],
    out: Annotated[Path | None, typer.Option(
        help="Folder to write index.html into (default DIR).")] = None,
) -> None:
    """Regenerate index.html from the result.json files found under DIR (no computation)."""
    with user_errors():
        if not folder.is_dir():
            raise FileNotFoundError(f"run folder {str(folder)!r} does not exist or is not a folder")
        target = check_out(out if out is not None else folder)
        if not find_results(folder):
            raise ValueError(f"no result.json under {str(folder)!r}; nothing to report")
        index = write_index(folder, target, title=f"measureflow: {folder.resolve().name}",
                            order=mf.checks.names())
    typer.echo(f"wrote {index}")
