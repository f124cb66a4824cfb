"""Helpers of the detection tests: tiny ultralytics checkpoints and a network that refuses.

`tiny_checkpoint`: a YOLOv8n-shaped model is built from ultralytics' bundled yaml (no download) and saved in the
checkpoint layout ultralytics loads. With `confident=True` the classification biases are zeroed so
every anchor scores about 0.5: the model then returns max_det boxes per image (random ones), which
exercises the whole evaluation path with non-empty detection files.
"""

from __future__ import annotations

import socket
from pathlib import Path

import torch

COCO80 = (
    "person bicycle car motorcycle airplane bus train truck boat traffic_light fire_hydrant stop_sign parking_meter bench "
    "bird cat dog horse sheep cow elephant bear zebra giraffe backpack umbrella handbag tie suitcase frisbee skis "
    "snowboard sports_ball kite baseball_bat baseball_glove skateboard surfboard tennis_racket bottle wine_glass cup fork "
    "knife spoon bowl banana apple sandwich orange broccoli carrot hot_dog pizza donut cake chair couch potted_plant bed "
    "dining_table toilet tv laptop mouse remote keyboard cell_phone microwave oven toaster sink refrigerator book clock "
    "vase scissors teddy_bear hair_drier toothbrush"
).split()
COCO80 = [n.replace("_", " ") for n in COCO80]


def tiny_checkpoint(path: Path, names: list[str], *, confident: bool = True, seed: int = 0, data: str | None = None) -> Path:
    """A tiny checkpoint at `path` with class `names`; `data` is kept as its ``train_args['data']``
    (the data yaml ultralytics records for a trained model)."""
    from fusedet.ultralytics_env import prepare

    prepare()
    from ultralytics.nn.tasks import DetectionModel

    torch.manual_seed(seed)
    model = DetectionModel("yolov8n.yaml", nc=len(names), verbose=False)
    model.names = dict(enumerate(names))
    if confident:
        for branch in model.model[-1].cv3:
            branch[-1].bias.data.zero_()
    train_args = {"imgsz": 64, **({"data": data} if data else {})}
    torch.save({"model": model.half(), "train_args": train_args, "epoch": -1}, path)
    return path


def refuse_network(monkeypatch) -> list:
    """Make every name lookup and connection fail; returns the list the attempts are recorded in."""
    attempts: list = []

    def refuse(*args, **kwargs):
        attempts.append(args[:2])
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", lambda self, *a, **k: refuse(*a))
    return attempts
