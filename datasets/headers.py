"""Image sizes from file headers (no pixel decoding), and the IR/VIS same-size check.

Pillow's ``Image.open`` reads only the header, not the pixels, so a reader can size every pair of a
large dataset (M3FD's 4200) far faster than by decoding the images.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from fusedet.errors import InputError


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image file, read from its header; InputError names unreadable files.

    Files Pillow cannot identify but OpenCV decodes (multi-channel float or signed 16-bit TIFFs, as
    radiometric exports write) are sized by decoding them with OpenCV.
    """
    try:
        with _pillow_open()(path) as image:
            width, height = image.size
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, ImportError) as exc:
        decoded = _opencv_size(path)
        if decoded is None:
            raise InputError(f"{path}: unreadable image header ({exc})") from None
        width, height = decoded
    if width <= 0 or height <= 0:
        raise InputError(f"{path}: image header gives an empty size {width}x{height}")
    return int(width), int(height)


def pair_size(stem: str, ir_path: Path, vis_path: Path) -> tuple[int, int]:
    """(width, height) shared by an IR/VIS pair; different sizes raise InputError naming both files."""
    ir_size, vis_size = image_size(ir_path), image_size(vis_path)
    if ir_size != vis_size:
        raise InputError(
            f"pair {stem!r} has different sizes: {ir_path} is {ir_size[0]}x{ir_size[1]}, "
            f"{vis_path} is {vis_size[0]}x{vis_size[1]} (W x H); register/resize the pair first"
        )
    return ir_size


def _opencv_size(path: Path) -> tuple[int, int] | None:
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError:
        return None
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    return None if image is None or image.size == 0 else (int(image.shape[1]), int(image.shape[0]))


def _pillow_open():
    """Pillow's own `Image.open`.

    Importing ultralytics replaces `PIL.Image.open` by a wrapper that, on a file Pillow cannot
    identify, tries to install and import the pi-heif plugin (a warning, then an ImportError
    offline). For a corrupt file we want our own clear error, so the original opener is used.
    """
    patches = sys.modules.get("ultralytics.utils.patches")
    return getattr(patches, "_image_open", Image.open) if patches is not None else Image.open
