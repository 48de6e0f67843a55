"""``measureflow flow-model``: train a normalizing flow on vector data by maximum likelihood, sample
it, and score data with its exact likelihood. ``train`` stores the data's standardizer and name in
the checkpoint, so ``sample`` and ``nll`` work in the data's units from the checkpoint alone."""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import torch
import typer

from measureflow._core import make_generator
from measureflow.cli import _common as common
from measureflow.data import TOY_NAMES
from measureflow.generative.flow import CHECKPOINT_KIND, FLOW_NAMES, check_flow_config, train_flow
from measureflow.report import save_figure
from measureflow.report.generative import MAX_POINTS, samples_figure

__all__ = ["FlowTrainSettings", "flow_model_app", "nll", "sample", "train"]

flow_model_app = typer.Typer(name="flow-model", no_args_is_help=True, add_completion=False,
                             pretty_exceptions_enable=False,
                             help="Normalizing flows: train by maximum likelihood, sample, exact likelihood.")

_DATA_HELP = f"Data: one of {', '.join(TOY_NAMES)}, or a path to a .csv/.npy file of shape (n, d)"
_CKPT_HELP = "A flow checkpoint: the run folder or its .pt file."
_FIGURE = "samples.png"  # the samples drawn once training ends (none at the checkpoints)
_DEFAULT_SAMPLES = 10_000
_DEFAULT_NLL_POINTS = 1000
_NO_PROGRESS_HELP = "Accepted for uniformity: this command shows no progress bar."


def _parse_hidden(text: str) -> list[int]:
    """``--hidden`` ``"64,64"`` as the widths ``[64, 64]`` (each >= 1), else a ValueError."""
    try:
        widths = [int(part) for part in text.split(",")]
    except ValueError:
        widths = []
    if not widths or min(widths) < 1:
        raise ValueError(f"--hidden must be comma-separated positive integers such as 64,64, got {text!r}")
    return widths


@dataclass(frozen=True, kw_only=True)
class FlowTrainSettings(common.TrainRunSettings):
    """The settings of ``flow-model train``, validated on construction (ValueError naming the flag)."""

    flow: str
    transforms: int
    hidden: list[int]
    bins: int
    lr: float

    def __post_init__(self) -> None:
        super().__post_init__()
        common.check_choice(self.flow, FLOW_NAMES, "--flow")
        common.check_count(self.transforms, "--transforms")
        common.check_count(self.bins, "--bins", minimum=2)  # check_flow_config's minimum, named by flag
        common.check_positive_number(self.lr, "--lr")

    def net(self, features: int) -> dict[str, Any]:
        """The flow config of :func:`~measureflow.generative.flow.build_flow` for ``features``."""
        bins = {"bins": self.bins} if self.flow == "nsf" else {}  # maf has no spline
        return check_flow_config({"name": self.flow, "features": features, "transforms": self.transforms,
                                  "hidden": self.hidden, **bins})


@flow_model_app.command("train")
def train(
    data: Annotated[str, typer.Option(help=_DATA_HELP + ".")],
    steps: Annotated[int, typer.Option(help="Training steps (one minibatch each).")] = 2000,
    seed: Annotated[int, typer.Option(help="Random seed (data draws, initialization, batches).")] = 0,
    out: Annotated[str | None, typer.Option(help="Run folder (default runs/flow-model/DATA).")] = None,
    flow: Annotated[str, typer.Option(help="nsf (neural spline) or maf (masked affine).")] = "nsf",
    transforms: Annotated[int, typer.Option(help="Number of autoregressive layers.")] = 4,
    hidden: Annotated[str, typer.Option(help="Hidden widths of each layer's network, e.g. 64,64.")] = "64,64",
    bins: Annotated[int, typer.Option(help="Spline bins of nsf (ignored by maf).")] = 8,
    batch_size: Annotated[int, typer.Option(help="Minibatch size.")] = 512,
    lr: Annotated[float, typer.Option(help="Adam's learning rate (cosine decay to 0).")] = 1e-3,
    n_data: Annotated[int | None, typer.Option(
        help="Toys: number of draws (default 100,000); files: a random subset of this many rows.")] = None,
    checkpoint_every: Annotated[int | None, typer.Option(
        help="Write the checkpoint every this many steps (default: a tenth of --steps).")] = None,
    resume: common.ResumeOption = False,
    overwrite: common.OverwriteOption = False,
    device: common.DeviceOption = "cpu",
    no_progress: common.NoProgressOption = False,
) -> None:
    """Train a normalizing flow on vector data by maximum likelihood.

    Writes checkpoint.pt (with history.json, loss.png) every --checkpoint-every steps, then
    samples.png and result.json. The data are standardized per feature (stored in the checkpoint).
    --resume continues an interrupted run exactly; --overwrite starts afresh over one.
    """
    with common.user_errors(common.TRAIN_FLAGS):
        settings = FlowTrainSettings(
            data=data, steps=steps, seed=seed, resume=resume, overwrite=overwrite,
            out=str(Path("runs") / "flow-model" / (Path(data).stem or data) if out is None else out),
            flow=flow,
            transforms=transforms, hidden=_parse_hidden(hidden), bins=bins, batch_size=batch_size, lr=lr,
            n_data=n_data, checkpoint_every=checkpoint_every, device=common.check_device(device),
            progress=not no_progress,
        )
        run = common.start_training(settings, _FIGURE, vectors_only=True, command="flow-model train")
        net = settings.net(run.dataset.dim)
        with common.interruptible(run.folder):
            _, history = train_flow(
                run.x, n_steps=settings.steps, net=net, generator=run.generator,
                batch_size=settings.batch_size, learning_rate=settings.lr, out_dir=run.folder,
                resume=settings.resume, overwrite=settings.overwrite, progress=settings.progress,
                checkpoint_every=settings.checkpoint_every, extra_config=run.config,
            )
        common.write_preview(run, history.final_step, CHECKPOINT_KIND, "flow samples", MAX_POINTS,
                             settings.seed, settings.device, figure_name=_FIGURE)
        final_loss = common.last_losses(history).get("loss")
        common.finish_training("flow-model train", settings, run, history, _FIGURE, [
            ("flow", f"{settings.flow}, {settings.transforms} layers, hidden {settings.hidden}"),
            ("final loss (standardized NLL)", common.format_number(final_loss)),
        ], net=net, final_loss=final_loss)


@flow_model_app.command("sample")
def sample(
    ckpt: Annotated[Path, typer.Option(help=_CKPT_HELP)],
    n_samples: Annotated[int | None, typer.Option(
        "--n-samples", show_default=str(_DEFAULT_SAMPLES), help="Number of samples.")] = None,
    n: Annotated[int | None, typer.Option("--n", hidden=True, help="Old name of --n-samples.")] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    out: Annotated[str | None, typer.Option(help="Output folder (default RUN/samples).")] = None,
    overwrite: common.SampleOverwriteOption = False,
    device: common.DeviceOption = "cpu",
    no_progress: Annotated[bool, typer.Option("--no-progress", help=_NO_PROGRESS_HELP)] = False,
) -> None:
    """Sample a trained flow: x = T^-1(z), z ~ N(0, I), in the data's units.

    Writes samples.npz, samples.png and result.json.
    """
    with common.user_errors():
        settings = common.SampleRunSettings(
            ckpt=str(ckpt), n=common.merge_alias(n_samples, n, "--n-samples", "--n", _DEFAULT_SAMPLES),
            seed=seed, out=str(common.run_folder(ckpt) / "samples" if out is None else out),
            device=common.check_device(device), overwrite=overwrite, progress=not no_progress)
        folder = common.check_out(settings.out, "flow-model sample", overwrite=settings.overwrite)
        model = common.load_trained(ckpt, CHECKPOINT_KIND, settings.device)
        common.check_sample_memory(settings.n, model.event_shape, "samples")
        started = time.perf_counter()
        samples = model.sample(settings.n, generator=make_generator(settings.seed, settings.device))
        wall_time = time.perf_counter() - started
        # The training file may have moved: then the samples are drawn alone.
        reference, _ = common.reference_points(model, settings.seed)
        title = f"{common.data_label(model.data_spec)}: {settings.n} flow samples (step {model.step})"
        figures = {_FIGURE: partial(save_figure, samples_figure(samples, reference, title))}
        summary = common.sample_summary("flow-model sample", settings, ckpt, model, samples, wall_time,
                                        figures)
        common.write_sample_run(folder, summary, samples, model, figures)
    common.print_table("flow-model sample", common.sample_rows(ckpt, model, settings.n, wall_time, folder))


@flow_model_app.command("nll")
def nll(
    ckpt: Annotated[Path, typer.Option(help=_CKPT_HELP)],
    data: Annotated[str | None, typer.Option(help=_DATA_HELP + " (default: the training data).")] = None,
    n_data: Annotated[int | None, typer.Option(
        "--n-data", show_default=str(_DEFAULT_NLL_POINTS),
        help="Points (toys: fresh draws; files: a random subset).")] = None,
    n: Annotated[int | None, typer.Option("--n", hidden=True, help="Old name of --n-data.")] = None,
    seed: Annotated[int, typer.Option(
        help="Seed of the draws (a stream of their own, held out from the training data whatever the "
             "seed).")] = 0,
    out: Annotated[str | None, typer.Option(help="Folder for nll.json (default: the run folder).")] = None,
    overwrite: Annotated[bool, typer.Option(
        "--overwrite", help="Write into an --out whose nll.json another command wrote.")] = False,
    device: common.DeviceOption = "cpu",
    no_progress: Annotated[bool, typer.Option("--no-progress", help=_NO_PROGRESS_HELP)] = False,
) -> None:
    """Exact negative log-likelihood of data under a trained flow, in nats in the data's units.

    log q(x) by the change of variables, the standardization's log-Jacobian included. Writes
    nll.json with the mean and its standard error; for 8gaussians and 25gaussians also the true
    NLL of the same points and the paired gap (= KL(p || q) in expectation).
    """
    with common.user_errors():
        settings = common.NLLRunSettings(
            ckpt=str(ckpt), n=common.merge_alias(n_data, n, "--n-data", "--n", _DEFAULT_NLL_POINTS),
            seed=seed,
            out=str(common.run_folder(ckpt) if out is None else out), device=common.check_device(device),
            overwrite=overwrite, progress=not no_progress)
        folder = common.check_out(settings.out, "flow-model nll", overwrite=settings.overwrite,
                                  marker="nll.json")
        model = common.load_trained(ckpt, CHECKPOINT_KIND, settings.device)
        common.check_sample_memory(settings.n, model.event_shape, "data points")
        # Image data never have a flow's event shape (d,): nll_data refuses them by shape.
        dataset = common.nll_data(model, data, settings.n, settings.seed)
        started = time.perf_counter()
        with torch.no_grad():
            values = -model.log_prob(dataset.x.to(settings.device)).double()
        wall_time = time.perf_counter() - started
        report = {"command": "flow-model nll", "settings": {**settings.to_dict(), "data": data},
                  "data": dataset.summary(), "checkpoint": {"path": str(ckpt), "step": model.step},
                  **common.nll_summary(values, dataset, model), "wall_time_s": wall_time}
        common.write_json(folder / "nll.json", report)
    common.print_table("flow-model nll", [
        *common.nll_rows(dataset, report), ("wall time", f"{wall_time:.2f} s"),
        ("written to", str(folder / "nll.json"))])
