"""What a detector was trained on (fusedet.detector_domain): the shipped weights' table, model yamls,
the checkpoint's train_args, COCO's class list; the one-line warning when the evaluated data does not
fit; and the warning in `fusedet evaluate`'s console and run.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from detection_helpers import COCO80, tiny_checkpoint
from typer.testing import CliRunner

from fusedet.cli import app
from fusedet.detector import DEMO_WEIGHTS, MSRS_WEIGHTS, Detector, resolve_weights
from fusedet.detector_domain import (
    FUSED,
    INFRARED,
    SHIPPED,
    VISIBLE,
    WEIGHTS_DIR,
    TrainingDomain,
    split_file_stems,
    training_domain,
)
from fusedet.errors import InputError
from fusedet.hashing import file_sha256

M3FD = ["People", "Car", "Bus", "Motorcycle", "Truck", "Lamp"]


def _export_yaml(cache: Path, dataset: str, sources: list[str], name: str = "shared") -> Path:
    """A data yaml laid out as fusedet.yolo_export writes it (folders need not exist)."""
    root = cache / "yolo" / f"{dataset}-0123456789ab"
    root.mkdir(parents=True)
    path = root / f"data-{name}.yaml"
    train = [str(root / f"{s}-89abcdef" / "images" / "train") for s in sources]
    path.write_text(yaml.safe_dump({"train": train, "val": train, "names": {0: "person"}}))
    return path


# --- the table of shipped weights ------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_table_matches_the_files_and_model_cards(name):
    shipped = SHIPPED[name]
    path = WEIGHTS_DIR / shipped.file
    if not path.is_file():
        pytest.skip(f"{path.name} is not built")
    assert file_sha256(path) == shipped.sha256, f"{shipped.file} changed: update SHIPPED[{name!r}].sha256 and its model card"
    card = (WEIGHTS_DIR / shipped.card).read_text()
    assert shipped.sha256 in card  # the card names the file it describes
    assert resolve_weights(name) == path


def test_shipped_demo_detector_is_named_on_real_data_and_not_on_the_demo():
    domain = training_domain(DEMO_WEIGHTS, SHIPPED["demo"].sha256, {"data": "/elsewhere/data-shared.yaml"}, False)
    assert domain.datasets == ("demo",) and "model card" in domain.basis  # the table wins over train_args
    line = domain.warning("msrs", ["ir"], ["00004N"])
    assert line is not None and "synthetic" in line and "not on msrs" in line and ";" not in line
    assert domain.warning("demo", ["ir"], ["00001"]) is None


def test_msrs_split_file_lists_train_and_val_stems_only(tmp_path):
    split = tmp_path / "split.txt"
    split.write_text("\ufeff# comment\nA train\nB val\nC test\nD  TRAIN # trailing\n\n")
    assert split_file_stems(split) == {"A", "B", "D"}
    assert split_file_stems(tmp_path / "missing.txt") == frozenset()
    shipped = WEIGHTS_DIR / SHIPPED["msrs"].split_file
    if shipped.is_file():
        lines = [line.split() for line in shipped.read_text().splitlines() if line and not line.startswith("#")]
        test = {s for s, split_name in lines if split_name == "test"}
        seen = split_file_stems(shipped)
        assert len(lines) == 271 and len(seen) == 217 and len(test) == 54 and not seen & test


def test_evaluated_pairs_the_weights_were_trained_on_are_counted():
    domain = TrainingDomain("MSRS", ("msrs",), (INFRARED, VISIBLE, FUSED), "table", frozenset({"00004N", "00008N"}))
    assert domain.warning("msrs", ["ir"], ["00012N", "00020N"]) is None  # held-out pairs only
    line = domain.warning("msrs", ["ir"], ["00004N", "00008N", "00012N"])
    assert line == "2 of the 3 evaluated pairs were among its training or validation pairs: evaluate on its held-out pairs"
    # on another dataset the stems mean nothing; the dataset itself is the problem
    line = domain.warning("m3fd", [], ["00004N"])
    assert line.startswith("it was trained on MSRS, not on m3fd") and "evaluated pairs" not in line


# --- what a checkpoint says ------------------------------------------------------------------------


def test_model_yaml_is_random_weights_everywhere():
    domain = training_domain("yolov8n.yaml", None, {}, False)
    assert domain.random
    assert domain.warning("m3fd") == "it was trained on nothing (random weights built from yolov8n.yaml): its AP is no result"


def test_fusedet_export_yaml_names_dataset_and_sources(tmp_path):
    data = _export_yaml(tmp_path, "msrs", ["ir", "vi", "dmnet"])
    domain = training_domain(tmp_path / "best.pt", "f" * 64, {"data": str(data)}, False)
    assert domain.datasets == ("msrs",) and domain.modalities == (FUSED, INFRARED, VISIBLE)
    assert domain.trained_on == "msrs (ir, vi, dmnet images, fusedet finetune)"
    assert domain.warning("msrs", ["ir"], ["x"]) is None
    assert "not on m3fd" in domain.warning("m3fd", ["ir"], ["x"])

    visible_only = training_domain(tmp_path / "vi.pt", "e" * 64, {"data": str(_export_yaml(tmp_path / "b", "msrs", ["vi"], "vi"))}, False)
    assert visible_only.modalities == (VISIBLE,)
    assert "without infrared images: row ir measures cross-modality transfer" in visible_only.warning("msrs", ["ir"], ["x"])
    assert visible_only.warning("msrs", [], ["x"]) is None

    data.unlink()  # the yaml gone (another machine): the dataset is still known from the path, the sources not
    gone = training_domain(tmp_path / "best.pt", "f" * 64, {"data": str(data)}, False)
    assert gone.datasets == ("msrs",) and gone.modalities == () and gone.warning("msrs", ["ir"]) is None


def test_coco_weights_are_visible_pretraining_named_on_thermal_rows():
    for args, names in (({"data": "coco.yaml"}, False), ({"data": "/x/coco128.yaml"}, False), ({}, True)):
        domain = training_domain(Path("yolov5xu.pt"), "a" * 64, args, names)
        assert domain.datasets == ("coco",) and domain.modalities == (VISIBLE,), args
        assert domain.warning("m3fd", [], ["1"]) is None  # COCO on real visible images: the usual baseline
        line = domain.warning("m3fd", ["ir"], ["1"])
        assert line.startswith("it was trained on COCO") and "row ir measures cross-modality transfer" in line
        assert "rows ir, ir2 measure" in domain.warning("flir", ["ir", "ir2"], ["1"])


def test_known_and_unknown_data_yamls():
    m3fd = training_domain(Path("w.pt"), "b" * 64, {"data": "/data/M3FD_det.yaml"}, False)
    assert m3fd.datasets == ("m3fd",) and m3fd.modalities == ()
    assert "not on llvip" in m3fd.warning("llvip") and m3fd.warning("m3fd") is None
    unknown = training_domain(Path("w.pt"), "b" * 64, {"data": "/data/mine.yaml"}, False)
    assert unknown.datasets == () and "/data/mine.yaml" in unknown.trained_on and unknown.warning("msrs", ["ir"]) is None
    nothing = training_domain(Path("w.pt"), "b" * 64, {}, False)
    assert nothing.trained_on.startswith("unknown") and nothing.warning("msrs", ["ir"]) is None
    assert nothing.to_dict() == {"trained_on": nothing.trained_on, "datasets": [], "modalities": [], "basis": "unknown",
                                 "seen_pairs": 0, "random_weights": False}


def test_detector_reads_its_checkpoints_train_args(tmp_path):
    data = _export_yaml(tmp_path, "m3fd", ["vi"], "vi")
    ckpt = tiny_checkpoint(tmp_path / "m3fd_vi.pt", M3FD, data=str(data))
    detector = Detector(ckpt, device="cpu")
    assert detector.domain.datasets == ("m3fd",) and detector.domain.modalities == (VISIBLE,)
    assert "not on msrs" in detector.domain_warning("msrs")
    assert "row ir measures" in detector.domain_warning("m3fd", ["ir"])
    coco = Detector(tiny_checkpoint(tmp_path / "coco.pt", COCO80), device="cpu")
    assert coco.domain.basis == "COCO class list"


def test_msrs_weights_name_resolves_or_says_it_is_missing():
    if MSRS_WEIGHTS.is_file():
        assert resolve_weights("msrs") == MSRS_WEIGHTS
    else:
        with pytest.raises(InputError, match="msrs detector is not installed"):
            resolve_weights("msrs")


# --- the evaluate command --------------------------------------------------------------------------


def test_evaluate_names_the_demo_detector_on_real_pairs(tmp_path, shared_data, monkeypatch):
    if not DEMO_WEIGHTS.is_file():
        pytest.skip("the shipped demo detector is not built")
    monkeypatch.setenv("FUSEDET_CACHE", str(tmp_path / "cache"))
    split = tmp_path / "split.txt"
    split.write_text("00004N test\n00055D test\n")
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["evaluate", "--dataset", "msrs", "--root", str(shared_data / "msrs"), "--split-file", str(split),
                                      "--sources", "ir,vi", "--weights", "demo", "--device", "cpu", "--out", str(out)])
    assert result.exit_code == 0, result.output
    text = result.output.replace("\n", "")
    assert text.count("warning: detector demo_yolo.pt: it was trained on fusedet's synthetic demo scenes") == 1
    run = json.loads((out / "run.json").read_text())
    assert run["detector"]["trained_on"]["datasets"] == ["demo"]
    assert "not on msrs" in run["detector"]["domain_warning"]
