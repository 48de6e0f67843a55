"""Data sets: shapes, standardization with the training split, determinism and disjointness."""

from __future__ import annotations

import pytest
import torch

from measureflow.data import TabularSplit, breast_cancer


def _row_set(*tensors: torch.Tensor) -> set[tuple[float, ...]]:
    return {tuple(row.tolist()) for tensor in tensors for row in tensor}


def test_breast_cancer_shapes_and_labels():
    data = breast_cancer()
    assert isinstance(data, TabularSplit)
    assert data.X_train.shape == (398, 30) and data.X_test.shape == (171, 30)
    assert data.y_train.shape == (398,) and data.y_test.shape == (171,)
    assert data.n_features == 30 and len(data.feature_names) == 30
    for tensor in (data.X_train, data.y_train, data.X_test, data.y_test):
        assert tensor.dtype == torch.float64
        assert bool(torch.isfinite(tensor).all())
    labels = torch.cat([data.y_train, data.y_test])
    assert set(labels.unique().tolist()) == {0.0, 1.0}
    # 357 benign (label 1) and 212 malignant tumours in the whole set.
    assert int(labels.sum()) == 357


def test_breast_cancer_standardized_with_training_split():
    data = breast_cancer(seed=3)
    torch.testing.assert_close(
        data.X_train.mean(0), torch.zeros(30, dtype=torch.float64), atol=1e-12, rtol=0
    )
    torch.testing.assert_close(
        data.X_train.std(0, unbiased=False), torch.ones(30, dtype=torch.float64), atol=1e-12, rtol=0
    )
    # The test split uses the training statistics, so its moments are near but not exactly 0, 1.
    assert float(data.X_test.mean(0).abs().max()) < 0.5
    assert float(data.X_test.mean(0).abs().max()) > 1e-6
    # Undoing the standardization gives the raw features back (positive measurements).
    raw = data.X_test * data.feature_std + data.feature_mean
    assert bool((raw >= 0).all())


def test_breast_cancer_split_is_deterministic_under_the_seed():
    first, again, other = breast_cancer(seed=7), breast_cancer(seed=7), breast_cancer(seed=8)
    for name in ("X_train", "y_train", "X_test", "y_test"):
        torch.testing.assert_close(getattr(first, name), getattr(again, name), rtol=0, atol=0)
    assert not torch.equal(first.y_test, other.y_test) or not torch.equal(first.X_test, other.X_test)


def test_breast_cancer_splits_are_disjoint_and_cover_the_set():
    data = breast_cancer(seed=1)
    raw_train = data.X_train * data.feature_std + data.feature_mean
    raw_test = data.X_test * data.feature_std + data.feature_mean
    train_rows, test_rows = _row_set(raw_train.round(decimals=6)), _row_set(raw_test.round(decimals=6))
    assert len(train_rows) == 398 and len(test_rows) == 171
    assert not train_rows & test_rows


def test_breast_cancer_options():
    data = breast_cancer(test_fraction=0.5, dtype=torch.float32)
    assert data.X_train.dtype == torch.float32
    assert data.X_test.shape[0] + data.X_train.shape[0] == 569
    assert data.X_test.shape[0] == 284 or data.X_test.shape[0] == 285
    with pytest.raises(ValueError, match="test_fraction"):
        breast_cancer(test_fraction=1.0)
    with pytest.raises(TypeError, match="dtype"):
        breast_cancer(dtype=torch.int64)
