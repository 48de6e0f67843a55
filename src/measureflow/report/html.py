"""The HTML index of a run folder, built from the ``result.json`` files found in it.

One self-contained page (inline CSS, no scripts, no external resources, so it works offline): a
summary table of the theory checks, one compact row each (check, verdict, one-line claim, one-line
measured vs predicted, seconds), then one section per result with the claim, the prediction and
its tolerance, the measurement, the figures and every number. Math in the texts (``$...$``) is
rendered as MathML (:mod:`measureflow.report.text`). Links are relative, so the folder can be
moved or served as it is; all other text is HTML-escaped. Nothing is computed here: the page only
shows what the result files say.
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
from measureflow.report.text import measured_vs_predicted, one_line, to_html

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
body { font-family: system-ui, sans-serif; margin: 0.5em auto; max-width: 80em; padding: 0 1em;
       color: #222; }
header { display: flex; align-items: baseline; gap: 1em; flex-wrap: wrap; }
h1 { font-size: 1.25em; margin: 0.1em 0; }
.meta { color: #666; margin: 0; font-size: 0.9em; }
table { border-collapse: collapse; margin: 0.5em 0; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
td.number { text-align: right; font-variant-numeric: tabular-nums; }
.PASS { color: #186a1f; font-weight: bold; }
.FAIL, .ERROR { color: #b00020; font-weight: bold; }
/* The summary: one short row per check (14 px), so that 50 checks and every verdict fit a
   1280 x 800 window; each cell is cut with an ellipsis and carries its full text as a tooltip. */
table.summary { table-layout: fixed; width: 100%; font-size: 11.5px; line-height: 13px;
                margin: 0.3em 0; }
table.summary th, table.summary td { padding: 0 5px; border-width: 0 0 1px 0;
                                     white-space: nowrap; overflow: hidden;
                                     text-overflow: ellipsis; }
table.summary tbody tr:nth-child(even) { background: #fafafa; }
table.summary col.check { width: 15.5em; }
table.summary col.verdict { width: 5.4em; }
table.summary col.seconds { width: 5.6em; }
table.summary col.claim { width: 45%; }
section { border-top: 1px solid #ddd; margin-top: 2em; padding-top: 0.5em; }
section h2 a.top { font-size: 0.6em; font-weight: normal; margin-left: 0.5em; }
.claim { font-size: 1.05em; line-height: 1.5; }
.title { color: #555; margin: 0; }
table.numbers th { width: 7em; }
.error { color: #b00020; white-space: pre-wrap; font-family: monospace; }
.figures { display: flex; flex-wrap: wrap; gap: 1em; }
figure { margin: 0; max-width: 100%; }
figure img { max-width: 100%; height: auto; border: 1px solid #ddd; }
figcaption { color: #666; font-size: 0.9em; }
details table { font-size: 0.9em; }
details td { font-variant-numeric: tabular-nums; word-break: break-word; }
math { font-size: 1.05em; }
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


def _png_size(path: Path) -> tuple[int, int] | None:
    """Width and height from a PNG's IHDR chunk (bytes 16-24), or None for anything else.

    The ``<img>`` tags carry them so the page does not reflow while the figures load.
    """
    try:
        with path.open("rb") as file:
            head = file.read(24)
    except OSError:
        return None
    if len(head) < 24 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return None
    width, height = int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    return (width, height) if width > 0 and height > 0 else None


def _figures_html(entry: ResultEntry, index_folder: Path) -> list[str]:
    parts = []
    if entry.figures:
        parts.append('<div class="figures">')
        for figure in entry.figures:
            link = _link(figure, index_folder)
            size = _png_size(figure)
            dimensions = f' width="{size[0]}" height="{size[1]}"' if size else ""
            # Loaded eagerly: the figures are local files, and a lazy image never loads in a
            # page that is printed or checked without scrolling.
            parts.append(
                f'<figure><a href="{link}"><img src="{link}" alt="{_escape(figure.name)}"'
                f'{dimensions}></a><figcaption>{_escape(figure.name)}</figcaption></figure>'
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


def _title(data: dict[str, Any]) -> str:
    """The check's one-line claim: ``title`` in the result, else the registry's title for its
    name, else the claim's first sentence."""
    title = data.get("title")
    if not title:
        from measureflow.checks.registry import CHECKS

        spec = CHECKS.get(str(data.get("name")))
        title = spec.title if spec is not None else one_line(data.get("claim", "")).split(". ")[0]
    return one_line(title)


def _check_summary(entries: Sequence[ResultEntry], index_folder: Path) -> list[str]:
    """One row per check: name (a link to its section), verdict, one-line claim, one-line
    measured vs predicted and seconds; long cells end in an ellipsis, their full text in the
    ``title`` tooltip."""
    parts = [
        '<table class="summary" id="summary">',
        '<colgroup><col class="check"><col class="verdict"><col class="claim"><col class="mvp">'
        '<col class="seconds"></colgroup>',
        "<thead><tr><th>check</th><th>verdict</th><th>claim</th>"
        '<th>measured vs predicted</th><th class="number">seconds</th></tr></thead><tbody>',
    ]
    for entry in entries:
        data, verdict = entry.data, _verdict(entry.data)
        claim = _title(data)
        line = measured_vs_predicted(data.get("measured", ""), data.get("predicted", ""))
        if verdict == "ERROR" and data.get("error"):
            line = one_line(data["error"])
        full = "measured: {}\npredicted: {}".format(
            one_line(data.get("measured", "")), one_line(data.get("predicted", "")))
        parts.append(
            "<tr>"
            f'<td><a href="#{_anchor(entry, index_folder)}" title="{_escape(entry.name)}">'
            f"{_escape(entry.name)}</a></td>"
            f'<td class="verdict {verdict}">{verdict}</td>'
            f'<td title="{_escape(one_line(data.get("claim", "")) or claim)}">{_escape(claim)}</td>'
            f'<td title="{_escape(full)}">{_escape(line)}</td>'
            f'<td class="number">{_escape(_number(data.get("wall_time"), 3))}</td>'
            "</tr>"
        )
    parts.append("</tbody></table>")
    return parts


_MAX_LIST = 200  # values of one list shown in the table of all numbers (the JSON has them all)


def _flatten(value: Any, prefix: str = "") -> Iterable[tuple[str, Any]]:
    """Nested dictionaries as ``(dotted.key, value)`` pairs."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _flatten(item, f"{prefix}.{key}" if prefix else str(key))
    else:
        yield prefix, value


def _full_value(value: Any) -> str:
    """Every number of ``value`` (lists up to ``_MAX_LIST`` values), 6 significant digits."""
    if isinstance(value, (list, tuple)):
        if all(isinstance(v, (int, float, str, bool)) or v is None for v in value):
            shown = ", ".join(_number(v, 6) for v in value[:_MAX_LIST])
            more = f", ... ({len(value)} values)" if len(value) > _MAX_LIST else ""
            return f"[{shown}{more}]"
        return json.dumps(value, default=str)[:4000]
    return _number(value, 6)


def _check_section(entry: ResultEntry, index_folder: Path) -> list[str]:
    """The claim (math as MathML), the derivation's result (predicted, tolerance), the
    measurement, the figures and, folded, every number of ``details``."""
    data, verdict = entry.data, _verdict(entry.data)
    parts = [
        f'<section id="{_anchor(entry, index_folder)}">',
        f'<h2>{_escape(entry.name)} <span class="{verdict}">{verdict}</span>'
        '<a class="top" href="#summary">back to the summary</a></h2>',
        f'<p class="title">{_escape(_title(data))}</p>',
    ]
    if data.get("claim"):
        parts.append(f'<p class="claim">{to_html(data["claim"])}</p>')
    parts.append('<table class="numbers">')
    for key in ("predicted", "tolerance", "measured"):
        if data.get(key):
            parts.append(f"<tr><th>{key}</th><td>{to_html(data[key])}</td></tr>")
    if data.get("wall_time") is not None:
        parts.append(f"<tr><th>seconds</th><td>{_escape(_number(data['wall_time'], 3))}</td></tr>")
    parts.append("</table>")
    if data.get("error"):
        parts.append(f'<p class="error">{_escape(data["error"])}</p>')
    parts += _figures_html(entry, index_folder)
    details = data.get("details")
    if isinstance(details, dict) and details:
        rows = list(_flatten(details))
        parts.append(f"<details><summary>all numbers ({len(rows)})</summary><table>")
        parts += [f"<tr><th>{_escape(key)}</th><td>{_escape(_full_value(value))}</td></tr>"
                  for key, value in rows]
        parts.append("</table></details>")
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
        # An empty icon: without it the browser asks for /favicon.ico and logs an error.
        '<link rel="icon" href="data:,">',
        f"<style>{_STYLE}</style>",
        "</head><body>",
        f"<header><h1>{_escape(title)}</h1>",
    ]
    meta = []
    if checks:
        n_passed = sum(_verdict(e.data) == "PASS" for e in checks)
        meta.append(f"{n_passed} of {len(checks)} checks passed")
    meta.append(f"measureflow {__version__}")
    parts.append(f'<p class="meta">{_escape(" · ".join(meta))}</p></header>')
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
