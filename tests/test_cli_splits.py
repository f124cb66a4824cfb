"""Splits said plainly by `fusedet evaluate` and `fusedet finetune`: the split used (a split file, a
seeded fraction with its seed, or all pairs) printed once and recorded exactly in run.json; `--split
all` never describes a seeded split; a dataset without split files shows the default test split's
size and seed; `--split-file FILE` for both commands."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from fusedet.cli import app
from fusedet.datasets.registry import load_dataset
from fusedet.datasets.splits import seeded_split

runner = CliRunner()
TINY_YAML = str(Path(__file__).resolve().parents[1] / "fusedet" / "weights" / "demo_yolo.yaml")
STEMS = [f"{i:05d}" for i in range(10)]


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    """A fresh fused-image cache, and consoles wide enough that no line (a split file's path) wraps."""
    from fusedet.cli import common

    monkeypatch.setenv("FUSEDET_CACHE", str(tmp_path / "fcache"))
    for console in (common.console, common.err_console):
        monkeypatch.setattr(console, "_width", 1000)


@pytest.fixture()
def m3fd(tmp_path) -> Path:
    """Ten pairs in M3FD's real layout without any split file (Ir/, Vis/, Annotation/; no meta/)."""
    root = tmp_path / "m3fd"
    rng = np.random.default_rng(0)
    for sub in ("Ir", "Vis", "Annotation"):
        (root / sub).mkdir(parents=True)
    for stem in STEMS:
        cv2.imwrite(str(root / "Ir" / f"{stem}.png"), rng.integers(0, 255, (48, 64), dtype=np.uint8))
        cv2.imwrite(str(root / "Vis" / f"{stem}.png"), rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
        objects = "".join(f"<object><name>{n}</name><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin><xmax>{b[2]}</xmax>"
                          f"<ymax>{b[3]}</ymax></bndbox></object>" for n, b in (("People", (2, 3, 20, 40)), ("Car", (30, 10, 60, 30))))
        (root / "Annotation" / f"{stem}.xml").write_text(
            f"<annotation><filename>{stem}.png</filename><size><width>64</width><height>48</height><depth>3</depth></size>{objects}</annotation>")
    return root


def _evaluate(root: Path, out: Path, *extra: str):
    args = ["evaluate", "--dataset", "m3fd", "--root", str(root), "--weights", "demo", "--sources", "ir", "--device", "cpu",
            "--bootstrap", "0", "--out", str(out), *extra]
    return runner.invoke(app, args)


def _text(result) -> str:
    return result.output.replace("\n", " ")


def _split_lines(result) -> list[str]:
    return [line for line in result.output.splitlines() if line.startswith("split ")]


def _gt_stems(out: Path) -> list[str]:
    return sorted(im["stem"] for im in json.loads((out / "ground_truth.json").read_text())["images"])


def test_seeded_default_test_split_shows_its_size_and_seed(tmp_path, cache, m3fd):
    out = tmp_path / "out"
    result = _evaluate(m3fd, out, "--seed", "3")
    assert result.exit_code == 0, result.output
    test = sorted(s for s, split in seeded_split(STEMS, 3).items() if split == "test")
    assert len(test) == 2 and _gt_stems(out) == test
    lines = _split_lines(result)
    assert len(lines) == 1 and _text(result).count("seeded split") == 1  # said once
    assert lines[0].startswith("split test: 2 of 10 pairs, from seeded split (seed 3, 70/10/20")
    used = json.loads((out / "run.json").read_text())["dataset"]["split_used"]
    assert used == {"name": "test", "pairs": 2, "description": used["description"], "method": "seeded", "files": [], "seed": 3,
                    "ratios": [0.7, 0.1, 0.2]}
    assert used["description"].startswith("test: 2 of 10 pairs, from seeded split (seed 3")
    dataset = json.loads((out / "run.json").read_text())["dataset"]
    assert dataset["splits"]["counts"] == {"train": 7, "val": 1, "test": 2} and dataset["pairs"] == 2 and dataset["pairs_in_dataset"] == 10


def test_split_all_never_describes_the_seeded_split(tmp_path, cache, m3fd):
    out = tmp_path / "out"
    result = _evaluate(m3fd, out, "--split", "all", "--seed", "3")
    assert result.exit_code == 0, result.output
    assert _split_lines(result) == ["split all: 10 pairs (every pair of every split)"]
    assert "seeded" not in result.output and "seed 3" not in result.output
    assert _gt_stems(out) == STEMS
    used = json.loads((out / "run.json").read_text())["dataset"]["split_used"]
    assert used == {"name": "all", "pairs": 10, "description": "all: 10 pairs (every pair of every split)", "method": "all pairs",
                    "files": [], "seed": None, "ratios": None}


def test_evaluate_with_a_published_split_list(tmp_path, cache, m3fd):
    listed = ["00007", "00002", "00005"]
    split_file = tmp_path / "published_test.txt"
    split_file.write_text("".join(f"Ir/{s}.png\n" for s in listed))  # a plain list of file names: the test split
    out = tmp_path / "out"
    result = _evaluate(m3fd, out, "--split-file", str(split_file))
    assert result.exit_code == 0, result.output
    assert _gt_stems(out) == sorted(listed)
    lines = _split_lines(result)
    assert len(lines) == 1 and "seeded" not in result.output
    assert lines[0].startswith(f"split test: 3 of 3 pairs, from split file {split_file} (a plain stem list, read as test)")
    used = json.loads((out / "run.json").read_text())["dataset"]["split_used"]
    assert used["method"] == "split file" and used["files"] == [str(split_file)] and used["seed"] is None and used["pairs"] == 3
    data = load_dataset("m3fd", m3fd, split_file=split_file)  # all pairs: the 3 listed, and it says the others are out
    assert data.describe_split("all") == "all: 3 pairs (every pair of every split; 7 pair(s) in no split left out)"
    assert data.split_record("all")["method"] == "all pairs" and data.split_record("all")["pairs"] == 3


def test_finetune_with_a_split_file_trains_and_evaluates_on_its_splits(tmp_path, cache, m3fd):
    split_file = tmp_path / "split.txt"
    assign = {s: "train" for s in STEMS[:6]} | {STEMS[6]: "val"} | {s: "test" for s in STEMS[7:]}
    split_file.write_text("".join(f"{s} {split}\n" for s, split in assign.items()))
    out = tmp_path / "ft"
    args = ["finetune", "--dataset", "m3fd", "--root", str(m3fd), "--split-file", str(split_file), "--sources", "ir", "--weights", TINY_YAML,
            "--epochs", "1", "--imgsz", "64", "--batch", "4", "--device", "cpu", "--bootstrap", "0", "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    lines = _split_lines(result)
    assert len(lines) == 1 and lines[0].startswith(f"split test: 3 of 10 pairs, from split file {split_file} (STEM SPLIT lines): "
                                                   "6 train, 1 val, 3 test pairs")
    assert _gt_stems(out) == STEMS[7:]
    run = json.loads((out / "run.json").read_text())
    assert run["dataset"]["split_used"]["method"] == "split file" and run["dataset"]["split_used"]["files"] == [str(split_file)]
    assert run["dataset"]["splits"]["counts"] == {"train": 6, "val": 1, "test": 3}
    data_yaml = yaml.safe_load(open(run["training"]["models"]["ir"]["data_yaml"]))
    trained = sorted(p.stem for folder in data_yaml["train"] for p in Path(folder).glob("*.png"))
    validated = sorted(p.stem for folder in data_yaml["val"] for p in Path(folder).glob("*.png"))
    assert trained == STEMS[:6] and validated == [STEMS[6]]


def test_finetune_on_all_pairs_says_where_the_train_split_comes_from(tmp_path, cache, m3fd):
    out = tmp_path / "ft"
    args = ["finetune", "--dataset", "m3fd", "--root", str(m3fd), "--split", "all", "--seed", "3", "--sources", "ir", "--weights",
            TINY_YAML, "--epochs", "1", "--imgsz", "64", "--batch", "4", "--device", "cpu", "--bootstrap", "0", "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert _split_lines(result) == ["split all: 10 pairs (every pair of every split)"]
    assert "training split train: 7 of 10 pairs, from seeded split (seed 3" in _text(result)
    assert "holds the 7 training pairs" in _text(result)
    assert json.loads((out / "run.json").read_text())["dataset"]["split_used"]["method"] == "all pairs"
