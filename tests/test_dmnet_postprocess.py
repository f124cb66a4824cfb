"""The DMNet fuser's post-processing: the min-max stretch, and the checkpoint that names it."""

from __future__ import annotations

import pytest
import torch
from dmnet_tiny import one_torch_thread, tiny_model  # noqa: F401 (autouse fixture)

from dmnet.checkpoint import read_checkpoint, save_checkpoint
from fusedet.dmnet_fuser import DMNetFuser, postprocess, with_postprocess
from fusedet.errors import InputError


def test_minmax_stretches_each_image_to_the_full_range():
    a = torch.tensor([[0.2, 0.4], [0.6, 0.3]])
    b = torch.tensor([[0.5, 0.5], [0.5, 0.5]])  # flat: left as it is
    c = torch.tensor([[0.0, 0.25], [0.5, 1.0]])  # already full range: unchanged
    batch = torch.stack([a, b, c])[:, None]
    out = postprocess(batch, "minmax")
    expected = torch.stack([torch.tensor([[0.0, 0.5], [1.0, 0.25]]), b, c])[:, None]
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)
    assert torch.equal(postprocess(batch[:1], "minmax"), out[:1])  # per image: the batch does not matter
    assert postprocess(batch, "none") is batch
    with pytest.raises(InputError, match="unknown DMNet post-processing 'gamma'"):
        postprocess(batch, "gamma")


def test_a_checkpoint_names_its_post_processing(tmp_path):
    plain = save_checkpoint(tmp_path / "plain.pt", tiny_model(), {"note": "untrained"})
    stretched = with_postprocess(plain, tmp_path / "stretched.pt", "minmax")
    ck_plain, ck_stretched = read_checkpoint(plain), read_checkpoint(stretched)
    assert ck_stretched.summary == {"note": "untrained", "postprocess": "minmax"}
    assert all(torch.equal(ck_plain.state_dict[k], v) for k, v in ck_stretched.state_dict.items())
    ir, vis = torch.rand(2, 1, 20, 24, generator=torch.Generator().manual_seed(0)).unbind(0)
    ir, vis = ir[None], vis[None]
    raw = DMNetFuser(plain).fuse(ir, vis)
    assert DMNetFuser(plain).postprocess == "none" and DMNetFuser(stretched).postprocess == "minmax"
    out = DMNetFuser(stretched).fuse(ir, vis)
    torch.testing.assert_close(out, (raw - raw.min()) / (raw.max() - raw.min()), rtol=0, atol=1e-6)
    assert float(out.min()) == 0.0 and float(out.max()) == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(InputError, match="unknown DMNet post-processing 'sharpen'"):
        with_postprocess(plain, tmp_path / "bad.pt", "sharpen")
    bad = save_checkpoint(tmp_path / "bad.pt", tiny_model(), {"postprocess": "sharpen"})
    with pytest.raises(InputError, match="bad.pt: unknown post-processing 'sharpen'"):
        DMNetFuser(bad)
