"""`fusedet metrics` on three small TNO pairs: outputs, subsets, resuming, and every bad input giving one
clear error line (exit code 2, no traceback)."""

from __future__ import annotations

import json
import math
import shutil

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from fusedet.cli import app
from fusedet.errors import InputError
from fusedet.eval.fusion_metrics import METRIC_NAMES, TABLE_ORDER
from fusedet.eval.metrics_folders import JOURNAL_NAME, score_folders
from fusedet.eval.vifb_metrics import VIFB_METRICS
from fusedet.events import RecordingEvents

STEMS = ("07", "19", "20")  # the smallest TNO pairs (256x256, 360x270)
runner = CliRunner()


@pytest.fixture()
def tno(shared_data, tmp_path):
    """ir/, vi/, mean/, max/ folders holding the three pairs (copies in tmp_path), and the golden values."""
    folders = {"ir": "tno/ir", "vi": "tno/vi", "mean": "golden_fused/tno_mean", "max": "golden_fused/tno_max"}
    for name, src in folders.items():
        (tmp_path / name).mkdir()
        for stem in STEMS:
            shutil.copy(shared_data / src / f"{stem}.png", tmp_path / name / f"{stem}.png")
    golden = {n: next(iter(json.loads((shared_data / f"golden_fused/tno_{n}.json").read_text()).values())) for n in ("mean", "max")}
    return tmp_path, golden


def _run(*args: str):
    return runner.invoke(app, ["metrics", *map(str, args)])


def _base(root):
    return ["--ir", root / "ir", "--vis", root / "vi", "--device", "cpu"]


def test_two_methods_write_all_outputs_with_golden_values(tno):
    root, golden = tno
    out = root / "out"
    result = _run(*_base(root), "--fused", f"mean={root / 'mean'}", "--fused", f"max={root / 'max'}", "--out", out)
    assert result.exit_code == 0, result.output
    assert {p.name for p in out.iterdir()} == {"metrics.csv", "metrics.md", "metrics.tex", "metrics.json"}
    doc = json.loads((out / "metrics.json").read_text())
    assert list(doc) == ["mean", "max"]
    for name in ("mean", "max"):
        assert list(doc[name]) == ["convention", "mean", "per_image"] and doc[name]["convention"] == "cddfuse"
        assert list(doc[name]["mean"]) == list(METRIC_NAMES)
        assert list(doc[name]["per_image"]) == list(STEMS)
        for stem in STEMS:
            for m in METRIC_NAMES:
                expected = golden[name]["per_image"][stem][m]
                assert abs(doc[name]["per_image"][stem][m] - expected) <= 1e-3 * abs(expected), (name, stem, m)
        for m in METRIC_NAMES:
            mean = sum(golden[name]["per_image"][s][m] for s in STEMS) / len(STEMS)
            assert doc[name]["mean"][m] == pytest.approx(mean, rel=1e-3)
    header = (out / "metrics.csv").read_text().splitlines()[0]
    assert header == "Method," + ",".join(TABLE_ORDER)
    md = (out / "metrics.md").read_text()
    assert "**" in md and "<u>" in md  # best bold, second underlined
    assert "\\textbf{" in (out / "metrics.tex").read_text()
    assert "MI" in result.output and "mean" in result.output and "max" in result.output


def test_metric_subset_writes_only_those_keys(tno):
    root, _ = tno
    out = root / "out"
    result = _run(*_base(root), "--fused", f"max={root / 'max'}", "--metrics", "ssim,EN,Qabf", "--out", out)
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "metrics.json").read_text())
    assert list(doc["max"]["mean"]) == ["EN", "Qabf", "SSIM"]
    assert list(doc["max"]["per_image"]["07"]) == ["EN", "Qabf", "SSIM"]
    assert (out / "metrics.csv").read_text().splitlines()[0] == "Method,EN,Qabf,SSIM"


def test_fused_files_match_by_stem_in_any_format_and_small_images_note_ms_ssim(tno):
    root, golden = tno
    jpg = root / "as_bmp"
    jpg.mkdir()
    for stem in STEMS:  # lossless BMP copies of the max fusion must give the PNG's values
        cv2.imwrite(str(jpg / f"{stem}.bmp"), cv2.imread(str(root / "max" / f"{stem}.png")))
    small = root / "small"
    for sub in ("ir", "vi", "f"):
        (small / sub).mkdir(parents=True)
        for i, stem in enumerate(("a", "b")):
            img = np.random.default_rng(i + len(sub)).integers(0, 256, (120, 150), dtype=np.uint8)
            cv2.imwrite(str(small / sub / f"{stem}.png"), img)
    result = _run(*_base(root), "--fused", f"bmp={jpg}", "--metrics", "EN,VIF")
    assert result.exit_code == 0, result.output
    result = _run("--ir", small / "ir", "--vis", small / "vi", "--fused", f"x={small / 'f'}", "--out", small / "out", "--device", "cpu")
    assert result.exit_code == 0, result.output
    doc = json.loads((small / "out" / "metrics.json").read_text())
    assert doc["x"]["per_image"]["a"]["MS-SSIM"] is None and doc["x"]["mean"]["MS-SSIM"] is None
    assert not math.isnan(doc["x"]["mean"]["VIF"])
    assert "MS-SSIM is undefined for 2 of 2 images" in result.output


def test_journal_resumes_finished_pairs_and_redoes_changed_ones(tno):
    root, _ = tno
    out = root / "out"

    def run(events=None):
        return score_folders((root / "ir", root / "vi"), {"max": root / "max"}, metrics="EN,SD", out=out, workers=1, events=events)

    def advanced(events):
        return {c[3].split()[0]: c[3].endswith("(resumed)") for c in events.calls if c[0] == "advance"}

    fresh = score_folders((root / "ir", root / "vi"), {"max": root / "max"}, metrics="EN,SD")
    good = (root / "max" / "07.png").read_bytes()
    broken = good[: len(good) // 3]  # a readable header, truncated pixels
    (root / "max" / "07.png").write_bytes(broken)  # 07, the smallest pair, is scored last: the run stops there
    with pytest.raises(InputError, match="07.png"):
        run()
    assert len((out / JOURNAL_NAME).read_text().splitlines()) == 2  # 19 and 20 are kept
    (root / "max" / "07.png").write_bytes(good)
    events = RecordingEvents()
    again = run(events)
    assert advanced(events) == {"19": True, "20": True, "07": False} and again.resumed == 2
    assert any("resumed 2 of 3 pairs" in n for n in events.notes())
    assert again.result.per_image == fresh.result.per_image
    assert not (out / JOURNAL_NAME).exists() and (out / "metrics.json").is_file()  # a finished run leaves no journal

    (root / "max" / "07.png").write_bytes(broken)
    with pytest.raises(InputError):
        run()
    img = cv2.imread(str(root / "max" / "19.png"))
    cv2.imwrite(str(root / "max" / "19.png"), 255 - img)  # a changed fused file is scored again
    (root / "max" / "07.png").write_bytes(good)
    events = RecordingEvents()
    changed = run(events)
    assert advanced(events) == {"07": False, "19": False, "20": True}
    assert changed.result.per_image["max"]["19"]["SD"] == pytest.approx(fresh.result.per_image["max"]["19"]["SD"])
    assert changed.result.per_image["max"]["19"]["EN"] == pytest.approx(fresh.result.per_image["max"]["19"]["EN"])


def _error(result, *needles: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert any(line.startswith("error:") for line in lines), result.output
    text = " ".join(result.output.split())
    for needle in needles:
        assert needle in text, (needle, result.output)


def test_a_journal_that_cannot_be_written_ends_in_one_line(tno):
    root, _ = tno
    out = root / "out"
    (out / JOURNAL_NAME).mkdir(parents=True)  # a folder where the journal goes
    result = _run(*_base(root), "--fused", f"mean={root / 'mean'}", "--metrics", "EN", "--out", out)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "could not be written (a folder of that name is in the way)" in " ".join(result.output.split())


def test_missing_partner(tno):
    root, _ = tno
    (root / "vi" / "20.png").unlink()
    _error(_run(*_base(root), "--fused", f"m={root / 'mean'}"), "20.png", "no visible partner")


def test_ir_vis_size_mismatch(tno):
    root, _ = tno
    cv2.imwrite(str(root / "vi" / "19.png"), np.zeros((100, 90), np.uint8))
    _error(_run(*_base(root), "--fused", f"m={root / 'mean'}"), "19.png", "different sizes")


def test_fused_size_mismatch(tno):
    root, _ = tno
    cv2.imwrite(str(root / "mean" / "07.png"), np.zeros((100, 90), np.uint8))
    _error(_run(*_base(root), "--fused", f"m={root / 'mean'}"), str(root / "mean" / "07.png"), "90x100")


@pytest.mark.parametrize("how", ["garbage", "truncated"])
def test_corrupt_fused_file(tno, how):
    root, _ = tno
    path = root / "mean" / "19.png"
    data = path.read_bytes()
    path.write_bytes(b"not an image at all" if how == "garbage" else data[: len(data) // 3])
    _error(_run(*_base(root), "--fused", f"m={root / 'mean'}"), str(path))


def test_empty_and_missing_folders(tno):
    root, _ = tno
    (root / "empty").mkdir()
    _error(_run(*_base(root), "--fused", f"m={root / 'empty'}"), str(root / "empty"), "no images")
    _error(_run(*_base(root), "--fused", f"m={root / 'nope'}"), str(root / "nope"), "not a folder")
    _error(_run("--ir", root / "missing", "--vis", root / "vi", "--fused", f"m={root / 'mean'}"), str(root / "missing"))


def test_fused_folder_missing_stems_names_them(tno):
    root, _ = tno
    (root / "mean" / "07.png").unlink()
    (root / "mean" / "20.png").unlink()
    _error(_run(*_base(root), "--fused", f"m={root / 'mean'}"), str(root / "mean"), "missing stems 07, 20")


@pytest.mark.parametrize(
    ("fused", "needle"),
    [(["nodir"], "expected NAME=DIR"), (["=x"], "expected NAME=DIR"), (["a="], "expected NAME=DIR"), (["a=x", "a=y"], "'a' is given twice")],
)
def test_bad_fused_specs(tno, fused, needle):
    root, _ = tno
    args = [a for spec in fused for a in ("--fused", spec)]
    _error(_run(*_base(root), *args), needle)


def test_images_too_small_for_vif_are_refused_before_scoring(tno):
    root, _ = tno
    for sub in ("ir", "vi", "mean"):
        cv2.imwrite(str(root / sub / "20.png"), np.full((30, 50), 9, np.uint8))
    _error(_run(*_base(root), "--fused", f"m={root / 'mean'}"), "'20'", str(root / "ir" / "20.png"), "50x30 is too small for VIF")
    assert _run(*_base(root), "--fused", f"m={root / 'mean'}", "--metrics", "EN,SSIM").exit_code == 0


def test_unknown_metric_and_bad_out(tno):
    root, _ = tno
    _error(_run(*_base(root), "--fused", f"m={root / 'mean'}", "--metrics", "EN,PSNR"), "unknown metric name(s): PSNR")
    (root / "file.txt").write_text("x")
    _error(_run(*_base(root), "--fused", f"m={root / 'mean'}", "--out", root / "file.txt"), "not a folder")


def test_cuda_without_cuda(tno):
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    root, _ = tno
    _error(_run("--ir", root / "ir", "--vis", root / "vi", "--fused", f"m={root / 'mean'}", "--device", "cuda"), "no CUDA GPU")


def test_both_conventions_write_a_folder_each_and_the_difference_report(tno):
    root, golden = tno
    out = root / "out"
    result = _run(*_base(root), "--fused", f"mean={root / 'mean'}", "--fused", f"max={root / 'max'}", "--convention", "cddfuse,vifb", "--out", out)
    assert result.exit_code == 0, result.output
    files = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}
    per = {f"{c}/metrics.{e}" for c in ("cddfuse", "vifb") for e in ("csv", "md", "tex", "json")}
    assert files == per | {"conventions.md", "conventions.json"}
    cdd = json.loads((out / "cddfuse" / "metrics.json").read_text())
    vifb = json.loads((out / "vifb" / "metrics.json").read_text())
    assert cdd["max"]["convention"] == "cddfuse" and vifb["max"]["convention"] == "vifb"
    assert list(vifb["max"]["mean"]) == list(VIFB_METRICS)
    for stem in STEMS:  # the cddfuse values are still the golden ones when both run
        assert cdd["max"]["per_image"][stem]["VIF"] == pytest.approx(golden["max"]["per_image"][stem]["VIF"], rel=1e-3)
    report = json.loads((out / "conventions.json").read_text())
    assert report["pairs"] == 3 and report["conventions"] == ["cddfuse", "vifb"]
    rows = {r["cddfuse"]: r for r in report["metrics"]}
    assert list(rows) == ["EN", "SF", "AG", "SD", "MI", "Qabf", "SSIM"]
    assert rows["SD"]["vifb"] == "Variance" and rows["SSIM"]["vifb"] == "Ssim" and "window" in rows["SSIM"]["reason"]
    for r in rows.values():
        for method in ("mean", "max"):
            v = r["methods"][method]
            assert v["cddfuse"] == pytest.approx(cdd[method]["mean"][r["cddfuse"]], rel=1e-12)
            assert v["vifb"] == pytest.approx(vifb[method]["mean"][r["vifb"]], rel=1e-12)
            assert v["ratio"] == pytest.approx(v["vifb"] / v["cddfuse"], rel=1e-12)
    # AG: VIFB divides the same kind of sum by (r-1)(c-1) instead of r c, so vifb / cddfuse is a little above 1
    assert 1.0 < rows["AG"]["methods"]["max"]["ratio"] < 1.01
    md = (out / "conventions.md").read_text()
    assert "| SD / Variance | mean |" in md and rows["MI"]["reason"] in md
    assert "cddfuse vs vifb" in result.output


def test_metric_names_of_either_convention_and_bad_conventions(tno):
    root, _ = tno
    out = root / "out"
    result = _run(*_base(root), "--fused", f"max={root / 'max'}", "--convention", "cddfuse,vifb", "--metrics", "EN,Qcb", "--out", out)
    assert result.exit_code == 0, result.output
    assert list(json.loads((out / "cddfuse" / "metrics.json").read_text())["max"]["mean"]) == ["EN"]
    assert list(json.loads((out / "vifb" / "metrics.json").read_text())["max"]["mean"]) == ["Entropy", "Qcb"]
    _error(_run(*_base(root), "--fused", f"max={root / 'max'}", "--convention", "vifbb"), "unknown metric convention 'vifbb'", "did you mean 'vifb'")
    _error(_run(*_base(root), "--fused", f"max={root / 'max'}", "--convention", "vifb", "--metrics", "CC"), "unknown metric name(s): CC")
    _error(_run(*_base(root), "--fused", f"max={root / 'max'}", "--convention", "cddfuse,vifb", "--metrics", "Qcb"), "none of the metrics", "cddfuse")


def test_output_folder_and_call_arguments_are_checked_before_scoring(tno):
    root, _ = tno
    blocker = root / "afile"
    blocker.write_text("x")
    _error(_run(*_base(root), "--fused", f"max={root / 'max'}", "--out", blocker / "sub"), "is a file, so no folder can be made under it")
    pairs = (root / "ir", root / "vi")
    with pytest.raises(InputError, match="is a file, so no folder"):
        score_folders(pairs, {"max": root / "max"}, out=blocker / "sub")
    with pytest.raises(InputError, match="fused must be"):
        score_folders(pairs, root / "max")
    with pytest.raises(InputError, match="fused must be"):
        score_folders(pairs, [str(root / "max")])
    with pytest.raises(InputError, match="workers must be"):
        score_folders(pairs, {"max": root / "max"}, workers=0)


def test_nearly_flat_16bit_inputs_are_named_in_a_note(tno):
    root, _ = tno
    ir = cv2.imread(str(root / "ir" / "07.png"), cv2.IMREAD_GRAYSCALE).astype(np.uint16)
    cv2.imwrite(str(root / "ir" / "07.png"), (7000 + ir * 8).astype(np.uint16))  # 14-bit counts in a narrow band
    events = RecordingEvents()
    run = score_folders((root / "ir", root / "vi"), {"max": root / "max"}, metrics="EN", events=events)
    notes = [n for n in events.notes() if "nearly flat" in n]
    assert len(notes) == 1 and "1 input image(s)" in notes[0] and str(root / "ir" / "07.png") in notes[0]
    assert run.notes[-1] == notes[0]
    result = _run(*_base(root), "--fused", f"max={root / 'max'}", "--metrics", "EN")
    assert result.exit_code == 0 and "nearly flat" in result.output


def test_library_call_reports_through_events_and_is_fusedet_score_folders(tno, monkeypatch):
    import fusedet
    from fusedet import runtime

    root, golden = tno
    assert fusedet.score_folders is score_folders
    asked = []  # on the CPU the run asks the session to keep freed memory for reuse (the maps of every pair)
    monkeypatch.setattr(runtime, "keep_freed_memory", lambda **kwargs: asked.append(kwargs) or False)
    events = RecordingEvents()
    run = fusedet.score_folders((root / "ir", root / "vi"), {"max": root / "max"}, metrics="VIF", events=events, workers=2, device="cpu")
    assert asked == [{"heap_step": 256 * 2**20}]
    assert events.calls[0] == ("start", "scoring pairs", 3) and events.calls[-1][0] == "finish"
    assert events.done("scoring pairs") == 3 and run.pairs == 3 and run.resumed == 0 and run.paths == []
    assert run.result.convention == "cddfuse" and run.differences is None
    for stem in STEMS:
        assert run.result.per_image["max"][stem]["VIF"] == pytest.approx(golden["max"]["per_image"][stem]["VIF"], rel=1e-3)
