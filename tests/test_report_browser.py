"""The HTML report in a real browser: Debian's chromium, headless, driven by Playwright.

Running all the checks takes far too long for the suite, so the report is built from synthetic
``result.json`` files: one per registered check, with the registry's real names and one-line
titles, claims as long as the real ones (with ``$...$`` math), long predicted/measured strings,
and a small real PNG (8-bit RGB, encoded here with zlib: matplotlib would cost seconds). One
check fails and one errors, so every verdict style is on the page. The layout is what is tested,
and it depends only on those texts' lengths and the figures' sizes, which match real runs.

The test asserts that the page loads with no console error, every image decodes with a non-zero
natural size, the math renders as MathML boxes, and at 1280 x 800 the summary table and every
verdict lie inside the window without scrolling. It keeps a screenshot under
``runs/ci-artifacts/report.png`` (CI's artifact).

Skipped when chromium or Playwright is missing, unless ``MEASUREFLOW_REQUIRE_BROWSER=1`` (set by
``.ci/run``), which makes a missing browser a failure. Playwright's own browser downloads are
never used: the system's chromium is passed as ``executable_path``.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import zlib
from pathlib import Path

import pytest

import measureflow as mf
from measureflow.report import write_index

ARTIFACTS = Path(__file__).resolve().parents[1] / "runs" / "ci-artifacts"
VIEWPORT = {"width": 1280, "height": 800}
# The flags a headless chromium needs in a container without a display, a GPU or a network;
# Playwright gives each launch a fresh temporary profile (--user-data-dir) itself.
CHROMIUM_FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


def _chromium() -> str:
    """The system chromium's path; skips (or fails, when CI requires it) if it is missing."""
    required = os.environ.get("MEASUREFLOW_REQUIRE_BROWSER") == "1"
    path = (os.environ.get("MEASUREFLOW_CHROMIUM") or shutil.which("chromium")
            or shutil.which("chromium-browser"))
    if path is not None and not os.access(path, os.X_OK):
        path = None
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        path, why = None, "the playwright package is not installed (pip install playwright)"
    else:
        why = "chromium is not installed (apt-get install chromium)"
    if path is None:
        if required:
            pytest.fail(f"MEASUREFLOW_REQUIRE_BROWSER=1 but {why}")
        pytest.skip(why)
    return path


def _long_claim(title: str, position: int) -> str:
    # As long as the real claims (300-900 characters), with math in several segments.
    return (
        f"{title[0].upper()}{title[1:]}: for the law $\\mu_t$ of the dynamics "
        "$dX_t = -\\nabla L(X_t)\\,dt + \\sqrt{2/\\beta}\\,dB_t$ the quantity "
        "$\\mathrm{KL}(\\mu_t \\| \\pi) \\le e^{-2 m t}\\,\\mathrm{KL}(\\mu_0 \\| \\pi)$ decays at "
        "the predicted rate, and the estimate's error falls like $n^{-1/2}$. "
        + "(Settings: n = [100, 200, 400, 800], 200 repetitions, beta = [1, 4], h = 0.002; "
        "float64; started uniform on [-1.5, 1.5].) " * (1 + position % 4)
    )


def _png(width: int, height: int) -> bytes:
    """A valid RGB PNG of ``width`` x ``height`` pixels: diagonal stripes, one IDAT chunk."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))

    rows = b"".join(
        b"\x00" + bytes(255 if (x + y) % 40 < 20 else 90 for x in range(width) for _ in "rgb")
        for y in range(height)
    )
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB, no interlace
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
            + chunk(b"IEND", b""))


def _synthetic_run(folder: Path) -> list[str]:
    """One result folder per registered check (see the module docstring); returns the names."""
    png = _png(528, 198)  # the size (pixels) of a real two-panel figure at 110 dpi, halved
    names = mf.checks.names()
    for position, name in enumerate(names):
        check_folder = folder / name
        check_folder.mkdir()
        (check_folder / f"{name}.png").write_bytes(png)
        verdict = "ERROR" if position == 7 else "FAIL" if position == 3 else "PASS"
        data = {
            "name": name,
            "title": mf.checks.CHECKS[name].title,
            "claim": _long_claim(mf.checks.CHECKS[name].title, position),
            "predicted": "beta=1: TV <= 0.0293 (floor 0.0220 +- 0.0024 for 20000 exact draws); "
                         "beta=4: TV <= 0.0231 (floor 0.0178 +- 0.0018 for 20000 exact draws)",
            "measured": "beta=1: MALA 0.0222, ULA h=0.002 0.0284 (ULA h=0.05: 0.0815); beta=4: "
                        "MALA 0.0163, ULA h=0.002 0.0179 (ULA h=0.05: 0.0741)" * 2,
            "tolerance": "the 99.9% quantile of TV between exact draws and the density",
            "passed": verdict == "PASS", "verdict": verdict,
            "details": {"tv": [0.0222, 0.0284, 0.0815], "nested": {"rate": 2.9994, "n": 600}},
            "figures": [f"{name}.png"], "wall_time": 3.25 + position,
        }
        if verdict == "ERROR":
            data.update(predicted="", measured="", figures=[],
                        error="RuntimeError: a very long error message " * 5)
            (check_folder / f"{name}.png").unlink()
        (check_folder / "result.json").write_text(json.dumps(data), encoding="utf-8")
    return names


def test_report_in_chromium(tmp_path):
    chromium = _chromium()
    from playwright.sync_api import sync_playwright

    names = _synthetic_run(tmp_path)
    index = write_index(tmp_path, title="measureflow demo (quick, seed 0, cpu)", order=names)
    problems: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True,
                                             args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport=VIEWPORT)
            page.on("console", lambda message: message.type == "error"
                    and problems.append(f"console: {message.text}"))
            page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
            page.on("requestfailed", lambda request: problems.append(
                f"request failed: {request.url} ({request.failure})"))
            page.goto(index.resolve().as_uri(), wait_until="load")
            layout = page.evaluate("""() => {
                const box = (element) => {
                    const r = element.getBoundingClientRect();
                    return {top: r.top, bottom: r.bottom, left: r.left, right: r.right,
                            width: r.width, height: r.height};
                };
                const table = document.querySelector("table.summary");
                return {
                    scroll: [window.scrollX, window.scrollY],
                    window: [window.innerWidth, window.innerHeight],
                    page_width: document.documentElement.scrollWidth,
                    table: box(table),
                    rows: table.tBodies[0].rows.length,
                    verdicts: [...table.querySelectorAll("td.verdict")].map((cell) => ({
                        text: cell.textContent, box: box(cell),
                        clipped: cell.scrollWidth > cell.clientWidth})),
                    images: [...document.images].map((image) => ({
                        src: image.src, complete: image.complete,
                        width: image.naturalWidth, height: image.naturalHeight})),
                    math: [...document.querySelectorAll("math")].map((m) => box(m).width),
                };
            }""")
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "report.png"))
        finally:
            browser.close()

    assert problems == []
    assert layout["scroll"] == [0, 0] and layout["window"] == [1280, 800]
    assert layout["page_width"] <= 1280, "the page scrolls sideways"
    # The summary: one row per check, wholly inside the first screen.
    assert layout["rows"] == len(names) == len(mf.checks.CHECKS)
    table = layout["table"]
    assert table["top"] >= 0 and table["left"] >= 0
    assert table["bottom"] <= 800 and table["right"] <= 1280, f"summary table at {table}"
    assert [v["text"] for v in layout["verdicts"]].count("PASS") == len(names) - 2
    for verdict in layout["verdicts"]:
        box = verdict["box"]
        assert box["height"] > 0 and box["top"] >= 0 and box["bottom"] <= 800, verdict
        assert box["left"] >= 0 and box["right"] <= 1280, verdict
        assert not verdict["clipped"], f"verdict text cut: {verdict}"
    # Every figure decodes (39: the erroring check has none).
    assert len(layout["images"]) == len(names) - 1
    for image in layout["images"]:
        assert image["complete"] and image["width"] > 0 and image["height"] > 0, image
    # Math is laid out as MathML boxes, not left as raw TeX.
    assert len(layout["math"]) >= 4 * len(names) and min(layout["math"]) > 0
