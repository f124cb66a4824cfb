"""Pascal VOC XML annotations (M3FD, LLVIP and the demo generator).

Coordinate convention: the VOC devkit stores 1-based, inclusive pixel indices, so the object covering
0-based pixel columns c1..c2 has ``xmin = c1 + 1`` and ``xmax = c2 + 1``. We convert to continuous
pixel-edge coordinates (what detectors predict and COCO evaluates) as

    x1 = xmin - 1,  y1 = ymin - 1,  x2 = xmax,  y2 = ymax

(the convention of the devkit's area ``(xmax - xmin + 1) * (ymax - ymin + 1)`` and of detectron2's
VOC loader). :func:`write_voc` does the inverse, so write -> read is exact for integer edges; the
demo generator writes through it. Fractional coordinates in a file are kept as they are.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from fusedet.datasets.text import parse_xml
from fusedet.errors import InputError


@dataclass(frozen=True)
class VocObject:
    """One object: its class name as written and its box in pixel edges (x1, y1, x2, y2)."""

    name: str
    x1: float
    y1: float
    x2: float
    y2: float
    difficult: bool = False


@dataclass(frozen=True)
class VocAnnotation:
    """One annotation file. width/height are None when the file has no usable ``<size>``."""

    path: Path
    width: int | None
    height: int | None
    objects: list[VocObject] = field(default_factory=list)


def _number(path: Path, element: ET.Element, tag: str, where: str) -> float:
    node = element.find(tag)
    if node is None or node.text is None or not node.text.strip():
        raise InputError(f"{path}: {where} has no <{tag}>")
    try:
        value = float(node.text.strip())
    except ValueError:
        raise InputError(f"{path}: {where} <{tag}> is not a number: {node.text.strip()!r}") from None
    if not math.isfinite(value):
        raise InputError(f"{path}: {where} <{tag}> is not finite: {node.text.strip()!r}")
    return value


def read_voc(path: str | Path) -> VocAnnotation:
    """Parse one VOC XML file; malformed XML or a malformed object raises InputError naming the file.

    The file is decoded by :func:`fusedet.datasets.text.parse_xml` (byte-order marks, UTF-16 and any
    declared encoding: GBK/GB2312 as Chinese-locale labelling tools write, Big5, Shift-JIS,
    Latin-1, ...). The root element may be ``<annotation>`` or ``<Annotation>`` (FLIR-aligned).
    """
    path = Path(path)
    root = parse_xml(path)
    if root.tag.lower() != "annotation":
        raise InputError(f"{path}: not a Pascal VOC annotation (root element <{root.tag}>, expected <annotation>)")
    width = height = None
    size = root.find("size")
    if size is not None and size.find("width") is not None and size.find("height") is not None:
        w, h = _number(path, size, "width", "<size>"), _number(path, size, "height", "<size>")
        if w > 0 and h > 0:  # some tools write 0 when they did not know the size
            width, height = int(round(w)), int(round(h))
    objects = []
    for index, obj in enumerate(root.findall("object")):
        name_node = obj.find("name")
        if name_node is None or not (name_node.text or "").strip():
            raise InputError(f"{path}: object {index} has no <name>")
        name = name_node.text.strip()
        where = f"object {index} ({name})"
        box = obj.find("bndbox")
        if box is None:
            raise InputError(f"{path}: {where} has no <bndbox>")
        xmin, ymin = _number(path, box, "xmin", where), _number(path, box, "ymin", where)
        xmax, ymax = _number(path, box, "xmax", where), _number(path, box, "ymax", where)
        difficult = obj.find("difficult")
        is_difficult = difficult is not None and (difficult.text or "0").strip() not in ("0", "", "false")
        objects.append(VocObject(name, xmin - 1.0, ymin - 1.0, xmax, ymax, is_difficult))
    return VocAnnotation(path, width, height, objects)


def write_voc(
    path: str | Path,
    *,
    filename: str,
    width: int,
    height: int,
    depth: int,
    objects: list[VocObject],
    folder: str = "",
) -> Path:
    """Write a VOC XML file (the inverse of :func:`read_voc` for integer pixel edges)."""
    path = Path(path)
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = folder
    ET.SubElement(root, "filename").text = filename
    size = ET.SubElement(root, "size")
    for tag, value in (("width", width), ("height", height), ("depth", depth)):
        ET.SubElement(size, tag).text = str(int(value))
    ET.SubElement(root, "segmented").text = "0"
    for obj in objects:
        node = ET.SubElement(root, "object")
        ET.SubElement(node, "name").text = obj.name
        ET.SubElement(node, "pose").text = "Unspecified"
        ET.SubElement(node, "truncated").text = "0"
        ET.SubElement(node, "difficult").text = "1" if obj.difficult else "0"
        box = ET.SubElement(node, "bndbox")
        for tag, value in (("xmin", obj.x1 + 1), ("ymin", obj.y1 + 1), ("xmax", obj.x2), ("ymax", obj.y2)):
            ET.SubElement(box, tag).text = _fmt(value)
    ET.indent(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(ET.tostring(root, encoding="utf-8", xml_declaration=False) + b"\n")
    return path


def _fmt(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))
