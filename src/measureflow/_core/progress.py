"""Progress bars for long loops (tqdm on stderr, updated in chunks to keep overhead negligible)."""

from __future__ import annotations

import sys

from tqdm import tqdm

__all__ = ["progress_bar"]


def progress_bar(total: int, description: str, enabled: bool = True) -> tqdm:
    """A tqdm bar over ``total`` units; disabled (no output) when ``enabled`` is false."""
    return tqdm(
        total=total,
        desc=description,
        disable=not enabled,
        file=sys.stderr,
        leave=False,
        dynamic_ncols=True,
        mininterval=0.25,
    )
