"""`fusedet fuse`: colour and gray outputs, deterministic bytes, batching, resume, and input errors."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from dmnet_tiny import one_torch_thread, tiny_model  # noqa: F401 (autouse fixture)
from typer.testing import CliRunner

import fusedet
from dmnet.checkpoint import save_checkpoint
from fusedet.cli import app
from fusedet.datasets import read_image, read_pair, rgb_to_ycbcr, to_uint8
from fusedet.dmnet_fuser import DMNetFuser, default_weights
from fusedet.fusers import fuse_arrays, get_fuser

runner = CliRunner()


def _smooth(shape, seed):
    rng = np.random.default_rng(seed)
    small = rng.random((shape[0] // 4, shape[1] // 4) + shape[2:]).astype(np.float32)
    return to_uint8(cv2.resize(small, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC).clip(0, 1))


@pytest.fixture()
def pairs(tmp_path):
    """a: colour VIS; b: gray (one-channel) VIS; c: colour VIS of another size; d: colour, same size as a."""
    ir, vis = tmp_path / "ir", tmp_path / "vis"
    ir.mkdir(), vis.mkdir()
    for i, (stem, shape, colour) in enumerate([("a", (36, 44), True), ("b", (36, 44), False),
                                              ("c", (30, 40), True), ("d", (36, 44), True)]):
        cv2.imwrite(str(ir / f"{stem}.png"), _smooth(shape, i))
        cv2.imwrite(str(vis / f"{stem}.png"), _smooth(shape + ((3,) if colour else ()), 10 + i))
    return ir, vis


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return save_checkpoint(tmp_path_factory.mktemp("w") / "tiny.pt", tiny_model(), {"note": "untrained"})


def _fuse(ir, vis, out, *extra):
    return runner.invoke(app, ["fuse", "--ir", str(ir), "--vis", str(vis), "--out", str(out), "--device", "cpu", *extra])


def _text(res) -> str:
    """The command's output with rich's line wrapping undone."""
    return " ".join(res.output.split())


def test_colour_and_gray_outputs_hold_the_fused_luma(pairs, weights, tmp_path):
    ir, vis = pairs
    res = _fuse(ir, vis, tmp_path / "out", "--weights", str(weights))
    assert res.exit_code == 0, _text(res)
    assert "fused 4 pairs" in _text(res)
    fuser = DMNetFuser(weights)
    for stem in "abcd":
        pair = read_pair(ir / f"{stem}.png", vis / f"{stem}.png")
        with torch.no_grad():
            fused_y = fuser.fuse(torch.from_numpy(pair.ir)[None, None], torch.from_numpy(pair.vis_y)[None, None])
        expected_y = to_uint8(fused_y[0, 0].numpy()).astype(int)
        out = cv2.imread(str(tmp_path / "out" / f"{stem}.png"), cv2.IMREAD_UNCHANGED)
        assert out.shape[:2] == pair.ir.shape
        if stem == "b":  # gray visible image -> one-channel PNG of the fused luma
            assert out.ndim == 2
            assert np.abs(out.astype(int) - expected_y).max() <= 1
        else:  # colour: fused luma with the visible chroma
            assert out.ndim == 3
            ycc = rgb_to_ycbcr(out[:, :, ::-1].astype(np.float32) / 255)
            assert np.median(np.abs(ycc[..., 0] * 255 - expected_y)) <= 1.0
            chroma_err = np.abs(ycc[..., 1:] - rgb_to_ycbcr(pair.vis)[..., 1:]) * 255
            assert np.median(chroma_err) <= 1.0


def test_same_input_same_bytes_whatever_the_batch(pairs, weights, tmp_path):
    ir, vis = pairs
    assert _fuse(ir, vis, tmp_path / "one", "--weights", str(weights)).exit_code == 0
    assert _fuse(ir, vis, tmp_path / "again", "--weights", str(weights)).exit_code == 0
    assert _fuse(ir, vis, tmp_path / "batched", "--weights", str(weights), "--batch", "3").exit_code == 0
    for stem in "abcd":
        ref = (tmp_path / "one" / f"{stem}.png").read_bytes()
        assert (tmp_path / "again" / f"{stem}.png").read_bytes() == ref
        assert (tmp_path / "batched" / f"{stem}.png").read_bytes() == ref


def test_existing_outputs_are_skipped_unless_forced(pairs, weights, tmp_path):
    ir, vis = pairs
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.png").write_bytes(b"placeholder")  # pretend 'a' was fused by an interrupted run
    res = _fuse(ir, vis, out, "--weights", str(weights))
    assert res.exit_code == 0 and "fused 3 pairs" in _text(res) and "1 already there" in _text(res)
    assert (out / "a.png").read_bytes() == b"placeholder"
    res = _fuse(ir, vis, out, "--weights", str(weights))
    assert res.exit_code == 0 and "all 4 pairs already fused" in _text(res)
    res = _fuse(ir, vis, out, "--weights", str(weights), "--force")
    assert res.exit_code == 0 and "fused 4 pairs" in _text(res)
    assert cv2.imread(str(out / "a.png")) is not None


def test_rerun_with_another_fuser_or_range_is_refused_not_mixed(pairs, tmp_path):
    ir, vis = pairs
    out = tmp_path / "out"
    assert _fuse(ir, vis, out, "--fuser", "max").exit_code == 0
    first = (out / "a.png").read_bytes()
    for extra in (("--fuser", "mean"), ("--fuser", "max", "--ir-range", "minmax")):
        res = _fuse(ir, vis, out, *extra)
        assert res.exit_code == 2 and "fused with other settings" in _text(res) and "--force" in _text(res), _text(res)
        assert (out / "a.png").read_bytes() == first  # nothing mixed in
    res = _fuse(ir, vis, out, "--fuser", "max")
    assert res.exit_code == 0 and "all 4 pairs already fused" in _text(res)
    res = _fuse(ir, vis, out, "--fuser", "mean", "--force")
    assert res.exit_code == 0 and "fused 4 pairs" in _text(res) and (out / "a.png").read_bytes() != first
    assert _fuse(ir, vis, out, "--fuser", "mean").exit_code == 0  # the record now says mean


def test_outputs_that_cannot_be_written_and_too_small_images_fail_before_any_work(pairs, tmp_path):
    ir, vis = pairs
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    res = _fuse(ir, vis, blocker / "sub", "--fuser", "max")
    assert res.exit_code == 2 and "is a file, so no folder can be made under it" in _text(res)
    cv2.imwrite(str(ir / "tiny.png"), np.zeros((1, 5), np.uint8))
    cv2.imwrite(str(vis / "tiny.png"), np.zeros((1, 5), np.uint8))
    res = _fuse(ir, vis, tmp_path / "o")
    assert res.exit_code == 2 and "tiny.png: 5x1 is too small for the dmnet fuser" in _text(res)
    assert not (tmp_path / "o").exists()


def test_a_file_that_cannot_be_written_midway_ends_in_one_line_keeping_the_others(pairs, weights, tmp_path):
    ir, vis = pairs
    out = tmp_path / "out"
    (out / "b.png").mkdir(parents=True)  # a folder where the second pair's PNG goes
    res = _fuse(ir, vis, out, "--weights", str(weights))
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert f"error: {out / 'b.png'}: could not be written (a folder of that name is in the way)" in _text(res)
    assert sorted(p.name for p in out.iterdir()) == [".fusedet_fuse.json", "a.png", "b.png"]  # no temporary files
    assert read_image(out / "a.png").shape == (36, 44, 3)  # the file written before is whole
    (out / "b.png").rmdir()
    res = _fuse(ir, vis, out, "--weights", str(weights))  # the rerun resumes
    assert res.exit_code == 0 and "fused 3 pairs" in _text(res), _text(res)


def test_other_fusers(pairs, tmp_path):
    ir, vis = pairs
    assert _fuse(ir, vis, tmp_path / "max", "--fuser", "max").exit_code == 0
    pair = read_pair(ir / "b.png", vis / "b.png")
    out = cv2.imread(str(tmp_path / "max" / "b.png"), cv2.IMREAD_UNCHANGED).astype(int)
    assert np.abs(out - to_uint8(np.maximum(pair.ir, pair.vis_y)).astype(int)).max() <= 1


def test_bad_inputs_exit_2_naming_files(pairs, weights, tmp_path):
    ir, vis = pairs
    (ir / "lonely.png").write_bytes((ir / "a.png").read_bytes())
    res = _fuse(ir, vis, tmp_path / "o")
    assert res.exit_code == 2 and "no visible partner" in _text(res) and "lonely.png" in _text(res)
    (ir / "lonely.png").unlink()

    cv2.imwrite(str(vis / "c.png"), _smooth((36, 44, 3), 3))  # now 44x36 against the 40x30 IR
    res = _fuse(ir, vis, tmp_path / "o")
    assert res.exit_code == 2 and "different sizes" in _text(res) and "c.png" in _text(res)
    assert not (tmp_path / "o").exists()  # checked before any work

    cv2.imwrite(str(vis / "c.png"), _smooth((30, 40, 3), 3))
    broken = tmp_path / "broken.pt"
    broken.write_bytes(weights.read_bytes()[:1000])
    res = _fuse(ir, vis, tmp_path / "o", "--weights", str(broken))
    assert res.exit_code == 2 and "broken.pt: corrupt or truncated checkpoint" in _text(res)
    res = _fuse(ir, vis, ir, "--fuser", "mean")
    assert res.exit_code == 2 and "is an input folder" in _text(res)
    res = _fuse(ir, vis, tmp_path / "o", "--fuser", "nope")
    assert res.exit_code == 2 and "unknown fuser 'nope'" in _text(res)


def test_dmnet_fuser_spec_and_cache_key(weights, monkeypatch):
    from fusedet import dmnet_fuser

    monkeypatch.setattr(dmnet_fuser, "cpu_has_amx", lambda: False)
    fuser = get_fuser(f"dmnet:{weights}")
    assert isinstance(fuser, DMNetFuser) and fuser.summary == {"note": "untrained"}
    assert fuser.cache_key() == f"dmnet-{fuser.sha256[:16]}-fp32-v{fusedet.__version__}"
    assert DMNetFuser(weights, precision="bf16").cache_key().endswith(f"-bf16-v{fusedet.__version__}")
    from dmnet import compiled  # the compiled CPU routes switched off: their fusions never share a cache entry

    with monkeypatch.context() as patch:
        patch.setattr(compiled, "AVAILABLE", False)
        assert fuser.cache_key() == f"dmnet-{fuser.sha256[:16]}-fp32-eager-v{fusedet.__version__}"
    ir, vis = torch.rand(2, 1, 20, 24), torch.rand(2, 1, 20, 24)
    out = fuser.fuse(ir, vis)
    assert out.shape == (2, 1, 20, 24) and out.dtype == torch.float32 and 0 <= out.min() and out.max() <= 1
    torch.testing.assert_close(fuser.fuse(ir[1:], vis[1:]), out[1:], rtol=0, atol=1e-5)  # whatever the batch


def test_shipped_weights_are_the_default():
    path = default_weights()
    assert path.is_file() and path.stat().st_size < 8 * 2**20
    fuser = get_fuser("dmnet")
    assert fuser.weights == path and fuser.checkpoint.preset == "lite"
    assert fuser.summary["epochs_done"] == fuser.summary["stage1_epochs"] + fuser.summary["stage2_epochs"]
    assert "tno" not in " ".join(fuser.summary["data"]["dirs"]).lower()  # TNO is our test set


def test_shipped_weights_fuse_a_real_pair_better_than_the_pixel_mean(shared_data):
    """TNO pair 07 (256x256, never trained on): the shipped DMNet keeps more contrast and detail than (IR+VIS)/2."""
    from fusedet.eval.fusion_metrics import compute_metrics

    pair = read_pair(shared_data / "tno" / "ir" / "07.png", shared_data / "tno" / "vi" / "07.png")
    ir, vis = pair.ir * 255, pair.vis_y * 255
    fused = get_fuser("dmnet").fuse(torch.from_numpy(pair.ir)[None, None], torch.from_numpy(pair.vis_y)[None, None])
    dmnet = compute_metrics(ir, vis, np.rint(fused[0, 0].numpy() * 255), metrics="EN,SF,SD,CC")
    mean = compute_metrics(ir, vis, np.rint((ir + vis) / 2), metrics="EN,SF,SD,CC")
    assert dmnet["EN"] > mean["EN"] + 0.3, (dmnet, mean)  # 7.09 against 6.23 bits
    assert dmnet["SF"] > mean["SF"] * 1.3 and dmnet["SD"] > mean["SD"] * 1.3, (dmnet, mean)  # 33.1 vs 15.5, 53.9 vs 31.3
    assert dmnet["CC"] > 0.75  # 0.86: it still looks like both sources (the mean: 0.88)


def test_precision_auto_is_mixed_on_a_cpu_with_amx_and_named_in_the_cache_key(weights, monkeypatch):
    from fusedet import dmnet_fuser

    monkeypatch.setattr(dmnet_fuser, "ONEDNN_BF16", True)  # as on this project's machine, whatever the CPU running the test
    for amx, expected in ((True, "mixed"), (False, "fp32")):
        monkeypatch.setattr(dmnet_fuser, "cpu_has_amx", lambda amx=amx: amx)
        fuser = DMNetFuser(weights)
        assert fuser.precision == expected and fuser.provenance()["precision"] == expected
        assert fuser.cache_key().endswith(f"-{expected}-v{fusedet.__version__}")
        unet = next(fuser.model.dm.unet.parameters()).dtype
        assert unet == (torch.bfloat16 if expected == "mixed" else torch.float32)
    fuser = DMNetFuser(weights, precision="mixed").to("cpu")
    assert next(fuser.model.dm.unet.parameters()).dtype == torch.bfloat16
    plain = DMNetFuser(weights, precision="fp32")
    assert next(plain.model.dm.unet.parameters()).dtype == torch.float32
    monkeypatch.setattr(dmnet_fuser, "cpu_has_amx", lambda: True)
    assert dmnet_fuser.resolve_precision("auto", torch.device("cuda")) == "fp32"  # CUDA keeps float32
    monkeypatch.setattr(dmnet_fuser, "ONEDNN_BF16", False)  # AMX, but oneDNN may not use it (ONEDNN_MAX_CPU_ISA)
    assert dmnet_fuser.resolve_precision("auto", torch.device("cpu")) == "fp32"


def test_precision_option_errors(pairs, weights, tmp_path):
    ir, vis = pairs
    res = _fuse(ir, vis, tmp_path / "o", "--weights", str(weights), "--precision", "fp16")
    assert res.exit_code == 2 and "precision must be one of auto, fp32, mixed, bf16, got 'fp16'" in _text(res)
    res = _fuse(ir, vis, tmp_path / "o", "--fuser", "mean", "--precision", "fp32")
    assert res.exit_code == 2 and "--precision is an option of the dmnet fuser, not of 'mean'" in _text(res)


def test_mixed_precision_fusion_is_within_one_grey_level_of_fp32(shared_data, tmp_path):
    """The shipped weights on real MSRS pairs (colour visible images): `--precision mixed` (the U-Net in
    bf16, what `auto` picks on a CPU with AMX) against `--precision fp32`, PNG values compared."""
    names = sorted(p.name for p in (shared_data / "msrs" / "ir").iterdir())[:3]
    for side in ("ir", "vi"):
        (tmp_path / side).mkdir()
        for name in names:
            (tmp_path / side / name).symlink_to(shared_data / "msrs" / side / name)
    outs = {}
    for precision in ("fp32", "mixed"):
        res = _fuse(tmp_path / "ir", tmp_path / "vi", tmp_path / precision, "--precision", precision)
        assert res.exit_code == 0 and f"-{precision}-v" in _text(res), _text(res)
        outs[precision] = [cv2.imread(str(tmp_path / precision / n), cv2.IMREAD_UNCHANGED).astype(int) for n in names]
    diff = np.concatenate([np.abs(a - b).ravel() for a, b in zip(outs["fp32"], outs["mixed"], strict=True)])
    assert diff.max() <= 2 and (diff <= 1).mean() >= 0.999 and diff.any()


def test_mixed_precision_without_onednn_bf16_falls_back_instead_of_failing(pairs, weights, tmp_path):
    """Where oneDNN may not run bf16 (here: ONEDNN_MAX_CPU_ISA=AVX2, as on a CPU without AVX-512), `auto`
    is fp32 and an explicit `mixed` still fuses (through torch's generic bf16 convolutions, slowly)."""
    import json
    import os
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    ir, vis = pairs
    env = dict(os.environ, ONEDNN_MAX_CPU_ISA="AVX2", FUSEDET_CACHE=str(tmp_path / "cache"))
    code = ("from dmnet.kernels import ONEDNN_BF16, onednn_route; import torch; "
            "from fusedet.dmnet_fuser import resolve_precision; "
            "print(ONEDNN_BF16, onednn_route(torch.zeros(1, 1, 2, 2, dtype=torch.bfloat16)), resolve_precision('auto', torch.device('cpu')))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False", "fp32"]
    exe = shutil.which("fusedet") or str(Path(sys.executable).with_name("fusedet"))
    for precision in ("auto", "mixed"):
        res = subprocess.run([exe, "fuse", "--ir", str(ir), "--vis", str(vis), "--out", str(tmp_path / precision), "--device", "cpu",
                              "--weights", str(weights), "--precision", precision], env=env, capture_output=True, text=True)
        assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr[-2000:]
        record = json.loads((tmp_path / precision / ".fusedet_fuse.json").read_text())
        assert f"-{'fp32' if precision == 'auto' else 'mixed'}-v" in json.dumps(record)


def test_fuser_api_errors_are_one_line_input_errors(weights):
    from fusedet.errors import InputError

    fuser = DMNetFuser(weights, precision="fp32")
    with pytest.raises(InputError, match="ir must be a float tensor in \\[0, 1\\], got torch.uint8"):
        fuser.fuse(torch.zeros(1, 1, 8, 8, dtype=torch.uint8), torch.zeros(1, 1, 8, 8))
    bad = torch.rand(1, 1, 8, 8)
    bad[0, 0, 3, 4] = float("nan")
    with pytest.raises(InputError, match="vis_y holds NaN or infinite values"):
        fuser.fuse(torch.rand(1, 1, 8, 8), bad)
    with pytest.raises(InputError, match="ir holds NaN"):
        fuser.fuse(bad.clone().fill_(float("inf")), torch.rand(1, 1, 8, 8))
    ir, vis = np.random.rand(8, 9).astype(np.float32), np.random.rand(8, 9, 3).astype(np.float32)
    assert fuse_arrays(fuser, ir, vis).shape == (8, 9, 3)
    for args, needle in [(((ir * 255).astype(np.uint8), vis), "ir must be a float image in \\[0, 1\\], got uint8"),
                         ((ir, vis[..., 0]), "ir must be H x W and vis H x W x 3"),
                         ((ir, vis[..., :1]), "ir must be H x W and vis H x W x 3"),
                         ((ir[:, :8], vis), "ir is 8x8 but vis 9x8")]:
        with pytest.raises(InputError, match=needle):
            fuse_arrays(fuser, *args)
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="CUDA is not available here"):
            DMNetFuser(weights, device="cuda")
    with pytest.raises(InputError, match="unsupported device 'meta'"):
        get_fuser("mean", device="meta")


def test_mixed_precision_fuser_builds_its_model_once_and_takes_checkpoints_without_the_dm(tmp_path, monkeypatch):
    from dmnet import DMNet
    from dmnet.checkpoint import Checkpoint

    built = []
    real_build = Checkpoint.build_model
    monkeypatch.setattr(Checkpoint, "build_model", lambda self, *a, **k: built.append(1) or real_build(self, *a, **k))
    fuser = DMNetFuser(default_weights(), precision="mixed")
    assert len(built) == 1 and next(fuser.model.dm.unet.parameters()).dtype == torch.bfloat16
    fuser.to("cpu")
    assert len(built) == 1  # same precision: the model is kept
    no_dm = save_checkpoint(tmp_path / "no_dm.pt", DMNet.from_preset("lite", use_dm=False), {"note": "untrained"})
    out = DMNetFuser(no_dm, precision="mixed").fuse(torch.rand(1, 1, 16, 20), torch.rand(1, 1, 16, 20))
    assert out.shape == (1, 1, 16, 20) and out.dtype == torch.float32
