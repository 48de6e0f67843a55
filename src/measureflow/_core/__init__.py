"""Small shared pieces: validation, randomness, progress bars and atomic file writes."""

from measureflow._core.io import atomic_path, atomic_write_json, atomic_write_text, save_npz
from measureflow._core.progress import progress_bar
from measureflow._core.rng import make_generator, randn
from measureflow._core.validate import (
    as_tensor,
    check_finite,
    check_particles,
    check_positive,
    check_probability,
)

__all__ = [
    "as_tensor",
    "atomic_path",
    "atomic_write_json",
    "atomic_write_text",
    "check_finite",
    "check_particles",
    "check_positive",
    "check_probability",
    "make_generator",
    "progress_bar",
    "randn",
    "save_npz",
]
