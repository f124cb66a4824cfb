"""The one reader for every text input of a dataset: VOC XML, split lists, class lists, YOLO label
files, bbGt annotation files, CSV tables.

Decoding rules, in order (the first that applies wins):

1. A byte-order mark names the encoding and is removed: UTF-8 (EF BB BF, what Windows Notepad and
   Excel write for "UTF-8"), UTF-32 LE/BE, UTF-16 LE (FF FE) and BE (FE FF).
2. XML only: without a mark, a first ``<?`` written in UTF-16 (``3C 00 3F 00`` or ``00 3C 00 3F``) is
   UTF-16 (XML 1.0, appendix F); otherwise the ``encoding="..."`` of the XML declaration is used
   (GBK, GB2312, Big5, Shift-JIS, Latin-1, ...). A declared legacy East-Asian encoding is decoded
   with its Windows superset when the strict codec fails (GB2312/GBK -> GB18030, Big5 -> CP950,
   Shift-JIS -> CP932), because Windows tools write the superset under the older name.
3. A file holding NUL bytes in the pattern of UTF-16 text (most odd or most even bytes zero) is
   UTF-16 without a mark.
4. Otherwise the file must be UTF-8 (ASCII included).

A file that cannot be decoded by these rules raises :class:`fusedet.errors.InputError` naming the
file, the byte offset and the encoding tried; nothing is guessed. Any U+FEFF left at the start of
the text (or of a line, after files were concatenated) is removed.

Names are cleaned by :func:`clean_name` (Unicode NFKC, format characters such as zero-width spaces
and byte-order marks removed, whitespace collapsed) and shown by :func:`shown` with ``repr`` when
they hold anything a terminal would not show plainly, so an invisible character is always visible
in a message.
"""

from __future__ import annotations

import codecs
import csv
import io
import os
import re
import unicodedata
import xml.etree.ElementTree as ET
from pathlib import Path

from fusedet.errors import InputError

_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),  # before UTF-16 LE: FF FE 00 00 starts with FF FE
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
# Windows supersets of legacy encodings, tried when the declared codec fails.
_SUPERSETS: dict[str, str] = {"gb2312": "gb18030", "gbk": "gb18030", "big5": "cp950", "shift_jis": "cp932", "euc_jp": "cp932"}
_XML_DECLARATION = re.compile(rb"""^\s*<\?xml[^>]*?\bencoding\s*=\s*["']([A-Za-z0-9._:-]+)["']""")
_XML_DECLARATION_TEXT = re.compile(r"""^\s*<\?xml[^>]*\?>""")


def bom_encoding(data: bytes) -> tuple[str, int] | None:
    """(codec, mark length) when `data` starts with a byte-order mark, else None."""
    for bom, codec in _BOMS:
        if data.startswith(bom):
            return codec, len(bom)
    return None


def _utf16_without_bom(data: bytes) -> str | None:
    """'utf-16-le' / 'utf-16-be' when NUL bytes sit where UTF-16 puts them for mostly-ASCII text."""
    sample = data[:4096]
    if b"\x00" not in sample or len(sample) < 2:
        return None
    even, odd = sample[0::2], sample[1::2]
    zero_even, zero_odd = even.count(0) / len(even), odd.count(0) / max(len(odd), 1)
    if zero_odd > 0.3 and zero_even < 0.05:
        return "utf-16-le"
    if zero_even > 0.3 and zero_odd < 0.05:
        return "utf-16-be"
    return None


def _decode(data: bytes, codec: str, path: Path, why: str) -> str:
    try:
        return data.decode(codec)
    except UnicodeDecodeError as exc:
        superset = _SUPERSETS.get(codecs.lookup(codec).name)
        if superset is not None:
            try:
                return data.decode(superset)
            except UnicodeDecodeError:
                pass
        bad = data[exc.start : exc.start + 4].hex(" ")
        raise InputError(
            f"{path}: cannot decode as {codec} ({why}): bytes {bad} at offset {exc.start}; "
            "save the file as UTF-8 (or, for XML, declare its encoding)"
        ) from None


def decode_text(data: bytes, path: str | os.PathLike = "<text>", *, xml: bool = False) -> str:
    """Decode the bytes of a text file by the rules of the module docstring; `path` names it in errors."""
    path = Path(path)
    found = bom_encoding(data)
    if found is not None:
        codec, skip = found
        text = _decode(data[skip:], codec, path, "its byte-order mark")
    elif xml and (data.startswith(b"<\x00?\x00") or data.startswith(b"\x00<\x00?")):
        codec = "utf-16-le" if data[0] == 0x3C else "utf-16-be"
        text = _decode(data, codec, path, "UTF-16 without a byte-order mark")
    elif xml and (match := _XML_DECLARATION.match(data[:512])) is not None:
        declared = match.group(1).decode("ascii")
        try:
            codecs.lookup(declared)
        except LookupError:
            raise InputError(f"{path}: declares an unknown encoding {declared!r}") from None
        text = _decode(data, declared, path, f"its XML declaration encoding={declared!r}")
    elif (codec := _utf16_without_bom(data)) is not None:
        text = _decode(data, codec, path, "UTF-16 without a byte-order mark")
    else:
        if b"\x00" in data[:4096]:
            raise InputError(f"{path}: not a text file (it holds NUL bytes)")
        text = _decode(data, "utf-8", path, "no byte-order mark or declaration")
    return text.lstrip("\ufeff")


def read_text(path: str | os.PathLike, *, kind: str = "text file", xml: bool = False) -> str:
    """The decoded text of `path` (module docstring rules); `kind` ("split list", ...) names it in errors.

    Raises InputError when the file is missing, unreadable or undecodable.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: no such {kind}") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read {kind} ({exc.strerror or exc})") from None
    return decode_text(data, path, xml=xml)


def clean_line(line: str) -> str:
    """A line without surrounding whitespace and format characters (U+FEFF, zero-width spaces, ...)."""
    start, end = 0, len(line)
    while start < end and (line[start].isspace() or unicodedata.category(line[start]) == "Cf"):
        start += 1
    while end > start and (line[end - 1].isspace() or unicodedata.category(line[end - 1]) == "Cf"):
        end -= 1
    return line[start:end]


def read_lines(path: str | os.PathLike, *, kind: str = "text file") -> list[str]:
    """The lines of `path`, each cleaned by :func:`clean_line`; line n of the file is item n - 1.

    Any line ending (LF, CRLF, CR) is accepted. Blank lines are kept as "" so numbers stay right.
    """
    return [clean_line(line) for line in read_text(path, kind=kind).splitlines()]


def read_csv_rows(path: str | os.PathLike, *, kind: str = "CSV file", delimiter: str = ",") -> list[list[str]]:
    """The rows of a CSV file (``csv`` module, `delimiter`), every cell cleaned by :func:`clean_line`."""
    text = read_text(path, kind=kind)
    try:
        rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))
    except csv.Error as exc:
        raise InputError(f"{path}: malformed CSV ({exc})") from None
    return [[clean_line(cell) for cell in row] for row in rows]


def parse_xml(path: str | os.PathLike) -> ET.Element:
    """The root element of an XML file decoded by :func:`decode_text` (so any declared encoding works).

    Malformed XML raises InputError naming the file and the parser's message.
    """
    path = Path(path)
    text = _XML_DECLARATION_TEXT.sub("", read_text(path, kind="XML file", xml=True), count=1)
    try:
        return ET.fromstring(text)
    except ET.ParseError as exc:
        raise InputError(f"{path}: malformed XML ({exc})") from None


def clean_name(name: str) -> str:
    """A name as a person reads it: NFKC, format characters removed, whitespace collapsed and stripped.

    Full-width letters become ASCII, a no-break space a space, and zero-width spaces, joiners,
    direction marks, soft hyphens and byte-order marks disappear; letter case is kept.
    """
    text = unicodedata.normalize("NFKC", str(name))
    text = "".join(ch for ch in text if unicodedata.category(ch) != "Cf")
    return " ".join(text.split())


def shown(name: str) -> str:
    """`name` as is when every character prints plainly, else its ``repr`` (invisible characters visible)."""
    name = str(name)
    plain = name == name.strip() and all(ch.isprintable() and unicodedata.category(ch) not in ("Cf", "Zs") or ch == " " for ch in name)
    return name if plain and name else repr(name)
