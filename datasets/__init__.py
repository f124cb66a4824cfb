"""Dataset readers and image I/O (installed as `fusedet.datasets`)."""

from fusedet.datasets.color import replace_luma, rgb_to_gray, rgb_to_ycbcr, ycbcr_to_rgb
from fusedet.datasets.io import (
    IMAGE_EXTENSIONS,
    Pair,
    PairFolder,
    list_images,
    read_image,
    read_ir,
    read_pair,
    read_vis,
    to_uint8,
    write_image,
)

__all__ = [
    "IMAGE_EXTENSIONS",
    "Pair",
    "PairFolder",
    "list_images",
    "read_image",
    "read_ir",
    "read_pair",
    "read_vis",
    "replace_luma",
    "rgb_to_gray",
    "rgb_to_ycbcr",
    "to_uint8",
    "write_image",
    "ycbcr_to_rgb",
]
