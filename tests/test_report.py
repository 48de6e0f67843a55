"""measureflow.report: the sample figure and the HTML index of a run folder."""

import html
import json
import re
from pathlib import Path

import pytest
import torch

import measureflow as mf
from measureflow.report import (
    find_results,
    relative_figures,
    render_index,
    sample_figure,
    save_figure,
    write_index,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _chains(n_kept, n_chains, dim, seed=0):
    generator = torch.Generator().manual_seed(seed)
    samples = torch.randn(n_kept, n_chains, dim, generator=generator)
    return samples, samples.square().sum(-1)


def test_import_star():
    namespace = {}
    exec("from measureflow.report import *", namespace)
    assert {"sample_figure", "save_figure", "write_index", "find_results"} <= set(namespace)


@pytest.mark.parametrize(
    "target, beta",
    [
        (mf.targets.DoubleWell(), 2.0),  # d = 1, normalized: histogram over the density
        (mf.targets.from_energy(lambda x: x.square().sum(-1), 1), 1.0),  # d = 1, unnormalized
        (mf.targets.GaussianMixture.ring(), 1.0),  # d = 2, normalized: density contours
        (mf.targets.GaussianMixture.ring(), 2.0),  # d = 2, unnormalized: log-density contours
        (mf.targets.Funnel(dim=5), 1.0),  # d > 2: the first two coordinates
        (None, 1.0),  # no target: samples only
    ],
)
def test_sample_figure_every_dimension(tmp_path, target, beta):
    dim = 3 if target is None else target.dim
    samples, energies = _chains(30, 8, dim)
    figure = sample_figure(samples, energies, target, beta, burn_in=10, thin=2, title="run")
    sample_axes, trace_axes = figure.axes[:2]
    if dim >= 2:
        assert len(sample_axes.collections) >= 1  # the scatter (and contours for d = 2)
    else:
        assert len(sample_axes.patches) == 80  # histogram bars
        has_curve = target is not None and target.is_normalized(beta)
        assert len(sample_axes.lines) == int(has_curve)
    # The trace runs over the kept steps: burn_in + thin * k for k = 1..n_kept.
    steps = trace_axes.lines[0].get_xdata()
    assert steps[0] == 12 and steps[-1] == 10 + 2 * 30
    path = save_figure(figure, tmp_path / "figure.png")
    assert path.read_bytes()[:8] == PNG_MAGIC
    assert sorted(p.name for p in tmp_path.iterdir()) == ["figure.png"]  # no temporary left


def test_sample_figure_without_trace_and_numpy_input():
    samples, _ = _chains(5, 3, 2)
    figure = sample_figure(samples.numpy(), None, mf.targets.GaussianMixture.ring())
    assert len(figure.axes) == 2


def test_sample_figure_rejects_bad_input():
    samples, energies = _chains(5, 3, 2)
    with pytest.raises(ValueError, match="n_kept, n_chains, d"):
        sample_figure(samples[0])
    with pytest.raises(ValueError, match="energy_trace must have shape"):
        sample_figure(samples, energies[:, :2])
    samples[2, 1, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        sample_figure(samples)


def _write_check(folder: Path, name: str, passed: bool, claim: str = "a claim",
                 figure_path: str | None = None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.png").write_bytes(PNG_MAGIC)
    data = {
        "name": name, "claim": claim, "predicted": "x <= 1", "measured": "x = 0.5",
        "tolerance": "MC error", "passed": passed, "verdict": "PASS" if passed else "FAIL",
        "details": {}, "figures": [figure_path or f"{name}.png"], "wall_time": 1.25,
    }
    (folder / "result.json").write_text(json.dumps(data))


def test_relative_figures(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.png").write_bytes(PNG_MAGIC)
    outside = tmp_path.parent / f"{tmp_path.name}-outside.png"
    outside.write_bytes(PNG_MAGIC)
    try:
        rewritten = relative_figures(
            [tmp_path / "sub" / "a.png", "sub/a.png", outside, "gone.png"], tmp_path
        )
    finally:
        outside.unlink()
    assert rewritten == ["sub/a.png", "sub/a.png", str(outside.resolve()), "gone.png"]


def test_index_of_checks_and_a_sample_run(tmp_path):
    _write_check(tmp_path / "zeta", "zeta", passed=True)
    # Figures given as absolute paths still resolve; text is escaped.
    _write_check(tmp_path / "alpha", "alpha", passed=False, claim="<script>x & y</script>",
                 figure_path=str(tmp_path / "alpha" / "alpha.png"))
    run = tmp_path / "runs" / "s 1"  # a space: links must be URL-quoted
    run.mkdir(parents=True)
    (run / "sample.png").write_bytes(PNG_MAGIC)
    (run / "result.json").write_text(json.dumps({
        "command": "sample", "target": "ring", "sampler": "ula",
        "settings": {"chains": 10, "step_size": 0.1}, "params": {"step_size": 0.1},
        "n_kept": 5, "n_chains": 10, "dim": 2, "mean": [0.1, 0.2], "figures": ["sample.png"],
    }))
    hidden = tmp_path / ".partial"
    hidden.mkdir()
    (hidden / "result.json").write_text("{not json")

    entries = find_results(tmp_path)
    assert [e.kind for e in entries] == ["check", "sample", "check"]
    path = write_index(tmp_path, order=["zeta", "alpha"])
    page = path.read_text()
    assert path == tmp_path / "index.html"
    assert '<img src="zeta/zeta.png"' in page and '<img src="alpha/alpha.png"' in page
    assert '<img src="runs/s%201/sample.png"' in page
    assert page.index('id="check-zeta"') < page.index('id="check-alpha"')  # the given order
    assert "<script>" not in page and "&lt;script&gt;x &amp; y&lt;/script&gt;" in page
    assert "1 of 2 checks passed" in page
    assert 'class="FAIL">FAIL' in page

    # Written elsewhere, the links point back into the run folder.
    elsewhere = tmp_path / "site"
    page = write_index(tmp_path, elsewhere).read_text()
    assert '<img src="../zeta/zeta.png"' in page
    # Restricted to some result files.
    page = render_index(find_results(tmp_path, only=[tmp_path / "zeta" / "result.json"]), tmp_path)
    assert "zeta" in page and "alpha" not in page


def test_index_reports_missing_figures_and_extra_pngs(tmp_path):
    _write_check(tmp_path / "c", "c", passed=True, figure_path="not-there.png")
    page = render_index(find_results(tmp_path), tmp_path)
    assert "missing figure: not-there.png" in page
    assert '<img src="c/c.png"' in page  # PNG next to the result, not listed, still shown


def test_find_results_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        find_results(tmp_path / "absent")
    (tmp_path / "result.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="JSON object"):
        find_results(tmp_path)
    (tmp_path / "result.json").write_text("{broken")
    with pytest.raises(ValueError, match="could not read"):
        find_results(tmp_path)


# --- math in the texts, the summary layout, the terminal table --------------------------------

CHECKS_SOURCE = Path(mf.checks.__file__).parent


def _claim_templates() -> dict[str, str]:
    """Each check module's ``claim=`` text, its f-string fields replaced by ``0``."""
    import ast

    def text(node) -> str:
        if isinstance(node, ast.Constant):
            return node.value if isinstance(node.value, str) else ""
        if isinstance(node, ast.FormattedValue):
            return "0"
        if isinstance(node, ast.JoinedStr):
            return "".join(text(part) for part in node.values)
        if isinstance(node, ast.BinOp):  # implicit concatenation across "+"
            return text(node.left) + text(node.right)
        return ""

    templates = {}
    for path in sorted(CHECKS_SOURCE.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.keyword) and node.arg == "claim":
                templates[path.stem] = text(node.value)
    return templates


def test_every_claims_math_converts():
    from latex2mathml.converter import convert

    from measureflow.report.text import plain, split_math

    templates = _claim_templates()
    assert len(templates) >= 40
    with_math = {name: text for name, text in templates.items() if "$" in text}
    assert len(with_math) >= 6  # the claims converted so far; more may follow
    for name, text in with_math.items():
        assert text.replace(r"\$", "").count("$") % 2 == 0, f"{name}: unpaired $"
        for is_math, segment in split_math(text):
            if is_math:
                assert "<math" in convert(segment), (name, segment)
        shown = plain(text)
        assert "$" not in shown and "\\" not in shown, (name, shown)  # no TeX left over


def test_plain_and_html_math():
    from measureflow.report.text import measured_vs_predicted, one_line, plain, to_html

    text = r"KL $\mathrm{KL}(p_t \| \pi) \le e^{-2 m t}$ at $\beta = \frac{1}{2}$, cost \$3"
    assert plain(text) == "KL KL(p_t ‖ π) ≤ e^(-2 m t) at β = 1/2, cost $3"
    page = to_html(text)
    assert page.count("<math") == 2 and "cost $3" in page and "\\le" in page  # alttext keeps TeX
    assert "<mfrac>" in page and "&#x003B2;" in page  # the fraction and beta as MathML
    # A segment the converter rejects is shown as plain text, escaped.
    assert to_html(r"$x < \frac{1}{$") == '<span class="math">x &lt; 1/</span>'
    assert one_line("a\n  b $x^{2}$") == "a b x^2"
    assert measured_vs_predicted("TV = 0.01; more", "TV <= 0.02; more") == (
        "TV = 0.01 | predicted TV <= 0.02")
    assert measured_vs_predicted("x", "") == "x"


def test_index_summary_rows_and_sections(tmp_path):
    claim = r"a long claim with $\beta \le 1$. " * 20
    _write_check(tmp_path / "ula-bias", "ula-bias", passed=True, claim=claim)
    data = json.loads((tmp_path / "ula-bias" / "result.json").read_text())
    data["details"] = {"rates": [0.5, 0.25], "nested": {"n": 3}, "long": list(range(300))}
    (tmp_path / "ula-bias" / "result.json").write_text(json.dumps(data))
    # A real PNG, so the <img> carries its size.
    figure = sample_figure(*_chains(5, 3, 2))
    save_figure(figure, tmp_path / "ula-bias" / "ula-bias.png")
    page = render_index(find_results(tmp_path), tmp_path)
    summary = page[page.index('<table class="summary"'):page.index("</table>")]
    # The summary row: a link to the section, the verdict, the registry's one-line title (no
    # title in this result file) and the one-line measured vs predicted.
    assert '<a href="#check-ula-bias"' in summary and 'class="verdict PASS">PASS' in summary
    assert f">{html.escape(mf.checks.CHECKS['ula-bias'].title)}<" in summary
    assert ">x = 0.5 | predicted x &lt;= 1<" in summary
    assert "<math" not in summary  # one short line per row: math as plain text there
    section = page[page.index('<section id="check-ula-bias"'):]
    assert section.count("<math") == 20  # the claim's math, rendered
    for key in ("predicted", "tolerance", "measured"):
        assert f"<tr><th>{key}</th>" in section
    assert "<tr><th>rates</th><td>[0.5, 0.25]</td></tr>" in section
    assert "<tr><th>nested.n</th><td>3</td></tr>" in section
    assert "... (300 values)]" in section
    assert re.search(r'<img src="ula-bias/ula-bias.png" alt="ula-bias.png" width="\d+" '
                     r'height="\d+">', section)
    # Offline: no script, nothing fetched from elsewhere, images load eagerly.
    assert "<script" not in page and 'loading="lazy"' not in page
    assert not re.search(r'(src|href)="(https?:)?//', page)


def _records(n: int) -> list[dict]:
    names = mf.checks.names()[:n]
    return [{"name": name, "verdict": ("PASS", "FAIL", "ERROR")[i % 3], "wall_time": 123.45 * i,
             "measured": "beta=1: MALA 0.0222, ULA h=0.002 0.0284 (ULA h=0.05: 0.0815) " * 3,
             "predicted": "TV <= 0.0293 " * 10, "error": "RuntimeError: broke " * 10}
            for i, name in enumerate(names)]


@pytest.mark.parametrize("width", [80, 120])
def test_demo_table_one_line_per_check(width):
    import io

    from rich.console import Console

    from measureflow.cli.checks import summary_table

    records = _records(40)
    console = Console(width=width, file=io.StringIO(), color_system=None)
    console.print(summary_table(records, "measureflow demo (quick, seed 0, cpu)"))
    lines = console.file.getvalue().splitlines()
    assert max(len(line) for line in lines) <= width
    for record in records:
        rows = [line for line in lines if line.split()[:1] == [record["name"]]]
        assert len(rows) == 1, record["name"]  # the whole name, on one line
        assert record["verdict"] in rows[0] and "…" in rows[0]
    assert len(lines) <= len(records) + 5  # title, header, rule: no wrapped rows


def test_check_help_lists_every_check():
    from typer.testing import CliRunner

    from measureflow.cli import app

    result = CliRunner().invoke(app, ["check", "--help"], env={"COLUMNS": "80"},
                                terminal_width=80)
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    for name in mf.checks.names():
        assert sum(line.split()[:1] == [name] for line in lines) == 1, name
    assert max(len(line) for line in lines) <= 80
