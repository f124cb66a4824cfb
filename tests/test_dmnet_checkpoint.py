"""Checkpoint files: round trip, safe loading, and clear errors for corrupt or mismatched files."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from dmnet_tiny import one_torch_thread, tiny_model  # noqa: F401 (autouse fixture)

from dmnet.checkpoint import FORMAT_VERSION, load_model, read_checkpoint, save_checkpoint
from dmnet.errors import DMNetError

SUMMARY = {"data": {"dirs": ["/x/msrs"], "pairs": 271}, "final_losses": {"total": 0.25}, "epochs_done": 45}


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> tuple[Path, torch.nn.Module]:
    model = tiny_model(gamma2=7.5)
    path = save_checkpoint(tmp_path_factory.mktemp("ck") / "m.pt", model, SUMMARY)
    return path, model


def test_round_trip_gives_the_same_model_and_output(saved):
    path, model = saved
    ck = read_checkpoint(path)
    assert ck.config == model.config and ck.preset == "lite" and ck.config.gamma2 == 7.5
    assert ck.summary == SUMMARY and ck.training is None
    loaded = load_model(path)
    assert not loaded.training
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v)
    ir, vis = torch.rand(1, 1, 20, 28), torch.rand(1, 1, 20, 28)
    model.eval()
    with torch.no_grad():
        assert torch.equal(loaded(ir, vis), model(ir, vis))
    assert not list(path.parent.glob("*.tmp"))  # atomic write left no temp file


def test_file_loads_with_weights_only(saved):
    payload = torch.load(saved[0], weights_only=True)
    assert payload["format"] == "dmnet-checkpoint" and payload["format_version"] == FORMAT_VERSION
    assert payload["config"]["dim"] == 8 and payload["preset"] == "lite"


def test_truncated_and_garbage_files_fail_naming_the_file(saved, tmp_path):
    data = saved[0].read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(DMNetError, match=rf"{cut}: corrupt or truncated checkpoint file"):
        read_checkpoint(cut)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint at all" * 10)
    with pytest.raises(DMNetError, match=rf"{junk}: not a torch checkpoint file \(neither a zip archive nor a pickle\)"):
        read_checkpoint(junk)
    with pytest.raises(DMNetError, match="no such checkpoint file"):
        read_checkpoint(tmp_path / "missing.pt")


def test_other_torch_files_are_not_checkpoints(tmp_path):
    bare = tmp_path / "bare.pt"
    torch.save(tiny_model().state_dict(), bare)
    with pytest.raises(DMNetError, match=rf"{bare}: not a DMNet checkpoint \(it holds a bare state dict"):
        read_checkpoint(bare)
    listed = tmp_path / "list.pt"
    torch.save([1, 2, 3], listed)
    with pytest.raises(DMNetError, match="not a DMNet checkpoint \\(it holds a list"):
        read_checkpoint(listed)


def test_pickled_objects_are_refused(tmp_path):
    evil = tmp_path / "evil.pt"
    with open(evil, "wb") as handle:  # a plain pickle of an arbitrary class: weights_only refuses it
        pickle.dump({"format": "dmnet-checkpoint", "x": Path("/etc")}, handle, protocol=2)
    with pytest.raises(DMNetError, match=rf"{evil}: refused to load"):
        read_checkpoint(evil)


def _edit(src: Path, dst: Path, **changes) -> Path:
    payload = torch.load(src, weights_only=True)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(payload.get(key), dict):
            payload[key] = {**payload[key], **value}
        else:
            payload[key] = value
    torch.save(payload, dst)
    return dst


def test_weights_that_do_not_fit_the_configuration(saved, tmp_path):
    wider = _edit(saved[0], tmp_path / "wider.pt", config={"dim": 16, "heads": 2})
    with pytest.raises(DMNetError, match=rf"{wider}: the weights do not fit the stored configuration: .*of another shape"):
        load_model(wider)
    fewer = _edit(saved[0], tmp_path / "fewer.pt", config={"dtb_layers": 2})
    with pytest.raises(DMNetError, match=r"missing \(e\.g\. encoder"):
        load_model(fewer)
    sd = torch.load(saved[0], weights_only=True)["state_dict"]
    sd["extra.weight"] = torch.zeros(1)
    extra = _edit(saved[0], tmp_path / "extra.pt", state_dict=sd)
    with pytest.raises(DMNetError, match=r"1 unexpected \(e\.g\. extra\.weight\)"):
        load_model(extra)


def test_invalid_configuration_or_version(saved, tmp_path):
    bad = _edit(saved[0], tmp_path / "bad.pt", config={"colour": "red"})
    with pytest.raises(DMNetError, match=rf"{bad}: invalid model configuration: unknown DMNet config key\(s\): colour"):
        read_checkpoint(bad)
    newer = _edit(saved[0], tmp_path / "newer.pt", format_version=FORMAT_VERSION + 1)
    with pytest.raises(DMNetError, match="format version 2 is not supported"):
        read_checkpoint(newer)


def test_summary_must_hold_plain_values(tmp_path):
    with pytest.raises(DMNetError, match=r"checkpoint\.summary\.data: a PosixPath cannot be stored"):
        save_checkpoint(tmp_path / "x.pt", tiny_model(), {"data": Path("/x")})
    assert not list(tmp_path.iterdir())
