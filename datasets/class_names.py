"""Class names: one normalisation and one alias table, shared by the dataset readers (names in
annotation files -> a dataset's classes) and the detector (a model's classes -> a dataset's classes).

Two names are the same name when their :func:`name_key` agree: Unicode NFKC, format characters
(zero-width spaces, byte-order marks, direction marks) removed, case folded, and spaces, ``_`` and
``-`` removed. So ``People``, ``people``, ``ＰＥＯＰＬＥ`` and ``"people\\u200b"`` are one name.

Two different names stand for the same kind of object when they are in one group of
:data:`CLASS_ALIASES` (``People``/``person``/``pedestrian``, ``Motorcycle``/``motor``/``motorbike``,
``Truck``/``trunk``, ``Lamp``/``light``/``streetlight``, ...). Sources of the spellings: M3FD's own
names (People, Car, Bus, Lamp, Motorcycle, Truck; TarDAL ``loader/m3fd.py``), DCEvo's
``data/M3FD.yaml`` (people, car, bus, light, moto, trunk), COCO's names (person, bicycle, car,
motorcycle, bus, truck, dog), MSRS/FLIR/LLVIP/KAIST labels (person, bicycle, car, dog).

Matching (:class:`ClassMatcher`) is exact first: a name whose key equals a class's key is that
class. Only a class no name matches exactly can be reached through the alias table, and only when
the group holds exactly one of the target classes (so a dataset with both ``person`` and ``people``
keeps them apart). ``traffic light`` is not a lamp and COCO has no lamp class: M3FD's Lamp stays
uncovered by COCO weights.
"""

from __future__ import annotations

import difflib
import unicodedata
from collections.abc import Iterable, Mapping, Sequence

from fusedet.datasets.text import clean_name

CLASS_ALIASES: tuple[tuple[str, ...], ...] = (
    ("person", "people", "pedestrian", "pedestrians", "persons", "human", "humans"),
    ("bicycle", "bicycles", "bike", "bikes"),
    ("car", "cars"),
    ("motorcycle", "motorcycles", "motorbike", "motorbikes", "motor", "moto"),
    ("bus", "buses"),
    ("truck", "trucks", "trunk", "lorry"),
    ("lamp", "lamps", "light", "streetlamp", "streetlight"),
    ("dog", "dogs"),
)


def name_key(name: str) -> str:
    """The comparison key of a class name (see the module docstring)."""
    text = unicodedata.normalize("NFKC", str(name))
    return "".join(ch for ch in text.casefold() if unicodedata.category(ch) != "Cf" and not ch.isspace() and ch not in "_-")


_GROUP_OF: dict[str, int] = {name_key(n): i for i, group in enumerate(CLASS_ALIASES) for n in group}


def alias_group(name: str) -> tuple[str, ...]:
    """The alias group holding `name` (its key), or () if it is in none."""
    index = _GROUP_OF.get(name_key(name))
    return CLASS_ALIASES[index] if index is not None else ()


def clean_class_name(name: str) -> str:
    """A class name for tables and files: :func:`fusedet.datasets.text.clean_name` (case kept)."""
    return clean_name(name)


class ClassMatcher:
    """Maps names onto `classes` by key, then through the alias table (see the module docstring).

    `extra_aliases` adds dataset-specific spellings (alias -> one of `classes`); they count as
    exact names.
    """

    def __init__(self, classes: Sequence[str], extra_aliases: Mapping[str, str] | None = None) -> None:
        self.classes: list[str] = list(classes)
        self._exact: dict[str, str] = {}
        for c in self.classes:
            key = name_key(c)
            if key in self._exact:
                raise ValueError(f"classes {self._exact[key]!r} and {c!r} are the same name after normalisation")
            self._exact[key] = c
        for alias, target in (extra_aliases or {}).items():
            if target not in self.classes:
                raise ValueError(f"alias {alias!r} points to {target!r}, which is not one of {self.classes}")
            self._exact.setdefault(name_key(alias), target)
        self._by_group: dict[int, list[str]] = {}
        for c in self.classes:
            group = _GROUP_OF.get(name_key(c))
            if group is not None:
                self._by_group.setdefault(group, []).append(c)

    def exact(self, name: str) -> str | None:
        """The class whose key equals `name`'s (or a dataset-specific alias), else None."""
        return self._exact.get(name_key(name))

    def by_alias(self, name: str) -> str | None:
        """The one class in `name`'s alias group, else None (no group, or two classes in it)."""
        group = _GROUP_OF.get(name_key(name))
        targets = self._by_group.get(group, []) if group is not None else []
        return targets[0] if len(targets) == 1 else None

    def match(self, name: str) -> str | None:
        """`name`'s class: exact first, else through the alias table; None when neither."""
        return self.exact(name) or self.by_alias(name)

    def match_all(self, names: Mapping[int, str]) -> dict[int, str]:
        """index -> class for a model's names: exact matches first; an alias only reaches a class
        that no name matched exactly (a model with ``person`` and ``people`` maps only ``people``
        onto a dataset's ``People``)."""
        exact = {int(i): c for i, n in names.items() if (c := self.exact(n)) is not None}
        taken = set(exact.values())
        out = dict(exact)
        for i, n in names.items():
            if int(i) in out:
                continue
            target = self.by_alias(n)
            if target is not None and target not in taken:
                out[int(i)] = target
        return dict(sorted(out.items()))

    def why_unmatched(self, cls: str, names: Iterable[str], *, coco: bool = False) -> str:
        """One sentence on why no name in `names` maps onto class `cls` (for "not covered" notes)."""
        names = [str(n) for n in names]
        group = [a for a in alias_group(cls) if name_key(a) != name_key(cls)]
        also = f" (nor an alias: {', '.join(group)})" if group else ""
        who = "COCO weights have" if coco else f"the detector's {len(names)} classes ({_few(names)}) include"
        sentence = f"{who} no class {cls!r}{also}"
        keys = {name_key(n): n for n in names}
        close = difflib.get_close_matches(name_key(cls), list(keys), n=1, cutoff=0.75)
        if close and self.match(keys[close[0]]) is None:
            sentence += f"; the closest, {keys[close[0]]!r}, is a different name"
        return sentence


def _few(items: Sequence[str], limit: int = 8) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")
