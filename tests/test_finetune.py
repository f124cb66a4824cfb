"""Fine-tuning: YOLO label export, the exported dataset, and a one-epoch training through the CLI
with the network disabled (both protocols), then its evaluation."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from detection_helpers import refuse_network
from typer.testing import CliRunner

from fusedet import yolo_training
from fusedet.cli import app
from fusedet.datasets.registry import load_dataset
from fusedet.errors import InputError
from fusedet.settings import FinetuneSettings, RunSettings
from fusedet.sources import parse_sources
from fusedet.yolo_export import export_sources, yolo_labels
from fusedet.yolo_training import check_train_options, plan_training, training_request

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


def _errors(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("error:")]


def test_train_options_are_checked_by_ultralytics_own_configuration_check(capsys):
    for options, message in [
        ({"mosiac": 0}, "--train-option mosiac: not an ultralytics train() argument (did you mean 'mosaic'?)"),
        ({"lr": 0.01}, "(did you mean one of 'lrf', 'lr0'"),
        ({"epochs": 3}, "fusedet sets 'epochs' itself; use --epochs instead"),
        ({"name": "x"}, "use --out instead"),
        ({"workers": 4}, "use --workers instead"),
        ({"resume": True}, "the same command again"),
        ({"mosaic": "abc"}, "'mosaic=abc' is of invalid type str"),
        ({"mosaic": 2}, "'mosaic=2' is an invalid value"),
    ]:
        with pytest.raises(InputError) as caught:
            check_train_options(options)
        assert message in str(caught.value) and "\n" not in str(caught.value), (options, str(caught.value))
    assert check_train_options({"mosaic": 0.5, "lr0": 0.005, "cache": "ram", "close_mosaic": 0}) == []
    warnings = check_train_options({"hide_labels": True})
    assert len(warnings) == 1 and "'hide_labels' is deprecated" in warnings[0]
    printed = capsys.readouterr()
    assert "Ultralytics 'yolo' commands" not in printed.out + printed.err  # its CLI help never reaches the terminal


@pytest.mark.parametrize("extra, message", [
    (["--train-option", "mosiac=0"], "did you mean 'mosaic'"),
    (["--train-option", "batch=4"], "use --batch instead"),
    (["--split", "val", "--split-file", "SPLIT"], "split 'val' of dataset 'demo' has no pairs to evaluate"),
    (["--split-file", "NOTRAIN"], "has no train pairs"),
    (["--weights", "yolov99.yaml"], "--weights yolov99.yaml: ultralytics cannot load it"),
    (["--weights", "DMNET"], "ultralytics cannot load it"),
    (["--baseline", "dmnet"], "baseline 'dmnet' is not a row of this report (rows: ir, mean"),
    (["--group-by", "day-night"], "no stem of the split ends in D or N"),
    (["--out", "FILE"], "is a file, not a folder"),
])
def test_bad_input_fails_before_any_export(tmp_path, cache, extra, message):
    (tmp_path / "split.txt").write_text("00000 train\n00001 train\n00006 test\n")
    (tmp_path / "notrain.txt").write_text("00005 val\n00006 test\n")
    (tmp_path / "file").write_text("")
    dmnet = Path(__file__).resolve().parents[1] / "fusedet" / "weights" / "dmnet_lite.pt"
    swap = {"SPLIT": str(tmp_path / "split.txt"), "NOTRAIN": str(tmp_path / "notrain.txt"), "FILE": str(tmp_path / "file"),
            "DMNET": str(dmnet)}
    out = tmp_path / "ft"
    args = ["finetune", "--dataset", "demo", "--dataset-option", "n_pairs=10", "--sources", "ir,mean", "--weights", TINY_YAML,
            "--epochs", "1", "--imgsz", "64", "--batch", "4", "--device", "cpu", "--out", str(out)]
    result = runner.invoke(app, args + [swap.get(a, a) for a in extra])
    assert result.exit_code == 2, result.output
    errors = _errors(" ".join(result.output.split()).replace(" error:", "\nerror:"))
    assert len(errors) == 1 and message in errors[0], result.output
    assert not (out / "cache").exists() and not (out / "train").exists() and not (cache / "yolo").exists()


def test_failed_start_then_corrected_rerun_relative_paths_and_changed_data(tmp_path, cache, monkeypatch, no_network):
    """A training that fails at its start (an option ultralytics accepts but its trainer
    refuses) prints one line with ultralytics' message and its log, and leaves nothing that blocks the
    corrected command; relative --root, --out (default cache inside it) and --cache-dir; a finished
    training is reused only on the same pairs."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FUSEDET_CACHE", "fcache")  # the machine's cache, given relative to the working folder
    monkeypatch.setenv("YOLO_CONFIG_DIR", str(cache / "ultralytics"))
    load_dataset("demo", Path("data"), n_pairs=8)  # train 00000, 00001 hold no Motorcycle
    Path("split.txt").write_text("00000 train\n00001 train\n00006 test\n00007 test\n")
    args = ["finetune", "--dataset", "demo", "--root", "data", "--split-file", "split.txt", "--sources", "ir", "--weights", TINY_YAML,
            "--epochs", "1", "--imgsz", "64", "--batch", "2", "--workers", "0", "--device", "cpu", "--out", "out", "--bootstrap", "0"]
    failed = runner.invoke(app, [*args, "--train-option", "optimizer=NoSuchOpt"])
    assert failed.exit_code == 1, failed.output
    text = " ".join(failed.output.split())
    log = tmp_path / "out" / "train" / "ir" / "train.log"
    assert "error: training ir failed: NotImplementedError: Optimizer 'NoSuchOpt' not found" in text
    assert f"(full log: {log})" in text and len(_errors(failed.output)) == 1
    assert "Arguments received" not in text and "Ultralytics 'yolo' commands" not in text
    assert "Traceback" in log.read_text() and "NoSuchOpt" in log.read_text()
    assert not (log.parent / "request.json").exists()
    assert "warning: no Motorcycle box in the train split" in text and "no val pairs: best.pt is picked on the train pairs" in text

    fixed = runner.invoke(app, [*args, "--train-option", "mosaic=0"])
    assert fixed.exit_code == 0, fixed.output
    run = json.loads(Path("out/run.json").read_text())
    model = run["training"]["models"]["ir"]
    assert run["training"]["train_options"] == {"mosaic": 0} and not model["resumed_or_reused"]
    ran = model["ultralytics_args"]  # what ultralytics trained with
    assert (ran["mosaic"], ran["epochs"], ran["imgsz"], ran["batch"], ran["data"]) == (0, 1, 64, 2, model["data_yaml"])
    data_yaml = yaml.safe_load(open(model["data_yaml"]))
    export = tmp_path / "fcache" / "yolo"  # the export is the machine's, the data yaml the run's
    assert Path(model["data_yaml"]).parent == tmp_path / "out" / "train" and Path(data_yaml["path"]) == tmp_path / "out" / "train"
    assert all(Path(p).is_absolute() and Path(p).is_dir() and export in Path(p).parents for p in data_yaml["train"] + data_yaml["val"])
    assert data_yaml["val"] == data_yaml["train"]  # no val pairs: validated on train

    image = Path("data/Ir/00001.png")
    stamp = image.stat()
    os.utime(image, ns=(stamp.st_atime_ns, stamp.st_mtime_ns + 10**9))
    exports = sorted(p.name for p in export.iterdir())
    changed = runner.invoke(app, [*args, "--train-option", "mosaic=0"])
    assert changed.exit_code == 2
    assert "pairs differ; the pairs: 1 pair modified (00001)" in " ".join(changed.output.split())
    assert sorted(p.name for p in export.iterdir()) == exports  # refused before exporting

    os.utime(image, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    elsewhere = runner.invoke(app, [*args, "--train-option", "mosaic=0", "--cache-dir", "cache2"])
    assert elsewhere.exit_code == 0, elsewhere.output
    run = json.loads(Path("out/run.json").read_text())
    assert run["training"]["models"]["ir"]["resumed_or_reused"]  # the same pairs, from another cache folder
    moved_yaml = yaml.safe_load(open(run["training"]["models"]["ir"]["data_yaml"]))
    assert all(p.startswith(str(tmp_path / "cache2" / "yolo")) for p in moved_yaml["train"])


def test_interrupted_training_resumes_in_a_moved_output_folder(tmp_path, cache, monkeypatch, no_network):
    """Ctrl-C after the first of two epochs, the --out folder moved, the same command (new --out): the
    training resumes from its last.pt there, with the exported data at its new place."""
    real = yolo_training._EpochEvents.on_fit_epoch_end

    def interrupt_after_first_epoch(self, trainer):
        real(self, trainer)
        if trainer.epoch == 0:
            raise KeyboardInterrupt

    monkeypatch.setattr(yolo_training._EpochEvents, "on_fit_epoch_end", interrupt_after_first_epoch)
    args = ["finetune", "--dataset", "demo", "--dataset-option", "n_pairs=10", "--sources", "vi", "--weights", TINY_YAML,
            "--epochs", "2", "--imgsz", "64", "--batch", "4", "--workers", "0", "--device", "cpu", "--bootstrap", "0",
            "--cache-dir", str(tmp_path / "first" / "cache")]
    cut = runner.invoke(app, [*args, "--out", str(tmp_path / "first")])
    assert cut.exit_code == 130, cut.output
    assert (tmp_path / "first" / "train" / "vi" / "weights" / "last.pt").is_file()
    assert not (tmp_path / "first" / "train" / "vi" / "done.json").exists()
    monkeypatch.setattr(yolo_training._EpochEvents, "on_fit_epoch_end", real)
    (tmp_path / "first").rename(tmp_path / "moved")
    args[-1] = str(tmp_path / "moved" / "cache")
    resumed = runner.invoke(app, [*args, "--out", str(tmp_path / "moved")])
    assert resumed.exit_code == 0, resumed.output
    model = json.loads((tmp_path / "moved" / "run.json").read_text())["training"]["models"]["vi"]
    assert model["resumed_or_reused"] and model["weights"] == str(tmp_path / "moved" / "train" / "vi" / "weights" / "best.pt")
    assert model["ultralytics_args"]["data"].startswith(str(tmp_path / "moved" / "train"))
    assert model["ultralytics_args"]["save_dir"] == str(tmp_path / "moved" / "train" / "vi")
    assert "Resuming training" in (tmp_path / "moved" / "train" / "vi" / "train.log").read_text()
    assert not (tmp_path / "first").exists()  # nothing written to the old place
    assert no_network == []


def test_training_folders_are_planned_before_any_work(tmp_path):
    train = FinetuneSettings(start_weights=TINY_YAML, epochs=1, imgsz=64, batch=2, options={"mosaic": 0})
    data = {"sources": [{"name": "vi"}], "classes": ["People"], "value_ranges": ["auto", "auto"],
            "pairs": {"00000": "train|a", "00001": "train|b", "00002": "val|c"}}
    request = training_request(train, data)
    run_dir = tmp_path / "train" / "vi"
    assert plan_training("vi", ("vi",), run_dir, request).state == "new"
    run_dir.mkdir(parents=True)
    (run_dir / "request.json").write_text(json.dumps({**request, "options": {"mosiac": 0}}))  # a start that failed
    plan = plan_training("vi", ("vi",), run_dir, request)
    assert plan.state == "new" and "holds no weights" in plan.note

    (run_dir / "weights").mkdir()
    (run_dir / "weights" / "best.pt").write_bytes(b"weights")
    (run_dir / "done.json").write_text("{}")
    (run_dir / "request.json").write_text(json.dumps(request))
    assert plan_training("vi", ("vi",), run_dir, request).state == "reuse"
    other = training_request(train, {**data, "pairs": {"00000": "train|a", "00001": "train|B", "00003": "train|d"}})
    with pytest.raises(InputError, match=r"\(pairs differ; the pairs: 1 pair removed \(00002\); 1 pair added \(00003\); "
                                         r"1 pair modified \(00001\)\); use another --out"):
        plan_training("vi", ("vi",), run_dir, other)
    with pytest.raises(InputError, match=r"\(epochs, options differ\)"):
        plan_training("vi", ("vi",), run_dir, training_request(FinetuneSettings(start_weights=TINY_YAML, epochs=2, imgsz=64, batch=2), data))
    old = {k: request[k] for k in ("start", "epochs", "imgsz", "batch", "seed", "options")}  # before fingerprints
    (run_dir / "request.json").write_text(json.dumps({**old, "data_yaml_sha256": "0" * 64}))
    plan = plan_training("vi", ("vi",), run_dir, other)
    assert plan.state == "reuse" and "trained by an older fusedet" in plan.note
    (run_dir / "done.json").unlink()
    assert plan_training("vi", ("vi",), run_dir, other).state == "resume"  # weights, not finished
