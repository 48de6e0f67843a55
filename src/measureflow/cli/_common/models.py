"""What the commands that read a trained generative model share (``sample`` and ``nll`` of
diffusion, gan, ebm, flow-model): the data a checkpoint names, loading the checkpoint, and the
files, JSON and tables a sample or likelihood command writes."""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from measureflow._core import make_generator, save_npz
from measureflow.cli._common.base import (
    check_count,
    check_memory,
    check_seed,
    mean_and_standard_error,
    write_json,
)
from measureflow.data import (
    DATASET_NAMES,
    MIXTURE_NAMES,
    TOY_NAMES,
    Dataset,
    digits_to_pixels,
    load_dataset,
    toy_mixture,
)
from measureflow.generative import TrainedModel
from measureflow.report.generative import MAX_POINTS

__all__ = [
    "NLLRunSettings",
    "SampleRunSettings",
    "check_sample_memory",
    "held_out_generator",
    "data_label",
    "data_spec",
    "load_points",
    "load_trained",
    "nll_data",
    "nll_rows",
    "nll_summary",
    "reference_points",
    "run_folder",
    "sample_arrays",
    "sample_rows",
    "sample_summary",
    "write_sample_run",
]


def data_label(spec: str | None) -> str:
    """A short name for titles: the data set's name, or a file's name without its folder."""
    if spec is None:
        return "model"
    return spec if spec in DATASET_NAMES else Path(spec).name


def data_spec(data: str) -> str:
    """A file is recorded by its absolute path, so ``sample``/``nll``/``--resume`` find it from
    any folder; names stay as they are."""
    if data in DATASET_NAMES:
        return data
    return str(Path(data).expanduser().resolve())


def load_points(spec: str, n: int, generator: torch.Generator) -> Dataset:
    """``n`` points of the data ``spec``: fresh draws of a toy; of digits or a file a random subset
    of ``n`` rows, or all of them when there are no more than ``n``."""
    if spec in TOY_NAMES:
        return load_dataset(spec, n=n, generator=generator)
    dataset = load_dataset(spec)
    return dataset if dataset.n <= n else load_dataset(spec, n=n, generator=generator)


def reference_points(model: TrainedModel, seed: int, n: int = MAX_POINTS) -> tuple[Tensor | None, str]:
    """Up to ``n`` points of the model's training data in data units, for figures (drawn with a
    CPU generator seeded by ``seed``); (None, why) when the data cannot be read any more (e.g. a
    moved file) or no longer have the model's event shape."""
    if model.data_spec is None:
        return None, "the checkpoint names no data"
    try:
        dataset = load_points(model.data_spec, n, make_generator(seed))
    except (ValueError, OSError) as error:
        return None, str(error)
    if dataset.event_shape != model.event_shape:
        return None, f"the data now have shape {dataset.event_shape}, the model {model.event_shape}"
    return dataset.x, ""


@dataclass(frozen=True, kw_only=True)
class SampleRunSettings:
    """The options every command that reads a trained model has (``sample``, ``nll``), validated on
    construction (ValueError naming the flag); a command's settings subclass this. ``n`` is
    ``--n-samples`` (:class:`NLLRunSettings`: ``--n-data``)."""

    N_FLAG: ClassVar[str] = "--n-samples"

    ckpt: str
    n: int
    seed: int
    out: str
    device: str
    overwrite: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        check_count(self.n, self.N_FLAG)
        check_seed(self.seed)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True, kw_only=True)
class NLLRunSettings(SampleRunSettings):
    """The options of an ``nll`` command: ``n`` is ``--n-data``, the points scored."""

    N_FLAG: ClassVar[str] = "--n-data"


def check_sample_memory(n: int, event_shape: tuple[int, ...], what: str) -> None:
    """Refuse ``n`` samples of ``event_shape`` that the machine cannot hold (float32): the samples
    with a few copies, and about 2048 values of network activations per sample (the MLPs here
    are a few hundred wide and a few layers deep)."""
    check_memory(4 * n * (8 * math.prod(event_shape) + 2048), f"{n:,} {what} of shape {event_shape}")


def held_out_generator(seed: int) -> torch.Generator:
    """The CPU generator an ``nll`` command draws its points with: seeded by a hash of ``--seed``
    (numpy's SeedSequence of (seed, "nll")), so that the toys' draws for any seed are held out
    from the training data, which --seed drew from its own stream. Tests rebuild it from here."""
    derived = np.random.SeedSequence([seed, 0x6E6C6C]).generate_state(1, dtype=np.uint64)[0]
    return make_generator(int(derived) >> 2)


def run_folder(ckpt: Path) -> Path:
    """The run folder of ``--ckpt`` (the folder itself, or the one holding a .pt file)."""
    return ckpt.parent if ckpt.suffix == ".pt" else ckpt


def load_trained(ckpt: Path, family: str, device: str) -> TrainedModel:
    """The model of ``--ckpt`` (a run folder or its .pt file), refused unless of ``family``."""
    if not ckpt.exists():
        raise ValueError(f"--ckpt {os.fspath(ckpt)!r} does not exist")
    return TrainedModel.load(ckpt, family=family, device=device)


def sample_arrays(samples: Tensor, model: TrainedModel) -> dict[str, Any]:
    """What samples.npz holds: the samples in data units (images clipped to [-1, 1]) and, for
    digits, their 0..16 pixels."""
    if model.data_kind != "image":
        return {"samples": samples.cpu().numpy()}
    arrays = {"samples": samples.clamp(-1.0, 1.0).cpu().numpy()}
    if model.data_spec == "digits":
        arrays["pixels"] = digits_to_pixels(samples, clamp=True).round().to(torch.uint8).cpu().numpy()
    return arrays


def sample_summary(command: str, settings: Any, ckpt: Path, model: TrainedModel, samples: Tensor,
                   wall_time: float, figures: Mapping[str, object], **results: Any) -> dict[str, Any]:
    """The ``result.json`` of a sample command; ``results`` are the family's own entries."""
    vector, n = model.data_kind == "vector", samples.shape[0]
    flat = samples.detach().double().reshape(n, -1)
    return {
        "command": command, "settings": settings.to_dict(),
        "checkpoint": {"path": str(ckpt), "step": model.step, "data": model.config.get("data")},
        "n_samples": n, "event_shape": list(model.event_shape), **results, "wall_time_s": wall_time,
        "units": "data" if model.standardizer is not None else "model (no standardization stored)",
        "images_clipped_to": None if vector else [-1.0, 1.0],
        "mean": flat.mean(0).tolist() if vector else None,
        "std": flat.std(0).tolist() if vector and n > 1 else None,
        "figures": list(figures), "files": {"samples": "samples.npz"},
    }


def sample_rows(ckpt: Path, model: TrainedModel, n: int, wall_time: float, folder: Path,
                *middle: tuple[str, str]) -> list[tuple[str, str]]:
    """The printed table of a sample command: checkpoint, samples, ``middle``, time, folder."""
    return [("checkpoint", f"{ckpt} (step {model.step})"), ("samples", f"{n} of shape {model.event_shape}"),
            *middle, ("wall time", f"{wall_time:.2f} s"), ("written to", str(folder))]


def write_sample_run(folder: Path, summary: dict[str, Any], samples: Tensor, model: TrainedModel,
                     figures: Mapping[str, Callable[[Path], object]]) -> None:
    """Write a sample command's files: each figure by its writer (called with its path),
    samples.npz (:func:`sample_arrays`), then result.json last (an earlier one is removed
    first, so a result.json always describes the files beside it)."""
    (folder / "result.json").unlink(missing_ok=True)
    for name, write in figures.items():
        write(folder / name)
    save_npz(folder / "samples.npz", **sample_arrays(samples, model))
    write_json(folder / "result.json", summary)


def nll_data(model: TrainedModel, data: str | None, n: int, seed: int) -> Dataset:
    """The ``--n-data`` points an ``nll`` command scores: of ``--data``, or of the training data
    when not given (toys: fresh draws; files: a random subset), drawn with
    :func:`held_out_generator` of ``seed``; refused unless they have the model's event shape."""
    spec = data if data is not None else model.data_spec
    if spec is None:
        raise ValueError("the checkpoint names no training data; pass --data")
    spec = data_spec(spec)
    dataset = load_points(spec, n, held_out_generator(seed))
    if dataset.event_shape != model.event_shape:
        raise ValueError(f"--data {spec!r} has samples of shape {dataset.event_shape}, the model was "
                         f"trained on {model.event_shape}")
    return dataset


def nll_summary(nll: Tensor, dataset: Dataset, model: TrainedModel) -> dict[str, Any]:
    """The entries of ``nll.json`` for the per-point NLL ``(n,)`` (nats, data units) of ``dataset``:
    its mean and standard error, per dimension, and for the Gaussian-mixture toys the true
    density's NLL of the same points and the paired gap."""
    mean, error = mean_and_standard_error(nll)
    summary: dict[str, Any] = {
        "units": "nats, in the data's own units" + (
            " (NLL_standardized + sum log std)" if model.standardizer is not None else ""),
        "nll_mean": mean, "nll_standard_error": error, "nll_per_dim": mean / math.prod(model.event_shape),
        "log_std_sum": model.log_std_sum,
        "true_nll_mean": None, "true_nll_standard_error": None, "gap_mean": None, "gap_standard_error": None,
    }
    if dataset.name in MIXTURE_NAMES:
        true_nll = -toy_mixture(dataset.name).log_prob(dataset.x.double()).cpu()
        summary["true_nll_mean"], summary["true_nll_standard_error"] = mean_and_standard_error(true_nll)
        # Paired over the same points: the gap's error is far below either mean's.
        gap = nll.detach().double().cpu() - true_nll
        summary["gap_mean"], summary["gap_standard_error"] = mean_and_standard_error(gap)
    return summary


def nll_rows(dataset: Dataset, summary: dict[str, Any]) -> list[tuple[str, str]]:
    """The printed rows of :func:`nll_summary`."""
    error = summary["nll_standard_error"]
    rows = [
        ("data", f"{dataset.n} points of {dataset.name}"),
        ("NLL (nats)", f"{summary['nll_mean']:.4f} +- {error if error is not None else float('nan'):.4f}"),
        ("NLL per dimension", f"{summary['nll_per_dim']:.4f}"),
    ]
    if summary["true_nll_mean"] is not None:
        rows.append(("true NLL (nats)", f"{summary['true_nll_mean']:.4f} +- "
                                        f"{summary['true_nll_standard_error']:.4f}"))
        rows.append(("model - true", f"{summary['gap_mean']:.4f} +- {summary['gap_standard_error']:.4f}"))
    return rows
