"""Small shared pieces: validation, randomness, progress bars, atomic file writes, figures and the
thread count of a block."""

from measureflow._core.figures import new_figure, save_figure
from measureflow._core.io import (
    atomic_path,
    atomic_write_json,
    atomic_write_text,
    remove_stale_temporaries,
    save_npz,
)
from measureflow._core.progress import progress_bar
from measureflow._core.rng import make_generator, randn, seeded_build
from measureflow._core.threads import torch_threads
from measureflow._core.validate import (
    as_tensor,
    check_count,
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
    "check_count",
    "check_finite",
    "check_particles",
    "check_positive",
    "check_probability",
    "make_generator",
    "new_figure",
    "progress_bar",
    "randn",
    "remove_stale_temporaries",
    "save_figure",
    "save_npz",
    "seeded_build",
    "torch_threads",
]
