"""The DMNet paper's published detection results (Table VII), for `fusedet evaluate --paper`.

Source: C. Pan et al., "DMNet: A Dense Multiscale Feature Extraction Network With Two-Stage Training
for Infrared-Visible Image Fusion" (IEEE Internet of Things Journal, 2025; section IV-E),
Table VII "AP@0.5(%) values for object detection on M3FD dataset consisting of 4200 pairs of
infrared-visible images", detector: pretrained YOLOv5x. Copied as printed, in percent. The paper's
column "Trunk" is M3FD's Truck and "Motor" is Motorcycle; the abbreviated method names are
expanded from the paper's reference list. Two printed mAPs are not the mean of their row's six
APs: VI prints 42.36 (the six APs average 41.09; its Motor and Truck both print 26.10) and
Dif-Fusion prints 41.89 (mean 42.23). They are reproduced as printed, not corrected.

These are published numbers from another setup (all 4200 pairs, the authors' split and image
size), shown for orientation only: they are never ranked against measured rows.
"""

from __future__ import annotations

from collections.abc import Sequence

PAPER_CLASSES: tuple[str, ...] = ("People", "Car", "Bus", "Motorcycle", "Truck", "Lamp")
PAPER_SOURCE = "DMNet paper, Table VII (M3FD, 4200 pairs, YOLOv5x, AP@0.5 %)"

# method -> (People, Car, Bus, Motor, Truck, Lamp, mAP), rows in the paper's order.
TABLE_VII: dict[str, tuple[float, ...]] = {
    "IR": (49.90, 59.83, 28.48, 10.30, 9.34, 4.15, 27.00),
    "VI": (42.89, 70.88, 57.34, 26.10, 26.10, 23.25, 42.36),
    "DenseFuse": (50.14, 72.46, 54.51, 20.51, 29.25, 14.46, 40.22),
    "GANMcC": (46.75, 70.75, 53.07, 16.83, 27.76, 11.34, 37.75),
    "SDNet": (50.03, 71.06, 49.36, 18.59, 25.91, 7.01, 36.99),
    "U2Fusion": (49.27, 71.36, 55.61, 20.09, 14.13, 28.66, 39.85),
    "ReCoNet": (46.25, 70.97, 52.69, 21.13, 26.97, 12.37, 38.40),
    "MUFusion": (45.84, 70.56, 55.59, 20.78, 27.67, 11.65, 38.68),
    "CDDFuse": (50.78, 73.68, 53.04, 28.31, 31.50, 17.65, 42.49),
    "Dif-Fusion": (50.97, 73.18, 54.24, 29.95, 27.92, 17.09, 41.89),
    "CrossFuse": (47.66, 73.51, 53.49, 29.53, 33.52, 15.89, 42.27),
    "EMMA": (48.84, 72.43, 54.46, 25.45, 29.43, 13.45, 40.68),
    "Diff-IF": (50.72, 73.27, 48.60, 25.09, 28.35, 14.29, 40.05),
    "DANet": (51.27, 74.48, 58.73, 29.87, 32.92, 18.06, 44.22),
    "MMIF-INet": (51.78, 73.55, 57.31, 24.29, 25.51, 19.49, 41.98),
    "DMNet": (51.79, 74.56, 58.74, 30.53, 35.73, 18.67, 45.00),
}


def paper_rows(classes: Sequence[str]) -> dict[str, dict[str, float]]:
    """Table VII as rows labelled 'METHOD (paper)', keyed by `classes` (which must be M3FD's classes,
    in any order and case); returns {} for any other class set."""
    by_lower = {c.lower(): c for c in classes}
    if set(by_lower) != {c.lower() for c in PAPER_CLASSES}:
        return {}
    rows = {}
    for method, values in TABLE_VII.items():
        row = {by_lower[c.lower()]: v for c, v in zip(PAPER_CLASSES, values)}
        row["mAP"] = values[-1]
        rows[f"{method} (paper)"] = row
    return rows
