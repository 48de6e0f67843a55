"""``measureflow causal``: the decisions it writes, the pairs and truth files, and bad input."""

from __future__ import annotations

import csv
import importlib.util
import json

import pytest
from cli_helpers import invoke, one_error_line

SMALL = ["--n-pairs", "4", "--n-points", "60", "--no-progress"]


def _files(folder) -> set[str]:
    return {path.name for path in folder.iterdir()} if folder.exists() else set()


def _decisions(folder) -> list[dict[str, str]]:
    with open(folder / "decisions.csv", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize("method", ["reci", "anm"])
def test_synthetic_pairs_write_decisions_accuracy_and_figures(tmp_path, method):
    out = tmp_path / "run"
    result = invoke("causal", "--synthetic", "additive", "--method", method, *SMALL, "--out", out)
    assert result.exit_code == 0, result.stderr
    assert _files(out) == {"decisions.csv", "joints.png", "decision_rate.png", "result.json"}
    rows = _decisions(out)
    assert [row["pair"] for row in rows] == [f"additive-{i}" for i in range(4)]
    assert set(rows[0]) == {"pair", "direction", "score"}
    assert {row["direction"] for row in rows} <= {"1", "-1"}
    summary = json.loads((out / "result.json").read_text())
    assert summary["command"] == "causal" and summary["n_pairs"] == 4
    evaluation = summary["evaluation"]
    truth = [d["direction"] for d in summary["decisions"]]
    assert 0.0 <= evaluation["accuracy"] <= 1.0 and 0.0 <= evaluation["auc"] <= 1.0
    assert len(truth) == 4 and "weighted accuracy" in result.stdout


def test_cgnn_draws_the_fitted_joints(tmp_path):
    out = tmp_path / "run"
    result = invoke("causal", "--method", "cgnn", "--steps", "5", "--restarts", "1", *SMALL,
                    "--figures", "2", "--out", out)
    assert result.exit_code == 0, result.stderr
    summary = json.loads((out / "result.json").read_text())
    assert summary["decisions"][0]["method"] == "cgnn" and len(summary["decisions"][0]["mmd_xy"]) == 1
    assert "joints.png" in summary["figures"]


def test_a_pairs_file_with_and_without_truth(tmp_path):
    data = tmp_path / "pairs.csv"
    data.write_text("pair,x,y\n" + "".join(f"{name},{i},{(i * 7919 % 101) / 10 + i * k}\n"
                                           for name, k in (("p", 1), ("q", -2)) for i in range(30)))
    out = tmp_path / "plain"
    result = invoke("causal", "--data", data, "--method", "igci", "--no-progress", "--out", out)
    assert result.exit_code == 0, result.stderr
    assert _files(out) == {"decisions.csv", "joints.png", "result.json"}
    assert json.loads((out / "result.json").read_text())["evaluation"] is None
    truth = tmp_path / "truth.csv"
    truth.write_text("pair,direction\np,1\nq,-1\n")
    out = tmp_path / "scored"
    result = invoke("causal", "--data", data, "--truth", truth, "--method", "igci", "--no-progress",
                    "--out", out)
    assert result.exit_code == 0, result.stderr
    assert [row["pair"] for row in _decisions(out)] == ["p", "q"]
    assert json.loads((out / "result.json").read_text())["evaluation"]["n_pairs"] == 2


@pytest.mark.skipif(importlib.util.find_spec("cdt") is None, reason="cdt (the Tuebingen data) missing")
def test_tuebingen_subset(tmp_path):
    out = tmp_path / "run"
    result = invoke("causal", "--dataset", "tuebingen", "--n-pairs", "5", "--method", "igci", "--no-progress",
                    "--figures", "1", "--out", out)
    assert result.exit_code == 0, result.stderr
    assert [row["pair"] for row in _decisions(out)] == [f"pair000{i}" for i in range(1, 6)]


@pytest.mark.parametrize(("args", "message"), [
    (["--synthetic", "additive", "--dataset", "tuebingen"], "one source"),
    (["--synthetic", "cubic"], "--synthetic"),
    (["--dataset", "cifar"], "--dataset"),
    (["--method", "lingam"], "--method"),
    (["--method", "igci", "--steps", "10"], "--steps applies"),
    (["--method", "anm", "--restarts", "3"], "--restarts applies"),
    (["--truth", "t.csv"], "--truth goes with --data"),
    (["--noise", "-1"], "--noise"),
    (["--noise", "loud"], "--noise"),
    (["--max-points", "5"], "--max-points"),
    (["--n-pairs", "0"], "--n-pairs"),
    (["--data", "missing.csv"], "no such file"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, args, message):
    out = tmp_path / "run"
    result = invoke("causal", *args, "--n-points", "30", "--no-progress", "--out", out)
    assert result.exit_code == 2, result.stdout
    line = one_error_line(result)
    assert line.startswith("error: ") and message in line, result.stderr
    assert not out.exists()


def test_a_malformed_pairs_file_is_refused(tmp_path):
    data = tmp_path / "pairs.csv"
    data.write_bytes(b"pair,x,y\n\x00\x01\xff\xfe" * 20)
    out = tmp_path / "run"
    result = invoke("causal", "--data", data, "--method", "igci", "--out", out)
    assert result.exit_code == 2 and one_error_line(result).startswith("error: ")
    assert not out.exists()
