"""The shipped MSRS detector (``--weights msrs``) on its held-out real pairs.

Its model card (fusedet/weights/msrs_yolo.md) promises at least 20 mAP@0.5 for the best source on
MSRS pairs it never saw; this evaluates the infrared and visible rows of the 54 test pairs of its
split file through the CLI, checks the report's AP against the independent implementation of
tests/ap_reference.py, and that the run says nothing against the detector (it was trained on MSRS,
and the test pairs are held out), while the pairs it was trained on are warned of.
"""

from __future__ import annotations

import json

import pytest
from ap_reference import reference_ap
from typer.testing import CliRunner

from fusedet.cli import app
from fusedet.detector import MSRS_WEIGHTS
from fusedet.detector_domain import WEIGHTS_DIR

pytestmark = pytest.mark.skipif(not MSRS_WEIGHTS.is_file(), reason="the MSRS detector is not built (fusedet/weights/msrs_yolo.pt)")
SPLIT_FILE = WEIGHTS_DIR / "msrs_split.txt"


def _evaluate(shared_data, out, split):
    args = ["evaluate", "--dataset", "msrs", "--root", str(shared_data / "msrs"), "--split-file", str(SPLIT_FILE),
            "--split", split, "--sources", "ir,vi", "--weights", "msrs", "--device", "cpu", "--bootstrap", "0", "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return result, json.loads((out / "table.json").read_text()), json.loads((out / "run.json").read_text())


def test_msrs_detector_on_its_held_out_pairs(shared_data, tmp_path):
    result, table, run = _evaluate(shared_data, tmp_path / "test", "test")
    assert run["dataset"]["split_used"]["pairs"] == 54
    assert max(table["rows"]["ir"]["mAP"], table["rows"]["vi"]["mAP"]) >= 20.0, table["rows"]
    for source, row in table["rows"].items():
        ref = reference_ap(tmp_path / "test" / "ground_truth.json", tmp_path / "test" / "detections" / f"{source}.json")
        for cls in ("person", "bicycle", "car"):
            assert row[cls] == pytest.approx(ref[cls], abs=0.1), (source, cls)
    assert run["detector"]["trained_on"]["datasets"] == ["msrs"] and run["detector"]["domain_warning"] is None
    assert "warning: detector" not in result.output


def test_msrs_detector_warns_on_the_pairs_it_was_trained_on(shared_data, tmp_path):
    result, _, run = _evaluate(shared_data, tmp_path / "val", "val")
    assert "28 of the 28 evaluated pairs were among its training or validation pairs" in run["detector"]["domain_warning"]
    assert "warning: detector msrs_yolo.pt" in result.output
