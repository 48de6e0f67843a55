"""Atomic file writes: write to a temporary file in the same folder, then rename over the target.

A crash or an error half-way never leaves a truncated file under the final name. A process killed
mid-write (SIGKILL, power loss) can leave its temporary file behind; the temporary files are
named ``.NAME.measureflow-tmp-<8 random characters>.SUFFIX`` (:data:`TEMPORARY_MARKER`), a pattern nothing
else uses, so :func:`remove_stale_temporaries` can delete them at the start of the next run in
that folder without touching anything else.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["TEMPORARY_MARKER", "atomic_path", "atomic_write_json", "atomic_write_text",
           "remove_stale_temporaries", "save_npz"]

TEMPORARY_MARKER = ".measureflow-tmp-"
# mkstemp's random part: 8 characters of [a-z0-9_]. The current pattern, and the one of earlier
# versions (".NAME.<8 random characters>.tmp.SUFFIX"), both anchored on NAME's own suffix.
_TEMPORARY = re.compile(
    r"^\.(?P<name>.+)" + re.escape(TEMPORARY_MARKER) + r"[a-z0-9_]{8}(?P<suffix>(\.[^.]*)?)$")
_LEGACY_TEMPORARY = re.compile(r"^\.(?P<name>.+)\.[a-z0-9_]{8}\.tmp(?P<suffix>(\.[^.]*)?)$")


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# Read once at import: os.umask is process-global, and setting it is not thread-safe.
_UMASK = _current_umask()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success rename it to ``path``, else delete it."""
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(
        prefix=f".{final.name}{TEMPORARY_MARKER}", suffix=final.suffix, dir=final.parent
    )
    os.close(handle)
    temporary_path = Path(temporary)
    try:
        yield temporary_path
        # mkstemp creates files readable by the owner only; give them the usual permissions.
        os.chmod(temporary_path, 0o666 & ~_UMASK)
        os.replace(temporary_path, final)
    finally:
        if temporary_path.exists():
            temporary_path.unlink()


def remove_stale_temporaries(folder: str | os.PathLike[str], min_age_s: float = 60.0) -> list[Path]:
    """Delete the temporary files that interrupted atomic writes left in ``folder`` (not its
    subfolders) and return their paths. Only regular files whose name has the pattern of
    :func:`atomic_path` (or of earlier versions), ends in the suffix of the file it stood for,
    and was last modified at least ``min_age_s`` seconds ago are removed: a younger one may be
    the write in progress of another process working in the same folder (a training run whose
    folder an ``nll`` command reads), and a write never pauses that long between its bytes."""
    folder = Path(folder)
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    now = time.time()
    for path in folder.iterdir():
        match = _TEMPORARY.match(path.name) or _LEGACY_TEMPORARY.match(path.name)
        if match is None or Path(match["name"]).suffix != match["suffix"]:
            continue
        with contextlib.suppress(FileNotFoundError):
            if path.is_file() and not path.is_symlink() and now - path.stat().st_mtime >= min_age_s:
                path.unlink()
                removed.append(path)
    return removed


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as temporary:
        temporary.write_text(text, encoding="utf-8")
    return Path(path)


def atomic_write_json(path: str | os.PathLike[str], data: Any) -> Path:
    """Write ``data`` as indented JSON to ``path`` atomically."""
    return atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def save_npz(path: str | os.PathLike[str], **arrays: Any) -> Path:
    """Save numpy-convertible arrays to a compressed ``.npz`` at ``path`` atomically."""
    with atomic_path(path) as temporary:
        with open(temporary, "wb") as stream:
            np.savez_compressed(stream, **{key: np.asarray(value) for key, value in arrays.items()})
    return Path(path)
