"""measureflow.report: the sample figure and the HTML index of a run folder."""

import json
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
