"""Cause-effect pairs, CGNN, Meta-CGNN and the scoring of decisions (issue 19).

The baselines (ANM, IGCI, RECI) and HSIC are tested in test_causal_baselines.py and
test_independence.py; the claims about CGNN are the checks cgnn-identifies, mmd-fit-asymmetry
and tuebingen.
"""

from __future__ import annotations

import importlib.util
import math

import numpy as np
import pytest
import torch
from scipy import stats

from measureflow.inference import causal
from measureflow.inference.causal import cgnn as cgnn_module
from measureflow.inference.causal.api import decide, evaluate
from measureflow.inference.causal.base import DirectionResult, check_pair
from measureflow.inference.causal.meta import MetaCGNN, meta_cgnn_decide, meta_training_pairs, train_meta_cgnn
from measureflow.inference.causal.pairs import (
    MECHANISMS,
    CausePairs,
    benchmark_number,
    read_pairs_csv,
    read_truth_csv,
    synthetic_pairs,
    tuebingen_pairs,
)
from measureflow.metrics import GaussianKernel, mmd2

needs_cdt = pytest.mark.skipif(importlib.util.find_spec("cdt") is None,
                               reason="cdt (the Tuebingen data) missing")


# ---- pairs --------------------------------------------------------------------------------------


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_synthetic_pairs_are_reproducible_standardized_and_oriented_at_random(mechanism):
    pairs = synthetic_pairs(mechanism, 6, 50, seed=3)
    again = synthetic_pairs(mechanism, 6, 50, seed=3)
    assert len(pairs) == 6 and pairs.names[0] == f"{mechanism}-0"
    for x, y, x2 in zip(pairs.x, pairs.y, again.x, strict=True):
        assert x.shape == y.shape == (50,) and x.dtype == torch.float64
        assert torch.equal(x, x2)
        # Standardized: mean 0 and sd 1 to round-off.
        assert abs(float(x.mean())) < 1e-12 and abs(float(y.std()) - 1) < 1e-12
    assert set(pairs.directions) <= {1, -1}
    assert not torch.equal(synthetic_pairs(mechanism, 1, 50, seed=4).x[0], pairs.x[0])


def test_synthetic_orientation_is_a_fair_coin():
    # 400 independent fair coins: the count of +1 is Binomial(400, 1/2); 4 sd = 40 either side.
    directions = synthetic_pairs("additive", 400, 10, seed=0).directions
    assert abs(sum(d == 1 for d in directions) - 200) < 40


def test_synthetic_pairs_reject_bad_arguments():
    with pytest.raises(ValueError, match="unknown mechanism"):
        synthetic_pairs("quadratic", 2)
    with pytest.raises(ValueError, match="noise level"):
        synthetic_pairs("additive", 2, noise="huge")
    with pytest.raises(ValueError, match="noise"):
        synthetic_pairs("additive", 2, noise=-1.0)
    with pytest.raises(ValueError, match="n_points"):
        synthetic_pairs("additive", 2, 5)


def test_check_pair_accepts_columns_and_names_what_is_wrong():
    x, y = check_pair(np.arange(12.0)[:, None], np.arange(12.0) ** 2)
    assert x.shape == y.shape == (12,) and x.dtype == torch.float64
    with pytest.raises(ValueError, match="shape"):
        check_pair(np.zeros((12, 2)), np.zeros(12))
    with pytest.raises(ValueError, match="NaN"):
        check_pair([float("nan")] + [1.0] * 11, np.arange(12.0))
    with pytest.raises(ValueError, match="same number"):
        check_pair(np.arange(12.0), np.arange(13.0))
    with pytest.raises(ValueError, match="at least"):
        check_pair(np.arange(3.0), np.arange(3.0))
    with pytest.raises(ValueError, match="constant"):
        check_pair(np.ones(12), np.arange(12.0))


@needs_cdt
def test_tuebingen_pairs_carry_the_benchmark_numbers_and_weights():
    pairs = tuebingen_pairs()
    assert len(pairs) == 99
    assert pairs.names[0] == "pair0001" and pairs.names[-1] == "pair0104"
    assert not {"pair0052", "pair0053", "pair0054", "pair0055", "pair0071"} & set(pairs.names)
    assert [benchmark_number(k) for k in (51, 52, 66, 67, 99)] == [51, 56, 70, 72, 104]
    # pair0072 (sunspots against temperature) has 1632 observations in the benchmark.
    assert pairs.x[pairs.names.index("pair0072")].shape == (1632,)
    assert set(pairs.directions) == {1, -1}
    assert all(w > 0 for w in pairs.weights)
    # The mapping of cdt's numbering to the benchmark's is checked by the data: pairs that share a
    # variable (an identical column) come from one data set, so their weights must be equal.
    columns: dict[bytes, int] = {}
    shared = 0
    for index, (x, y) in enumerate(zip(pairs.x, pairs.y, strict=True)):
        for column in (x.numpy().tobytes(), y.numpy().tobytes()):
            if column in columns:
                shared += 1
                assert math.isclose(pairs.weights[columns[column]], pairs.weights[index], abs_tol=0.002), (
                    pairs.names[columns[column]], pairs.names[index])
            columns.setdefault(column, index)
    assert shared >= 20  # the check above had something to check
    again = tuebingen_pairs(seed=1)
    assert again.directions != pairs.directions
    subset = tuebingen_pairs(indices=[0, 5])
    assert subset.names == ["pair0001", "pair0006"]


def test_tuebingen_without_cdt_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ValueError, match="pip install"):
        tuebingen_pairs()


def test_pairs_csv_round_trip_and_truth(tmp_path):
    path = tmp_path / "pairs.csv"
    rows = ["pair,x,y"] + [f"a,{i},{i * i % 7}" for i in range(12)] + [f"b,{i},{-i}" for i in range(15)]
    path.write_text("\n".join(rows) + "\n")
    pairs = read_pairs_csv(path)
    assert pairs.names == ["a", "b"] and pairs.x[1].shape == (15,) and pairs.directions is None
    truth = tmp_path / "truth.csv"
    truth.write_text("pair,direction,weight\nb,-1,0.5\na,1,\n")
    known = read_truth_csv(truth, pairs)
    assert known.directions == [1, -1] and known.weights == [1.0, 0.5]


@pytest.mark.parametrize(("text", "message"), [
    ("x,y\n1,2\n", "needs the columns"),
    ("pair,x,y\na,1,b\n", "not a number"),
    ("pair,x,y\na,1,nan\n", "finite"),
    ("pair,x,y\n", "no observations"),
    ("pair,x,y\n" + "".join(f"a,{i},1\n" for i in range(12)), "constant"),
    ("pair,x,y\n" + "".join(f",{i},{i}\n" for i in range(12)), "empty pair name"),
])
def test_pairs_csv_errors_say_what_is_wrong(tmp_path, text, message):
    path = tmp_path / "pairs.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        read_pairs_csv(path)


@pytest.mark.parametrize(("text", "message"), [
    ("pair,direction\na,2\nb,1\n", "1 .x causes y. or -1"),
    ("pair,direction\na,1\n", "no direction for the pairs b"),
    ("pair,direction\na,1\nb,1\nc,1\n", "not in the data"),
    ("pair,direction\na,1\na,1\nb,1\n", "appears twice"),
    ("pair,direction,weight\na,1,-1\nb,1,1\n", "weight"),
])
def test_truth_csv_errors_say_what_is_wrong(tmp_path, text, message):
    path = tmp_path / "pairs.csv"
    path.write_text("pair,x,y\n" + "".join(f"{p},{i},{i * i}\n" for p in "ab" for i in range(12)))
    truth = tmp_path / "truth.csv"
    truth.write_text(text)
    with pytest.raises(ValueError, match=message):
        read_truth_csv(truth, read_pairs_csv(path))


def test_missing_and_binary_files_are_errors(tmp_path):
    with pytest.raises(ValueError, match="no such file"):
        read_pairs_csv(tmp_path / "missing.csv")
    junk = tmp_path / "junk.csv"
    junk.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(ValueError):
        read_pairs_csv(junk)


# ---- CGNN ---------------------------------------------------------------------------------------


def test_batched_mmd_is_the_v_statistic_of_the_joints():
    g = torch.Generator().manual_seed(0)
    cause, effect, generated = (torch.randn(3, 40, generator=g, dtype=torch.float64) for _ in range(3))
    batched = cgnn_module.batched_mmd2(cause, effect, generated, cgnn_module.DEFAULT_BANDWIDTHS)
    for b in range(3):
        data = torch.stack([cause[b], effect[b]], 1)
        model = torch.stack([cause[b], generated[b]], 1)
        reference = mmd2(data, model, kernel=GaussianKernel(list(cgnn_module.DEFAULT_BANDWIDTHS)),
                         unbiased=False)
        assert torch.allclose(batched[b], reference.double(), rtol=1e-10, atol=1e-12)
    # The evaluation's in-place form, with the causes shared, gives the same numbers.
    shared = cause[:1].expand(3, 40)
    cause_d2 = (cause[0, :, None] - cause[0, None, :]).square()
    for bandwidths in (cgnn_module.DEFAULT_BANDWIDTHS, (1.0, 0.3)):
        def mean(a, b, bandwidths=bandwidths):
            return cgnn_module._mean_kernel_inplace(a, b, cause_d2, bandwidths)
        inplace = mean(effect, effect) + mean(generated, generated) - 2 * mean(effect, generated)
        assert torch.allclose(inplace, cgnn_module.batched_mmd2(shared, effect, generated, bandwidths),
                              rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("bandwidths", [cgnn_module.DEFAULT_BANDWIDTHS, (1.0, 0.3, 0.2)])
def test_written_out_mmd_gradient_equals_autograd(bandwidths):
    g = torch.Generator().manual_seed(1)
    cause, effect = (torch.randn(5, 30, generator=g, dtype=torch.float64) for _ in range(2))
    generated = torch.randn(5, 30, generator=g, dtype=torch.float64, requires_grad=True)
    reference = cgnn_module.batched_mmd2(cause, effect, generated, bandwidths, data_term=False)
    (expected,) = torch.autograd.grad(reference.sum(), generated)
    cause_d2 = (cause.unsqueeze(2) - cause.unsqueeze(1)).square()
    value = cgnn_module._MMDToData.apply(cause_d2, effect, generated, tuple(bandwidths))
    (written,) = torch.autograd.grad(value.sum(), generated)
    assert torch.allclose(value, reference, rtol=1e-12, atol=1e-14)
    assert torch.allclose(written, expected, rtol=1e-10, atol=1e-14)


def test_batched_fits_do_not_talk_to_each_other():
    # Data set 0 is the same in both runs, data set 1 differs: with the same seed every random
    # draw has the same shape and value, so fit 0 must come out identical, which fails if a
    # gradient, an optimizer moment or a normalization mixed the batched models.
    x = torch.linspace(-2, 2, 60, dtype=torch.float64)
    g1, g2 = (torch.Generator().manual_seed(5) for _ in range(2))
    options = {"n_restarts": 2, "n_steps": 30, "batch_size": 32, "n_eval": 2}
    first, _ = causal.cgnn_fits([x, x], [x.sin(), x.cos()], generator=g1, **options)
    second, _ = causal.cgnn_fits([x, x], [x.sin(), x.square()], generator=g2, **options)
    assert torch.equal(first[0], second[0])
    assert not torch.equal(first[1], second[1])


def test_minibatches_are_without_replacement_and_top_up_short_data_sets():
    long, short = torch.arange(100.0), torch.arange(100.0, 106.0)
    cause_rows, effect_rows, lengths = cgnn_module.padded_datasets([long, short], [-long, -short],
                                                                   torch.device("cpu"), min_width=16)
    assert cause_rows.shape == (2, 100) and lengths.tolist() == [100, 6]
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        cause, effect = cgnn_module.minibatch(cause_rows, effect_rows, lengths, torch.tensor([0, 1]), 16, g)
        assert torch.equal(effect, -cause)  # rows stay paired
        assert cause[0].unique().numel() == 16 and set(cause[0].tolist()) <= set(long.tolist())
        # The short data set: all 6 points, then 10 repeats of them.
        assert set(cause[1].tolist()) == set(short.tolist())


def test_cgnn_finds_a_clear_additive_noise_direction():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, generator=g, dtype=torch.float64)
    y = torch.sin(2 * x) + 0.3 * (torch.rand(300, generator=g, dtype=torch.float64) - 0.5)
    options = {"n_restarts": 2, "n_steps": 300, "batch_size": 64, "n_eval": 2}
    forward = causal.cgnn_direction(x, y, generator=torch.Generator().manual_seed(1), **options)
    backward = causal.cgnn_direction(y, x, generator=torch.Generator().manual_seed(1), **options)
    assert forward.direction == 1 and backward.direction == -1
    assert forward.score == pytest.approx(forward.details["mean_mmd_yx"] - forward.details["mean_mmd_xy"])
    assert len(forward.details["mmd_xy"]) == 2
    assert forward.fitted["xy"].shape == forward.fitted["yx"].shape == (300, 2)
    assert forward.to_dict()["method"] == "cgnn"


def test_cgnn_rejects_bad_settings():
    x = torch.randn(40, dtype=torch.float64)
    with pytest.raises(ValueError, match="n_restarts"):
        causal.cgnn_direction(x, x.sin(), n_restarts=0)
    with pytest.raises(ValueError, match="learning_rate"):
        causal.cgnn_direction(x, x.sin(), learning_rate=-1.0)
    with pytest.raises(ValueError, match="bandwidth"):
        causal.cgnn_direction(x, x.sin(), bandwidths=(1.0, 0.0))


# ---- Meta-CGNN ----------------------------------------------------------------------------------


def test_meta_embedding_is_permutation_invariant():
    torch.manual_seed(0)
    model = MetaCGNN(hidden=16, context_dim=4)
    cause, effect = torch.randn(2, 50), torch.randn(2, 50)
    order = torch.randperm(50)
    permuted = model.embed(cause[:, order], effect[:, order])
    assert torch.allclose(model.embed(cause, effect), permuted, atol=1e-6)
    z = torch.randn(2, 50, 1)
    assert model(cause, z, model.embed(cause, effect)).shape == (2, 50)


def test_meta_cgnn_trains_and_decides_without_training():
    causes, effects = meta_training_pairs(10, 100, seed=0)
    assert all(c.shape == (100,) for c in causes)
    model = train_meta_cgnn(causes, effects, n_steps=30, datasets_per_step=4, batch_size=32,
                            generator=torch.Generator().manual_seed(0))
    before = [p.detach().clone() for p in model.parameters()]
    pairs = synthetic_pairs("additive", 3, 80, seed=9)
    results = meta_cgnn_decide(model, pairs, n_eval=2, generator=torch.Generator().manual_seed(0))
    assert [r.method for r in results] == ["meta-cgnn"] * 3
    assert all(math.isfinite(r.score) and r.direction in (1, -1) for r in results)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


# ---- deciding and scoring -----------------------------------------------------------------------


def _pairs(directions, weights) -> CausePairs:
    n = len(directions)
    x = [torch.arange(12.0, dtype=torch.float64)] * n
    return CausePairs([f"p{i}" for i in range(n)], x, x, list(directions), list(weights))


def _results(scores) -> list[DirectionResult]:
    return [DirectionResult("test", 1 if s >= 0 else -1, float(s)) for s in scores]


def test_evaluate_weighted_accuracy_and_decision_rate_curve():
    pairs = _pairs([1, 1, -1, -1], [1.0, 0.5, 0.5, 1.0])
    # Confidence order: 4.0 (right), 3.0 (wrong), 2.0 (right), 1.0 (wrong).
    evaluation = evaluate(_results([4.0, -3.0, -2.0, 1.0]), pairs)
    assert evaluation.accuracy == pytest.approx((1.0 + 0.5) / 3.0)
    assert evaluation.n_effective == pytest.approx(3.0**2 / 2.5)
    assert evaluation.rates == pytest.approx([1 / 3, 0.5, 2 / 3, 1.0])
    assert evaluation.accuracies == pytest.approx([1.0, 1 / 1.5, 1.5 / 2.0, 1.5 / 3.0])
    steps = np.diff([0.0, *evaluation.rates])
    assert evaluation.auc == pytest.approx(float(np.dot(steps, evaluation.accuracies)))
    trials = round(evaluation.n_effective)
    expected = stats.binomtest(round(evaluation.accuracy * trials), trials, 0.5, alternative="greater").pvalue
    assert evaluation.p_value == pytest.approx(expected)
    perfect = evaluate(_results([3.0, 2.0, -1.0, -0.5]), pairs)
    assert perfect.accuracy == 1.0 and perfect.auc == pytest.approx(1.0)
    assert evaluate(_results([-3.0, -2.0, 1.0, 0.5]), pairs).auc == 0.0


def test_evaluate_rejects_what_cannot_be_scored():
    pairs = _pairs([1, -1], [1.0, 1.0])
    with pytest.raises(ValueError, match="2 pairs"):
        evaluate(_results([1.0]), pairs)
    with pytest.raises(ValueError, match="no known directions"):
        evaluate(_results([1.0, 1.0]), CausePairs(pairs.names, pairs.x, pairs.y, None, [1.0, 1.0]))
    with pytest.raises(ValueError, match="weights"):
        evaluate(_results([1.0, 1.0]), _pairs([1, -1], [0.0, 0.0]))


def test_decide_runs_every_method_on_the_same_interface():
    pairs = synthetic_pairs("additive", 2, 60, seed=1)
    for method in ("igci", "reci"):
        assert len(decide(pairs, method)) == 2
    results = decide(pairs, "cgnn", n_restarts=1, n_steps=5, batch_size=16, n_eval=1)
    assert [r.method for r in results] == ["cgnn", "cgnn"]
    # Batched across pairs: the same result as a batch of one pair per call is not promised
    # (different random draws), but both pairs get their own fits and MMDs.
    assert results[0].details["mmd_xy"] != results[1].details["mmd_xy"]
    with pytest.raises(ValueError, match="unknown method"):
        decide(pairs, "lingam")
    with pytest.raises(ValueError, match="no pairs"):
        decide(pairs.subset([]), "igci")
