"""Contact sheets: source images beside each chosen transform, or copies beside their original."""

from __future__ import annotations

import warnings
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .common import formats, imageio
from .common.atomic import write_atomic
from .common.errors import BalanceError, BalanceValueError, ToolWarning
from .common.imageio import BadImage, cv2, load
from .common.limits import ROWS, SEED, SIDE
from .common.ownership import claim_file
from .common.square import RESIZE_MODES, to_square
from .common.storage import Place, Remote, location
from .manifest import MANIFEST, read_manifest
from .source import list_source
from .transforms import TRANSFORMS, unsuited

TILE = 168  # px per tile side
TEXT_H = 30  # px of label under each tile
FONT = cv2.FONT_HERSHEY_SIMPLEX


def to_display(image: np.ndarray) -> np.ndarray:
    """8-bit BGR for showing: 16-bit scaled down, gray expanded, alpha over a checkerboard."""
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        h, w = image.shape[:2]
        board = ((np.indices((h, w)) // 8).sum(axis=0) % 2 * 60 + 160).astype(np.float32)
        alpha = image[..., 3:4].astype(np.float32) / 255.0
        return (image[..., :3] * alpha + board[..., None] * (1 - alpha)).astype(np.uint8)
    return image


def tile(image: np.ndarray, caption: Sequence[str]) -> np.ndarray:
    """The image letterboxed into TILE x TILE (aspect kept), with up to two caption lines."""
    image = to_display(image)
    h, w = image.shape[:2]
    scale = TILE / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    resized = cv2.resize(
        image, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_NEAREST
    )
    out = np.full((TILE + TEXT_H, TILE, 3), 255, np.uint8)
    y0, x0 = (TILE - size[1]) // 2, (TILE - size[0]) // 2
    out[y0 : y0 + size[1], x0 : x0 + size[0]] = resized
    for i, line in enumerate(caption[:2]):
        cv2.putText(
            out, _fit(line), (3, TILE + 12 + 13 * i), FONT, 0.36, (20, 20, 20), 1, cv2.LINE_AA
        )
    return out


def _fit(text: str, width: int = TILE - 6) -> str:
    while text and cv2.getTextSize(text, FONT, 0.36, 1)[0][0] > width:
        text = text[:-2] + "~"
    return text


def describe_params(params: Mapping) -> str:
    """'degrees=-23.4 x=0.12' style: short enough to read under a tile."""
    return " ".join(
        f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items()
    )


def sheet(rows: list[list[np.ndarray]], gap: int = 4) -> np.ndarray:
    """Tiles in a grid (rows may be short), on a light gray background."""
    cols = max(len(r) for r in rows)
    th, tw = rows[0][0].shape[:2]
    out = np.full((len(rows) * (th + gap) + gap, cols * (tw + gap) + gap, 3), 235, np.uint8)
    for i, row in enumerate(rows):
        for j, t in enumerate(row):
            y, x = gap + i * (th + gap), gap + j * (tw + gap)
            out[y : y + th, x : x + tw] = t
    return out


SHEET_QUALITY = 92  # a contact sheet is for looking at: smaller than a copy's 95


def _sheet_target(out: str | Place | Remote, inputs: dict, *, overwrite: bool) -> Place:
    """Where a contact sheet goes: a name of an output format, claimed as a single file."""
    name = location(out).name
    if formats.of_name(name) is None:
        raise BalanceError(
            f"{out}: a contact sheet's name ends in {formats.names()} (got '{Path(name).suffix}')"
        )
    return claim_file(out, inputs=inputs, overwrite=overwrite)


def _save(image: np.ndarray, path: Place) -> None:
    """In the format its name says (.png, .jpg)."""
    write_atomic(path, imageio.encode(image, formats.written_format(path.name).name, SHEET_QUALITY))


@dataclass(frozen=True)
class View:
    """How a tile shows an image: as stored (mode None), or as `train --resize MODE
    --image-size SIZE` feeds it to the model (the trainer's own `to_square`). `at_least` is
    the side a file needs to be decoded at for it (a large JPEG decodes at a fraction)."""

    mode: str | None = None
    image_size: int = TILE

    def __post_init__(self) -> None:
        if self.mode is not None and self.mode not in RESIZE_MODES:
            raise BalanceValueError(
                f"resize must be one of {', '.join(RESIZE_MODES)} (got '{self.mode}')",
                parameters=("resize",),
            )
        SIDE.check(self.image_size, "image_size")

    @property
    def at_least(self) -> int:
        """The side a file must be decoded at for this view."""
        return self.image_size

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """The image as this view shows it."""
        return image if self.mode is None else to_square(image, self.image_size, self.mode)


def as_trained(resize: str, image_size: int) -> View:
    """What `train --resize MODE --image-size SIZE` makes of an image: stretched to a square,
    the centred square cropped, or padded with black."""
    return View(resize, image_size)


as_stored = View()


def pick_sources(src: str | Place, n: int, seed: int) -> list[tuple[str, np.ndarray]]:
    """n readable images from different classes in turn, chosen with the seed."""
    ROWS.check(n, "rows")
    SEED.check(seed, "seed")
    listing = list_source(src)
    rng = np.random.default_rng(seed)
    by_class: dict[str, list[str]] = defaultdict(list)
    for rel, label, *_ in listing.candidates:
        by_class[label].append(rel)
    pools = {label: list(rng.permutation(files)) for label, files in sorted(by_class.items())}
    chosen: list[tuple[str, np.ndarray]] = []
    while len(chosen) < n and any(pools.values()):
        for label in list(pools):
            if len(chosen) == n:
                break
            while pools[label]:
                rel = pools[label].pop()
                try:
                    chosen.append((rel, load(listing.root / rel).image))
                    break
                except BadImage:
                    continue
    if not chosen:
        raise BalanceError(f"no readable images in {src}")
    return chosen


def preview_transforms(
    src: str | Place,
    transforms: Mapping[str, float | None],
    out: str | Place,
    rows: int = 4,
    seed: int = 0,
    view: View = as_stored,
    *,
    overwrite: bool = False,
) -> tuple[int, int]:
    """Rows of: a source image, then each transform applied once. Returns (rows, columns).

    `view` (as_trained(...)) shows every tile as the trainer will see it. OUT is never
    written inside SRC, and replaces an existing file only with overwrite=True."""
    target = _sheet_target(out, {"source folder": location(src)}, overwrite=overwrite)
    tiles = []
    sources = pick_sources(src, rows, seed)
    for message in unsuited(dict(transforms), {"": [im.shape[1::-1] for _, im in sources]}):
        warnings.warn(message, ToolWarning, stacklevel=2)
    for i, (rel, image) in enumerate(sources):
        row = [tile(view(image), [rel, f"original {image.shape[1]}x{image.shape[0]}"])]
        for j, (name, magnitude) in enumerate(transforms.items()):
            result, params = TRANSFORMS[name](image, np.random.default_rng([seed, i, j]), magnitude)
            row.append(tile(view(result), [name, describe_params(params)]))
        tiles.append(row)
    _save(sheet(tiles), target)
    return len(tiles), 1 + len(transforms)


def preview_manifest(
    folder: str | Place,
    out: str | Place,
    rows: int = 4,
    per_row: int = 5,
    seed: int = 0,
    view: View = as_stored,
    *,
    overwrite: bool = False,
) -> tuple[int, int]:
    """Rows of: an original of a balanced folder, then its generated copies (up to per_row).
    The files are decoded at the scale the tile needs (a large JPEG at a fraction)."""
    ROWS.check(rows, "rows")
    SEED.check(seed, "seed")
    folder = location(folder)
    target = _sheet_target(out, {"balanced folder": folder}, overwrite=overwrite)
    m = read_manifest(folder)
    aug = m[m.origin == "augmented"]
    if aug.empty:
        raise BalanceError(f"{folder} has no augmented copies to show")
    rng = np.random.default_rng(seed)
    sources = []
    for label in rng.permutation(sorted(aug.label.unique())):
        choices = sorted(aug[aug.label == label].source.unique())
        sources.append(choices[rng.integers(len(choices))])
    tiles = []
    originals = dict(
        zip(m.source[m.origin == "original"], m.file_name[m.origin == "original"], strict=True)
    )
    shown = _shown(folder, view.at_least)
    for source in sources[:rows]:
        original = originals.get(source)
        if original is None:
            raise BalanceError(f"{folder / MANIFEST} has no row for the original {source}")
        row = [tile(view(shown(original, None)[0]), [original, "original"])]
        for r in aug[aug.source == source].head(per_row).itertuples():
            image, params = shown(r.file_name, r.params)
            if not isinstance(params, dict):
                raise BalanceError(f"{folder / MANIFEST}: the copy {r.file_name} has no params")
            row.append(tile(view(image), [r.augmentation, describe_params(params)]))
        tiles.append(row)
    _save(sheet(tiles), target)
    return len(tiles), max(len(r) for r in tiles)


def _shown(folder: Place, at_least: int) -> Callable[[str, Any], tuple[np.ndarray, Any]]:
    """(pixels, params) of a file by name: read from a balanced folder, or made from its
    original when the folder is a recipe (`build --recipe-only`: no file written)."""
    from .manifest import RECIPE, read_record

    if (read_record(folder) or {}).get("status") != RECIPE:
        return lambda name, params: (_load(folder, name, at_least), params)
    from .recipe import Recipe

    recipe = Recipe.from_folder(folder, progress=False)
    index = {it.file_name: i for i, it in enumerate(recipe.items)}

    def made(name: str, params: Any) -> tuple[np.ndarray, Any]:
        drawn, image = recipe.pixels(index[name])
        return image, drawn

    return made


def _load(folder: Place, name: str, at_least: int) -> np.ndarray:
    """A balanced folder's image, or one line saying why it cannot be shown."""
    try:
        return load(folder / name, at_least=at_least).image
    except BadImage as exc:
        raise BalanceError(f"cannot show {folder / name}: {exc}") from None
