"""How the VIFB reference values in this folder were made (run by hand, not by the tests; needs GNU Octave
with the image package, VIFB's metrics/ folder and the runner in shared/tools/vifb).

    python tests/data/vifb/make_references.py synthetic WORK_DIR VIFB_METRICS_DIR SHARED_DIR
    python tests/data/vifb/make_references.py msrs WORK_DIR VIFB_METRICS_DIR SHARED_DIR

`synthetic`: the triplets in synthetic/ (written once by `python make_references.py images`, kept here).
`msrs`: six MSRS pairs of SHARED_DIR/data/msrs with two fusions made by :func:`msrs_fusions` (the tests
rebuild them the same way). Each set goes through prep.py and run_vifb.m (VIFB's .m files unchanged), and
the values are stored as ``{"SET": {"convention": "vifb", "per_image": {STEM: {METRIC: value}}}}`` with
NaN and infinite values stored as null (the reference's NaN or Inf; fusedet reports them as undefined).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

HERE = Path(__file__).resolve().parent
MSRS_STEMS = ("00004N", "00319D", "00642D", "00927N", "01202N", "01478D")


def msrs_fusions(ir: np.ndarray, vi_rgb: np.ndarray) -> dict[str, np.ndarray]:
    """Two integer fusions of an MSRS pair (IR H x W uint8, VI H x W x 3 RGB uint8): `gray`, (IR + G) // 2,
    scored against rgb2gray(VI); `colour`, max(IR, VI_c) per channel, scored per channel."""
    gray = ((ir.astype(np.uint16) + vi_rgb[..., 1]) // 2).astype(np.uint8)
    colour = np.maximum(ir[..., None], vi_rgb)
    return {"gray": gray, "colour": colour}


def _scene(h: int, w: int, c: int, seed: int) -> np.ndarray:
    r = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = 120 + 70 * np.sin(x / (3.0 + seed % 5)) * np.cos(y / 4.0)
    img = base[..., None] + r.normal(0, 18, (h, w, c)) + np.arange(c) * 15
    img[: h // 3, : w // 4] = 250
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def synthetic_images() -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """stem -> (IR, VI, fused), uint8, gray H x W or RGB H x W x 3: the edge cases of VIFB's reading."""
    out = {}
    vi, ir = _scene(45, 61, 3, 1), _scene(45, 61, 3, 2)
    out["s1"] = (ir, vi, np.maximum(vi, ir))  # colour VI, colour IR, colour F: per channel with IR(:,:,k)
    vi, ir = _scene(40, 52, 3, 3), _scene(40, 52, 1, 4)[..., 0]
    out["s2"] = (ir, vi, ((ir.astype(int) + vi[..., 0]) // 2).astype(np.uint8))  # gray F -> rgb2gray(VI)
    vi, ir = _scene(37, 50, 1, 5)[..., 0], _scene(37, 50, 1, 6)[..., 0]
    out["s3"] = (ir, vi, _scene(37, 50, 3, 7))  # colour F of a gray VI -> rgb2gray(F)
    vi, ir = _scene(33, 70, 3, 8), _scene(33, 70, 1, 9)[..., 0]
    out["s4"] = (ir, vi, np.maximum(vi, ir[..., None]))  # colour VI and F, gray IR: per channel, IR shared
    vi, ir = _scene(32, 40, 1, 10)[..., 0], _scene(32, 40, 1, 11)[..., 0]
    out["s5"] = (ir, vi, np.full((32, 40), 128, np.uint8))  # flat non-zero F: Qcb, Qcv NaN
    out["s6"] = (np.full((24, 30), 200, np.uint8), np.full((24, 30), 90, np.uint8), _scene(24, 30, 1, 12)[..., 0])  # flat sources
    img = _scene(20, 26, 1, 13)[..., 0]
    out["s7"] = (img, img, img)  # F equal to both sources: Psnr infinite
    vi, ir = _scene(27, 35, 1, 14)[..., 0], _scene(27, 35, 1, 15)[..., 0]
    out["s8"] = (ir, vi, np.zeros((27, 35), np.uint8))  # all-zero F (normalize1 keeps zeros)
    return out


def _write(path: Path, img: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), img if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_RGB2BGR))


def _octave(work: Path, fused: str, metrics_dir: Path, tools: Path) -> dict:
    prep = work / f"prep_{fused}"
    subprocess.run([sys.executable, str(tools / "prep.py"), str(work / "ir"), str(work / "vi"), str(work / fused), str(prep)], check=True)
    cmd = f"pkg load image; addpath('{metrics_dir}'); addpath('{tools}'); run_vifb('{prep / 'list.tsv'}', '{prep / 'vifb.tsv'}')"
    subprocess.run(["octave-cli", "--eval", cmd], check=True, capture_output=True)
    per = {}
    for line in (prep / "vifb.tsv").read_text().splitlines():
        stem, *fields = line.split("\t")
        values = {k: float(v) for k, v in (f.split("=", 1) for f in fields)}
        per[stem] = {k: (v if math.isfinite(v) else None) for k, v in values.items()}
    return {"convention": "vifb", "per_image": per}


def main(argv: list[str]) -> None:
    what = argv[0]
    if what == "images":
        for stem, (ir, vi, f) in synthetic_images().items():
            for kind, img in (("ir", ir), ("vi", vi), ("fused", f)):
                _write(HERE / "synthetic" / kind / f"{stem}.png", img)
        return
    work, metrics_dir, shared = (Path(a).resolve() for a in argv[1:4])
    tools = shared / "tools" / "vifb"
    if what == "synthetic":
        for kind in ("ir", "vi", "fused"):
            (work / kind).mkdir(parents=True, exist_ok=True)
            for p in (HERE / "synthetic" / kind).iterdir():
                (work / kind / p.name).write_bytes(p.read_bytes())
        doc = {"synthetic": _octave(work, "fused", metrics_dir, tools)}
    else:
        src = shared / "data" / "msrs"
        for stem in MSRS_STEMS:
            ir = cv2.imread(str(src / "ir" / f"{stem}.png"), cv2.IMREAD_UNCHANGED)
            vi = cv2.cvtColor(cv2.imread(str(src / "vi" / f"{stem}.png")), cv2.COLOR_BGR2RGB)
            _write(work / "ir" / f"{stem}.png", ir)
            _write(work / "vi" / f"{stem}.png", vi)
            for name, img in msrs_fusions(ir, vi).items():
                _write(work / name / f"{stem}.png", img)
        doc = {name: _octave(work, name, metrics_dir, tools) for name in ("gray", "colour")}
    (HERE / f"{what}_reference.json").write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
