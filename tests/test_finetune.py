"""Fine-tuning: YOLO label export, the exported dataset, and a one-epoch training through the CLI
with the network disabled (both protocols), then its evaluation."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from detection_helpers import refuse_network
from typer.testing import CliRunner

from fusedet.cli import app
from fusedet.datasets.registry import load_dataset
from fusedet.settings import RunSettings
from fusedet.sources import parse_sources
from fusedet.yolo_export import export_sources, yolo_labels

runner = CliRunner()
TINY_YAML = str(Path(__file__).resolve().parents[1] / "fusedet" / "weights" / "demo_yolo.yaml")  # the smallest model we have


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FUSEDET_CACHE", str(tmp_path / "fcache"))
    return tmp_path / "fcache"


@pytest.fixture()
def no_network(monkeypatch):
    return refuse_network(monkeypatch)


def test_yolo_labels_are_normalised_centre_boxes():
    text = yolo_labels(np.array([[10, 20, 30, 60], [0, 0, 200, 100]]), ["Car", "People"], 200, 100, ["People", "Car"])
    assert text == "1 0.100000 0.400000 0.100000 0.400000\n0 0.500000 0.500000 1.000000 1.000000\n"
    assert yolo_labels(np.zeros((0, 4)), [], 200, 100, ["People"]) == ""


def test_export_writes_images_labels_and_reuses_them(tmp_path, cache):
    data = load_dataset("demo", seed=0, n_pairs=10)
    sources = parse_sources("ir,vi,mean")
    run = RunSettings(cache_dir=cache, workers=1)
    root, dirs = export_sources(data, sources, run, batch=4)
    train = data.split("train")
    for source in sources:
        images = sorted(dirs[source.name]["train"].glob("*.png"))
        assert [p.stem for p in images] == sorted(r.stem for r in train)
        assert len(list(dirs[source.name]["val"].glob("*.png"))) == len(data.split("val"))
    record = train[0]
    label = dirs["vi"]["train"].parent.parent / "labels" / "train" / f"{record.stem}.txt"
    assert label.read_text() == yolo_labels(record.boxes, record.labels, record.width, record.height, data.classes)
    ir = cv2.imread(str(dirs["ir"]["train"] / f"{record.stem}.png"), cv2.IMREAD_UNCHANGED)
    assert ir.ndim == 2 and ir.shape == (record.height, record.width)  # IR stays one channel
    vi = cv2.imread(str(dirs["vi"]["train"] / f"{record.stem}.png"))[:, :, ::-1]
    np.testing.assert_array_equal(vi, cv2.imread(str(record.vis_path))[:, :, ::-1])
    cached = next((cache / "fused").glob(f"mean-*/{record.stem}-*.png"))
    assert (dirs["mean"]["train"] / f"{record.stem}.png").stat().st_ino == cached.stat().st_ino  # a link, not a copy

    stamp = (dirs["ir"]["train"] / f"{record.stem}.png").stat().st_mtime_ns
    assert export_sources(data, sources, run, batch=4) == (root, dirs)
    assert (dirs["ir"]["train"] / f"{record.stem}.png").stat().st_mtime_ns == stamp  # finished files are kept


@pytest.mark.parametrize("protocol, models", [("shared", ["shared"]), ("per-source", ["ir", "mean"])])
def test_finetune_one_epoch_offline_then_evaluate(tmp_path, cache, no_network, protocol, models):
    out = tmp_path / "ft"
    args = ["finetune", "--dataset", "demo", "--dataset-option", "n_pairs=10", "--sources", "ir,mean", "--protocol", protocol,
            "--weights", TINY_YAML, "--epochs", "1", "--imgsz", "64", "--batch", "4", "--device", "cpu", "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    for name in models:
        assert (out / "train" / name / "weights" / "best.pt").is_file()
    table = json.loads((out / "table.json").read_text())
    assert list(table["rows"]) == ["ir", "mean"] and table["not_covered"] == {}  # trained on the demo's classes
    assert table["classes"] == ["People", "Car", "Bus", "Motorcycle", "Truck", "Lamp"]
    run = json.loads((out / "run.json").read_text())
    assert run["training"]["protocol"] == protocol and sorted(run["training"]["models"]) == sorted(models)
    weights = {run["detector"]["weights"]} if protocol == "shared" else {d["weights"] for d in run["detector"].values()}
    assert weights == {str(out / "train" / m / "weights" / "best.pt") for m in models}
    data_yaml = yaml.safe_load(open(run["training"]["models"][models[0]]["data_yaml"]))
    assert data_yaml["names"] == dict(enumerate(table["classes"]))
    assert no_network == []

    again = runner.invoke(app, args)  # finished training is reused, not redone
    assert again.exit_code == 0, again.output
    assert all(m["resumed_or_reused"] for m in json.loads((out / "run.json").read_text())["training"]["models"].values())

    other = runner.invoke(app, [*args[:-2], "--epochs", "2", "--out", str(out)])  # same folder, other settings
    assert other.exit_code == 2 and "epochs differ" in other.output.replace("\n", "")


def test_bad_protocol_is_a_clear_error(tmp_path, cache):
    result = runner.invoke(app, ["finetune", "--dataset", "demo", "--protocol", "mixed", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "per-source" in result.output
