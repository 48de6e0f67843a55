r"""Scikit-learn's 8 x 8 handwritten digits as image tensors, with one fixed train/test split.

The set (1,797 images of the digits 0-9, pixel intensities 0..16; the UCI optical-recognition
test set) ships inside scikit-learn, so nothing is downloaded. The split is fixed once for
everyone: ``sklearn.model_selection.train_test_split`` with ``test_size=DIGITS_TEST_FRACTION``
(0.2), ``random_state=DIGITS_SPLIT_SEED`` (0) and stratified by label, which gives 1,437
training and 360 test images that never overlap and hold each digit in the same proportion.
Images are scaled to [-1, 1] by x / 8 - 1, the range diffusion models are usually trained on.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from torch import Tensor

__all__ = ["DIGITS_SPLITS", "DIGITS_SPLIT_SEED", "DIGITS_TEST_FRACTION", "digits", "digits_to_pixels"]

DIGITS_SPLITS = ("train", "test", "all")
DIGITS_TEST_FRACTION = 0.2
DIGITS_SPLIT_SEED = 0


@lru_cache(maxsize=1)
def _digits_arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Pixels (1797, 64) float32, labels (1797,) int64 and the sorted train and test row indices."""
    from sklearn.datasets import load_digits  # imported here: sklearn is slow to import
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    pixels = np.asarray(bunch.data, dtype=np.float32)
    labels = np.asarray(bunch.target, dtype=np.int64)
    rows = np.arange(labels.shape[0])
    train, test = train_test_split(
        rows, test_size=DIGITS_TEST_FRACTION, random_state=DIGITS_SPLIT_SEED, stratify=labels
    )
    # Sorted, so a split lists the images in the order of the original file.
    return pixels, labels, np.sort(train), np.sort(test)


def digits(
    split: str = "train",
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> tuple[Tensor, Tensor]:
    r"""The ``split`` (``"train"``, ``"test"`` or ``"all"``) of the 8 x 8 digits.

    Returns ``(images, labels)``: images ``(n, 1, 8, 8)`` in ``dtype`` with values
    x / 8 - 1 in [-1, 1] (x the 0..16 intensity), labels ``(n,)`` int64 in 0..9. The train
    and test splits are fixed (see the module docstring): n = 1437, 360 and 1797.

    >>> images, labels = digits("test")
    >>> tuple(images.shape), labels.dtype, float(images.min()), float(images.max())
    ((360, 1, 8, 8), torch.int64, -1.0, 1.0)
    """
    if split not in DIGITS_SPLITS:
        raise ValueError(f"split must be one of {', '.join(DIGITS_SPLITS)}, got {split!r}")
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating torch dtype, got {dtype!r}")
    pixels, labels, train, test = _digits_arrays()
    rows = {"train": train, "test": test, "all": np.arange(labels.shape[0])}[split]
    # torch.tensor copies, so callers can never write into the cached arrays.
    images = torch.tensor(pixels[rows]).reshape(-1, 1, 8, 8) / 8.0 - 1.0
    return images.to(dtype=dtype, device=device), torch.tensor(labels[rows], device=device)


def digits_to_pixels(images: Tensor, *, clamp: bool = False) -> Tensor:
    r"""Undo the scaling of :func:`digits`: (images + 1) * 8, the 0..16 intensities.

    Generated images may leave [-1, 1]; ``clamp=True`` clips the result to [0, 16] (for display
    or for a classifier trained on real pixels). Shape, dtype and device are kept.

    >>> images, _ = digits("test")
    >>> pixels = digits_to_pixels(images)
    >>> float(pixels.min()), float(pixels.max()), bool((pixels == pixels.round()).all())
    (0.0, 16.0, True)
    """
    if not isinstance(images, Tensor) or not images.is_floating_point():
        raise TypeError(f"images must be a floating torch tensor, got {type(images).__name__}")
    pixels = (images + 1.0) * 8.0
    return pixels.clamp(0.0, 16.0) if clamp else pixels
