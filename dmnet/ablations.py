"""Rows AE1-AE14 of the paper's Table V as config overrides.

Table V switches off five things: TST (two-stage training), DTB, DIB, DM and CSAB. Following
section IV-D, DTB, DIB and CSAB are removed (identity), the diffusion module is replaced by a plain
convolution (``use_dm=False``), and AE1 trains stage II only, for 15 + 30 = 45 epochs
(``two_stage=False``; the trainer reads it). Table VI (gradient operator of L_gd) is the
``grad_operator`` override: ``"sobel"`` (default), ``"canny"``, ``"log"``, ``"roberts"``.
"""

from __future__ import annotations

from typing import Any

# (DTB, DIB, DM, CSAB) of each row, with TST on except AE1; copied from Table V.
_TABLE_V: dict[str, tuple[bool, bool, bool, bool]] = {
    "AE2": (False, False, False, False),
    "AE3": (False, False, False, True),
    "AE4": (True, False, False, False),
    "AE5": (True, True, False, False),
    "AE6": (True, False, False, True),
    "AE7": (True, False, True, False),
    "AE8": (False, True, True, False),
    "AE9": (False, True, False, True),
    "AE10": (False, False, True, True),
    "AE11": (False, True, True, True),
    "AE12": (True, False, True, True),
    "AE13": (True, True, False, True),
    "AE14": (True, True, True, False),
}

# Every row sets all five switches, so applying a row does not depend on what it is applied to.
ABLATIONS: dict[str, dict[str, Any]] = {
    "AE1": {"two_stage": False, "use_dtb": True, "use_dib": True, "use_dm": True, "use_csab": True},
}
ABLATIONS.update({
    row: {"two_stage": True, "use_dtb": dtb, "use_dib": dib, "use_dm": dm, "use_csab": csab}
    for row, (dtb, dib, dm, csab) in _TABLE_V.items()
})
