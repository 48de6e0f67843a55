"""Data sets as torch tensors: 2-D toys, scikit-learn's 8 x 8 digits and tabular sets, the user's own
.csv/.npy files, the standardization generative models are trained behind, and labelled toy sets
(regression and classification) for two-layer networks."""

from measureflow.data.dataset import (
    DATASET_NAMES,
    DEFAULT_TOY_SIZE,
    Dataset,
    Standardizer,
    load_dataset,
)
from measureflow.data.files import DATA_SUFFIXES, load_array
from measureflow.data.images import digits, digits_to_pixels
from measureflow.data.supervised import (
    SUPERVISED_NAMES,
    SupervisedData,
    load_supervised,
    supervised_dataset,
    train_test_split,
)
from measureflow.data.tabular import TabularSplit, breast_cancer
from measureflow.data.toys import MIXTURE_NAMES, MODE_STD, TOY_NAMES, MixtureSpec, toy_2d, toy_mixture

__all__ = [
    "DATASET_NAMES",
    "DATA_SUFFIXES",
    "DEFAULT_TOY_SIZE",
    "MIXTURE_NAMES",
    "MODE_STD",
    "SUPERVISED_NAMES",
    "TOY_NAMES",
    "Dataset",
    "MixtureSpec",
    "Standardizer",
    "SupervisedData",
    "TabularSplit",
    "breast_cancer",
    "digits",
    "digits_to_pixels",
    "load_array",
    "load_dataset",
    "load_supervised",
    "supervised_dataset",
    "toy_2d",
    "toy_mixture",
    "train_test_split",
]
