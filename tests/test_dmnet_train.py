"""Two-stage trainer: stage switching, a checkpoint per epoch, NaN stop, exact kill-and-resume."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from dmnet_tiny import one_torch_thread, tiny_model  # noqa: F401 (autouse fixture)
from torch.utils.data import Dataset

from dmnet.checkpoint import read_checkpoint
from dmnet.errors import DMNetError
from dmnet.train import NonFiniteLossError, TrainCallback, TrainSettings, epoch_seed, stage_of, train


class _Crops(Dataset):
    """Six smooth random 48x48 (IR, VIS) images; 32x32 crops whose position depends on (epoch, index)."""

    def __init__(self) -> None:
        rng = np.random.default_rng(7)
        base = rng.random((6, 2, 12, 12)).astype(np.float32)
        self.images = torch.nn.functional.interpolate(torch.from_numpy(base), size=(48, 48), mode="bilinear")
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        rng = np.random.default_rng([self.epoch, i])
        y, x = rng.integers(0, 17, size=2)
        patch = self.images[i, :, y : y + 32, x : x + 32]
        return patch[:1].clone(), patch[1:].clone()


class _Recorder(TrainCallback):
    def __init__(self, stop_at: tuple[int, int] | None = None) -> None:
        self.stages: dict[int, int] = {}
        self.steps: list[tuple[int, int, dict]] = []
        self.stop_at = stop_at

    def on_epoch_start(self, epoch: int, stage: int, steps: int) -> None:
        self.stages[epoch] = stage

    def on_step(self, epoch: int, step: int, losses: dict[str, float]) -> None:
        self.steps.append((epoch, step, losses))
        if (epoch, step) == self.stop_at:
            raise KeyboardInterrupt  # what Ctrl-C does in the middle of an epoch


SETTINGS = TrainSettings(stage1_epochs=1, stage2_epochs=2, batch_size=3, lr=1e-3, seed=3, device="cpu")


def _weights(path) -> dict[str, torch.Tensor]:
    return read_checkpoint(path).state_dict


def test_stages_checkpoints_and_summary(tmp_path):
    rec = _Recorder()
    model = tiny_model()
    start = {k: v.clone() for k, v in model.state_dict().items()}
    result = train(model, _Crops(), tmp_path, SETTINGS, data_info={"dirs": ["synthetic"], "pairs": 6}, callback=rec)

    assert rec.stages == {1: 1, 2: 2, 3: 2}
    assert result.epochs_done == 3 and [r["stage"] for r in result.history] == [1, 2, 2]
    assert len(rec.steps) == 3 * 2  # 6 crops / batch 3 = 2 steps per epoch
    assert {"total", "au", "rec_ir", "rec_vi", "dm"} <= set(rec.steps[0][2])
    assert {"total", "int", "gd", "dm"} <= set(rec.steps[-1][2])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch_001.pt", "epoch_002.pt", "epoch_003.pt", "last.pt"]

    # every epoch changed the weights; last.pt holds the final ones and the optimizer state
    w = [_weights(tmp_path / f"epoch_{e:03d}.pt") for e in (1, 2, 3)]
    for before, after in zip([start, w[0], w[1]], w):
        assert any(not torch.equal(before[k], after[k]) for k in after)
    last = read_checkpoint(tmp_path / "last.pt")
    assert all(torch.equal(last.state_dict[k], w[2][k]) for k in w[2])
    assert last.training["epoch"] == 3 and last.training["stage"] == 2 and last.training["optimizer"]["state"]
    assert read_checkpoint(tmp_path / "epoch_003.pt").training is None  # per-epoch files are weights only

    s = last.summary
    assert s["data"] == {"dirs": ["synthetic"], "pairs": 6}
    assert (s["epochs_done"], s["stage1_epochs"], s["stage2_epochs"]) == (3, 1, 2)
    assert s["final_losses"] == result.history[-1]["losses"]
    mean_total = np.average([st[2]["total"] for st in rec.steps[-2:]], weights=[3, 3])
    assert s["final_losses"]["total"] == pytest.approx(mean_total, rel=1e-9)
    assert s["versions"]["torch"] == str(torch.__version__) and s["versions"]["fusedet"]
    assert last.config == model.config


def test_without_two_stage_training_every_epoch_is_stage_two(tmp_path):
    rec = _Recorder()
    settings = TrainSettings(stage1_epochs=1, stage2_epochs=1, batch_size=6, seed=0, device="cpu")
    train(tiny_model(two_stage=False), _Crops(), tmp_path, settings, callback=rec)
    assert rec.stages == {1: 2, 2: 2}
    assert stage_of(1, settings, True) == 1 and stage_of(2, settings, True) == 2


def test_killed_and_resumed_equals_uninterrupted(tmp_path):
    full = train(tiny_model(), _Crops(), tmp_path / "full", SETTINGS)

    with pytest.raises(KeyboardInterrupt):
        train(tiny_model(), _Crops(), tmp_path / "cut", SETTINGS, callback=_Recorder(stop_at=(2, 2)))
    assert read_checkpoint(tmp_path / "cut" / "last.pt").training["epoch"] == 1
    # a fresh process would build a fresh model: different initial weights must not matter
    resumed = train(tiny_model(dim=8), _Crops(), tmp_path / "cut", SETTINGS, resume=True)

    assert resumed.resumed_from == 1 and resumed.epochs_done == 3
    a, b = _weights(tmp_path / "full" / "last.pt"), _weights(tmp_path / "cut" / "last.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)  # bit for bit on CPU
    assert [r["losses"] for r in full.history] == [r["losses"] for r in resumed.history]


def test_resume_checks_settings_and_refuses_overwrite(tmp_path):
    one = TrainSettings(stage1_epochs=1, stage2_epochs=0, batch_size=6, seed=0, device="cpu")
    train(tiny_model(), _Crops(), tmp_path, one, data_info={"pairs": 6})
    with pytest.raises(DMNetError, match="last.pt exists: pass --resume"):
        train(tiny_model(), _Crops(), tmp_path, one, data_info={"pairs": 6})
    with pytest.raises(DMNetError, match=r"differs from the stored one in data \(pairs\), seed"):
        other = TrainSettings(stage1_epochs=1, stage2_epochs=0, batch_size=6, seed=1, device="cpu")
        train(tiny_model(), _Crops(), tmp_path, other, data_info={"pairs": 7}, resume=True)
    with pytest.raises(DMNetError, match="differs from the stored one in config"):
        train(tiny_model(gamma2=3.0), _Crops(), tmp_path, one, data_info={"pairs": 6}, resume=True)
    # a finished run resumed is a no-op; raising stage2_epochs trains on
    again = train(tiny_model(), _Crops(), tmp_path, one, data_info={"pairs": 6}, resume=True)
    assert (again.resumed_from, again.epochs_done) == (1, 1)
    more = TrainSettings(stage1_epochs=1, stage2_epochs=1, batch_size=6, seed=0, device="cpu")
    longer = train(tiny_model(), _Crops(), tmp_path, more, data_info={"pairs": 6}, resume=True)
    assert (longer.resumed_from, longer.epochs_done) == (1, 2)
    assert longer.history[-1]["stage"] == 2
    # extending a finished run equals training for the longer schedule at once (nothing depends on the total)
    direct = train(tiny_model(), _Crops(), tmp_path / "direct", more, data_info={"pairs": 6})
    a, b = _weights(tmp_path / "last.pt"), _weights(tmp_path / "direct" / "last.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [r["losses"] for r in direct.history] == [r["losses"] for r in longer.history]


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    model = tiny_model()
    real = model.stage2_losses

    def poisoned(ir, vis_y, generator=None):
        losses = real(ir, vis_y, generator)
        losses["int"] = losses["int"] * float("nan")
        losses["total"] = losses["total"] + losses["int"]
        return losses

    model.stage2_losses = poisoned  # stage I (epoch 1) is fine, stage II's first step is NaN
    with pytest.raises(NonFiniteLossError) as err:
        train(model, _Crops(), tmp_path, SETTINGS)
    msg = str(err.value)
    assert "non-finite loss at epoch 2 (stage II), step 1" in msg and "int=nan" in msg
    assert f"{tmp_path / 'last.pt'} (epoch 1), is kept" in msg
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch_001.pt", "last.pt"]
    last = read_checkpoint(tmp_path / "last.pt")
    assert last.training["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in last.state_dict.values() if v.is_floating_point())


def test_settings_are_validated():
    with pytest.raises(DMNetError, match="batch size must be >= 1"):
        TrainSettings(batch_size=0)
    with pytest.raises(DMNetError, match="learning rate"):
        TrainSettings(lr=float("nan"))
    with pytest.raises(DMNetError, match="not both 0"):
        TrainSettings(stage1_epochs=0, stage2_epochs=0)


def test_epoch_seed_depends_on_seed_epoch_and_rank():
    seeds = {epoch_seed(s, e, r) for s in (0, 1) for e in (1, 2) for r in (0, 1)}
    assert len(seeds) == 8 and all(0 <= s < 2**63 for s in seeds)
    assert epoch_seed(5, 3) == epoch_seed(5, 3, 0)


def test_learning_rate_step_is_resume_exact(tmp_path):
    """lr x lr_decay from lr_decay_epoch on: recorded per epoch, applied to Adam, addable on resume."""
    stepped = TrainSettings(stage1_epochs=1, stage2_epochs=2, batch_size=3, lr=1e-3, seed=3, device="cpu",
                            lr_decay_epoch=3, lr_decay=0.5)
    assert [stepped.lr_at(e) for e in (1, 2, 3, 4)] == [1e-3, 1e-3, 5e-4, 5e-4] and SETTINGS.lr_at(9) == 1e-3
    direct = train(tiny_model(), _Crops(), tmp_path / "direct", stepped)
    assert [r["lr"] for r in direct.history] == [1e-3, 1e-3, 5e-4]
    last = read_checkpoint(tmp_path / "direct" / "last.pt")
    assert last.training["optimizer"]["param_groups"][0]["lr"] == 5e-4
    assert (last.summary["settings"]["lr_decay_epoch"], last.summary["settings"]["lr_decay"]) == (3, 0.5)
    # the step changes the weights of epoch 3 (and only from epoch 3 on)
    train(tiny_model(), _Crops(), tmp_path / "constant", SETTINGS)
    a, b = _weights(tmp_path / "direct" / "epoch_002.pt"), _weights(tmp_path / "constant" / "epoch_002.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    a, b = _weights(tmp_path / "direct" / "last.pt"), _weights(tmp_path / "constant" / "last.pt")
    assert any(not torch.equal(a[k], b[k]) for k in a)
    # a constant-rate run stopped after epoch 2, resumed with the step at epoch 3: the direct run, bit for bit
    two = TrainSettings(stage1_epochs=1, stage2_epochs=1, batch_size=3, lr=1e-3, seed=3, device="cpu")
    train(tiny_model(), _Crops(), tmp_path / "later", two)
    resumed = train(tiny_model(), _Crops(), tmp_path / "later", stepped, resume=True)
    a, b = _weights(tmp_path / "direct" / "last.pt"), _weights(tmp_path / "later" / "last.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [r["lr"] for r in resumed.history] == [1e-3, 1e-3, 5e-4]
    # a step that would change an epoch already done is refused (epoch 3 ran at 5e-4 either way)
    early = TrainSettings(stage1_epochs=1, stage2_epochs=3, batch_size=3, lr=1e-3, seed=3, device="cpu",
                          lr_decay_epoch=2, lr_decay=0.5)
    with pytest.raises(DMNetError, match=r"change the rate of epochs already done \(2\); put --lr-decay-epoch after epoch 3"):
        train(tiny_model(), _Crops(), tmp_path / "direct", early, resume=True)
    with pytest.raises(DMNetError, match="lr_decay_epoch must be >= 0"):
        TrainSettings(lr_decay=0.0)
