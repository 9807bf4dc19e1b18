"""Label sets: the categories a model predicts, with thing/stuff flags and display colors.

A :class:`LabelSet` lists its categories **in model class order**: the network's class index ``k``
is ``label_set.categories[k]``, whose ``id`` is what the published semantic image holds. For
Cityscapes the two coincide (train ids 0..18); for COCO panoptic they do not (ids 1..200).

Shipped sets are YAML files in ``config/labels/`` (``cityscapes``, ``coco_panoptic``,
``synthetic``); :func:`load_label_set` takes one of those names or a path::

    name: synthetic
    categories:
      - {id: 0, name: road, is_thing: false, color: [128, 64, 128]}
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from panoptic_ros.core.ids import semantic_void_for
from panoptic_ros.errors import LabelSetError
from panoptic_ros.resources import config_dir

MAX_CATEGORY_ID = 65534


@dataclass(frozen=True, slots=True)
class Category:
    """One category: ``id`` (the semantic pixel value), ``name``, ``is_thing``, ``color`` (RGB)."""

    id: int
    name: str
    is_thing: bool
    color: tuple[int, int, int]

    def __post_init__(self) -> None:
        if not 0 <= self.id <= MAX_CATEGORY_ID:
            raise LabelSetError(f"category {self.name!r}: id={self.id} outside [0, {MAX_CATEGORY_ID}]")
        if not self.name:
            raise LabelSetError(f"category id={self.id}: empty name")
        if len(self.color) != 3 or any(not 0 <= c <= 255 for c in self.color):
            raise LabelSetError(f"category {self.name!r}: color={self.color} is not three values in 0..255")


@dataclass(frozen=True)
class LabelSet:
    """An ordered, validated list of categories (see the module docstring for the order's meaning)."""

    name: str
    categories: tuple[Category, ...]
    _by_id: dict[int, int] = field(init=False, repr=False, compare=False)
    # the hash of the compared fields, worked out once: label sets key per-frame caches (palettes,
    # lookup tables), and hashing every category each frame cost ~0.1 us a category
    _hash: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.categories:
            raise LabelSetError(f"label set {self.name!r} has no categories")
        by_id: dict[int, int] = {}
        names: set[str] = set()
        for index, category in enumerate(self.categories):
            if category.id in by_id:
                raise LabelSetError(f"label set {self.name!r}: category id {category.id} appears twice")
            if category.name in names:
                raise LabelSetError(f"label set {self.name!r}: category name {category.name!r} appears twice")
            by_id[category.id] = index
            names.add(category.name)
        object.__setattr__(self, "_by_id", by_id)
        object.__setattr__(self, "_hash", hash((self.name, self.categories)))

    def __hash__(self) -> int:
        return self._hash

    def __reduce__(self) -> tuple[type[LabelSet], tuple[str, tuple[Category, ...]]]:
        # rebuilt from its fields (string hashes differ between processes: the hash is worked out again)
        return (LabelSet, (self.name, self.categories))

    def __len__(self) -> int:
        return len(self.categories)

    def __iter__(self):
        return iter(self.categories)

    def __contains__(self, category_id: object) -> bool:
        return category_id in self._by_id

    def by_id(self, category_id: int) -> Category:
        """The category with this id; :class:`LabelSetError` when there is none."""
        try:
            return self.categories[self._by_id[category_id]]
        except KeyError as err:
            raise LabelSetError(f"label set {self.name!r} has no category id {category_id}") from err

    def index_of(self, category_id: int) -> int:
        """The model class index of a category id."""
        self.by_id(category_id)
        return self._by_id[category_id]

    def by_name(self, name: str) -> Category:
        """The category with this name; :class:`LabelSetError` listing the names when there is none."""
        for category in self.categories:
            if category.name == name:
                return category
        raise LabelSetError(
            f"label set {self.name!r} has no category {name!r}; it has {[c.name for c in self.categories]}"
        )

    @property
    def max_id(self) -> int:
        return max(self._by_id)

    @property
    def void_semantic(self) -> int:
        """The void value of this set's semantic images: 255 (``mono8``) or 65535 (``mono16``)."""
        return semantic_void_for(self.max_id)

    @property
    def thing_ids(self) -> tuple[int, ...]:
        return tuple(c.id for c in self.categories if c.is_thing)

    @property
    def stuff_ids(self) -> tuple[int, ...]:
        return tuple(c.id for c in self.categories if not c.is_thing)

    @cached_property
    def class_to_id(self) -> np.ndarray:
        """``int64`` array mapping model class index to category id (length ``len(self)``)."""
        return np.array([c.id for c in self.categories], dtype=np.int64)

    @cached_property
    def is_thing_lut(self) -> np.ndarray:
        """``bool`` array indexed by category id (length ``max_id + 1``): True for things."""
        lut = np.zeros(self.max_id + 1, dtype=bool)
        lut[[c.id for c in self.categories if c.is_thing]] = True
        return lut

    @cached_property
    def color_lut(self) -> np.ndarray:
        """``uint8`` array ``(void_semantic + 1) x 3`` of RGB colors indexed by category id; black for
        ids without a category and for void, so ``color_lut[semantic_map]`` colorizes a map."""
        lut = np.zeros((self.void_semantic + 1, 3), dtype=np.uint8)
        for c in self.categories:
            lut[c.id] = c.color
        return lut

    def to_dict(self) -> dict[str, Any]:
        """Plain data (the YAML/JSON form, also stored in model specs)."""
        return {
            "name": self.name,
            "categories": [
                {"id": c.id, "name": c.name, "is_thing": c.is_thing, "color": list(c.color)}
                for c in self.categories
            ],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "<dict>") -> LabelSet:
        """Build from the YAML/JSON form; errors name ``source`` and the offending entry."""
        try:
            name = str(data["name"])
            entries: Iterable[Mapping[str, Any]] = data["categories"]
            categories = tuple(
                Category(
                    id=int(entry["id"]),
                    name=str(entry["name"]),
                    is_thing=_as_bool(entry["is_thing"]),
                    color=tuple(int(v) for v in entry["color"]),  # type: ignore[arg-type]
                )
                for entry in entries
            )
        except LabelSetError as err:
            raise LabelSetError(f"{source}: {err}") from err
        except (KeyError, TypeError, ValueError) as err:
            raise LabelSetError(
                f"{source}: not a label set ({type(err).__name__}: {err}); expected 'name' and "
                "'categories' with entries {id, name, is_thing, color: [r, g, b]}"
            ) from err
        try:
            return cls(name=name, categories=categories)
        except LabelSetError as err:
            raise LabelSetError(f"{source}: {err}") from err

    @classmethod
    def from_message(cls, msg: Any) -> LabelSet:
        """The label set a ``panoptic_ros/CategoryArray`` describes (an rclpy or ``rosbags`` message)."""
        return cls(
            name=str(msg.label_set),
            categories=tuple(
                Category(
                    id=int(c.id),
                    name=str(c.name),
                    is_thing=bool(c.is_thing),
                    color=(int(c.r), int(c.g), int(c.b)),
                )
                for c in msg.categories
            ),
        )


def _as_bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if value in (0, 1):
        return bool(value)
    raise ValueError(f"is_thing={value!r} is not a boolean")


def shipped_label_sets() -> tuple[str, ...]:
    """Names of the label sets in ``config/labels/``."""
    return tuple(sorted(p.stem for p in (config_dir() / "labels").glob("*.yaml")))


def load_label_set(name_or_path: str | Path) -> LabelSet:
    """Load a shipped label set by name (``"cityscapes"``) or any label set YAML file by path."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = config_dir() / "labels" / f"{name_or_path}.yaml"
        if not path.is_file():
            raise LabelSetError(
                f"no shipped label set {str(name_or_path)!r}; shipped: {', '.join(shipped_label_sets())} "
                "(or give the path of a .yaml file)"
            )
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise LabelSetError(f"cannot read label set file {path}: {err}") from err
    except yaml.YAMLError as err:
        raise LabelSetError(f"label set file {path} is not valid YAML: {err}") from err
    if not isinstance(data, Mapping):
        raise LabelSetError(f"label set file {path}: expected a mapping with 'name' and 'categories'")
    return LabelSet.from_dict(data, source=str(path))
