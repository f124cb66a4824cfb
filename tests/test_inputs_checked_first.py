"""Every command that runs long checks its inputs before the long work, and none depends on the working
folder: relative --root, --out, --cache-dir (and --ir, --vis, --fused) for evaluate, fuse and metrics
(finetune and train-fuser: tests/test_finetune.py, tests/test_cli_train_fuser.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fusedet.cli import app

runner = CliRunner()


def _text(result) -> str:
    return " ".join(result.output.split())


@pytest.fixture()
def workdir(tmp_path, monkeypatch):
    monkeypatch.setenv("FUSEDET_CACHE", str(tmp_path / "fcache"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


EVALUATE = ["evaluate", "--dataset", "demo", "--root", "data", "--dataset-option", "n_pairs=6", "--sources", "ir,mean",
            "--weights", "demo", "--imgsz", "64", "--device", "cpu", "--bootstrap", "0"]


def test_evaluate_with_relative_paths_gives_the_same_run_from_another_folder(workdir):
    result = runner.invoke(app, [*EVALUATE, "--out", "out", "--cache-dir", "cache"])
    assert result.exit_code == 0, result.output
    run = json.loads((workdir / "out" / "run.json").read_text())
    assert run["fused_cache"] == str(workdir / "cache") and list((workdir / "cache" / "fused").glob("mean-*/*.png"))
    table = json.loads((workdir / "out" / "table.json").read_text())["rows"]

    (workdir / "elsewhere").mkdir()
    other = ["--root", str(workdir / "data"), "--out", str(workdir / "out"), "--cache-dir", str(workdir / "cache")]
    args = [a for a in EVALUATE if a not in ("--root", "data")] + other
    os.chdir(workdir / "elsewhere")  # monkeypatch.chdir in the fixture puts the folder back
    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output
    run = json.loads((workdir / "out" / "run.json").read_text())
    assert run["resumed_sources"] == ["ir", "mean"]  # the same inputs, found from another working folder
    assert json.loads((workdir / "out" / "table.json").read_text())["rows"] == table


@pytest.mark.parametrize("extra, message", [
    (["--baseline", "dmnet"], "baseline 'dmnet' is not a row of this report (rows: ir, mean; or best-single)"),
    (["--split", "val", "--split-file", "split.txt"], "split 'val' of dataset 'demo' has no pairs"),
    (["--out", "file"], "--out file is a file, not a folder"),
    (["--cache-dir", "file"], "--cache-dir file is a file, not a folder"),
])
def test_evaluate_refuses_bad_input_before_detecting(workdir, extra, message):
    (workdir / "file").write_text("")
    (workdir / "split.txt").write_text("00000 train\n00001 test\n")
    args = [*EVALUATE, "--out", "out"]
    result = runner.invoke(app, args + extra)
    assert result.exit_code == 2 and message in _text(result), result.output
    assert not (workdir / "out" / "detections").exists() and not (workdir / "fcache" / "fused").exists()


def test_fuse_and_metrics_with_relative_paths(workdir):
    from fusedet.datasets.registry import load_dataset

    load_dataset("demo", Path("data"), n_pairs=3)
    result = runner.invoke(app, ["fuse", "--ir", "data/Ir", "--vis", "data/Vis", "--out", "fused", "--fuser", "mean",
                                 "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (workdir / "fused").glob("*.png")) == ["00000.png", "00001.png", "00002.png"]
    result = runner.invoke(app, ["metrics", "--ir", "data/Ir", "--vis", "data/Vis", "--fused", "mean=fused", "--metrics", "EN,SD",
                                 "--out", "scores", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert (workdir / "scores" / "metrics.json").is_file()
    (workdir / "file").write_text("")
    result = runner.invoke(app, ["fuse", "--ir", "data/Ir", "--vis", "data/Vis", "--out", "file", "--fuser", "mean"])
    assert result.exit_code == 2 and "--out file is a file, not a folder" in _text(result)
