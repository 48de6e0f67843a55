"""Tabular data sets from scikit-learn, split and standardized as torch tensors."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from measureflow._core import check_probability, make_generator

__all__ = ["TabularSplit", "breast_cancer"]


@dataclass(frozen=True)
class TabularSplit:
    """A train/test split of a binary classification set.

    ``X_train`` ``(n_train, p)`` and ``X_test`` ``(n_test, p)`` are standardized with the
    training split's per-feature mean and standard deviation (``feature_mean``, ``feature_std``,
    both ``(p,)``), so no test information leaks into the features; ``y_train`` and ``y_test``
    hold float labels 0/1. ``feature_names`` names the ``p`` columns.
    """

    X_train: Tensor
    y_train: Tensor
    X_test: Tensor
    y_test: Tensor
    feature_mean: Tensor
    feature_std: Tensor
    feature_names: tuple[str, ...]

    @property
    def n_features(self) -> int:
        return int(self.X_train.shape[1])


def breast_cancer(
    test_fraction: float = 0.3,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
) -> TabularSplit:
    """The Wisconsin diagnostic breast cancer set (569 tumours, 30 features; label 1 = benign).

    Loaded from scikit-learn's bundled copy (no download). Rows are shuffled by a permutation
    drawn from a generator seeded with ``seed``; the first ``round(test_fraction * 569)`` rows
    form the test split. Features are standardized with the training split's mean and
    (population) standard deviation.

    >>> from measureflow.data import breast_cancer
    >>> data = breast_cancer()
    >>> tuple(data.X_train.shape), tuple(data.X_test.shape)
    ((398, 30), (171, 30))
    """
    from sklearn.datasets import load_breast_cancer  # imported here: sklearn is slow to import

    test_fraction = check_probability(test_fraction, "test_fraction")
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating torch dtype, got {dtype!r}")
    bunch = load_breast_cancer()
    features = torch.as_tensor(np.asarray(bunch.data, dtype=np.float64))
    labels = torch.as_tensor(np.asarray(bunch.target, dtype=np.float64))
    n = features.shape[0]
    n_test = int(round(test_fraction * n))
    if not 1 <= n_test <= n - 2:
        raise ValueError(
            f"test_fraction={test_fraction} leaves {n_test} test and {n - n_test} training rows "
            f"of {n}; need at least 1 test and 2 training rows"
        )
    order = torch.randperm(n, generator=make_generator(seed))
    test, train = order[:n_test], order[n_test:]
    mean = features[train].mean(0)
    std = features[train].std(0, unbiased=False)
    # Every feature of this set varies, but guard against a constant column anyway.
    std = torch.where(std > 0, std, torch.ones_like(std))

    def prepared(tensor: Tensor) -> Tensor:
        return tensor.to(dtype=dtype, device=device)

    return TabularSplit(
        X_train=prepared((features[train] - mean) / std),
        y_train=prepared(labels[train]),
        X_test=prepared((features[test] - mean) / std),
        y_test=prepared(labels[test]),
        feature_mean=prepared(mean),
        feature_std=prepared(std),
        feature_names=tuple(str(name) for name in bunch.feature_names),
    )
