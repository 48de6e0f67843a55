r"""Reading a user's data set from a ``.csv`` or ``.npy`` file into an ``(n, d)`` float32 tensor.

Every way a file can be unusable ends in one ``ValueError`` whose single line names the file and
what is wrong with it (missing, unknown extension, text where numbers belong, a ragged row, NaN
or infinity with its row, wrong dimensionality, too few rows), so the CLI can print it as is.

CSV format: one sample per line, values separated by commas (or by semicolons, tabs or
whitespace, detected from the first data line); blank lines and lines starting with ``#`` are
skipped; an optional first line of column names (no field of it a number) is skipped. A file
with one value per line gives an ``(n, 1)`` tensor. NPY format: a 2-D array of a real numeric
(or boolean) dtype; object arrays are refused (``allow_pickle=False``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from measureflow._core import check_count

__all__ = ["DATA_SUFFIXES", "load_array"]

DATA_SUFFIXES = (".csv", ".npy")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _split(line: str, delimiter: str | None) -> list[str]:
    return [field.strip() for field in (line.split(delimiter) if delimiter else line.split())]


def _read_csv(path: Path) -> tuple[np.ndarray, list[int]]:
    """Values ``(n, d)`` float64 and, for each row, its 1-based line number in the file."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise ValueError(f"data file {str(path)!r} is not a text CSV file (not UTF-8)") from None
    lines = [(number, line.strip()) for number, line in enumerate(text.splitlines(), start=1)]
    lines = [(number, line) for number, line in lines if line and not line.startswith("#")]
    if not lines:
        return np.zeros((0, 0)), []
    first = lines[0][1]
    delimiter = next((d for d in (";", "\t", ",") if d in first), None)
    if not any(_is_number(field) for field in _split(first, delimiter)):
        lines = lines[1:]  # a header of column names
        if not lines:
            return np.zeros((0, 0)), []
        first = lines[0][1]
        delimiter = next((d for d in (";", "\t", ",") if d in first), None)
    numbers = [number for number, _ in lines]
    try:
        values = np.loadtxt([line for _, line in lines], delimiter=delimiter, dtype=np.float64, ndmin=2,
                            comments=None)
    except ValueError:
        values = None
    if values is None or values.shape[0] != len(lines):
        # numpy's message does not say which line is wrong; find it ourselves.
        width = len(_split(first, delimiter))
        for number, line in lines:
            fields = _split(line, delimiter)
            if len(fields) != width:
                raise ValueError(
                    f"data file {str(path)!r}: line {number} has {len(fields)} values, the first data line "
                    f"has {width}; every row must have the same number of columns"
                ) from None
            bad = next((field for field in fields if not _is_number(field)), None)
            if bad is not None:
                raise ValueError(
                    f"data file {str(path)!r}: line {number} holds the non-numeric value {bad[:40]!r}; "
                    "only numbers are allowed (one optional header line of names may come first)"
                ) from None
        raise ValueError(f"data file {str(path)!r} could not be read as numeric CSV") from None
    return values, numbers


_NPY_MAGIC = b"\x93NUMPY"  # every .npy file starts with it (numpy.lib.format)


def _read_npy(path: Path) -> np.ndarray:
    # Without the magic, np.load falls back to unpickling and reports any bytes as "pickled
    # (object) data": check the header first, so random bytes are named for what they are.
    try:
        with open(path, "rb") as stream:
            magic = stream.read(len(_NPY_MAGIC))
    except OSError as error:
        raise ValueError(f"data file {str(path)!r} cannot be read: {error}") from None
    if magic != _NPY_MAGIC:
        raise ValueError(f"data file {str(path)!r} is not a valid .npy file (no .npy header); write it "
                         "with numpy.save, or give a .csv file")
    try:
        array = np.load(path, allow_pickle=False)
    except ValueError as error:
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        if "pickle" in message.lower():
            raise ValueError(
                f"data file {str(path)!r} holds Python objects, not numbers (object arrays are refused)"
            ) from None
        raise ValueError(f"data file {str(path)!r} is not a readable .npy array: {message}") from None
    except (OSError, EOFError) as error:
        raise ValueError(f"data file {str(path)!r} is truncated or not a .npy file: {error}") from None
    if not isinstance(array, np.ndarray):
        raise ValueError(f"data file {str(path)!r} does not hold a single array")
    if array.dtype.kind not in "biuf":
        raise ValueError(
            f"data file {str(path)!r} holds values of dtype {array.dtype}; only real numbers (or booleans) "
            "are allowed"
        )
    if array.ndim != 2:
        hint = "; reshape a 1-D array with .reshape(-1, 1)" if array.ndim == 1 else ""
        raise ValueError(
            f"data file {str(path)!r} holds an array of shape {array.shape}; it must be 2-D, (n, d){hint}"
        )
    return array


def load_array(path: str | os.PathLike[str], *, min_rows: int = 2, dim: int | None = None) -> Tensor:
    r"""The samples stored in ``path`` (``.csv`` or ``.npy``) as an ``(n, d)`` float32 CPU tensor.

    Checks, each failing with a one-line ``ValueError`` that names the file: the file exists
    and ends in ``.csv`` or ``.npy``; the content is numeric (see the module docstring for the
    CSV rules); every value is finite (the first bad row is named, 1-based); values fit float32;
    the array is 2-D and, when ``dim`` is given, has ``dim`` columns; there are at least
    ``min_rows`` rows.

    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "points.csv").write_text("x,y\n0.5,1\n-2,3e-1\n")
    >>> load_array(folder / "points.csv")
    tensor([[ 0.5000,  1.0000],
            [-2.0000,  0.3000]])
    """
    min_rows = check_count(min_rows, "min_rows")
    if dim is not None and (isinstance(dim, bool) or not isinstance(dim, int) or dim < 1):
        raise ValueError(f"dim must be None or a positive integer, got {dim!r}")
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or path-like, got {type(path).__name__}")
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in DATA_SUFFIXES:
        raise ValueError(
            f"data file {str(path)!r} has the unknown extension {path.suffix!r}; use a .csv or .npy file"
        )
    if not path.exists():
        raise ValueError(f"data file {str(path)!r} does not exist")
    if not path.is_file():
        raise ValueError(f"data file {str(path)!r} is not a regular file")

    row_names: Any
    if suffix == ".csv":
        values, line_numbers = _read_csv(path)
        row_names = [f"row {row + 1} (line {line})" for row, line in enumerate(line_numbers)]
    else:
        values = _read_npy(path)
        row_names = None
    n = values.shape[0]
    if n > 0:
        finite = np.isfinite(values.astype(np.float64, copy=False)).all(axis=1)
        if not finite.all():
            row = int(np.flatnonzero(~finite)[0])
            where = row_names[row] if row_names else f"row {row + 1}"
            n_bad = int((~finite).sum())
            raise ValueError(
                f"data file {str(path)!r}: {where} holds NaN or infinity ({n_bad} row(s) in all); "
                "every value must be finite"
            )
        if values.dtype.kind == "f" and np.abs(values).max() > np.finfo(np.float32).max:
            raise ValueError(f"data file {str(path)!r} holds values beyond the float32 range (about 3.4e38)")
    if dim is not None and values.shape[1] != dim and n > 0:
        raise ValueError(f"data file {str(path)!r} has {values.shape[1]} columns, expected dim={dim}")
    if n < min_rows:
        raise ValueError(f"data file {str(path)!r} has {n} data row(s); at least {min_rows} are needed")
    return torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32))
