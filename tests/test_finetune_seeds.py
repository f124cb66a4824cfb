"""`fusedet finetune --seeds N`: one detector per seed in its own folder, each seed's report kept,
the mean ± std table across seeds, run.json with every seed, and a rerun that reuses every seed."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest
from detection_helpers import refuse_network
from typer.testing import CliRunner

from fusedet.cli import app
from fusedet.seed_report import STD_DEFINITION

runner = CliRunner()
TINY_YAML = str(Path(__file__).resolve().parents[1] / "fusedet" / "weights" / "demo_yolo.yaml")


def test_two_seeds_train_apart_report_mean_and_std_and_resume(tmp_path, monkeypatch):
    monkeypatch.setenv("FUSEDET_CACHE", str(tmp_path / "fcache"))
    no_network = refuse_network(monkeypatch)
    out = tmp_path / "ft"
    args = ["finetune", "--dataset", "demo", "--dataset-option", "n_pairs=10", "--sources", "ir,vi", "--protocol", "shared",
            "--weights", TINY_YAML, "--epochs", "1", "--imgsz", "64", "--batch", "4", "--device", "cpu", "--seeds", "2",
            "--bootstrap", "20", "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "mean ± std over 2 seeds" in result.output.replace("\n", " ")
    per_seed = {}
    for k in (0, 1):
        folder = out / f"seed_{k}"
        assert (folder / "train" / "shared" / "weights" / "best.pt").is_file()
        per_seed[k] = json.loads((folder / "table.json").read_text())
        run_k = json.loads((folder / "run.json").read_text())
        assert run_k["training"]["seed"] == k and json.loads((folder / "train" / "shared" / "request.json").read_text())["seed"] == k
        assert (folder / "detections" / "ir.json").is_file() and per_seed[k]["bootstrap"]["resamples"] == 20

    table = json.loads((out / "table.json").read_text())
    assert table["seeds"] == [0, 1] and table["std"] == STD_DEFINITION
    for s in ("ir", "vi"):
        for c, mean in table["rows"][s].items():
            values = [per_seed[k]["rows"][s][c] for k in (0, 1)]
            if None in values:
                assert mean is None
                continue
            assert mean == pytest.approx(statistics.mean(values), abs=2e-4)
            assert table["rows_std"][s][c] == pytest.approx(statistics.stdev(values), abs=2e-4)
    assert (out / "table.md").read_text().count("±") > 0 and (out / "ap_per_class.png").is_file()

    run = json.loads((out / "run.json").read_text())
    assert run["training"]["training_seeds"] == [0, 1] and run["seeds"]["seeds"] == [0, 1]
    weights = {k: run["seeds"]["per_seed"][str(k)]["training"]["models"]["shared"]["weights_sha256"] for k in (0, 1)}
    assert weights[0] != weights[1]  # two trainings, not one reused
    assert run["seeds"]["per_seed"]["1"]["folder"] == "seed_1" and run["dataset"]["split"] == "test"
    assert no_network == []

    again = runner.invoke(app, args)  # every seed's training and detections are reused
    assert again.exit_code == 0, again.output
    run = json.loads((out / "run.json").read_text())
    assert all(run["seeds"]["per_seed"][str(k)]["training"]["models"]["shared"]["resumed_or_reused"] for k in (0, 1))
    assert all(run["seeds"]["per_seed"][str(k)]["resumed_sources"] == ["ir", "vi"] for k in (0, 1))
    assert json.loads((out / "table.json").read_text())["rows"] == table["rows"]


def test_seeds_must_be_positive(tmp_path):
    result = runner.invoke(app, ["finetune", "--dataset", "demo", "--seeds", "0", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "--seeds" in result.output
