"""The synthetic demo dataset: M3FD layout, determinism, cache, class coverage, and the design property
that IR and visible each lose objects the other keeps while a pixel fusion keeps both."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

import fusedet.datasets.demo as demo
from fusedet.datasets.demo import generate_demo, split_counts
from fusedet.datasets.demo_scene import CLASSES, render_scene
from fusedet.datasets.headers import image_size
from fusedet.datasets.registry import load_dataset
from fusedet.datasets.voc import read_voc
from fusedet.errors import InputError
from fusedet.events import RecordingEvents

SMALL = (160, 128)


def _hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_other_seed_other_images(tmp_path):
    a = _hashes(generate_demo(tmp_path / "a", seed=0, n_pairs=4, size=SMALL))
    b = _hashes(generate_demo(tmp_path / "b", seed=0, n_pairs=4, size=SMALL))
    c = _hashes(generate_demo(tmp_path / "c", seed=1, n_pairs=4, size=SMALL))
    assert a == b
    assert len(a) == 4 * 3 + 5  # Ir, Vis, Annotation per pair + meta/{train,val,test,demo,scenes}
    for stem in ("00000", "00003"):
        for sub in ("Ir", "Vis", "Annotation"):
            key = f"{sub}/{stem}.{'xml' if sub == 'Annotation' else 'png'}"
            assert a[key] != c[key], key


def test_demo_is_written_in_the_m3fd_layout_and_reads_back_cleanly(tmp_path):
    root = generate_demo(tmp_path / "demo", seed=0, n_pairs=10, size=SMALL)
    assert split_counts(10) == (7, 1, 2)
    assert (root / "meta" / "train.txt").read_text().split() == [f"{i:05d}" for i in range(7)]
    assert (root / "meta" / "test.txt").read_text().split() == ["00008", "00009"]
    assert image_size(root / "Ir" / "00004.png") == SMALL and image_size(root / "Vis" / "00004.png") == SMALL
    ds = load_dataset("m3fd", root)  # the plain M3FD reader reads it
    assert len(ds.records) == 10 and not ds.warnings
    scenes = json.loads((root / "meta" / "scenes.json").read_text())
    for r in ds.records:
        assert (r.width, r.height) == SMALL
        assert np.all(r.boxes[:, 2] > r.boxes[:, 0]) and np.all(r.boxes[:, 3] > r.boxes[:, 1])
        assert np.all(r.boxes >= 0) and np.all(r.boxes[:, [0, 2]] <= SMALL[0]) and np.all(r.boxes[:, [1, 3]] <= SMALL[1])
        objects = scenes[r.stem]["objects"]
        assert [o["class"] for o in objects] == list(r.labels)
        np.testing.assert_array_equal(r.boxes, np.array([o["box"] for o in objects], np.float32).reshape(-1, 4))
        assert read_voc(root / "Annotation" / f"{r.stem}.xml").width == SMALL[0]
    info = json.loads((root / "meta" / "demo.json").read_text())
    assert info["n_pairs"] == 10 and info["seed"] == 0 and (info["width"], info["height"]) == SMALL


def test_generator_refuses_to_overwrite_and_interrupted_runs_leave_nothing(tmp_path, monkeypatch):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.txt").write_text("mine")
    with pytest.raises(InputError, match="will not overwrite"):
        generate_demo(tmp_path / "full", n_pairs=3, size=SMALL)
    calls = []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return render_scene(*args, **kwargs)

    monkeypatch.setattr(demo, "render_scene", failing)
    with pytest.raises(KeyboardInterrupt):
        generate_demo(tmp_path / "cut", n_pairs=3, size=SMALL)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full"]


def test_load_dataset_demo_generates_into_the_cache_once_then_reuses_it(tmp_path, monkeypatch):
    monkeypatch.setenv("FUSEDET_CACHE", str(tmp_path / "cache"))
    events = RecordingEvents()
    ds = load_dataset("demo", n_pairs=3, size="160x128", events=events)
    total = next(c[2] for c in events.calls if c[0] == "start")
    steps = [c[2] for c in events.calls if c[0] == "advance"]
    seen = [(sum(steps[: i + 1]), total) for i in range(len(steps))]
    assert seen == [(1, 3), (2, 3), (3, 3)]
    assert ds.name == "demo" and len(ds.records) == 3 and ds.classes[0] == "People"
    assert ds.root == tmp_path / "cache" / "demo" / f"demo-v{demo.GENERATOR_VERSION}-seed0-n3-160x128"
    assert "seed 0, 3 pairs, 160x128" in ds.split_source
    assert [p.name for p in (tmp_path / "cache" / "demo").iterdir()] == [ds.root.name]  # no temp folder left
    monkeypatch.setattr(demo, "generate_demo", lambda *a, **k: pytest.fail("regenerated a cached demo set"))
    again = load_dataset("demo", n_pairs=3, size=(160, 128))
    assert [r.stem for r in again.records] == [r.stem for r in ds.records]


def test_load_demo_with_a_root_checks_what_it_finds(tmp_path):
    root = tmp_path / "mydemo"
    load_dataset("demo", root, n_pairs=3, size=SMALL)
    assert len(load_dataset("demo", root).records) == 3  # options not given: take what is there
    with pytest.raises(InputError, match="has 3 pairs, not the 5 asked for"):
        load_dataset("demo", root, n_pairs=5)
    with pytest.raises(InputError, match="is 160x128, not 320x256"):
        load_dataset("demo", root, size="320x256")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "Ir").mkdir()
    with pytest.raises(InputError, match="not a demo dataset"):
        load_dataset("demo", tmp_path / "other")
    with pytest.raises(InputError, match="expected WIDTHxHEIGHT"):
        load_dataset("demo", tmp_path / "x", size="big")
    with pytest.raises(InputError, match="at least 3"):
        load_dataset("demo", tmp_path / "x", n_pairs=2)
    with pytest.raises(InputError, match="expected a whole number"):
        load_dataset("demo", tmp_path / "x", n_pairs="many")


def test_all_six_classes_in_train_and_test_of_a_small_default_size_set(tmp_path):
    ds = load_dataset("demo", generate_demo(tmp_path / "d", n_pairs=30))
    for split in ("train", "test"):
        counts = ds.instance_counts(split)
        assert set(counts) == set(CLASSES) and min(counts.values()) >= 1, (split, counts)
    sizes = np.concatenate([r.boxes for r in ds.records])
    heights = sizes[:, 3] - sizes[:, 1]
    assert heights.min() >= 5 and np.median(heights) > 20  # small enough to be varied, big enough to learn


def _luma(image: np.ndarray) -> np.ndarray:
    image = image.astype(np.float32) / 255.0
    return image if image.ndim == 2 else image @ np.array([0.299, 0.587, 0.114], np.float32)


@pytest.fixture(scope="module")
def contrasts() -> dict[str, np.ndarray]:
    """Per object of 24 default-size scenes: its designed visibility and the mean absolute luma
    change it makes in IR, VIS, mean and max fusion (scene drawn with vs without its objects:
    same layout, lighting and noise, so the difference is the object alone)."""
    rows: dict[str, list] = {"both": [], "ir_only": [], "vis_only": []}
    for index in range(24):
        args = (320, 256, CLASSES[index % 6])
        full = render_scene(np.random.default_rng([0, index]), *args)
        empty = render_scene(np.random.default_rng([0, index]), *args, draw_objects=False)
        assert [o.box for o in full.objects] == [o.box for o in empty.objects]
        ir_a, vis_a, ir_b, vis_b = _luma(full.ir), _luma(full.vis), _luma(empty.ir), _luma(empty.vis)
        for k, obj in enumerate(full.objects):
            mask = full.ids == k
            x1, y1, x2, y2 = obj.box
            assert mask.any() and mask[y1:y2, x1:x2].sum() == mask.sum()  # visible pixels lie in the box
            rows[obj.visibility].append([
                np.abs(ir_a - ir_b)[mask].mean(),
                np.abs(vis_a - vis_b)[mask].mean(),
                np.abs((ir_a + vis_a) / 2 - (ir_b + vis_b) / 2)[mask].mean(),
                np.abs(np.maximum(ir_a, vis_a) - np.maximum(ir_b, vis_b))[mask].mean(),
            ])
    return {k: np.asarray(v) for k, v in rows.items()}


def test_each_input_loses_objects_the_other_keeps(contrasts):
    total = sum(len(v) for v in contrasts.values())
    for kind in ("ir_only", "vis_only"):
        assert len(contrasts[kind]) >= 0.15 * total, {k: len(v) for k, v in contrasts.items()}
    ir_only, vis_only = contrasts["ir_only"], contrasts["vis_only"]
    # lost in the visible image (dark, fog, glare) but clear in IR
    assert np.mean(ir_only[:, 1] < 0.04) >= 0.95 and np.mean(ir_only[:, 0] > 0.1) >= 0.75
    # lost in IR (cold: lamps, parked vehicles, people on a hot road) but clear in the visible image
    assert np.mean(vis_only[:, 0] < 0.04) >= 0.95 and np.mean(vis_only[:, 1] > 0.1) >= 0.85
    assert np.mean(contrasts["both"][:, :2].min(axis=1) > 0.04) >= 0.95


def test_pixel_fusion_keeps_what_either_input_keeps(contrasts):
    everything = np.concatenate(list(contrasts.values()))
    seen = (everything > 0.04).mean(axis=0)  # fraction of objects that change the image: IR, VIS, mean, max
    assert seen[2] >= 0.95 and seen[3] >= 0.8
    assert seen[2] >= seen[0] + 0.2 and seen[2] >= seen[1] + 0.15, seen


def test_conditions_vary_and_scene_i_depends_only_on_seed_and_index(tmp_path):
    conditions = Counter(render_scene(np.random.default_rng([0, i]), 96, 80, CLASSES[i % 6]).condition for i in range(40))
    assert set(conditions) == {"night", "fog", "glare", "day", "hot"}, conditions
    small = generate_demo(tmp_path / "s", n_pairs=3, size=SMALL)
    big = generate_demo(tmp_path / "b", n_pairs=5, size=SMALL)
    for stem in ("00000", "00001", "00002"):
        assert (small / "Vis" / f"{stem}.png").read_bytes() == (big / "Vis" / f"{stem}.png").read_bytes()
