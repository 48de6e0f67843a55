"""The HTML index of a run folder, built from the ``result.json`` files found in it.

One self-contained page (inline CSS, no scripts, no external resources): a summary table of the
theory checks, then one section per result with its numbers and its figures shown inline. Links
are relative, so the folder can be moved or served as it is; all text is HTML-escaped. Nothing is
computed here: the page only shows what the result files say.
"""

from __future__ import annotations

import html
import json
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from measureflow._core import atomic_write_text

__all__ = [
    "RESULT_FILE",
    "ResultEntry",
    "find_results",
    "relative_figures",
    "render_index",
    "write_index",
]

RESULT_FILE = "result.json"
INDEX_FILE = "index.html"

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 76em; padding: 0 1em;
       color: #222; }
h1 { margin-bottom: 0.2em; }
.meta { color: #666; margin-top: 0; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
td.number { text-align: right; font-variant-numeric: tabular-nums; }
.PASS { color: #186a1f; font-weight: bold; }
.FAIL, .ERROR { color: #b00020; font-weight: bold; }
section { border-top: 1px solid #ddd; margin-top: 2em; padding-top: 0.5em; }
.claim { font-style: italic; }
.error { color: #b00020; white-space: pre-wrap; font-family: monospace; }
.figures { display: flex; flex-wrap: wrap; gap: 1em; }
figure { margin: 0; }
figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { color: #666; font-size: 0.9em; }
"""


@dataclass(frozen=True)
class ResultEntry:
    """One ``result.json`` of a run folder.

    ``kind`` is ``"check"`` (a theory check: it has a verdict), ``"sample"`` (a sampling run: it
    names a sampler) or ``"other"``; ``figures`` are the existing PNG files that belong to it:
    those the result lists, then any other PNG file next to it.
    """

    path: Path
    kind: str
    data: dict[str, Any]
    figures: tuple[Path, ...]
    missing_figures: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return str(self.data.get("name") or self.data.get("target") or self.path.parent.name)


def _resolve_figure(figure: str, folder: Path) -> Path | None:
    """The existing file a result's figure entry names: an absolute path, or a path relative to
    the result's folder or to the working directory; failing those, its file name in the folder."""
    path = Path(figure)
    candidates = [path] if path.is_absolute() else [folder / path, path]
    candidates.append(folder / path.name)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    return None


def relative_figures(figures: Iterable[str | os.PathLike[str]], folder: str | os.PathLike[str]
                     ) -> list[str]:
    """Figure paths rewritten relative to ``folder`` (POSIX separators) where they lie under it.

    Result files store their figures this way, so a run folder stays valid when moved. Existing
    files outside ``folder`` become absolute paths; paths that do not exist are kept as given.

    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "plot.png").write_bytes(b"")
    >>> relative_figures([folder / "plot.png", "elsewhere/x.png"], folder)
    ['plot.png', 'elsewhere/x.png']
    """
    base = Path(folder)
    rewritten = []
    for figure in figures:
        found = _resolve_figure(os.fspath(figure), base)
        if found is not None:
            try:
                rewritten.append(found.resolve().relative_to(base.resolve()).as_posix())
            except ValueError:
                rewritten.append(str(found.resolve()))
        else:
            rewritten.append(os.fspath(figure))
    return rewritten


def _kind(data: dict[str, Any]) -> str:
    if "verdict" in data or "passed" in data:
        return "check"
    if "sampler" in data:
        return "sample"
    return "other"


def _visible(path: Path, root: Path) -> bool:
    return not any(part.startswith(".") for part in path.relative_to(root).parts)


def find_results(
    folder: str | os.PathLike[str], only: Iterable[str | os.PathLike[str]] | None = None
) -> list[ResultEntry]:
    """Every ``result.json`` under ``folder`` (hidden folders skipped), sorted by path; with
    ``only``, just those of the given result files.

    Raises ``FileNotFoundError`` if ``folder`` is not a directory and ``ValueError`` if a result
    file is not a JSON object.
    """
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"run folder {os.fspath(folder)!r} does not exist or is not a folder")
    wanted = None if only is None else {Path(path).resolve() for path in only}
    entries = []
    for path in sorted(root.rglob(RESULT_FILE)):
        if not path.is_file() or not _visible(path, root):
            continue
        if wanted is not None and path.resolve() not in wanted:
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ValueError(f"could not read {path}: {error}") from None
        if not isinstance(data, dict):
            raise ValueError(f"{path} does not hold a JSON object")
        listed = data.get("figures") or []
        if isinstance(listed, str):
            listed = [listed]
        figures: list[Path] = []
        missing: list[str] = []
        for figure in listed:
            found = _resolve_figure(str(figure), path.parent)
            if found is None:
                missing.append(str(figure))
            elif found.resolve() not in {f.resolve() for f in figures}:
                figures.append(found)
        listed_files = {f.resolve() for f in figures}
        figures += [
            png for png in sorted(path.parent.glob("*.png"))
            if not png.name.startswith(".") and png.resolve() not in listed_files
        ]
        entries.append(ResultEntry(path, _kind(data), data, tuple(figures), tuple(missing)))
    return entries


def _escape(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _link(target: Path, index_folder: Path) -> str:
    relative = Path(os.path.relpath(target.resolve(), index_folder.resolve())).as_posix()
    return _escape(quote(relative))


def _number(value: Any, digits: int = 4) -> str:
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value)
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            return str(value)
        return f"{value:.{digits}g}"
    if isinstance(value, (list, tuple)):
        shown = ", ".join(_number(v, digits) for v in value[:6])
        more = f", ... ({len(value)} values)" if len(value) > 6 else ""
        return f"[{shown}{more}]"
    return str(value)


def _anchor(entry: ResultEntry, index_folder: Path) -> str:
    relative = os.path.relpath(entry.path.parent.resolve(), index_folder.resolve())
    slug = "".join(c if c.isalnum() or c in "-_" else "-" for c in Path(relative).as_posix())
    return f"{entry.kind}-{slug.strip('-') or 'root'}"


def _verdict(data: dict[str, Any]) -> str:
    verdict = str(data.get("verdict") or ("PASS" if data.get("passed") else "FAIL"))
    return verdict if verdict in ("PASS", "FAIL", "ERROR") else "FAIL"


def _figures_html(entry: ResultEntry, index_folder: Path) -> list[str]:
    parts = []
    if entry.figures:
        parts.append('<div class="figures">')
        for figure in entry.figures:
            link = _link(figure, index_folder)
            parts.append(
                f'<figure><a href="{link}"><img src="{link}" alt="{_escape(figure.name)}" '
                f'loading="lazy"></a><figcaption>{_escape(figure.name)}</figcaption></figure>'
            )
        parts.append("</div>")
    for missing in entry.missing_figures:
        parts.append(f'<p class="error">missing figure: {_escape(missing)}</p>')
    parts.append(f'<p><a href="{_link(entry.path, index_folder)}">{RESULT_FILE}</a></p>')
    return parts


def _rows(pairs: Iterable[tuple[str, Any]]) -> list[str]:
    rows = ['<table class="details">']
    for key, value in pairs:
        if value is None or value == "":
            continue
        cell = _number(value) if not isinstance(value, str) else value
        rows.append(f"<tr><th>{_escape(key)}</th><td>{_escape(cell)}</td></tr>")
    rows.append("</table>")
    return rows


def _check_summary(entries: Sequence[ResultEntry], index_folder: Path) -> list[str]:
    header = ("check", "claim", "predicted", "measured", "tolerance", "verdict", "seconds")
    parts = ['<table class="summary">', "<thead><tr>"]
    parts += [f"<th>{name}</th>" for name in header]
    parts.append("</tr></thead><tbody>")
    for entry in entries:
        data, verdict = entry.data, _verdict(entry.data)
        parts.append(
            "<tr>"
            f'<td><a href="#{_anchor(entry, index_folder)}">{_escape(entry.name)}</a></td>'
            f"<td>{_escape(data.get('claim', ''))}</td>"
            f"<td>{_escape(data.get('predicted', ''))}</td>"
            f"<td>{_escape(data.get('measured', ''))}</td>"
            f"<td>{_escape(data.get('tolerance', ''))}</td>"
            f'<td class="{verdict}">{verdict}</td>'
            f'<td class="number">{_escape(_number(data.get("wall_time"), 3))}</td>'
            "</tr>"
        )
    parts.append("</tbody></table>")
    return parts


def _check_section(entry: ResultEntry, index_folder: Path) -> list[str]:
    data, verdict = entry.data, _verdict(entry.data)
    parts = [
        f'<section id="{_anchor(entry, index_folder)}">',
        f'<h2>{_escape(entry.name)} <span class="{verdict}">{verdict}</span></h2>',
    ]
    if data.get("claim"):
        parts.append(f'<p class="claim">{_escape(data["claim"])}</p>')
    parts += _rows([
        ("predicted", data.get("predicted")),
        ("measured", data.get("measured")),
        ("tolerance", data.get("tolerance")),
        ("seconds", data.get("wall_time")),
    ])
    if data.get("error"):
        parts.append(f'<p class="error">{_escape(data["error"])}</p>')
    parts += _figures_html(entry, index_folder)
    parts.append("</section>")
    return parts


def _sample_section(entry: ResultEntry, index_folder: Path) -> list[str]:
    data = entry.data
    settings = data.get("settings") if isinstance(data.get("settings"), dict) else {}
    title = f"{data.get('target', entry.path.parent.name)}: {data.get('sampler', '')} sampler"
    parts = [f'<section id="{_anchor(entry, index_folder)}">', f"<h2>{_escape(title)}</h2>"]
    summary_keys = ("n_kept", "n_chains", "dim", "step_size", "acceptance_rate", "mean_energy",
                    "mean", "std", "ess", "rhat", "best_energy_min", "wall_time_s")
    params = data.get("params") if isinstance(data.get("params"), dict) else {}
    values = {**data, "step_size": params.get("step_size")}
    parts.append("<h3>settings</h3>")
    parts += _rows(sorted(settings.items()))
    parts.append("<h3>result</h3>")
    parts += _rows((key, values.get(key)) for key in summary_keys)
    parts += _figures_html(entry, index_folder)
    parts.append("</section>")
    return parts


def _other_section(entry: ResultEntry, index_folder: Path) -> list[str]:
    parts = [f'<section id="{_anchor(entry, index_folder)}">', f"<h2>{_escape(entry.name)}</h2>"]
    scalars = [(k, v) for k, v in entry.data.items() if isinstance(v, (str, int, float, bool))]
    parts += _rows(scalars)
    parts += _figures_html(entry, index_folder)
    parts.append("</section>")
    return parts


def render_index(
    entries: Sequence[ResultEntry],
    index_folder: str | os.PathLike[str],
    title: str = "measureflow run",
    order: Sequence[str] = (),
) -> str:
    """The HTML page for ``entries``, with links relative to ``index_folder``.

    Checks come first, in ``order`` (names not in it follow, by path), then sampling runs and
    any other results.

    >>> page = render_index([], ".", title="a <b> run")
    >>> "<h1>a &lt;b&gt; run</h1>" in page
    True
    """
    from measureflow import __version__

    folder = Path(index_folder)
    rank = {name: position for position, name in enumerate(order)}
    checks = sorted(
        (e for e in entries if e.kind == "check"),
        key=lambda e: (rank.get(e.name, len(rank)), str(e.path)),
    )
    others = [e for e in entries if e.kind != "check"]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_escape(title)}</title>",
        f"<style>{_STYLE}</style>",
        "</head><body>",
        f"<h1>{_escape(title)}</h1>",
    ]
    meta = []
    if checks:
        n_passed = sum(_verdict(e.data) == "PASS" for e in checks)
        meta.append(f"{n_passed} of {len(checks)} checks passed")
    meta.append(f"measureflow {__version__}")
    parts.append(f'<p class="meta">{_escape(" · ".join(meta))}</p>')
    if not entries:
        parts.append(f"<p>No {RESULT_FILE} files found.</p>")
    if checks:
        parts += _check_summary(checks, folder)
        for entry in checks:
            parts += _check_section(entry, folder)
    for entry in others:
        section = _sample_section if entry.kind == "sample" else _other_section
        parts += section(entry, folder)
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_index(
    folder: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    *,
    title: str | None = None,
    order: Sequence[str] = (),
    only: Iterable[str | os.PathLike[str]] | None = None,
) -> Path:
    """Write ``index.html`` for the results under ``folder`` into ``out`` (default: ``folder``).

    ``order`` sorts the checks by name; ``only`` restricts the page to the given result files.
    Returns the path written. The file is written atomically.
    """
    entries = find_results(folder, only)
    index_folder = Path(out) if out is not None else Path(folder)
    page = render_index(entries, index_folder, title or f"measureflow: {Path(folder).name}", order)
    return atomic_write_text(index_folder / INDEX_FILE, page)
