"""Data sets as torch tensors: tabular sets from scikit-learn (more to come: 2-D toys, digits,
user files)."""

from measureflow.data.tabular import TabularSplit, breast_cancer

__all__ = ["TabularSplit", "breast_cancer"]
