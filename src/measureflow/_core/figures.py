"""Matplotlib figures without pyplot's global state: the Agg canvas, atomic PNG writes.

Every layer that draws (pde, flows, checks, report) builds its figures here, so none of them
touches pyplot's current-figure machinery or leaves half-written images behind. Matplotlib is
imported when a figure is made, not when measureflow is imported.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from measureflow._core.io import atomic_path

__all__ = ["new_figure", "save_figure"]


def new_figure(n_cols: int, n_rows: int = 1, width: float = 4.4, height: float = 3.5) -> tuple[Any, Any]:
    """A constrained-layout figure with an ``(n_rows, n_cols)`` array of axes (always 2-D)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width * n_cols, height * n_rows), layout="constrained")
    FigureCanvasAgg(figure)
    return figure, figure.subplots(n_rows, n_cols, squeeze=False)


def save_figure(figure: Any, path: str | os.PathLike[str], dpi: int = 110) -> str:
    """Write ``figure`` to ``path`` as a PNG (temporary file, then rename); returns the path."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"path must name a .png file, got {str(path)!r}")
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=dpi)
    return str(path)
