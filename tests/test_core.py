"""Small shared pieces: validation messages, atomic writes, and `import *` of every module."""

from __future__ import annotations

import importlib
import json
import pkgutil

import numpy as np
import pytest
import torch

import measureflow
from measureflow._core import (
    atomic_path,
    atomic_write_json,
    check_particles,
    check_positive,
    make_generator,
    save_npz,
)


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out" / "result.json"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as temporary:
            temporary.write_text("half")
            raise RuntimeError("interrupted")
    assert not target.exists()
    assert list((tmp_path / "out").iterdir()) == []
    atomic_write_json(target, {"a": 1})
    assert json.loads(target.read_text()) == {"a": 1}
    save_npz(tmp_path / "x.npz", samples=torch.ones(2, 3))
    assert np.load(tmp_path / "x.npz")["samples"].shape == (2, 3)


def test_validation_messages():
    with pytest.raises(ValueError, match=r"shape \(n, d\)"):
        check_particles(torch.zeros(3), "x")
    with pytest.raises(ValueError, match="2 columns"):
        check_particles(torch.zeros(3, 1), "x", dim=2)
    with pytest.raises(ValueError, match="NaN"):
        check_particles(torch.tensor([[float("inf")]]), "x")
    with pytest.raises(ValueError, match="positive"):
        check_positive(-1, "step_size")
    with pytest.raises(TypeError, match="number"):
        check_positive("fast", "step_size")
    with pytest.raises(ValueError, match="non-negative"):
        make_generator(-3)


def _public_modules():
    names = ["measureflow"]
    for info in pkgutil.walk_packages(measureflow.__path__, "measureflow."):
        if not info.name.split(".")[-1].startswith("_") and ".cli" not in info.name:
            names.append(info.name)
    return names


@pytest.mark.parametrize("name", _public_modules())
def test_import_star(name):
    module = importlib.import_module(name)
    assert hasattr(module, "__all__"), f"{name} has no __all__"
    namespace: dict = {}
    exec(f"from {name} import *", namespace)
    missing = [item for item in module.__all__ if item not in namespace]
    assert not missing
