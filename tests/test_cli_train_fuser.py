"""`fusedet train-fuser` on real pairs (../shared/data): a few tiny steps, interrupted and resumed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from dmnet_tiny import TINY, one_torch_thread, tiny_cli_args  # noqa: F401 (autouse fixture)
from typer.testing import CliRunner

from dmnet.checkpoint import read_checkpoint, save_checkpoint
from dmnet.errors import DMNetError
from dmnet.train import TrainSettings, summary_data
from fusedet import fuser_training
from fusedet.cli import app
from fusedet.errors import InputError
from fusedet.events import NullEvents
from fusedet.settings import FuserModelSettings
from fusedet.train_data import CropDataset, find_training_data

runner = CliRunner()


def _text(res) -> str:
    return " ".join(res.output.split())


def _train(data, out, *extra):
    args = ["train-fuser", "--data", str(data), "--out", str(out), "--preset", "lite", "--stage1-epochs", "1",
            "--stage2-epochs", "2", "--crop", "32", "--batch", "4", "--lr", "1e-3", "--seed", "5", "--device", "cpu"]
    return runner.invoke(app, args + tiny_cli_args() + list(extra))


def test_train_interrupt_and_resume_through_the_cli(shared_data, tmp_path, monkeypatch):
    data = shared_data / "m3fd_samples"  # 11 pairs: 3 steps of 4 crops per epoch
    res = _train(data, tmp_path / "full")
    assert res.exit_code == 0, _text(res)
    text = _text(res)
    assert "11 pairs x 1 crop(s) of 32x32" in text and "3 steps per epoch" in text
    assert "epoch 1 stage I total" in text and "epoch 3 stage II total" in text and "-> epoch_003.pt" in text
    full = read_checkpoint(tmp_path / "full" / "last.pt")
    assert full.config.dim == TINY["dim"] and full.config.seed == 5 and full.training["epoch"] == 3
    fingerprint = find_training_data([data]).fingerprint()
    assert full.summary["data"] == {"dirs": [str(data.resolve())], "pairs": 11, "crop": 32, "crops_per_pair": 1,
                                    "fingerprint_items": 11, "fingerprint_sha256": summary_data({"fingerprint": fingerprint})["fingerprint_sha256"]}
    assert full.training["resume_key"]["data"]["fingerprint"] == fingerprint and len(fingerprint) == 11

    real_on_step = fuser_training._EventsCallback.on_step

    def ctrl_c_in_epoch_2(self, epoch, step, losses):
        real_on_step(self, epoch, step, losses)
        if (epoch, step) == (2, 2):
            raise KeyboardInterrupt

    monkeypatch.setattr(fuser_training._EventsCallback, "on_step", ctrl_c_in_epoch_2)
    res = _train(data, tmp_path / "cut")
    assert res.exit_code == 130 and "add --resume to continue" in _text(res)
    assert read_checkpoint(tmp_path / "cut" / "last.pt").training["epoch"] == 1
    monkeypatch.undo()

    res = _train(data, tmp_path / "cut")
    assert res.exit_code == 2 and "last.pt exists: pass --resume" in _text(res)
    res = _train(data, tmp_path / "cut", "--resume")
    assert res.exit_code == 0 and "epochs 2..3" in _text(res)
    cut = read_checkpoint(tmp_path / "cut" / "last.pt")
    assert all(torch.equal(full.state_dict[k], cut.state_dict[k]) for k in full.state_dict)

    res = _train(data, tmp_path / "cut", "--resume", "--seed", "6")
    assert res.exit_code == 2 and "cannot resume" in _text(res) and "seed" in _text(res)


def test_bad_data_folders_and_options(tmp_path):
    (tmp_path / "images").mkdir()
    res = _train(tmp_path, tmp_path / "o")
    assert res.exit_code == 2 and "expected one infrared subfolder" in _text(res) and "found: images" in _text(res)
    res = _train(tmp_path, tmp_path / "o", "--set", "gamma2")
    assert res.exit_code == 2 and "expected KEY=VALUE" in _text(res)
    (tmp_path / "Ir").mkdir(), (tmp_path / "Vis").mkdir()
    for sub in ("Ir", "Vis"):
        cv2.imwrite(str(tmp_path / sub / "p.png"), np.zeros((20, 30), np.uint8))
    res = _train(tmp_path, tmp_path / "o")
    assert res.exit_code == 2 and "p.png" in _text(res) and "smaller than the crop size 32" in _text(res)
    res = _train(tmp_path, tmp_path / "o", "--set", "colour=1")
    assert res.exit_code == 2 and "unknown DMNet config key(s): colour" in _text(res)


def test_crop_dataset_crops(tmp_path):
    for sub in ("ir", "vi", "labels"):
        (tmp_path / "ir" / sub).mkdir(parents=True)
    rng = np.random.default_rng(0)
    ir = rng.integers(0, 256, (40, 50), dtype=np.uint8)
    vis = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "ir" / "ir" / "a.png"), ir)
    cv2.imwrite(str(tmp_path / "ir" / "vi" / "a.png"), vis)
    ds = CropDataset([tmp_path / "ir"], crop=16, crops_per_pair=3, seed=1)
    assert (ds.pairs, len(ds)) == (1, 3)
    a, b = ds[2]
    assert a.shape == b.shape == (1, 16, 16) and a.dtype == torch.float32
    # the crop is a window of the IR image (up to float16 storage) at a position fixed by (seed, epoch, index)
    hits = [(y, x) for y in range(25) for x in range(35)
            if np.allclose(ir[y : y + 16, x : x + 16] / 255, a[0].numpy(), atol=1e-3)]
    assert len(hits) == 1
    assert torch.equal(ds[2][0], a)
    ds.set_epoch(1)
    assert not torch.equal(ds[2][0], a)
    with pytest.raises(InputError, match="crop must be >= 8"):
        CropDataset([tmp_path / "ir"], crop=4)


def test_torchrun_two_processes_train_with_ddp(shared_data, tmp_path):
    """Two CPU processes (gloo): DistributedDataParallel, a shared sampler, rank 0 writes the files."""
    torchrun = Path(sys.executable).with_name("torchrun")
    fusedet = Path(sys.executable).with_name("fusedet")
    cmd = [str(torchrun), "--nproc_per_node", "2", str(fusedet), "train-fuser", "--data", str(shared_data / "m3fd_samples"),
           "--out", str(tmp_path / "ddp"), "--stage1-epochs", "1", "--stage2-epochs", "1", "--crop", "32",
           "--batch", "2", "--device", "cpu", *tiny_cli_args()]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "(world size 2): 3 steps per epoch" in " ".join(proc.stdout.split())
    assert sorted(p.name for p in (tmp_path / "ddp").iterdir()) == ["epoch_001.pt", "epoch_002.pt", "last.pt"]
    last = read_checkpoint(tmp_path / "ddp" / "last.pt")
    assert last.summary["settings"]["world_size"] == 2
    # 11 crops, padded by DistributedSampler to 2 x 6, counted over both ranks
    assert [h["samples"] for h in last.summary["history"]] == [12, 12]


def _pair(folder: Path, stem: str, seed: int, size=(40, 40)) -> None:
    rng = np.random.default_rng(seed)
    for sub, shape in (("ir", size), ("vi", (*size, 3))):
        (folder / sub).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / sub / f"{stem}.png"), rng.integers(0, 256, shape, dtype=np.uint8))


def _small(data, out, *extra):
    args = ["train-fuser", "--data", str(data), "--out", str(out), "--stage1-epochs", "1", "--crop", "32", "--batch", "4",
            "--lr", "1e-3", "--seed", "0", "--device", "cpu", *tiny_cli_args()]
    return runner.invoke(app, args + list(extra))


class _Stages(NullEvents):
    def __init__(self) -> None:
        self.started: list[str] = []

    def start(self, stage: str, total: int | None = None) -> None:
        self.started.append(stage)


def test_resume_only_onto_the_same_pairs(tmp_path, monkeypatch):
    """Pairs replaced with the count unchanged, a pair's file rewritten, an older checkpoint without a
    fingerprint, a moved data folder; --allow-new-data and its record."""
    monkeypatch.chdir(tmp_path)  # relative --data and --out
    data = Path("data")
    for i in range(3):
        _pair(data, f"p{i}", i)
    res = _small("data", "out", "--stage2-epochs", "1")
    assert res.exit_code == 0, _text(res)
    assert "data: data (ir/ + vi/): all 3 pairs" in _text(res) and (tmp_path / "out" / "last.pt").is_file()

    (data / "ir" / "p1.png").unlink(), (data / "vi" / "p1.png").unlink()
    _pair(data, "p3", 3)
    res = _small("data", "out", "--stage2-epochs", "2", "--resume")
    assert res.exit_code == 2, _text(res)
    assert ("cannot resume: the data differ from the stored run's: 1 pair removed (data/p1); 1 pair added (data/p3)"
            in _text(res)) and "--allow-new-data" in _text(res)
    stages = _Stages()  # refused before any pair is decoded
    with pytest.raises(DMNetError, match="1 pair removed"):
        fuser_training.train_fuser([data], "out", model=FuserModelSettings(crop=32, overrides=TINY),
                                   train=TrainSettings(stage1_epochs=1, stage2_epochs=2, batch_size=4, lr=1e-3, device="cpu"),
                                   resume=True, events=stages)
    assert "reading pairs" not in stages.started

    res = _small("data", "out", "--stage2-epochs", "2", "--resume", "--allow-new-data")
    assert res.exit_code == 0, _text(res)
    assert "continuing on new data (allowed): 1 pair removed (data/p1); 1 pair added (data/p3)" in _text(res)
    last = read_checkpoint(tmp_path / "out" / "last.pt")
    assert last.training["epoch"] == 3
    assert last.summary["data_changes"] == [{"after_epoch": 2, "changes": "1 pair removed (data/p1); 1 pair added (data/p3)"}]

    _pair(data, "p0", 99)  # the same file rewritten with other pixels
    res = _small("data", "out", "--stage2-epochs", "3", "--resume")
    assert res.exit_code == 2 and "1 pair modified (data/p0)" in _text(res)

    moved = Path("elsewhere") / "data"  # a moved folder holds the same files: it resumes
    moved.parent.mkdir()
    data.rename(moved)
    res = _small(moved, "out", "--stage2-epochs", "3", "--resume", "--allow-new-data")
    assert res.exit_code == 0 and "epochs 4..4" in _text(res)
    res = _small(moved, "out", "--stage2-epochs", "4", "--resume")
    assert res.exit_code == 0 and "epochs 5..5" in _text(res), _text(res)

    # a checkpoint written before fingerprints existed still resumes, with a note
    ck = read_checkpoint(tmp_path / "out" / "last.pt")
    del ck.training["resume_key"]["data"]["fingerprint"]
    save_checkpoint(tmp_path / "out" / "last.pt", ck.build_model(), ck.summary, ck.training)
    res = _small(moved, "out", "--stage2-epochs", "5", "--resume")
    assert res.exit_code == 0 and "holds no data fingerprint" in _text(res) and "epochs 6..6" in _text(res)


def test_llvip_layout_trains_on_its_train_split(tmp_path):
    root = tmp_path / "LLVIP"
    for split, stems in (("train", ["010001", "010002", "010003"]), ("test", ["190001"])):
        for i, stem in enumerate(stems):
            rng = np.random.default_rng(i)
            for sub, shape in (("infrared", (40, 40)), ("visible", (40, 40, 3))):
                (root / sub / split).mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(root / sub / split / f"{stem}.jpg"), rng.integers(0, 256, shape, dtype=np.uint8))
    (root / "Annotations").mkdir()
    res = _small(root, tmp_path / "out", "--stage2-epochs", "0", "--data-split", "train")
    assert res.exit_code == 0, _text(res)
    text = _text(res)
    assert "infrared/test/ + visible/test/, infrared/train/ + visible/train/): 3 of 4 pairs (train split: folders" in text
    assert "3 pairs x 1 crop(s)" in text
    keys = read_checkpoint(tmp_path / "out" / "last.pt").training["resume_key"]["data"]
    assert keys["split"] == "train" and sorted(keys["fingerprint"]) == ["LLVIP/010001", "LLVIP/010002", "LLVIP/010003"]
    res = _small(root, tmp_path / "out2", "--data-split", "val")
    assert res.exit_code == 2 and "the val split of" in _text(res) and "has no pairs" in _text(res)
