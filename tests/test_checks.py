"""Theory checks: each runs at the quick size, passes, writes PNG figures and serializes to JSON.

Each check's tolerance was tried with seeds 0, 1 and 2 (all pass); only seed 0 runs here to
keep the suite fast. A check's verdict is a statistical statement with its own stated
false-alarm rate, so this is a regression test of the library against the claims.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import measureflow as mf

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CHECK_NAMES = [
    "langevin-stationary", "ula-bias", "annealed-rastrigin", "sgld-logistic", "mmd-unbiased",
    "kantorovich-duality", "w2-sample-rate", "distance-geometry", "de-bruijn", "lsi-decay",
    "particles-vs-pde", "wgf-descent", "benamou-brenier", "simplex-methods", "flows-to-mixture",
    "ou-forgets", "reverse-exact-score", "learned-score-toys", "diffusion-digits",
    "change-of-variables", "ebm-mixture", "optimal-discriminator", "discriminator-ratio",
    "fgan-bound", "vanishing-gradients",
    "mode-coverage",
    "gan-stability", "ntk-concentration", "ntk-linear-convergence", "lazy-vs-active", "spectral-bias",
    "implicit-bias", "landscape", "averaged-sgd", "infinite-langevin-stability",
    "infinite-langevin-posterior",
    "infinite-langevin-ergodicity", "langevin-excess-risk", "mean-field-langevin", "noise-smooths",
    "bayes-classifier", "lfvi-consistency", "lotka-volterra-posteriors", "cgnn-identifies",
    "mmd-fit-asymmetry", "tuebingen",
]


def test_registry_lists_the_checks_in_demo_order():
    assert mf.checks.names() == CHECK_NAMES
    for name, spec in mf.checks.CHECKS.items():
        assert spec.name == name and spec.title


def test_unknown_check_and_size_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="unknown check"):
        mf.checks.run("nope")
    with pytest.raises(ValueError, match="size"):
        mf.checks.run("ula-bias", size="huge", out_dir=tmp_path)


@pytest.mark.parametrize("name", CHECK_NAMES)
def test_check_passes_at_quick_size(name, tmp_path):
    result = mf.checks.run(name, size="quick", seed=0, device="cpu", out_dir=tmp_path)
    assert isinstance(result, mf.checks.CheckResult)
    assert result.name == name
    assert result.passed, f"{name} failed: predicted {result.predicted}; measured {result.measured}"
    assert result.verdict == "PASS"
    for text in (result.claim, result.predicted, result.measured, result.tolerance):
        assert isinstance(text, str) and text
    assert any(character.isdigit() for character in result.predicted + result.measured)
    assert result.figures
    for figure in result.figures:
        path = Path(figure)
        assert path.parent == tmp_path and path.suffix == ".png"
        assert path.read_bytes()[:8] == PNG_SIGNATURE
    # No temporary files are left behind by the atomic writes.
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(Path(f).name for f in result.figures)
    data = json.loads(json.dumps(result.to_dict()))
    assert data["verdict"] == "PASS" and data["name"] == name
    assert result.wall_time > 0
