"""Divergences between probability measures given in closed form, by samples, or by scores.

- ``gaussian_kl``: KL between two Gaussians, exact (batched over leading dimensions).
- ``knn_kl``: KL(P || Q) from samples by k-nearest-neighbour distances (Wang, Kulkarni & Verdu 2009).
- ``js_divergence``: Jensen-Shannon divergence from samples through a cross-validated classifier.
- ``c2st``: the classifier two-sample test (Lopez-Paz & Oquab 2017).
- ``fisher_divergence``: E_mu ||grad log mu - grad log nu||^2 from two score functions;
  ``fisher_divergence_from_samples`` and ``kde_score`` when mu is known only by samples;
  ``score_matching_objective``: the Hyvarinen form, which is the Fisher divergence only up to a
  mu-dependent constant.

The classifier-based estimators call scikit-learn (numpy on CPU, at the edge); everything else
is torch on the input's device.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from measureflow._core import check_count, check_finite, check_particles, check_positive
from measureflow.metrics._validate import check_gaussian, check_sample_pair

__all__ = [
    "C2STResult",
    "c2st",
    "fisher_divergence",
    "fisher_divergence_from_samples",
    "gaussian_kl",
    "js_divergence",
    "kde_score",
    "knn_entropy",
    "knn_kl",
    "score_matching_objective",
]

# Pairwise-distance blocks hold at most this many entries (2^22 float64 = 32 MiB per block), so
# n = m = 20,000 needs a few hundred blocks and well under 100 MiB whatever the dimension.
_BLOCK_ENTRIES = 1 << 22


# --------------------------------------------------------------------------------------------
# Gaussian KL, exact
# --------------------------------------------------------------------------------------------


def _cholesky(s: Tensor, name: str) -> Tensor:
    factor, info = torch.linalg.cholesky_ex(s)
    if bool((info > 0).any()):
        minor = int(info[info > 0].flatten()[0])
        raise ValueError(
            f"{name} is not positive definite: the Cholesky factorization failed at leading minor "
            f"{minor} (its smallest eigenvalue is {float(torch.linalg.eigvalsh(s).min()):.3g}); "
            "a covariance must be symmetric positive definite"
        )
    return factor


def gaussian_kl(m1: Any, S1: Any, m2: Any, S2: Any) -> Tensor:
    """KL(N(m1, S1) || N(m2, S2)) in nats, exact.

    KL = 1/2 [tr(S2^-1 S1) + (m2 - m1)^T S2^-1 (m2 - m1) - d + log det S2 - log det S1],
    computed through the Cholesky factors L1, L2 (S = L L^T): tr(S2^-1 S1) = ||L2^-1 L1||_F^2,
    the quadratic form is ||L2^-1 (m2 - m1)||^2 and log det S = 2 sum log diag L.

    Shapes: means ``(..., d)``, covariances ``(..., d, d)``; leading dimensions broadcast and the
    result has their broadcast shape (a 0-d tensor for one pair). Raises ``ValueError`` when a
    covariance is not symmetric positive definite.

    >>> import torch
    >>> m1, m2, S = torch.zeros(2), torch.ones(2), torch.eye(2)
    >>> print(round(float(gaussian_kl(m1, S, m2, 4 * S)), 4))  # 1/2 [2/4 + 2/4 - 2 + 2 log 4]
    0.8863
    """
    # Positive definiteness is left to the Cholesky factorization, which names the failing minor.
    m1, S1 = check_gaussian(m1, S1, ("m1", "S1"), semidefinite=False)
    m2, S2 = check_gaussian(m2, S2, ("m2", "S2"), semidefinite=False)
    if m1.shape[-1] != m2.shape[-1]:
        raise ValueError(
            f"the two Gaussians must have one dimension d, got {m1.shape[-1]} and {m2.shape[-1]}"
        )
    dtype = m1.dtype
    for tensor in (S1, m2, S2):
        dtype = torch.promote_types(dtype, tensor.dtype)
    devices = {t.device for t in (m1, S1, m2, S2)}
    if len(devices) > 1:
        raise ValueError(f"m1, S1, m2, S2 are on several devices {sorted(map(str, devices))}; use one")
    m1, S1, m2, S2 = (t.to(dtype) for t in (m1, S1, m2, S2))
    try:
        batch = torch.broadcast_shapes(m1.shape[:-1], S1.shape[:-2], m2.shape[:-1], S2.shape[:-2])
    except RuntimeError:
        raise ValueError(
            f"leading (batch) dimensions do not broadcast: m1 {tuple(m1.shape)}, S1 {tuple(S1.shape)}, "
            f"m2 {tuple(m2.shape)}, S2 {tuple(S2.shape)}"
        ) from None
    d = m1.shape[-1]
    L1 = _cholesky(S1, "S1").expand(*batch, d, d)
    L2 = _cholesky(S2, "S2").expand(*batch, d, d)
    diff = (m2 - m1).expand(*batch, d).unsqueeze(-1)
    trace = torch.linalg.solve_triangular(L2, L1, upper=False).square().sum((-2, -1))
    quadratic = torch.linalg.solve_triangular(L2, diff, upper=False).square().sum((-2, -1))
    logdet1 = 2 * torch.diagonal(L1, dim1=-2, dim2=-1).log().sum(-1)
    logdet2 = 2 * torch.diagonal(L2, dim1=-2, dim2=-1).log().sum(-1)
    return 0.5 * (trace + quadratic - d + logdet2 - logdet1)


# --------------------------------------------------------------------------------------------
# k-nearest-neighbour KL
# --------------------------------------------------------------------------------------------


def _check_int(value: Any, name: str, low: int, high: int | None = None, why: str = "") -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if value < low or (high is not None and value > high):
        allowed = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{name} must be {allowed}{why}, got {value}")
    return value


def _kth_neighbour_distance(queries: Tensor, points: Tensor, k: int, exclude_self: bool) -> Tensor:
    """Distance from each query row to its k-th nearest row of ``points``, blocked over queries.

    With ``exclude_self`` the queries are ``points`` itself and row i skips index i (not merely
    distance zero, so a duplicate of x_i still counts as a neighbour at distance 0).
    The k nearest are found from ||b||^2 - 2 a.b (+ ||a||^2) in float64 on centred data: the
    k-NN radii at n ~ 10^4 in d = 1 are ~1e-4 of the data scale, and float32 cancellation in that
    expansion (relative error ~1e-7 of ||a||^2) would swamp their squares (~1e-8).
    """
    centre = points.mean(0)
    q = (queries - centre).to(torch.float64)
    p = (points - centre).to(torch.float64)
    p_sq = p.square().sum(1)
    block = min(q.shape[0], max(1, _BLOCK_ENTRIES // p.shape[0]))
    buffer = torch.empty(block, p.shape[0], dtype=torch.float64, device=q.device)
    out = torch.empty(q.shape[0], dtype=torch.float64, device=q.device)
    for start in range(0, q.shape[0], block):
        rows = q[start : start + block]
        size = rows.shape[0]
        # ||b||^2 - 2 a.b into one reused buffer; the row constant ||a||^2 does not change the
        # order, so it is added to the k-th value only (the pass over the block is memory-bound).
        partial = torch.addmm(p_sq, rows, p.T, alpha=-2, out=buffer[:size])
        if exclude_self:
            local = torch.arange(size, device=q.device)
            partial[local, local + start] = math.inf
        nearest = partial.topk(k, dim=1, largest=False).indices  # (size, k)
        # The expansion fixes which k points are nearest; their distances are recomputed from
        # differences, exactly 0 for a duplicate (the expansion leaves ~1e-16 there).
        out[start : start + size] = (rows[:, None, :] - p[nearest]).norm(dim=2).amax(1)
    return out


def knn_entropy(x: Any, k: int = 5) -> Tensor:
    """Kozachenko-Leonenko k-nearest-neighbour estimate of the differential entropy H(mu), in nats.

    H = -int mu log mu is estimated from n samples ``x`` ``(n, d)`` of mu by

        H_hat = psi(n) - psi(k) + log V_d + (d/n) sum_i log rho_k(i),

    rho_k(i) the distance from x_i to its k-th nearest neighbour among the other points,
    V_d = pi^(d/2) / Gamma(d/2 + 1) the volume of the unit ball, psi the digamma function
    (Kozachenko & Leonenko 1987; Kraskov, Stoegbauer & Grassberger 2004, eq. (20)). Consistent
    and asymptotically unbiased for fixed k. ``k`` is lowered to n - 1 for tiny samples.
    Returns a 0-d tensor in x's dtype.

    >>> g = torch.Generator().manual_seed(0)
    >>> x = torch.randn(4000, 2, generator=g, dtype=torch.float64)
    >>> round(float(knn_entropy(x)), 1)  # log(2 pi e) = 2.84
    2.8
    """
    x = check_particles(x, "x")
    n, d = x.shape
    if n < 2:
        raise ValueError(f"the k-NN entropy needs at least 2 particles, got n = {n}")
    k = min(check_count(k, "k"), n - 1)
    rho = _kth_neighbour_distance(x, x, k, exclude_self=True)
    if bool((rho == 0).any()):
        raise ValueError(
            f"{int((rho == 0).sum())} particle(s) have their {k}-th nearest neighbour at distance 0 "
            "(duplicated particles): the k-NN entropy is -infinity"
        )
    log_unit_ball = 0.5 * d * math.log(math.pi) - math.lgamma(0.5 * d + 1)
    digammas = float(torch.special.digamma(torch.tensor([float(n), float(k)], dtype=torch.float64))
                     .diff().neg())  # psi(n) - psi(k)
    value = digammas + log_unit_ball + d * rho.log().mean()
    return value.to(x.dtype)


def knn_kl(x: Any, y: Any, k: int = 5) -> Tensor:
    """KL(P || Q) in nats from samples ``x ~ P`` ``(n, d)`` and ``y ~ Q`` ``(m, d)``, by k-NN distances.

    The estimator of Wang, Kulkarni & Verdu, "Divergence estimation for multidimensional
    densities via k-nearest-neighbor distances", IEEE Trans. Inf. Theory 55(5), 2009, eq. (5):

        D = d/n sum_i log(nu_k(i) / rho_k(i)) + log(m / (n - 1)),

    rho_k(i) the Euclidean distance from x_i to its k-th nearest neighbour among the other
    x_j, nu_k(i) that to its k-th nearest neighbour in y. It is consistent (k fixed, n, m -> oo)
    and asymptotically unbiased: the digamma corrections of the general estimator cancel because
    the same k is used in x and y. On finite samples it is biased by the variation of the
    densities over the k-NN balls (of order (k/n)^(2/d) for smooth densities, larger in the
    tails and at boundaries) and it can come out negative when P and Q are close.

    Returns a 0-d tensor with the inputs' (promoted) dtype on their device. Distances are found
    blockwise (float64 ``topk`` over blocks of about 4 million distances, 32 MiB each), so the
    memory does not grow with n * m: n = m = 20,000 needs a few such blocks alive at once.
    Duplicates: a point whose k-th neighbour distance is exactly zero (k or more copies of it in
    x, or in y) makes a log infinite, so ``ValueError`` is raised; add a tiny jitter or raise k.

    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> x = torch.randn(3000, 1, generator=g, dtype=torch.float64)
    >>> y = 0.5 + 1.5 * torch.randn(3000, 1, generator=g, dtype=torch.float64)
    >>> print(round(float(knn_kl(x, y)), 1))  # truth: KL(N(0, 1) || N(0.5, 1.5^2)) = 0.18
    0.2
    """
    x, y = check_sample_pair(x, y)
    n, d = x.shape
    m = y.shape[0]
    k = _check_int(k, "k", 1, min(n - 1, m), why=f" (needs k <= n - 1 = {n - 1} and k <= m = {m})")
    rho = _kth_neighbour_distance(x, x, k, exclude_self=True)
    nu = _kth_neighbour_distance(x, y, k, exclude_self=False)
    for radius, where in ((rho, "x (among the other x)"), (nu, "y")):
        n_zero = int((radius == 0).sum())
        if n_zero:
            raise ValueError(
                f"{n_zero} point(s) of x have their k-th nearest neighbour in {where} at distance 0 "
                f"(k = {k}): duplicated points make log(nu/rho) infinite; remove duplicates, add a "
                "tiny jitter, or raise k"
            )
    estimate = d * (nu.log() - rho.log()).mean() + math.log(m / (n - 1))
    return estimate.to(x.dtype)


# --------------------------------------------------------------------------------------------
# Classifier-based: C2ST and Jensen-Shannon
# --------------------------------------------------------------------------------------------


def _make_logistic(random_state: int):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))


def _make_quadratic(random_state: int):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import PolynomialFeatures, StandardScaler

    # The log density ratio of two Gaussians is quadratic: this model holds the Bayes classifier.
    return make_pipeline(
        StandardScaler(),
        PolynomialFeatures(degree=2, include_bias=False),
        StandardScaler(),
        LogisticRegression(max_iter=1000),
    )


def _make_mlp(random_state: int):
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(
        StandardScaler(),
        MLPClassifier(
            hidden_layer_sizes=(32,), activation="tanh", solver="lbfgs", alpha=1.0,
            max_iter=200, random_state=random_state,
        ),
    )


# The one table of classifier names: standardization is fitted inside each fold (a Pipeline).
_CLASSIFIERS: dict[str, Callable[[int], Any]] = {
    "logistic": _make_logistic,
    "quadratic": _make_quadratic,
    "mlp": _make_mlp,
}


def _random_int(generator: torch.Generator | None) -> int:
    device = generator.device if generator is not None else "cpu"
    return int(torch.randint(0, 2**31 - 1, (1,), generator=generator, device=device))


def _balanced_pair(x: Tensor, y: Tensor, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
    """Subsample the larger set, without replacement, to the size of the smaller one."""
    size = min(x.shape[0], y.shape[0])
    device = generator.device if generator is not None else torch.device("cpu")

    def take(z: Tensor) -> Tensor:
        if z.shape[0] == size:
            return z
        keep = torch.randperm(z.shape[0], generator=generator, device=device)[:size]
        return z[keep.to(z.device)]

    return take(x), take(y)


def _held_out_log_probs(
    x: Any, y: Any, classifier: str, n_folds: int, generator: torch.Generator | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, Tensor]:
    """Cross-validated log D and log(1 - D) of each point, D = P(label = x | point).

    Returns (log_d, log_one_minus_d, fold index, validated x) for the balanced set [x; y],
    labels 1 for x and 0 for y; every prediction is made by a classifier that never saw the point.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import StratifiedKFold
    from threadpoolctl import threadpool_limits

    x, y = check_sample_pair(x, y)
    if not isinstance(classifier, str) or classifier not in _CLASSIFIERS:
        raise ValueError(f"classifier must be one of {sorted(_CLASSIFIERS)}, got {classifier!r}")
    x, y = _balanced_pair(x, y, generator)
    size = x.shape[0]
    n_folds = _check_int(n_folds, "n_folds", 2, size, why=f" (each fold needs points of both classes; "
                         f"{size} per class after balancing)")
    features = torch.cat([x, y]).detach().to("cpu", torch.float64).numpy()
    labels = np.concatenate([np.ones(size, dtype=np.int64), np.zeros(size, dtype=np.int64)])
    folds = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=_random_int(generator))
    log_d = np.empty(2 * size)
    log_not_d = np.empty(2 * size)
    fold_of = np.empty(2 * size, dtype=np.int64)
    # Single-threaded BLAS: these models multiply small matrices, where thread start-up
    # dominates; the MLP fit measured 10-25x faster with one thread than with the default pool
    # on the 2-core machines. Both contexts are restored on exit.
    with warnings.catch_warnings(), threadpool_limits(limits=1, user_api="blas"):
        # An unconverged fit is still a fixed function of the training fold, so the held-out
        # accuracy stays a valid test statistic and the JS estimate a valid lower bound.
        warnings.simplefilter("ignore", ConvergenceWarning)
        for fold, (train, test) in enumerate(folds.split(features, labels)):
            model = _CLASSIFIERS[classifier](_random_int(generator))
            model.fit(features[train], labels[train])
            log_d[test], log_not_d[test] = _log_posteriors(model, features[test])
            fold_of[test] = fold
    return log_d, log_not_d, fold_of, x


def _log_posteriors(model: Any, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """log D and log(1 - D) of a fitted binary classifier, D = P(label 1 | features)."""
    if hasattr(model, "decision_function"):
        # log-sigmoid of the logit, computed stably: predict_proba rounds to exactly 0 or 1
        # beyond |logit| ~ 37 and would give log 0.
        logit = model.decision_function(features)
        return -np.logaddexp(0.0, -logit), -np.logaddexp(0.0, logit)
    # The MLP has no decision function: clip its probabilities away from exactly 0 and 1.
    proba = np.clip(model.predict_proba(features)[:, 1], 1e-300, 1 - 1e-16)
    return np.log(proba), np.log1p(-proba)


@dataclass(frozen=True)
class C2STResult:
    """Outcome of a classifier two-sample test.

    ``accuracy``: mean of the per-fold held-out accuracies; ``fold_accuracies``: one per fold;
    ``p_value``: one-sided P(Binomial(n_test, 1/2) >= n_correct); ``n_test``: held-out points in
    all (twice the balanced sample size); ``n_correct``: those classified correctly.
    """

    accuracy: float
    fold_accuracies: tuple[float, ...]
    p_value: float
    n_test: int
    n_correct: int
    classifier: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "accuracy": self.accuracy,
            "fold_accuracies": list(self.fold_accuracies),
            "p_value": self.p_value,
            "n_test": self.n_test,
            "n_correct": self.n_correct,
            "classifier": self.classifier,
        }


def c2st(
    x: Any,
    y: Any,
    classifier: str = "logistic",
    n_folds: int = 5,
    generator: torch.Generator | None = None,
) -> C2STResult:
    """Classifier two-sample test of P = Q from ``x ~ P`` ``(n, d)`` and ``y ~ Q`` ``(m, d)``.

    Lopez-Paz & Oquab, "Revisiting classifier two-sample tests", ICLR 2017. The larger set is
    subsampled (without replacement, with ``generator``) to the smaller size N/2; x is labelled
    1 and y 0; a classifier is fitted on each training split of a stratified ``n_folds``-fold
    cross-validation (standardization fitted inside the fold) and scored on the held-out fold.
    Under H0 (P = Q) a held-out prediction is right with probability 1/2 independently of the
    features, so the number right out of the N held-out points is taken as Binomial(N, 1/2)
    (the approximation of the paper; folds are scored by different classifiers) and
    p_value = P(Binomial(N, 1/2) >= n_correct), one-sided. Under H1 the accuracy estimates the
    classifier's accuracy, at most the Bayes accuracy 1/2 + TV(P, Q)/2.

    ``classifier``: ``"logistic"`` (linear logistic regression), ``"quadratic"`` (logistic
    regression on degree-2 monomials: holds the Bayes rule between two Gaussians) or ``"mlp"``
    (one hidden layer of 32 tanh units, L-BFGS). Fold shuffling and the MLP's initialization
    are seeded from ``generator``, so the result is deterministic given the generator state.

    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> x, y = torch.randn(500, 2, generator=g), torch.randn(500, 2, generator=g) + 1
    >>> result = c2st(x, y, generator=torch.Generator().manual_seed(1))
    >>> print(round(result.accuracy, 2), result.p_value < 1e-6)  # Bayes accuracy Phi(sqrt(2)/2) = 0.76
    0.77 True
    """
    from scipy.stats import binom

    log_d, log_not_d, fold_of, _ = _held_out_log_probs(x, y, classifier, n_folds, generator)
    size = log_d.shape[0] // 2
    labels = np.concatenate([np.ones(size, dtype=bool), np.zeros(size, dtype=bool)])
    correct = (log_d > log_not_d) == labels
    fold_accuracies = tuple(float(correct[fold_of == f].mean()) for f in range(int(fold_of.max()) + 1))
    n_correct = int(correct.sum())
    return C2STResult(
        accuracy=float(np.mean(fold_accuracies)),
        fold_accuracies=fold_accuracies,
        p_value=float(binom.sf(n_correct - 1, correct.size, 0.5)),
        n_test=int(correct.size),
        n_correct=n_correct,
        classifier=classifier,
    )


def js_divergence(
    x: Any,
    y: Any,
    classifier: str = "mlp",
    n_folds: int = 5,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Jensen-Shannon divergence JS(P, Q) in nats from ``x ~ P`` ``(n, d)`` and ``y ~ Q`` ``(m, d)``.

    JS = 1/2 KL(P || M) + 1/2 KL(Q || M), M = (P + Q)/2, lies in [0, log 2]. With balanced
    labels (x -> 1, y -> 0) and eta = p/(p + q) the Bayes posterior, for any classifier D

        J(D) = log 2 + 1/2 E_P log D + 1/2 E_Q log(1 - D) = JS - E_M KL(Ber(eta) || Ber(D)),

    so J(D) <= JS with equality at D = eta (the GAN identity of Goodfellow et al. 2014,
    Prop. 1). The estimator fits ``classifier`` (see :func:`c2st` for the names) by stratified
    ``n_folds``-fold cross-validation on the balanced sample (the larger set subsampled with
    ``generator``) and averages held-out log D over x and log(1 - D) over y.

    Bias: held out, every prediction comes from a fitted D independent of the point, so the
    expectation is E J(D_hat) <= JS: a lower bound, short by the mean excess log-loss of the
    fitted classifier. For a well-specified parametric model with p parameters trained on
    N_train points that shortfall is about p / (2 N_train) (Akaike); a misspecified model (e.g.
    ``"logistic"`` for Gaussians with different covariances) adds its approximation error, which
    does not vanish with n. The default ``"mlp"`` is the general choice; ``"quadratic"`` is
    exact in model for Gaussians. The estimate can never exceed log 2 (log D <= 0); it can fall
    below 0 when the classifier is worse than chance on held-out data (noise when P ~ Q), and
    is then clamped to 0, the value JS cannot go below: this removes negative noise only, so
    near P = Q the estimate is biased upward by at most the held-out noise (~ 1/sqrt(N)).

    Returns a 0-d tensor with the inputs' dtype on their device.

    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> x, y = torch.randn(1000, 1, generator=g), 1 + torch.randn(1000, 1, generator=g)
    >>> js = js_divergence(x, y, classifier="logistic", generator=torch.Generator().manual_seed(0))
    >>> print(round(float(js), 2))  # quadrature: 0.1114
    0.11
    """
    log_d, log_not_d, _, x = _held_out_log_probs(x, y, classifier, n_folds, generator)
    size = log_d.shape[0] // 2
    estimate = math.log(2) + 0.5 * log_d[:size].mean() + 0.5 * log_not_d[size:].mean()
    return torch.tensor(max(estimate, 0.0), dtype=x.dtype, device=x.device)


# --------------------------------------------------------------------------------------------
# Fisher divergence and kernel score estimates
# --------------------------------------------------------------------------------------------


def _call_score(score: Any, x: Tensor, name: str) -> Tensor:
    if not callable(score):
        raise TypeError(f"{name} must be a callable mapping (n, d) -> (n, d), got {type(score).__name__}")
    value = score(x)
    if not isinstance(value, Tensor):
        raise TypeError(f"{name} must return a torch tensor, got {type(value).__name__}")
    if value.shape != x.shape:
        raise ValueError(
            f"{name} must map x of shape {tuple(x.shape)} to the same shape (n, d), got {tuple(value.shape)}"
        )
    return check_finite(value, f"{name}(x)")


def fisher_divergence(
    x: Any, score_p: Callable[[Tensor], Tensor], score_q: Callable[[Tensor], Tensor]
) -> Tensor:
    """Relative Fisher information I(mu || nu) = E_mu ||grad log mu - grad log nu||^2, by Monte Carlo.

    ``x`` ``(n, d)`` are samples of mu; ``score_p`` = grad log mu and ``score_q`` = grad log nu
    map ``(n, d) -> (n, d)``. The estimate is the sample mean (1/n) sum_i ||score_p(x_i) -
    score_q(x_i)||^2: unbiased for i.i.d. x, standard error sd(||.||^2) / sqrt(n). Returns a
    0-d tensor on x's device.

    >>> import torch
    >>> x = torch.randn(5, 1)
    >>> print(round(float(fisher_divergence(x, lambda z: -z, lambda z: 2 - z)), 4))  # N(0,1) vs N(2,1)
    4.0
    """
    x = check_particles(x, "x")
    difference = _call_score(score_p, x, "score_p") - _call_score(score_q, x, "score_q")
    return difference.square().sum(1).mean()


def _scott_silverman_bandwidth(x: Tensor) -> Tensor:
    n, d = x.shape
    spread = x.var(0, unbiased=True).mean().sqrt()
    return spread * (4.0 / ((d + 2) * n)) ** (1.0 / (d + 4))


def kde_score(
    x: Any,
    at: Any = None,
    bandwidth: float | None = None,
    leave_one_out: bool | None = None,
) -> Tensor:
    """Score of a Gaussian kernel density estimate, grad_z log mu_h(z), from samples ``x`` ``(n, d)``.

    mu_h(z) = 1/n sum_j N(z; x_j, h^2 I), so grad log mu_h(z) = sum_j w_j(z) (x_j - z) / h^2 with
    w(z) = softmax_j(-||z - x_j||^2 / (2 h^2)) (computed with a log-sum-exp shift, blocked over
    rows of ``at``). ``at`` ``(k, d)``: where to evaluate (default: at the samples). With
    ``leave_one_out`` (the default when ``at`` is None) the score at x_i uses the other points
    only, which removes the self-term's pull toward x_i; it requires ``at`` to be None.

    ``bandwidth`` h: default Silverman's normal-reference rule for an isotropic kernel,
    h = sigma (4 / ((d + 2) n))^(1/(d + 4)), sigma^2 the mean per-coordinate sample variance
    (1.06 sigma n^(-1/5) in d = 1). It is AMISE-optimal for the density of a Gaussian, not for
    its gradient, so it undersmooths the score slightly.

    Bias: E mu_h = mu * N(0, h^2 I), so for large n the estimate tends to the score of the
    smoothed measure (for mu = N(m, s^2 I): -(z - m)/(s^2 + h^2) instead of -(z - m)/s^2); on top
    of that the ratio of two noisy sums has variance ~ 1/(n h^(d+2) mu(z)), large in the tails.

    Returns ``(k, d)`` (``(n, d)`` when ``at`` is None) with x's dtype on x's device.

    >>> import torch
    >>> x = torch.randn(4000, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    >>> at = torch.tensor([[1.0]], dtype=torch.float64)
    >>> print(round(float(kde_score(x, at, bandwidth=0.5)), 1))  # -1 / (1 + 0.5^2) = -0.8
    -0.8
    """
    x = check_particles(x, "x")
    if leave_one_out is None:
        leave_one_out = at is None
    if leave_one_out and at is not None:
        raise ValueError("leave_one_out=True needs at=None: the point left out is the evaluation point x_i")
    if at is None:
        points = x
    else:
        points = check_particles(at, "at", dim=x.shape[1]).to(dtype=x.dtype, device=x.device)
    n = x.shape[0]
    if leave_one_out and n < 2:
        raise ValueError(f"leave_one_out needs at least 2 samples, got n = {n}")
    if bandwidth is None:
        if n < 2:
            raise ValueError(f"the default bandwidth needs at least 2 samples, got n = {n}; pass bandwidth")
        h = _scott_silverman_bandwidth(x)
        if float(h) <= 0:
            raise ValueError("all samples coincide: the default bandwidth is 0; pass bandwidth > 0")
    else:
        h = x.new_tensor(check_positive(bandwidth, "bandwidth"))
    # Softmax weights depend on differences of squared distances; centring keeps the expansion's
    # cancellation small, and the weighted mean of x_j is taken in float64 for the same reason.
    centre = x.mean(0)
    xc = (x - centre).to(torch.float64)
    zc = (points - centre).to(torch.float64)
    h64 = h.to(torch.float64)
    x_sq = xc.square().sum(1)
    inverse_h2 = float(h64) ** -2
    block = min(zc.shape[0], max(1, _BLOCK_ENTRIES // n))
    buffer = torch.empty(block, n, dtype=torch.float64, device=x.device)
    out = torch.empty_like(zc)
    for start in range(0, zc.shape[0], block):
        rows = zc[start : start + block]
        size = rows.shape[0]
        # logits (z.x_j - ||x_j||^2 / 2) / h^2: the row constant -||z||^2 / (2 h^2) cancels in
        # the softmax; exp and normalization in place in one reused buffer.
        logits = torch.addmm(x_sq, rows, xc.T, beta=-0.5 * inverse_h2, alpha=inverse_h2, out=buffer[:size])
        if leave_one_out:
            local = torch.arange(size, device=x.device)
            logits[local, local + start] = -math.inf
        weights = logits.sub_(logits.amax(1, keepdim=True)).exp_()
        total = weights.sum(1, keepdim=True)
        out[start : start + size] = (weights @ xc / total - rows) * inverse_h2
    return out.to(x.dtype)


_FISHER_METHODS = ("kde",)


def fisher_divergence_from_samples(
    x: Any,
    score_q: Callable[[Tensor], Tensor],
    bandwidth: float | None = None,
    method: str = "kde",
) -> Tensor:
    """I(mu || nu) = E_mu ||grad log mu - grad log nu||^2 when mu is known only by samples ``x`` ``(n, d)``.

    ``method="kde"``: grad log mu at each x_i is the leave-one-out Gaussian-KDE score
    :func:`kde_score` (bandwidth h, default Silverman's rule), then the sample mean of
    ||kde_score(x)_i - score_q(x_i)||^2. Known bias, both parts of order h^2 and 1/(n h^(d+2)):
    smoothing replaces grad log mu by the score of mu * N(0, h^2 I) (for mu = N(0, s^2) and
    nu = N(0, 1) the limit is s^2 (1/(s^2 + h^2) - 1)^2 instead of s^2 (1/s^2 - 1)^2), and the
    noise of the KDE score adds its mean variance, which is positive and largest in the tails.
    Returns a 0-d tensor on x's device.

    >>> import torch
    >>> x = 0.5 * torch.randn(4000, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    >>> print(round(float(fisher_divergence_from_samples(x, lambda z: -z, bandwidth=0.2)), 1))
    1.5
    """
    if method not in _FISHER_METHODS:
        raise ValueError(f"method must be one of {list(_FISHER_METHODS)}, got {method!r}")
    x = check_particles(x, "x")
    score_mu = kde_score(x, bandwidth=bandwidth, leave_one_out=True)
    return (score_mu - _call_score(score_q, x, "score_q")).square().sum(1).mean()


def score_matching_objective(x: Any, score_q: Callable[[Tensor], Tensor]) -> Tensor:
    """Hyvarinen's score-matching objective E_mu [||s(x)||^2 + 2 div s(x)] of s = ``score_q``.

    Integration by parts gives E_mu ||grad log mu - s||^2 = E_mu[||s||^2 + 2 div s] +
    E_mu ||grad log mu||^2 (Hyvarinen, JMLR 6, 2005, Theorem 1), so this estimates
    I(mu || nu) - E_mu ||grad log mu||^2: the Fisher divergence only up to a constant that
    depends on mu. It ranks candidate scores for one mu; it is not I(mu || nu) itself.
    ``x`` ``(n, d)`` samples of mu; ``score_q`` a differentiable torch function
    ``(n, d) -> (n, d)``; the divergence is exact, by autograd (one backward pass per
    coordinate). Unbiased sample mean; returns a 0-d tensor on x's device.

    >>> import torch
    >>> x = torch.randn(10000, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    >>> print(round(float(score_matching_objective(x, lambda z: -z)), 1))  # E x^2 - 2 = -1
    -1.0
    """
    x = check_particles(x, "x").detach()
    with torch.enable_grad():
        x = x.requires_grad_(True)
        s = _call_score(score_q, x, "score_q")
        if not s.requires_grad:
            raise ValueError("score_q(x) does not depend on x through autograd; the divergence needs it")
        divergence = torch.zeros(x.shape[0], dtype=s.dtype, device=x.device)
        for j in range(x.shape[1]):
            (grad,) = torch.autograd.grad(s[:, j].sum(), x, retain_graph=True, allow_unused=True)
            if grad is not None:
                divergence = divergence + grad[:, j]
    return (s.detach().square().sum(1) + 2 * divergence.detach()).mean()
