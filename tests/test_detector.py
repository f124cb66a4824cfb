"""The detector: class mapping (COCO -> M3FD / MSRS, fine-tuned names), weights resolution, inputs,
and that running it never touches the network."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from detection_helpers import COCO80, refuse_network, tiny_checkpoint

from fusedet.detector import Detector, is_coco, map_classes, resolve_weights, to_bgr_uint8
from fusedet.devices import resolve_device
from fusedet.errors import InputError

M3FD = ["People", "Car", "Bus", "Motorcycle", "Truck", "Lamp"]
MSRS = ["person", "bicycle", "car"]


@pytest.fixture(scope="module")
def coco_ckpt(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("w") / "coco_tiny.pt", COCO80)


@pytest.fixture()
def no_network(monkeypatch):
    return refuse_network(monkeypatch)


def test_coco_names_map_onto_m3fd_and_lamp_is_not_covered():
    names = dict(enumerate(COCO80))
    assert is_coco(names)
    m = map_classes(names, M3FD)
    assert m.coco
    assert m.model_to_dataset == {0: "People", 2: "Car", 3: "Motorcycle", 5: "Bus", 7: "Truck"}
    assert m.covered == ("People", "Car", "Bus", "Motorcycle", "Truck")
    assert m.not_covered == ("Lamp",)


def test_coco_names_map_onto_msrs_classes():
    m = map_classes(dict(enumerate(COCO80)), MSRS)
    assert m.model_to_dataset == {0: "person", 1: "bicycle", 2: "car"}
    assert m.not_covered == ()


def test_fine_tuned_names_are_matched_case_insensitively_without_coco_synonyms():
    names = {0: "people", 1: "CAR", 2: "lamp", 3: "person"}  # 'person' is not a synonym outside COCO weights
    assert not is_coco(names)
    m = map_classes(names, M3FD)
    assert m.model_to_dataset == {0: "People", 1: "Car", 2: "Lamp"}
    assert m.not_covered == ("Bus", "Motorcycle", "Truck")
    assert map_classes(dict(enumerate(M3FD)), M3FD).not_covered == ()


def test_detector_without_any_dataset_class_is_an_error():
    with pytest.raises(InputError, match="cover none"):
        map_classes({0: "dog", 1: "cat"}, M3FD)


def test_resolve_weights(tmp_path, monkeypatch, no_network):
    monkeypatch.setenv("FUSEDET_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError, match="not found"):
        resolve_weights(tmp_path / "missing.pt")
    with pytest.raises(InputError, match="not found"):
        resolve_weights("no/such/dir/best.pt")
    assert resolve_weights("yolov8n.yaml") == "yolov8n.yaml"
    # the default weights are an ultralytics asset: offline they cannot be fetched -> one clear error
    with pytest.raises(InputError, match="could not be downloaded"):
        resolve_weights("yolov5xu.pt")
    (tmp_path / "cache" / "weights").mkdir(parents=True, exist_ok=True)
    (tmp_path / "cache" / "weights" / "yolov5xu.pt").write_bytes(b"x")
    assert resolve_weights("yolov5xu.pt") == tmp_path / "cache" / "weights" / "yolov5xu.pt"


def test_not_a_checkpoint_is_an_input_error(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="bad.pt"):
        Detector(bad, "cpu")
    plain = tmp_path / "weights"  # no suffix: ultralytics loads it only when asked for the task or names
    plain.write_text("x")
    with pytest.raises(InputError, match=r"weights: not a loadable ultralytics detection model \(TypeError: .* not a supported model format\)$"):
        Detector(plain, "cpu")


def test_to_bgr_uint8():
    gray = np.array([[0.0, 0.5], [1.0, 0.25]], np.float32)
    out = to_bgr_uint8(gray)
    assert out.shape == (2, 2, 3) and out.dtype == np.uint8
    assert out[0, 1].tolist() == [128, 128, 128] and out[1, 0].tolist() == [255, 255, 255]
    rgb = np.zeros((2, 2, 3), np.uint8)
    rgb[..., 0] = 200  # red
    assert to_bgr_uint8(rgb)[0, 0].tolist() == [0, 0, 200]
    with pytest.raises(InputError):
        to_bgr_uint8(np.zeros((2, 2, 4)))


def test_detector_runs_offline_and_maps_classes(coco_ckpt, no_network):
    det = Detector(coco_ckpt, "cpu", max_det=50, batch=2)
    assert det.imgsz == 64  # the size stored in the checkpoint's training arguments
    assert det.settings()["weights_sha256"] and det.half is False
    rng = np.random.default_rng(0)
    images = [rng.uniform(size=(48, 80)).astype(np.float32), rng.integers(0, 255, (48, 80, 3), dtype=np.uint8), rng.uniform(size=(48, 80, 3))]
    raw = det.predict(images)
    assert len(raw) == 3
    for boxes, scores, _cls in raw:
        assert 0 < len(boxes) <= 50  # confident tiny model: boxes everywhere, capped by max_det
        assert (boxes[:, 0] >= 0).all() and (boxes[:, 2] <= 80 + 1e-3).all() and (boxes[:, 3] <= 48 + 1e-3).all()
        assert (scores >= 0.001).all()
    mapped = det.detect(images, M3FD)
    for (boxes, _, cls), d in zip(raw, mapped):
        keep = np.isin(cls, [0, 2, 3, 5, 7])
        assert len(d) == int(keep.sum())
        assert set(d.labels) <= {"People", "Car", "Bus", "Motorcycle", "Truck"}
        np.testing.assert_allclose(d.boxes, boxes[keep])
    assert no_network == []


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without a GPU")
def test_cuda_without_gpu_is_a_clear_error():
    with pytest.raises(InputError, match="CUDA"):
        resolve_device("cuda")
    assert str(resolve_device(None)) == "cpu" and str(resolve_device("auto")) == "cpu"


def test_prepare_in_a_fresh_settings_folder_is_quiet_offline_and_keeps_threads(tmp_path):
    """A first run: ultralytics creates its settings file in our folder without a notice, with the
    integrations off and the fonts installed locally; its device selection keeps torch's threads."""
    import json
    import os
    import subprocess
    import sys

    code = (
        "import torch; torch.set_num_threads(3)\n"
        "from fusedet import runtime\n"
        "from fusedet.ultralytics_env import prepare\n"
        "with runtime.session():\n"
        "    prepare()\n"
        "    from ultralytics.utils.torch_utils import select_device; select_device('cpu', verbose=False)\n"
        "    import ultralytics.utils as u, json\n"
        "    print(json.dumps({**u.SETTINGS, 'threads': torch.get_num_threads()}))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "YOLO_CONFIG_DIR"}
    env["FUSEDET_CACHE"] = str(tmp_path / "cache")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Settings" not in done.stdout + done.stderr
    settings = json.loads(done.stdout.strip().splitlines()[-1])
    assert settings["sync"] is False and settings["wandb"] is False
    assert settings["threads"] == 3  # ultralytics alone sets min(8, cores - 1)
    config = tmp_path / "cache" / "ultralytics" / "Ultralytics"
    assert (config / "settings.json").is_file() and (config / "Arial.ttf").is_file()
