"""Image groups (fusedet.eval.groups): MSRS day/night from the stems, the demo's scene conditions, a
stem,group CSV (ignored and unlisted stems, clear errors for malformed files)."""

from __future__ import annotations

import json

import pytest

from fusedet.errors import InputError
from fusedet.eval.groups import UNLISTED, load_groups


def test_day_night_from_msrs_stems():
    g = load_groups("day-night", ["00001D", "00004N", "00010n", "01234D", "road"])
    assert g.of == {"00001D": "day", "00004N": "night", "00010n": "night", "01234D": "day", "road": UNLISTED}  # a digit, then D or N
    assert g.counts() == {"day": 2, "night": 2, UNLISTED: 1}
    assert g.members(["00004N", "road", "00001D"]) == {"day": [2], "night": [0], UNLISTED: [1]}
    assert any("neither D nor N" in n for n in g.notes)
    with pytest.raises(InputError, match="no stem of the split ends in D or N"):
        load_groups("day-night", ["00000", "00001"])


def test_scene_groups_from_demo_scenes_json(tmp_path):
    (tmp_path / "meta").mkdir()
    scenes = {"00000": {"condition": "night", "objects": []}, "00001": {"condition": "fog"}, "00009": {"condition": "day"}}
    (tmp_path / "meta" / "scenes.json").write_text(json.dumps(scenes))
    g = load_groups("scene", ["00000", "00001", "00002"], dataset_root=tmp_path)
    assert g.of == {"00000": "night", "00001": "fog", "00002": UNLISTED}
    assert g.order == ("fog", "night", UNLISTED) and g.ignored_stems == 1
    with pytest.raises(InputError, match="needs the dataset's folder"):
        load_groups("scene", ["00000"])
    with pytest.raises(InputError, match="scenes.json: not found"):
        load_groups("scene", ["00000"], dataset_root=tmp_path / "nowhere")


def test_csv_groups(tmp_path):
    path = tmp_path / "m3fd_scenes.csv"
    path.write_text("stem,group\n00001,road\n\n00002,campus\n00003,road\n09999,road\n")
    g = load_groups(path, ["00001", "00002", "00003", "00004"])
    assert g.of == {"00001": "road", "00002": "campus", "00003": "road", "00004": UNLISTED}
    assert g.order == ("road", "campus", UNLISTED) and g.ignored_stems == 1
    assert g.counts() == {"road": 2, "campus": 1, UNLISTED: 1}
    assert any("not in the split" in n for n in g.notes) and any("not in m3fd_scenes.csv" in n for n in g.notes)
    path.write_text("00001,road\n00002,campus\n")  # no header line
    assert load_groups(str(path), ["00001", "00002"]).of == {"00001": "road", "00002": "campus"}


@pytest.mark.parametrize(
    "text, message",
    [
        ("stem,group\n00001,road\n00002,road,extra\n", r"bad.csv:3: expected 'stem,group'"),
        ("00001,road\n00002,\n", r"bad.csv:2: expected 'stem,group'"),
        ("00001,road\n00001,campus\n", r"bad.csv:2: stem '00001' listed again"),
        ("", r"bad.csv: no 'stem,group' line"),
        ("77777,road\n", r"bad.csv: none of its 1 stems is in the split"),
    ],
)
def test_malformed_csv_is_an_input_error_naming_file_and_line(tmp_path, text, message):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(InputError, match=message):
        load_groups(path, ["00001", "00002"])


def test_unknown_spec_and_missing_file(tmp_path):
    with pytest.raises(InputError, match="use day-night, scene or a FILE.csv"):
        load_groups("weather", ["00001"])
    with pytest.raises(InputError, match="group file not found"):
        load_groups(tmp_path / "missing.csv", ["00001"])
