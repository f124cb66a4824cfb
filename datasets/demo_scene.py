"""One synthetic road scene of the demo dataset: layout, lighting, and the IR and visible images.

Design: a detector trained on IR, visible and fused images must do better on
fused images than on either input alone, because each input loses objects the other keeps. This
holds *by construction*: every labelled object is given a visibility before it is drawn,

- ``both``:     a warm object in a lit, clear part of the scene;
- ``ir_only``:  a warm object (people, running vehicles, riders) that the visible image loses: in the
  dark at night, beyond the fog's visibility, or inside a glare blob;
- ``vis_only``: a cold object that the infrared image loses: street lamps (always: lamps give light,
  not heat), parked vehicles, and people on a hot afternoon when the road is as warm as they are.

and the scene is lit to match: at night only the objects meant to be seen get a pool of light, in
fog the cold objects stand near and the ``ir_only`` ones far, in glare the blob is centred on the
``ir_only`` objects. Cold parts are drawn at the temperature of what is behind them (so they vanish
in IR), warm parts at absolute temperatures; the visible image also keeps colour and texture,
which IR never has. A pixel mean of the two images keeps both kinds of object (a pixel max keeps
most; it loses dark objects in front of a warmer IR background).

Conditions (probabilities): night 0.4, fog 0.2, glare 0.15, clear day 0.15, hot day 0.1. The IR
image is always degraded: rendered at lower resolution (factor 1.5-3), blurred, with noise and
column stripes; the visible image gets sensor noise (strong at night).

Rendering: shapes from :mod:`fusedet.datasets.demo_objects`, projected with a flat-ground camera
(the horizon at 30-45 % of the height; size proportional to the distance below the horizon), drawn
at twice the output resolution with OpenCV and reduced with area averaging (anti-aliasing).
Boxes are the extent of each object's visible (unoccluded) pixels, in integer pixel edges.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from fusedet.datasets import demo_objects as shapes

CONDITIONS: tuple[tuple[str, float], ...] = (("night", 0.4), ("fog", 0.2), ("glare", 0.15), ("day", 0.15), ("hot", 0.1))
CLASSES: tuple[str, ...] = ("People", "Car", "Bus", "Motorcycle", "Truck", "Lamp")
SUPERSAMPLE = 2
_SHIFT = 2  # cv2 fixed-point bits for sub-pixel polygon vertices


@dataclass
class SceneObject:
    """A labelled object: class, integer pixel-edge box (x1, y1, x2, y2), and its designed visibility."""

    cls: str
    box: tuple[int, int, int, int]
    view: str
    scale: float  # perspective scale s in (0, 1]: 1 at the bottom row, 0 at the horizon
    ir_visible: bool
    vis_visible: bool

    @property
    def visibility(self) -> str:
        return "both" if self.ir_visible and self.vis_visible else "ir_only" if self.ir_visible else "vis_only"


@dataclass
class Scene:
    """A rendered scene. `ids` (H x W int16) gives, per pixel, the index in `objects` of the labelled
    object seen there (-1: background or distractor): not written to disk, used to measure contrasts."""

    condition: str
    ir: np.ndarray  # H x W uint8
    vis: np.ndarray  # H x W x 3 uint8 RGB
    objects: list[SceneObject]
    ids: np.ndarray


@dataclass
class _Placed:
    cls: str  # class name, or 'sign'/'dog' for distractors
    view: str
    facing: int
    s: float
    x0: float  # foot position, output pixels
    y0: float
    box: tuple[float, float, float, float]  # approximate (from the real size), output pixels
    hot: bool
    lit: bool = True
    final_box: tuple[int, int, int, int] | None = None


class _Camera:
    """Flat-ground perspective: ground row y(s) = horizon + s (H - horizon); px per metre = s * P."""

    def __init__(self, width: int, height: int, rng: np.random.Generator) -> None:
        self.width, self.height = width, height
        self.horizon = height * rng.uniform(0.3, 0.45)
        self.vp_x = width * rng.uniform(0.35, 0.65)
        self.ppm = height * 0.2 * rng.uniform(0.85, 1.15)  # pixels per metre at s = 1
        self.road_hw = rng.uniform(4.5, 8.0)  # metres from the road's centre to its edge

    def y(self, s: float) -> float:
        return self.horizon + s * (self.height - self.horizon)

    def x(self, s: float, lateral: float) -> float:
        return self.vp_x + lateral * s * self.ppm

    def s_of_y(self, y: np.ndarray) -> np.ndarray:
        return (y - self.horizon) / (self.height - self.horizon)


# Class -> (range of perspective scale s, views, probability of being warm = running / alive).
_CLASS_SPEC = {
    "People": ((0.12, 0.8), ("",), 1.0),
    "Car": ((0.1, 0.75), ("rear", "side"), 0.55),
    "Bus": ((0.08, 0.4), ("rear", "side"), 0.65),
    "Truck": ((0.08, 0.4), ("rear", "side"), 0.6),
    "Motorcycle": ((0.12, 0.7), ("",), 1.0),
    "Lamp": ((0.1, 0.35), ("",), 0.0),
    "sign": ((0.1, 0.6), ("",), 0.0),
    "dog": ((0.15, 0.7), ("",), 1.0),
}
_MIN_HEIGHT_PX = {"People": 16, "Car": 11, "Bus": 16, "Truck": 16, "Motorcycle": 14, "Lamp": 30, "sign": 10, "dog": 5}


def _count_objects(rng: np.random.Generator, forced: str) -> list[str]:
    """Classes of one scene: a few of each, and always at least one `forced` (round robin over scenes)."""
    counts = {
        "People": int(rng.integers(1, 5)),
        "Car": int(rng.integers(1, 4)),
        "Bus": int(rng.random() < 0.35),
        "Truck": int(rng.random() < 0.35),
        "Motorcycle": int(rng.integers(0, 3) if rng.random() < 0.5 else 0),
        "Lamp": int(rng.integers(0, 3)),
    }
    counts[forced] = max(counts[forced], 1)
    return [c for c in CLASSES for _ in range(counts[c])]


def _lateral(rng: np.random.Generator, cls: str, view: str, road_hw: float) -> float:
    side = 1 if rng.random() < 0.5 else -1
    if cls == "Lamp":
        return side * (road_hw + rng.uniform(0.3, 1.0))
    if cls in ("People", "dog", "sign"):
        if cls == "People" and rng.random() < 0.3:  # crossing the road
            return rng.uniform(-road_hw, road_hw)
        return side * (road_hw + rng.uniform(0.4, 3.0))
    if view == "side":
        return rng.uniform(-road_hw - 1.0, road_hw + 1.0)
    return rng.uniform(-road_hw + 1.0, road_hw - 1.0)


def _overlap(a, b) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return max(w, 0.0) * max(h, 0.0)


def _area(b) -> float:
    return max(b[2] - b[0], 0.0) * max(b[3] - b[1], 0.0)


def _fits(cand: _Placed, placed: list[_Placed], cam: _Camera) -> bool:
    x1, y1, x2, y2 = cand.box
    w = x2 - x1
    if y1 < 1 or y2 - y1 < _MIN_HEIGHT_PX[cand.cls]:
        return False
    inside = min(x2, cam.width) - max(x1, 0)
    if inside < 0.7 * w:
        return False
    for other in placed:
        inter = _overlap(cand.box, other.box)
        if inter == 0:
            continue
        far = cand if cand.s < other.s else other
        if inter > 0.35 * _area(far.box):
            return False
        covered = sum(_overlap(far.box, o.box) for o in placed + [cand] if o is not far and o.s > far.s)
        if covered > 0.45 * _area(far.box):
            return False
    return True


def _place(
    rng: np.random.Generator, cls: str, cam: _Camera, placed: list[_Placed], s_range=None, night: bool = False
) -> _Placed | None:
    """Sample a position for one object that fits (in the image, not too occluded) or None after 30 tries.

    At night a labelled object also gets its lighting here: cold ones are lit (else nobody could see
    them), warm ones with probability 0.35; a lit object's pool of light must not reach an object
    left in the dark, and a dark one must not stand in a pool of light.
    """
    (lo, hi), views, p_hot = _CLASS_SPEC[cls]
    if s_range is not None:
        lo, hi = max(lo, s_range[0]), min(hi, s_range[1])
        if lo >= hi:
            return None
    for _ in range(30):
        s = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
        view = views[int(rng.integers(len(views)))]
        lateral = _lateral(rng, cls, view, cam.road_hw)
        facing = 1 if rng.random() < 0.5 else -1
        if cls == "Lamp":
            facing = -1 if lateral > 0 else 1  # the arm reaches over the road
        width_m, height_m = shapes.REAL_SIZE[(cls, view)]
        p = s * cam.ppm
        x0, y0 = cam.x(s, lateral), cam.y(s)
        box = (x0 - width_m * p / 2, y0 - height_m * p, x0 + width_m * p / 2, y0)
        cand = _Placed(cls, view, facing, s, x0, y0, box, hot=bool(rng.random() < p_hot))
        if not _fits(cand, placed, cam):
            continue
        if night and cls in CLASSES:
            cand.lit = not cand.hot or rng.random() < 0.35
            if not _lighting_ok(cand, placed):
                if not cand.hot:
                    continue
                cand.lit = not cand.lit
                if not _lighting_ok(cand, placed):
                    continue
        return cand
    return None


def _lighting_ok(cand: _Placed, placed: list[_Placed]) -> bool:
    labelled = [o for o in placed if o.cls in CLASSES]
    if cand.lit:
        return all(o.lit or _pool_level(o, [_pool(cand)]) < 0.1 for o in labelled)
    pools = [_pool(o) for o in labelled if o.lit]
    return not pools or _pool_level(cand, pools) < 0.1


# ---------------------------------------------------------------- materials

_IR_HOT = {  # absolute IR levels of warm parts (range), others are relative to what is behind them
    "skin": (0.88, 1.0), "cloth_up": (0.7, 0.85), "cloth_low": (0.68, 0.82), "hair": (0.72, 0.8),
    "engine": (0.8, 0.95), "exhaust": (0.92, 1.0), "tyre": (0.72, 0.88), "rim": (0.6, 0.75),
}
_IR_REL_WARM = {"glass": -0.1, "taillight": 0.08, "headlight": 0.08, "shoe": 0.08, "helmet": 0.06}
_VIS_DEFAULT = {"exhaust": (0.15, 0.15, 0.16), "pole": (0.4, 0.4, 0.42)}  # else the object's paint
_LAMP_LIGHT = (1.0, 0.95, 0.8)  # emission of a lamp head, scaled per condition when the image is composed


def _materials(obj: _Placed, shape: shapes.Shape, rng: np.random.Generator, hot_floor: float) -> dict[str, tuple]:
    """material -> (visible RGB albedo, emission RGB, IR value, IR is absolute)."""
    out = {}
    body_delta = float(rng.uniform(0.06, 0.12))  # a running vehicle's body: warm, but far less than its engine
    cold_delta = float(rng.uniform(-0.012, 0.012))
    for part in shape.parts:
        m = part.material
        if m in out:
            continue
        albedo = shape.colours.get(m) or _VIS_DEFAULT.get(m) or shape.colours.get("paint", (0.4, 0.4, 0.4))
        emission = _LAMP_LIGHT if m == "lamp_head" else (0.0, 0.0, 0.0)
        if not obj.hot:
            ir, absolute = cold_delta, False
        elif m in _IR_HOT:
            lo, hi = _IR_HOT[m]
            ir, absolute = max(float(rng.uniform(lo, hi)), hot_floor + rng.uniform(0.0, 0.08)), True
        else:
            ir, absolute = _IR_REL_WARM.get(m, body_delta / 2 if m == "box" else body_delta), False
        out[m] = (tuple(float(c) for c in albedo), emission, min(ir, 1.0), absolute)
    return out


# ---------------------------------------------------------------- rendering

_FAR = 40.0  # depth of the sky and the skyline, in units of the bottom row's distance


class _Canvas:
    """Layers drawn at SUPERSAMPLE x the output size: albedo, emission, IR, depth and object ids."""

    def __init__(self, width: int, height: int) -> None:
        W, H = width * SUPERSAMPLE, height * SUPERSAMPLE
        self.albedo = np.zeros((H, W, 3), np.float32)
        self.emission = np.zeros((H, W, 3), np.float32)
        self.ir_bg = np.zeros((H, W), np.float32)
        self.ir_obj = np.zeros((H, W), np.float32)
        self.ir_abs = np.zeros((H, W), np.uint8)
        self.depth = np.zeros((H, W), np.float32)  # in units of the bottom row's distance (1/s); for fog
        self.ids = np.full((H, W), -1, np.int16)

    @staticmethod
    def pts(points: np.ndarray) -> list[np.ndarray]:
        return [np.round(np.asarray(points) * SUPERSAMPLE * (1 << _SHIFT)).astype(np.int32)]

    def background(self, points, albedo, ir, emission=None) -> None:
        """Draw on the background layers (their depth is set per row by `ground_depth`)."""
        p = self.pts(points)
        cv2.fillPoly(self.albedo, p, albedo, cv2.LINE_8, _SHIFT)
        cv2.fillPoly(self.ir_bg, p, float(ir), cv2.LINE_8, _SHIFT)
        if emission is not None:
            cv2.fillPoly(self.emission, p, emission, cv2.LINE_8, _SHIFT)

    def ground_depth(self, cam: _Camera) -> None:
        """Background depth: the flat ground's 1/s below the horizon, far above it (sky, skyline)."""
        rows = (np.arange(self.depth.shape[0], dtype=np.float32) + 0.5) / SUPERSAMPLE
        s = cam.s_of_y(rows)
        self.depth[:] = np.where(s > 0, 1.0 / np.maximum(s, 1.0 / _FAR), _FAR)[:, None]

    def part(self, points, albedo, emission, ir, absolute, depth, ident) -> None:
        p = self.pts(points)
        cv2.fillPoly(self.albedo, p, albedo, cv2.LINE_8, _SHIFT)
        cv2.fillPoly(self.emission, p, emission, cv2.LINE_8, _SHIFT)
        cv2.fillPoly(self.ir_obj, p, float(ir), cv2.LINE_8, _SHIFT)
        cv2.fillPoly(self.ir_abs, p, int(absolute), cv2.LINE_8, _SHIFT)
        cv2.fillPoly(self.depth, p, float(depth), cv2.LINE_8, _SHIFT)
        cv2.fillPoly(self.ids, p, int(ident), cv2.LINE_8, _SHIFT)

    def reduce(self, layer: np.ndarray) -> np.ndarray:
        H, W = layer.shape[0] // SUPERSAMPLE, layer.shape[1] // SUPERSAMPLE
        return cv2.resize(layer, (W, H), interpolation=cv2.INTER_AREA)


def _draw_background(cv: _Canvas, cam: _Camera, rng: np.random.Generator, ir_levels: dict, night: bool) -> None:
    W, H, hz = cam.width, cam.height, cam.horizon
    sky_top = np.array([0.35, 0.55, 0.85]) * rng.uniform(0.8, 1.1)
    sky_low = np.array([0.7, 0.8, 0.92]) * rng.uniform(0.85, 1.05)
    bands = 8
    for i in range(bands):  # sky gradient in bands (IR: cold, a little warmer near the horizon)
        y1, y2 = hz * i / bands, hz * (i + 1) / bands + 1
        c = sky_top + (sky_low - sky_top) * (i + 0.5) / bands
        cv.background(shapes.rect(-1, y1, W + 1, y2), tuple(c), ir_levels["sky"] + 0.04 * i / bands)
    ground = tuple(np.array(shapes.pick(rng, [(0.3, 0.42, 0.2), (0.42, 0.38, 0.28), (0.35, 0.35, 0.33)])))
    cv.background(shapes.rect(-1, hz, W + 1, H + 1), ground, ir_levels["grass"])
    # skyline: buildings and trees standing on the horizon
    x = -rng.uniform(0, 30)
    while x < W:
        w = rng.uniform(12, 60)
        if rng.random() < 0.65:
            h = rng.uniform(8, hz * 0.85)
            colour = tuple(shapes.pick(rng, [(0.55, 0.5, 0.45), (0.4, 0.4, 0.42), (0.65, 0.6, 0.5), (0.3, 0.28, 0.3)]))
            ir_b = ir_levels["building"] + rng.uniform(-0.05, 0.05)
            cv.background(shapes.rect(x, hz - h, x + w, hz + 1), colour, ir_b)
            win = rng.uniform(2.5, 4.0)
            for wy in np.arange(hz - h + 2, hz - 3, win * 1.8):
                for wx in np.arange(x + 2, x + w - win, win * 1.7):
                    lit = night and rng.random() < 0.25
                    glass = (0.6, 0.55, 0.35) if lit else tuple(np.array(colour) * 0.55)
                    cv.background(shapes.rect(wx, wy, wx + win, wy + win * 1.1), glass,
                                  ir_b + (0.1 if lit else -0.02), emission=(0.55, 0.45, 0.25) if lit else None)
        else:
            h = rng.uniform(10, 30)
            cv.background(shapes.rect(x + w / 2 - 1.5, hz - h * 0.5, x + w / 2 + 1.5, hz + 1), (0.25, 0.18, 0.1),
                          ir_levels["tree"])
            cv.background(shapes.ellipse(x + w / 2, hz - h * 0.7, w / 2, h * 0.45), tuple(shapes.pick(rng, [(0.15, 0.35, 0.12), (0.25, 0.4, 0.15)])),
                          ir_levels["tree"])
        x += w + rng.uniform(0, 15)
    # road and sidewalks, drawn as strips of the ground plane
    ss = np.concatenate([np.geomspace(0.003, 0.05, 6), np.linspace(0.06, 1.1, 12)])
    asphalt = tuple(np.full(3, rng.uniform(0.22, 0.38)) * np.array([1.0, 1.0, 1.04]))
    walk = tuple(np.full(3, rng.uniform(0.5, 0.65)))
    for s1, s2 in zip(ss[:-1], ss[1:]):
        y1, y2 = cam.y(s1), cam.y(s2)
        for lo, hi, colour, ir in (
            (-cam.road_hw - 3.5, -cam.road_hw, walk, ir_levels["walk"]),
            (cam.road_hw, cam.road_hw + 3.5, walk, ir_levels["walk"]),
            (-cam.road_hw, cam.road_hw, asphalt, ir_levels["road"]),
        ):
            quad = np.array([[cam.x(s1, lo), y1], [cam.x(s1, hi), y1], [cam.x(s2, hi), y2], [cam.x(s2, lo), y2]])
            cv.background(quad, colour, ir)
    # lane markings: dashes every 6 m of depth (z = 10 / s metres); invisible in IR
    for lane in (-cam.road_hw / 2, 0.0, cam.road_hw / 2):
        for z in np.arange(4.0, 150.0, 6.0):
            s1, s2 = 10.0 / (z + 3.0), 10.0 / z
            if s2 > 1.1:
                continue
            quad = np.array([[cam.x(s1, lane - 0.08), cam.y(s1)], [cam.x(s1, lane + 0.08), cam.y(s1)],
                             [cam.x(s2, lane + 0.08), cam.y(s2)], [cam.x(s2, lane - 0.08), cam.y(s2)]])
            cv.background(quad, (0.85, 0.85, 0.8), ir_levels["road"] + 0.005)


def _draw_objects(
    cv: _Canvas, cam: _Camera, placed: list[_Placed], rng: np.random.Generator, hot_floor: float, draw: bool
) -> None:
    for index in sorted(range(len(placed)), key=lambda i: placed[i].s):  # far to near: nearer ones occlude
        obj = placed[index]
        shape = shapes.build(obj.cls, obj.view, obj.facing, rng)
        mats = _materials(obj, shape, rng, hot_floor)
        p = obj.s * cam.ppm
        ident = index if shape.cls is not None else -1
        for part in shape.parts:
            pts = np.stack([obj.x0 + part.points[:, 0] * p, obj.y0 - part.points[:, 1] * p], axis=1)
            albedo, emission, ir, absolute = mats[part.material]
            if draw:
                cv.part(pts, albedo, emission, ir, absolute, 1.0 / obj.s, ident)
            else:  # only where it would be: boxes and ids
                cv2.fillPoly(cv.ids, cv.pts(pts), int(ident), cv2.LINE_8, _SHIFT)


def _boxes_from_ids(ids: np.ndarray, placed: list[_Placed]) -> None:
    """Set each labelled object's final box to the extent of its visible pixels (output pixel edges)."""
    for index, obj in enumerate(placed):
        if obj.cls not in CLASSES:
            continue
        mask = ids == index
        cols = np.flatnonzero(mask.any(axis=0))
        rows = np.flatnonzero(mask.any(axis=1))
        if cols.size == 0:
            continue
        x1, x2 = cols[0] // SUPERSAMPLE, -(-(cols[-1] + 1) // SUPERSAMPLE)
        y1, y2 = rows[0] // SUPERSAMPLE, -(-(rows[-1] + 1) // SUPERSAMPLE)
        obj.final_box = (int(x1), int(y1), int(x2), int(y2))


def _gauss_map(shape: tuple[int, int], blobs: list[tuple[float, float, float, float, float]]) -> np.ndarray:
    """Sum of anisotropic Gaussians (cx, cy, sx, sy, peak) on an H x W grid."""
    H, W = shape
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    out = np.zeros((H, W), np.float32)
    for cx, cy, sx, sy, peak in blobs:
        out += peak * np.exp(-0.5 * (((xx - cx) / sx) ** 2 + ((yy - cy) / sy) ** 2))
    return out


def _pool(obj: _Placed) -> tuple[float, float, float, float, float]:
    """The pool of light (a Gaussian: cx, cy, sx, sy, peak) that lights `obj` at night."""
    x1, y1, x2, y2 = obj.box
    narrow = 0.3 if obj.cls == "Lamp" else 0.5  # a lamp lights itself from its head down its pole
    return ((x1 + x2) / 2, (y1 + y2) / 2, narrow * (x2 - x1) + 4, 0.5 * (y2 - y1) + 4, 1.0)


def _pool_level(obj: _Placed, pools) -> float:
    x1, y1, x2, y2 = obj.box
    pts = [((x1 + x2) / 2, (y1 + y2) / 2), (x1, y1), (x2, y1), (x1, y2), (x2, y2)]
    return max(sum(peak * np.exp(-0.5 * (((x - cx) / sx) ** 2 + ((y - cy) / sy) ** 2)) for cx, cy, sx, sy, peak in pools)
               for x, y in pts)


def render_scene(
    rng: np.random.Generator, width: int, height: int, forced_class: str, draw_objects: bool = True
) -> Scene:
    """Draw one scene (see the module docstring); `forced_class` appears at least once.

    ``draw_objects=False`` renders the same scene without its objects (same layout, lighting and
    noise; boxes and ids as with them): the reference against which tests measure each object's
    contrast in either image.
    """
    cam = _Camera(width, height, rng)
    names, probs = zip(*CONDITIONS)
    condition = str(rng.choice(names, p=np.asarray(probs) / sum(probs)))
    night = condition == "night"
    ir_levels = {
        "day": dict(sky=0.12, building=0.45, tree=0.35, grass=0.36, road=0.46, walk=0.45),
        "night": dict(sky=0.05, building=0.38, tree=0.25, grass=0.22, road=0.3, walk=0.28),
        "fog": dict(sky=0.3, building=0.42, tree=0.35, grass=0.34, road=0.4, walk=0.4),
        "hot": dict(sky=0.3, building=0.72, tree=0.55, grass=0.62, road=0.8, walk=0.76),
    }[condition if condition != "glare" else "day"]
    ir_levels = {k: v + rng.uniform(-0.04, 0.04) for k, v in ir_levels.items()}
    hot_floor = ir_levels["road"] + 0.2 if condition == "hot" else 0.0

    # fog: visibility from depth d = 1/s; t(d) = exp(-beta (d - 1)); clear (t >= 0.3) near, lost (t <= 0.05) far
    beta = s_clear = s_lost = 0.0
    if condition == "fog":
        d_clear = rng.uniform(2.2, 3.5)
        beta = -np.log(0.3) / (d_clear - 1)
        s_clear, s_lost = 1.0 / d_clear, 1.0 / (1 + np.log(1 / 0.05) / beta)

    placed: list[_Placed] = []
    for cls in _count_objects(rng, forced_class):
        s_range = None
        if condition == "fog":
            warm = cls in ("People", "Motorcycle") or rng.random() < _CLASS_SPEC[cls][2]
            s_range = (s_clear, 1.0) if (not warm or rng.random() < 0.5) else (0.0, s_lost)
        obj = _place(rng, cls, cam, placed, s_range, night)
        if obj is None:
            continue
        if condition == "fog":
            obj.hot = obj.s < s_lost or (obj.hot and cls != "Lamp")
        if condition == "hot" and cls == "People":
            obj.hot = False  # thermal crossover: the afternoon road is as warm as people
        placed.append(obj)
    for cls in ["sign"] * int(rng.integers(0, 3)) + ["dog"] * int(rng.random() < 0.3):
        obj = _place(rng, cls, cam, placed)
        if obj is not None:
            if condition == "fog" and obj.s < s_clear:
                continue
            placed.append(obj)
    labelled = [o for o in placed if o.cls in CLASSES]

    # visible-image visibility per condition
    pools: list = []
    glare: list = []
    if night:
        pools = [_pool(o) for o in labelled if o.lit]
    elif condition == "fog":
        for obj in labelled:
            obj.lit = obj.s >= s_clear
    elif condition == "glare":
        cold = [o for o in labelled if not o.hot]
        targets = int(rng.integers(1, 3))
        warm = [o for o in labelled if o.hot]
        for obj in (warm[i] for i in rng.permutation(len(warm))):
            blob = _glare(obj, rng)
            if len(glare) < targets and all(_pool_level(c, glare + [blob]) < 0.15 for c in cold):
                glare.append(blob)  # cold objects must stay visible: they have nothing else
        for obj in labelled:
            obj.lit = not glare or _pool_level(obj, glare) < 1.2

    cv = _Canvas(width, height)
    cv.ground_depth(cam)
    _draw_background(cv, cam, rng, ir_levels, night)
    _draw_objects(cv, cam, placed, rng, hot_floor, draw_objects)
    _boxes_from_ids(cv.ids, placed)

    ir_full = np.where(cv.ir_abs > 0, cv.ir_obj, cv.ir_bg + cv.ir_obj)
    albedo = cv.reduce(cv.albedo)
    grain = rng.normal(0.0, 0.04, (height // 2, width // 2)).astype(np.float32)  # surface texture, visible only
    albedo *= 1.0 + cv2.resize(grain, (width, height), interpolation=cv2.INTER_LINEAR)[..., None]
    emission = cv.reduce(cv.emission)
    depth = cv.reduce(cv.depth)
    ir = cv.reduce(ir_full)
    H, W = height, width

    # visible image
    if night:
        illum = rng.uniform(0.02, 0.05) + rng.uniform(0.85, 1.15) * _gauss_map((H, W), pools)
        vis = albedo * np.minimum(illum, 1.3)[..., None]
        strength = rng.uniform(0.9, 1.3)
        vis += emission * strength + cv2.GaussianBlur(emission, (0, 0), 3.0) * 0.8 * strength
        noise = rng.uniform(0.012, 0.025)
    else:
        exposure = rng.uniform(0.85, 1.1) if condition != "glare" else rng.uniform(1.1, 1.35)
        vis = albedo * exposure
        noise = rng.uniform(0.003, 0.007)
        if condition == "fog":
            t = np.exp(-beta * np.maximum(depth - 1.0, 0.0))[..., None]
            vis = vis * t + rng.uniform(0.65, 0.85) * (1 - t)
            vis += emission * 0.4 * t
        if glare:
            vis = vis + _gauss_map((H, W), glare)[..., None] * np.array([1.0, 0.97, 0.9], np.float32)
    vis = vis + rng.normal(0.0, noise, vis.shape[:2]).astype(np.float32)[..., None]  # sensor noise

    # infrared image: fog barely touches long-wave IR; low resolution, blur, noise and column stripes
    if condition == "fog":
        t_ir = np.exp(-beta * 0.03 * np.maximum(depth - 1.0, 0.0))
        ir = ir * t_ir + ir_levels["sky"] * (1 - t_ir)
    factor = rng.uniform(1.5, 3.0)
    small = cv2.resize(ir, (max(int(W / factor), 8), max(int(H / factor), 8)), interpolation=cv2.INTER_AREA)
    ir = cv2.resize(small, (W, H), interpolation=cv2.INTER_LINEAR)
    ir = cv2.GaussianBlur(ir, (0, 0), rng.uniform(0.5, 1.0))
    ir = ir + rng.normal(0.0, rng.uniform(0.008, 0.02), ir.shape).astype(np.float32)
    ir = ir + rng.normal(0.0, rng.uniform(0.003, 0.01), (1, W)).astype(np.float32)

    keep = [i for i, o in enumerate(placed) if o.cls in CLASSES and o.final_box is not None]
    objects = [
        SceneObject(placed[i].cls, placed[i].final_box, placed[i].view, round(placed[i].s, 4),
                    ir_visible=placed[i].hot, vis_visible=placed[i].lit)
        for i in keep
    ]
    remap = np.full(len(placed) + 1, -1, np.int16)  # placed index -> objects index; -1 stays -1
    remap[keep] = np.arange(len(keep))
    ids = remap[cv.ids[::SUPERSAMPLE, ::SUPERSAMPLE]]
    return Scene(condition, _to_u8(ir), _to_u8(vis), objects, ids)


def _glare(obj: _Placed, rng: np.random.Generator) -> tuple[float, float, float, float, float]:
    x1, y1, x2, y2 = obj.box
    size = max(x2 - x1, y2 - y1)
    return ((x1 + x2) / 2, (y1 + y2) / 2, 0.6 * size + 4, 0.6 * size + 4, rng.uniform(2.0, 3.5))


def _to_u8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)
