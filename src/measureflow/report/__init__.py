"""Figures and the HTML index of a run folder; nothing here computes, it only draws and writes.

:func:`sample_figure` draws a sampling run; :func:`write_index` writes ``index.html`` for the
``result.json`` files of a folder (theory checks, sampling runs), with every figure inline.
"""

from measureflow.report.figures import function_posterior_figure, sample_figure, save_figure
from measureflow.report.html import (
    RESULT_FILE,
    ResultEntry,
    find_results,
    relative_figures,
    render_index,
    write_index,
)

__all__ = [
    "RESULT_FILE",
    "ResultEntry",
    "find_results",
    "function_posterior_figure",
    "relative_figures",
    "render_index",
    "sample_figure",
    "save_figure",
    "write_index",
]
