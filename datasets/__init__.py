"""Dataset readers and image I/O (installed as `fusedet.datasets`)."""

from fusedet.datasets.color import replace_luma, rgb_to_gray, rgb_to_ycbcr, ycbcr_to_rgb
from fusedet.datasets.demo import generate_demo
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
from fusedet.datasets.records import DatasetWarnings, DetectionDataset, DetectionRecord
from fusedet.datasets.registry import DATASETS, load_dataset
from fusedet.datasets.splits import SplitInfo, apply_split_file, read_split_file
from fusedet.datasets.text import read_csv_rows, read_lines, read_text
from fusedet.datasets.value_range import RangeLog, ValueRange, parse_value_range

__all__ = [
    "DATASETS",
    "DatasetWarnings",
    "DetectionDataset",
    "DetectionRecord",
    "IMAGE_EXTENSIONS",
    "Pair",
    "PairFolder",
    "RangeLog",
    "SplitInfo",
    "ValueRange",
    "apply_split_file",
    "generate_demo",
    "list_images",
    "load_dataset",
    "parse_value_range",
    "read_csv_rows",
    "read_image",
    "read_ir",
    "read_lines",
    "read_pair",
    "read_split_file",
    "read_text",
    "read_vis",
    "replace_luma",
    "rgb_to_gray",
    "rgb_to_ycbcr",
    "to_uint8",
    "write_image",
    "ycbcr_to_rgb",
]
