"""The one parser of ``KEY=VALUE`` command-line items (``--dataset-option``, ``--train-option``, ``--set``)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from fusedet.errors import InputError


def parse_value(text: str) -> Any:
    """A value as JSON when it reads as JSON (``3``, ``0.5``, ``1e-3``, ``true``, ``null``, ``[1, 2]``),
    ``True``/``False`` in any case as booleans, otherwise the text itself (``320x240``, ``labels_ir``)."""
    text = text.strip()
    try:
        return json.loads(text)
    except ValueError:
        pass
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    return text


def parse_key_values(items: Iterable[str] | None, flag: str) -> dict[str, Any]:
    """``["n_pairs=40", "size=320x240"]`` -> ``{"n_pairs": 40, "size": "320x240"}`` (values: parse_value).

    A later item with the same key wins. Raises InputError naming `flag` for an item without ``=`` or
    with an empty key."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = str(item).partition("=")
        if not sep or not key.strip():
            raise InputError(f"bad {flag} {item!r}: expected KEY=VALUE")
        out[key.strip()] = parse_value(value)
    return out
