"""Shapes of the demo generator's objects: the six M3FD classes (and unlabelled distractors) as parts.

Each object is built in metres in its own frame (x to the right, y up, origin on the ground at the
object's centre) from polygons; every part carries a *material* name. The scene module decides what
a material looks like in the visible image (albedo colour, light emission) and in the infrared one
(temperature), so one shape yields both images. Proportions follow real objects so that the
classes are told apart by shape, as a detector must:

- People: upright and narrow (about 0.3 x 1.7 m), legs, torso, arms, a head.
- Car: side view (about 4.5 x 1.5 m: body, cabin, windows, two wheels) or rear view (1.8 x 1.5 m:
  rear window, tail lights, plate, two tyres).
- Bus: long and tall (10-12 x 3.2 m side view with a row of windows, door, wheels) or a tall rear.
- Truck: cab + cargo box (7-9 m side view, three wheels) or the box's rear with dual wheels.
- Motorcycle: small (2 m), two wheels, tank, engine and a seated rider.
- Lamp: a thin pole (6-9 m) with an arm and a head that gives light.
Distractors (never labelled): road signs (a short pole with a board) and dogs (small, warm).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Rng = np.random.Generator


@dataclass(frozen=True)
class Part:
    """A filled polygon (K x 2, metres, object frame) drawn in `material`."""

    points: np.ndarray
    material: str


@dataclass
class Shape:
    """An object's parts, back to front, its class (None for a distractor) and its colours."""

    cls: str | None
    parts: list[Part]
    colours: dict[str, tuple[float, float, float]]  # material -> visible RGB albedo for this object


def rect(x1: float, y1: float, x2: float, y2: float) -> np.ndarray:
    return np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]], dtype=np.float64)


def ellipse(cx: float, cy: float, rx: float, ry: float, n: int = 20) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], axis=1)


def _quad(p: tuple[float, float], q: tuple[float, float], width: float) -> np.ndarray:
    """A bar of `width` from p to q (a limb, a pole, an arm)."""
    (x1, y1), (x2, y2) = p, q
    dx, dy = x2 - x1, y2 - y1
    norm = max(np.hypot(dx, dy), 1e-9)
    nx, ny = -dy / norm * width / 2, dx / norm * width / 2
    return np.array([[x1 + nx, y1 + ny], [x2 + nx, y2 + ny], [x2 - nx, y2 - ny], [x1 - nx, y1 - ny]])


def _wheel(parts: list[Part], x: float, r: float) -> None:
    parts.append(Part(ellipse(x, r, r, r), "tyre"))
    parts.append(Part(ellipse(x, r, 0.55 * r, 0.55 * r), "rim"))


def _mirror(parts: list[Part], facing: int) -> list[Part]:
    if facing >= 0:
        return parts
    return [Part(p.points * np.array([-1.0, 1.0]), p.material) for p in parts]


# Colours (visible albedo, linear RGB in [0, 1]).
PAINTS = [
    (0.75, 0.08, 0.07), (0.08, 0.18, 0.6), (0.85, 0.85, 0.82), (0.12, 0.12, 0.13), (0.55, 0.56, 0.58),
    (0.85, 0.7, 0.1), (0.1, 0.42, 0.2), (0.35, 0.2, 0.12), (0.9, 0.4, 0.08), (0.3, 0.55, 0.8),
]
SKINS = [(0.85, 0.65, 0.52), (0.7, 0.5, 0.38), (0.45, 0.3, 0.22), (0.93, 0.78, 0.66)]
CLOTHES = [
    (0.1, 0.1, 0.12), (0.15, 0.2, 0.45), (0.6, 0.1, 0.1), (0.8, 0.8, 0.78), (0.3, 0.3, 0.32),
    (0.2, 0.45, 0.25), (0.85, 0.6, 0.15), (0.45, 0.3, 0.2), (0.5, 0.15, 0.45),
]


def pick(rng: Rng, palette: list) -> tuple[float, float, float]:
    base = np.asarray(palette[int(rng.integers(len(palette)))])
    return tuple(np.clip(base * rng.uniform(0.85, 1.15), 0, 1).tolist())


def person(rng: Rng) -> Shape:
    h = rng.uniform(1.55, 1.9)
    stride = rng.uniform(0.0, 0.12) * h
    swing = rng.uniform(-0.06, 0.06) * h
    hip_y, shoulder_y = 0.52 * h, 0.81 * h
    parts = [
        Part(_quad((-0.035 * h, hip_y), (-stride / 2 - 0.02 * h, 0.02 * h), 0.075 * h), "cloth_low"),
        Part(_quad((0.035 * h, hip_y), (stride / 2 + 0.02 * h, 0.02 * h), 0.075 * h), "cloth_low"),
        Part(ellipse(-stride / 2 - 0.03 * h, 0.02 * h, 0.05 * h, 0.02 * h, 10), "shoe"),
        Part(ellipse(stride / 2 + 0.03 * h, 0.02 * h, 0.05 * h, 0.02 * h, 10), "shoe"),
        Part(_quad((-0.12 * h, shoulder_y - 0.02 * h), (-0.14 * h + swing, 0.5 * h), 0.055 * h), "cloth_up"),
        Part(_quad((0.12 * h, shoulder_y - 0.02 * h), (0.14 * h - swing, 0.5 * h), 0.055 * h), "cloth_up"),
        Part(ellipse(-0.14 * h + swing, 0.48 * h, 0.028 * h, 0.03 * h, 10), "skin"),
        Part(ellipse(0.14 * h - swing, 0.48 * h, 0.028 * h, 0.03 * h, 10), "skin"),
        Part(np.array([[-0.1 * h, hip_y - 0.02 * h], [0.1 * h, hip_y - 0.02 * h], [0.135 * h, shoulder_y],
                       [0.09 * h, shoulder_y + 0.025 * h], [-0.09 * h, shoulder_y + 0.025 * h], [-0.135 * h, shoulder_y]]),
             "cloth_up"),
        Part(rect(-0.025 * h, shoulder_y, 0.025 * h, 0.87 * h), "skin"),
        Part(ellipse(0.0, 0.915 * h, 0.055 * h, 0.07 * h), "skin"),
        Part(ellipse(0.0, 0.95 * h, 0.058 * h, 0.04 * h, 14), "hair"),
    ]
    colours = {
        "cloth_up": pick(rng, CLOTHES), "cloth_low": pick(rng, CLOTHES[:6]), "skin": pick(rng, SKINS),
        "hair": pick(rng, [(0.05, 0.04, 0.03), (0.3, 0.2, 0.1), (0.6, 0.55, 0.5)]), "shoe": (0.08, 0.07, 0.07),
    }
    return Shape("People", parts, colours)


def _vehicle_colours(rng: Rng) -> dict[str, tuple[float, float, float]]:
    return {
        "paint": pick(rng, PAINTS), "accent": pick(rng, PAINTS), "glass": (0.12, 0.16, 0.2), "tyre": (0.05, 0.05, 0.05),
        "rim": (0.55, 0.55, 0.57), "taillight": (0.75, 0.08, 0.06), "headlight": (0.9, 0.9, 0.8),
        "plate": (0.9, 0.9, 0.88), "trim": (0.1, 0.1, 0.1),
    }


def car(rng: Rng, view: str, facing: int) -> Shape:
    L, H, W, r = rng.uniform(4.0, 4.9), rng.uniform(1.35, 1.6), rng.uniform(1.7, 1.9), 0.32
    parts: list[Part] = []
    if view == "side":
        parts.append(Part(ellipse(-0.31 * L, r, 1.15 * r, 1.15 * r), "trim"))
        parts.append(Part(ellipse(0.31 * L, r, 1.15 * r, 1.15 * r), "trim"))
        parts.append(Part(np.array([[-0.38 * L, 0.6 * H], [0.24 * L, 0.6 * H], [0.07 * L, H], [-0.27 * L, H]]), "paint"))
        parts.append(Part(np.array([[-L / 2 + 0.1, 0.2], [L / 2 - 0.15, 0.2], [L / 2, 0.32], [L / 2, 0.52 * H],
                                    [L / 2 - 0.4, 0.62 * H], [-L / 2 + 0.15, 0.64 * H], [-L / 2, 0.56 * H], [-L / 2, 0.28]]),
                          "paint"))
        parts.append(Part(np.array([[0.22 * L, 0.22], [L / 2 - 0.1, 0.22], [L / 2 - 0.02, 0.5 * H], [0.22 * L, 0.6 * H]]), "engine"))
        parts.append(Part(np.array([[-0.34 * L, 0.64 * H], [-0.09 * L, 0.64 * H], [-0.09 * L, 0.95 * H], [-0.25 * L, 0.95 * H]]), "glass"))
        parts.append(Part(np.array([[-0.06 * L, 0.64 * H], [0.2 * L, 0.64 * H], [0.055 * L, 0.95 * H], [-0.06 * L, 0.95 * H]]), "glass"))
        parts.append(Part(rect(L / 2 - 0.12, 0.42 * H, L / 2, 0.5 * H), "headlight"))
        parts.append(Part(rect(-L / 2, 0.44 * H, -L / 2 + 0.1, 0.54 * H), "taillight"))
        parts.append(Part(rect(-L / 2 + 0.05, 0.12, -L / 2 + 0.35, 0.2), "exhaust"))
        _wheel(parts, -0.31 * L, r)
        _wheel(parts, 0.31 * L, r)
        return Shape("Car", _mirror(parts, facing), _vehicle_colours(rng))
    parts += [
        Part(rect(-W / 2 + 0.05, 0.0, -W / 2 + 0.33, 0.32), "tyre"),
        Part(rect(W / 2 - 0.33, 0.0, W / 2 - 0.05, 0.32), "tyre"),
        Part(rect(-0.42 * W, 0.1, 0.42 * W, 0.22), "engine"),
        Part(np.array([[-W / 2, 0.2], [W / 2, 0.2], [W / 2, 0.55 * H], [0.46 * W, 0.62 * H], [-0.46 * W, 0.62 * H], [-W / 2, 0.55 * H]]), "paint"),
        Part(np.array([[-0.46 * W, 0.6 * H], [0.46 * W, 0.6 * H], [0.36 * W, H], [-0.36 * W, H]]), "paint"),
        Part(np.array([[-0.41 * W, 0.64 * H], [0.41 * W, 0.64 * H], [0.33 * W, 0.95 * H], [-0.33 * W, 0.95 * H]]), "glass"),
        Part(rect(-0.5 * W, 0.2, 0.5 * W, 0.3 * H), "trim"),
        Part(rect(-0.48 * W, 0.4 * H, -0.34 * W, 0.52 * H), "taillight"),
        Part(rect(0.34 * W, 0.4 * H, 0.48 * W, 0.52 * H), "taillight"),
        Part(rect(-0.12 * W, 0.3 * H, 0.12 * W, 0.4 * H), "plate"),
        Part(ellipse(0.3 * W, 0.17, 0.05, 0.04, 8), "exhaust"),
    ]
    return Shape("Car", parts, _vehicle_colours(rng))


def bus(rng: Rng, view: str, facing: int) -> Shape:
    L, H, W, r = rng.uniform(9.0, 12.0), rng.uniform(3.0, 3.4), 2.5, 0.5
    colours = _vehicle_colours(rng)
    parts: list[Part] = []
    if view == "side":
        parts.append(Part(np.array([[-L / 2, 0.3], [L / 2, 0.3], [L / 2, H - 0.2], [L / 2 - 0.25, H],
                                    [-L / 2 + 0.2, H], [-L / 2, H - 0.15]]), "paint"))
        parts.append(Part(rect(-L / 2, 0.35 * H, L / 2, 0.45 * H), "accent"))
        parts.append(Part(rect(-L / 2, 0.3, -L / 2 + 1.6, 0.42 * H), "engine"))
        x, end = -L / 2 + 0.5, L / 2 - 2.6
        pane = rng.uniform(1.0, 1.5)
        while x + pane <= end:
            parts.append(Part(rect(x, 0.52 * H, x + pane, 0.86 * H), "glass"))
            x += pane + 0.15
        parts.append(Part(rect(L / 2 - 2.3, 0.32, L / 2 - 1.3, 0.86 * H), "glass"))  # door
        parts.append(Part(np.array([[L / 2 - 0.9, 0.5 * H], [L / 2, 0.5 * H], [L / 2, 0.88 * H], [L / 2 - 0.6, 0.88 * H]]), "glass"))
        parts.append(Part(rect(L / 2 - 0.15, 0.3 * H, L / 2, 0.36 * H), "headlight"))
        _wheel(parts, -0.3 * L, r)
        _wheel(parts, 0.3 * L, r)
        return Shape("Bus", _mirror(parts, facing), colours)
    parts += [
        Part(rect(-W / 2 + 0.05, 0.0, -W / 2 + 0.4, 0.5), "tyre"),
        Part(rect(W / 2 - 0.4, 0.0, W / 2 - 0.05, 0.5), "tyre"),
        Part(rect(-W / 2, 0.3, W / 2, H), "paint"),
        Part(rect(-W / 2, 0.3 * H, W / 2, 0.38 * H), "accent"),
        Part(rect(-0.4 * W, 0.55 * H, 0.4 * W, 0.86 * H), "glass"),
        Part(rect(-0.3 * W, 0.9 * H, 0.3 * W, 0.97 * H), "trim"),
        Part(rect(-0.35 * W, 0.12 * H, 0.35 * W, 0.27 * H), "engine"),
        Part(rect(-0.48 * W, 0.4 * H, -0.4 * W, 0.5 * H), "taillight"),
        Part(rect(0.4 * W, 0.4 * H, 0.48 * W, 0.5 * H), "taillight"),
    ]
    return Shape("Bus", parts, colours)


def truck(rng: Rng, view: str, facing: int) -> Shape:
    L, Hc, Hb, W, r = rng.uniform(7.0, 9.0), rng.uniform(2.7, 3.0), rng.uniform(3.2, 3.7), 2.5, 0.5
    colours = _vehicle_colours(rng)
    colours["box"] = pick(rng, [(0.85, 0.85, 0.83), (0.6, 0.6, 0.62), (0.2, 0.3, 0.6), (0.7, 0.15, 0.1), (0.3, 0.45, 0.3)])
    parts: list[Part] = []
    if view == "side":
        cab_x = L / 2 - 2.1
        parts.append(Part(rect(-L / 2 + 0.2, 0.45, L / 2 - 0.3, 0.95), "trim"))  # chassis
        parts.append(Part(rect(-L / 2, 0.95, cab_x - 0.15, Hb), "box"))
        parts.append(Part(rect(-L / 2 + 0.1, 0.6 * Hb, cab_x - 0.25, 0.63 * Hb), "trim"))
        parts.append(Part(np.array([[cab_x, 0.5], [L / 2, 0.5], [L / 2, 0.62 * Hc], [L / 2 - 0.35, Hc], [cab_x, Hc]]), "paint"))
        parts.append(Part(rect(cab_x + 0.05, 0.5, L / 2 - 0.05, 0.45 * Hc), "engine"))
        glass = [[cab_x + 0.9, 0.65 * Hc], [L / 2 - 0.05, 0.65 * Hc], [L / 2 - 0.38, 0.93 * Hc], [cab_x + 0.9, 0.93 * Hc]]
        parts.append(Part(np.array(glass), "glass"))
        parts.append(Part(rect(L / 2 - 0.15, 0.3 * Hc, L / 2, 0.38 * Hc), "headlight"))
        _wheel(parts, L / 2 - 1.1, r)
        _wheel(parts, -L / 2 + 2.4, r)
        _wheel(parts, -L / 2 + 1.3, r)
        return Shape("Truck", _mirror(parts, facing), colours)
    parts += [
        Part(rect(-W / 2 + 0.02, 0.0, -W / 2 + 0.62, 1.0), "tyre"),
        Part(rect(W / 2 - 0.62, 0.0, W / 2 - 0.02, 1.0), "tyre"),
        Part(rect(-0.3 * W, 0.35, 0.3 * W, 0.85), "engine"),
        Part(rect(-W / 2, 0.55, W / 2, 0.9), "trim"),
        Part(rect(-0.45 * W, 0.62, -0.33 * W, 0.8), "taillight"),
        Part(rect(0.33 * W, 0.62, 0.45 * W, 0.8), "taillight"),
        Part(rect(-W / 2, 0.9, W / 2, Hb), "box"),
        Part(rect(-0.01 * W, 0.95, 0.01 * W, Hb - 0.08), "trim"),
        Part(rect(-0.12 * W, 0.5 * Hb, -0.06 * W, 0.53 * Hb), "trim"),
        Part(rect(0.06 * W, 0.5 * Hb, 0.12 * W, 0.53 * Hb), "trim"),
    ]
    return Shape("Truck", parts, colours)


def motorcycle(rng: Rng, facing: int) -> Shape:
    L, r = rng.uniform(1.9, 2.2), 0.31
    colours = _vehicle_colours(rng)
    colours.update({"cloth_up": pick(rng, CLOTHES), "cloth_low": pick(rng, CLOTHES[:6]), "helmet": pick(rng, PAINTS)})
    fx, bx = 0.36 * L, -0.36 * L
    parts: list[Part] = []
    _wheel(parts, bx, r)
    _wheel(parts, fx, r)
    parts += [
        Part(_quad((fx, r), (0.27 * L, 1.05), 0.06), "rim"),  # fork
        Part(_quad((bx, r), (-0.05 * L, 0.55), 0.07), "trim"),  # swing arm
        Part(rect(-0.12 * L, 0.32, 0.14 * L, 0.68), "engine"),
        Part(_quad((-0.15 * L, 0.35), (-0.42 * L, 0.42), 0.07), "exhaust"),
        Part(np.array([[-0.04 * L, 0.72], [0.22 * L, 0.74], [0.24 * L, 0.92], [0.02 * L, 0.95]]), "paint"),
        Part(np.array([[-0.36 * L, 0.8], [-0.02 * L, 0.8], [-0.02 * L, 0.9], [-0.3 * L, 0.9]]), "trim"),
        Part(_quad((-0.12 * L, 0.92), (0.07 * L, 0.95), 0.17), "cloth_low"),  # thigh
        Part(_quad((0.07 * L, 0.95), (0.04 * L, 0.42), 0.13), "cloth_low"),  # shin
        Part(_quad((-0.1 * L, 0.95), (0.01 * L, 1.5), 0.34), "cloth_up"),  # torso, leaning forward
        Part(_quad((0.01 * L, 1.42), (0.25 * L, 1.08), 0.1), "cloth_up"),  # arm to the handlebar
        Part(ellipse(0.03 * L, 1.64, 0.15, 0.16), "helmet"),
    ]
    return Shape("Motorcycle", _mirror(parts, facing), colours)


def lamp(rng: Rng, facing: int) -> Shape:
    H, arm = rng.uniform(6.0, 9.0), rng.uniform(1.0, 1.8)
    colours = {"pole": pick(rng, [(0.35, 0.36, 0.38), (0.2, 0.25, 0.22), (0.5, 0.5, 0.5)]), "lamp_head": (0.92, 0.9, 0.82)}
    parts = [
        Part(rect(-0.22, 0.0, 0.22, 0.8), "pole"),
        Part(np.array([[-0.15, 0.0], [0.15, 0.0], [0.09, H], [-0.09, H]]), "pole"),
    ]
    double = rng.random() < 0.3
    for side in (1, -1) if double else (1,):
        parts.append(Part(_quad((0.0, H - 0.05), (side * arm * 0.6, H + 0.25), 0.12), "pole"))
        parts.append(Part(_quad((side * arm * 0.6, H + 0.25), (side * arm, H + 0.22), 0.12), "pole"))
        parts.append(Part(ellipse(side * arm, H + 0.12, 0.5, 0.18, 14), "lamp_head"))
    return Shape("Lamp", _mirror(parts, facing), colours)


def sign(rng: Rng) -> Shape:
    """Distractor: a road sign, a short pole with a coloured board (cold in IR, like a lamp's pole)."""
    H = rng.uniform(2.2, 3.2)
    board = rng.choice(["round", "square", "triangle"])
    size = rng.uniform(0.6, 0.9)
    top = H + size / 2
    if board == "round":
        pts = ellipse(0.0, top, size / 2, size / 2)
    elif board == "square":
        pts = rect(-size / 2, H, size / 2, H + size)
    else:
        pts = np.array([[-size / 2, H], [size / 2, H], [0.0, H + size * 0.87]])
    colour = pick(rng, [(0.1, 0.25, 0.7), (0.75, 0.08, 0.06), (0.9, 0.75, 0.1), (0.1, 0.45, 0.2)])
    return Shape(None, [Part(rect(-0.05, 0.0, 0.05, H + 0.1), "pole"), Part(pts, "sign")],
                 {"pole": (0.45, 0.45, 0.47), "sign": colour})


def dog(rng: Rng, facing: int) -> Shape:
    """Distractor: a dog (warm in IR like a person, but low and four-legged)."""
    L, h = rng.uniform(0.6, 0.9), rng.uniform(0.4, 0.6)
    parts = [Part(_quad((x, 0.0), (x, 0.6 * h), 0.06), "cloth_up") for x in (-0.35 * L, -0.25 * L, 0.25 * L, 0.35 * L)]
    parts.append(Part(ellipse(0.0, 0.65 * h, 0.45 * L, 0.18 * h), "cloth_up"))
    parts.append(Part(ellipse(0.5 * L, 0.85 * h, 0.14, 0.1), "skin"))
    parts.append(Part(_quad((-0.45 * L, 0.7 * h), (-0.6 * L, 0.9 * h), 0.04), "cloth_up"))
    colour = pick(rng, [(0.35, 0.22, 0.1), (0.1, 0.08, 0.06), (0.8, 0.7, 0.5)])
    return Shape(None, _mirror(parts, facing), {"cloth_up": colour, "skin": colour})


REAL_SIZE = {  # metres: typical (width, height) of the object's box, per class and view, for placement
    ("People", ""): (0.5, 1.75), ("Car", "side"): (4.5, 1.5), ("Car", "rear"): (1.8, 1.5),
    ("Bus", "side"): (10.5, 3.2), ("Bus", "rear"): (2.5, 3.2), ("Truck", "side"): (8.0, 3.5),
    ("Truck", "rear"): (2.5, 3.5), ("Motorcycle", ""): (2.1, 1.8), ("Lamp", ""): (2.0, 7.7),
    ("sign", ""): (0.8, 3.5), ("dog", ""): (1.0, 0.6),
}


def build(cls: str, view: str, facing: int, rng: Rng) -> Shape:
    """The shape of one object of class `cls` ('People', ..., or the distractors 'sign'/'dog')."""
    if cls == "People":
        return person(rng)
    if cls == "Car":
        return car(rng, view, facing)
    if cls == "Bus":
        return bus(rng, view, facing)
    if cls == "Truck":
        return truck(rng, view, facing)
    if cls == "Motorcycle":
        return motorcycle(rng, facing)
    if cls == "Lamp":
        return lamp(rng, facing)
    if cls == "sign":
        return sign(rng)
    if cls == "dog":
        return dog(rng, facing)
    raise ValueError(f"unknown demo object class {cls!r}")
