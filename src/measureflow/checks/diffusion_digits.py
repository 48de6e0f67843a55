r"""Check: a diffusion model trained on 8x8 digits generates digits a classifier recognizes.

Claim. A score-based diffusion model (a small U-Net trained by denoising score matching on
scikit-learn's 8x8 digits) generates images that a classifier trained on the real training
digits recognizes with high confidence, spread over all ten classes; in that classifier's
feature space the Frechet distance from generated to real digits is of the order of the
distance between held-out and training digits.

Derivation. If the learned model matched the data law, generated digits would be statistically
indistinguishable from held-out ones: the same confidence profile under any fixed classifier,
the same class frequencies (10% each up to sampling noise: SE = sqrt(0.1 * 0.9 / n)), and the
same Frechet distance to the training set, FD(A, B) = |m_A - m_B|^2 + tr(S_A + S_B - 2 (S_A^{1/2}
S_B S_A^{1/2})^{1/2}) between Gaussians fitted to the features (which is W2^2 between them).
FD estimated from n samples carries an upward bias of order tr(S)/n, so the comparison uses
equal sample sizes: FD(generated, train) with as many generated images as held-out ones,
against FD(held-out, train).

Method. Classifier: scikit-learn's MLPClassifier (one hidden layer of 128 ReLU units) on the
training split; features = its hidden activations. Model: VP SDE, UNet8 predicting the noise,
Adam + cosine decay, EMA; samples by the reverse SDE (Euler-Maruyama), clipped to the pixel
range [-1, 1].

Verdict: mean top-class probability of generated digits >= ``min_confidence``; every class's
share within [0.4, 2] x 10%; FD(generated, train) <= ``fd_factor`` x FD(held-out, train).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from measureflow._core import make_generator
from measureflow.checks._figures import format_list, new_figure, save_figure, to_numpy
from measureflow.checks.base import CheckResult
from measureflow.data import digits
from measureflow.generative.diffusion import VPSDE, reverse_sde
from measureflow.generative.diffusion.training import train_diffusion
from measureflow.metrics import gaussian_w2

__all__ = ["run"]

NAME = "diffusion-digits"
SHARE_RANGE = (0.4, 2.0)
CLASSIFIER_HIDDEN = 128


@dataclass(frozen=True)
class _Settings:
    n_steps: int
    batch_size: int
    base: int
    n_generated: int
    sampler_steps: int
    min_confidence: float
    fd_factor: float


SETTINGS = {
    "quick": _Settings(n_steps=1500, batch_size=64, base=16, n_generated=600, sampler_steps=100,
                       min_confidence=0.8, fd_factor=4.0),
    "full": _Settings(n_steps=8000, batch_size=128, base=32, n_generated=2000, sampler_steps=300,
                      min_confidence=0.9, fd_factor=2.5),
}


def _classifier(images: torch.Tensor, labels: torch.Tensor, seed: int):
    from sklearn.neural_network import MLPClassifier

    model = MLPClassifier(hidden_layer_sizes=(CLASSIFIER_HIDDEN,), max_iter=500, random_state=seed)
    return model.fit(_flat(images), labels.cpu().numpy())


def _flat(images: torch.Tensor) -> np.ndarray:
    return images.reshape(images.shape[0], -1).detach().cpu().double().numpy()


def _features(classifier, images: torch.Tensor) -> torch.Tensor:
    hidden = _flat(images) @ classifier.coefs_[0] + classifier.intercepts_[0]
    return torch.from_numpy(np.maximum(hidden, 0.0))


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """FD between Gaussians fitted to the rows of ``a`` and ``b``: W2^2 of the two Gaussians."""
    return float(gaussian_w2(a.mean(0), torch.cov(a.T), b.mean(0), torch.cov(b.T))) ** 2


def run(size: str, seed: int, device: str, out_dir: Path) -> CheckResult:
    settings = SETTINGS[size]
    generator = make_generator(seed, device)
    train_images, train_labels = digits("train")
    test_images, _ = digits("test")
    classifier = _classifier(train_images, train_labels, seed)
    sde = VPSDE()
    net = {"name": "unet", "channels": 1, "base": settings.base}
    score, history = train_diffusion(train_images.to(device), n_steps=settings.n_steps, generator=generator,
                                     sde=sde, net=net, batch_size=settings.batch_size, progress=False)
    start = sde.prior_sample((settings.n_generated, 1, 8, 8), generator, device=device)
    generated = reverse_sde(score, sde, start, settings.sampler_steps, generator=generator).x
    generated = generated.clamp(-1, 1).cpu()
    probabilities = classifier.predict_proba(_flat(generated))
    confidence = float(probabilities.max(1).mean())
    test_confidence = float(classifier.predict_proba(_flat(test_images)).max(1).mean())
    shares = np.bincount(probabilities.argmax(1), minlength=10) / settings.n_generated
    balanced = bool(((shares >= SHARE_RANGE[0] * 0.1) & (shares <= SHARE_RANGE[1] * 0.1)).all())
    train_features = _features(classifier, train_images)
    test_features = _features(classifier, test_images)
    generated_features = _features(classifier, generated)
    n_test = test_features.shape[0]
    fd_reference = frechet_distance(test_features, train_features)
    fd_generated_train = frechet_distance(generated_features[:n_test], train_features)
    fd_generated_test = frechet_distance(generated_features[:n_test], test_features)
    confident = confidence >= settings.min_confidence
    close = fd_generated_train <= settings.fd_factor * fd_reference
    figure = _figure(generated, test_images, probabilities, shares, history, out_dir / f"{NAME}.png")
    return CheckResult(
        name=NAME,
        claim=(
            "A diffusion model trained on 8x8 digits generates digits that a classifier trained on "
            "the real training digits recognizes with high confidence and balanced classes; the "
            "Frechet distance in the classifier's feature space to the real digits is of the order "
            "of the held-out vs training distance. (UNet8 base "
            f"{settings.base}, {settings.n_steps} steps at batch {settings.batch_size}; "
            f"{settings.n_generated} samples by the reverse SDE in {settings.sampler_steps} steps.)"
        ),
        predicted=(
            f"mean top-class probability >= {settings.min_confidence:g} (held-out digits: "
            f"{test_confidence:.3f}); class shares in [{SHARE_RANGE[0] * 0.1:.2f}, "
            f"{SHARE_RANGE[1] * 0.1:.2f}]; FD(generated, train) <= {settings.fd_factor:g} x "
            f"FD(held-out, train) = {settings.fd_factor * fd_reference:.3f}"
        ),
        measured=(
            f"confidence {confidence:.3f} (fraction above 0.9: {(probabilities.max(1) > 0.9).mean():.3f}); "
            f"class shares {format_list(shares.tolist(), 3)}; FD(generated, train) = "
            f"{fd_generated_train:.3f}, FD(held-out, train) = {fd_reference:.3f}, FD(generated, "
            f"held-out) = {fd_generated_test:.3f}"
        ),
        tolerance=(
            f"FD from {n_test} images per side (the held-out split's size) so both FDs carry the "
            f"same small-sample bias; classifier = MLP ({CLASSIFIER_HIDDEN} ReLU units) on the "
            "training split, features = its hidden layer"
        ),
        passed=bool(confident and balanced and close),
        details={"confidence": confidence, "held_out_confidence": test_confidence,
                 "class_shares": shares.tolist(), "fd_generated_train": fd_generated_train,
                 "fd_heldout_train": fd_reference, "fd_generated_heldout": fd_generated_test,
                 "final_loss": history.losses["loss"][-1], "n_steps": settings.n_steps,
                 "confident": confident, "balanced": balanced, "close": close},
        figures=(figure,),
    )


def _grid(images: torch.Tensor, rows: int, cols: int) -> np.ndarray:
    pixels = to_numpy(images[: rows * cols, 0])
    canvas = np.full((rows * 9 - 1, cols * 9 - 1), -1.0)  # -1: the background (white) as gap
    for index, image in enumerate(pixels):
        r, c = divmod(index, cols)
        canvas[r * 9:r * 9 + 8, c * 9:c * 9 + 8] = image
    return canvas


def _figure(generated, real, probabilities, shares, history, path: Path) -> str:
    """Top: 10 x 10 generated and held-out digits, large enough to read. Bottom: the class
    shares over their allowed band, and the training loss."""
    figure, axes = new_figure(2, 2, width=4.8, height=4.3)
    for axis, images, title in ((axes[0, 0], generated, "generated (first 100)"),
                                (axes[0, 1], real, "held-out (first 100)")):
        axis.imshow(_grid(images, 10, 10), cmap="gray_r", vmin=-1, vmax=1, interpolation="nearest")
        axis.set_title(title, fontsize=11)
        axis.axis("off")
    axis = axes[1, 0]
    low, high = SHARE_RANGE[0] * 0.1, SHARE_RANGE[1] * 0.1
    # The band and the reference line go behind the bars (zorder), which must stay visible.
    axis.axhspan(low, high, color="0.9", zorder=0, label=f"allowed [{low:.2f}, {high:.2f}]")
    axis.axhline(0.1, color="0.4", linestyle="--", linewidth=0.8, zorder=1, label="uniform 0.1")
    bars = axis.bar(range(10), shares, color="tab:blue", zorder=2, label="measured")
    axis.bar_label(bars, labels=[f"{share:.3f}" for share in shares], fontsize=7, padding=1)
    axis.set_ylim(0, max(1.3 * high, 1.2 * float(np.max(shares))))
    axis.set_xticks(range(10))
    axis.set_xlabel("predicted class")
    axis.set_ylabel("share of generated digits")
    axis.set_title(f"class shares (mean confidence {probabilities.max(1).mean():.3f})", fontsize=10)
    axis.legend(loc="upper left", fontsize=8, ncols=3, frameon=False)
    axis = axes[1, 1]
    axis.plot(history.steps, history.losses["loss"], color="tab:red")
    axis.set_yscale("log")
    axis.set_xlabel("training step")
    axis.set_ylabel("DSM loss")
    axis.set_title("training", fontsize=10)
    return save_figure(figure, path)
