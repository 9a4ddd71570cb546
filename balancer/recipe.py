"""The balanced set as a recipe: every file `balance build` would write, made on demand.

A plan is a pure function of the source listing, the targets, the transforms and the seed,
and a copy's pixels are a pure function of its original and its plan item (`writing.render`
draws them). So the balanced set needs no folder: `Recipe` is the plan with where each
original is and what the scan saw of it, and `BalancedDataset` serves file i as the folder's
file i would decode, through the writer's own function. It is a map-style dataset
(`len`, `ds[i]`) that PyTorch's `DataLoader` and Keras take as it is: no deep-learning
import here, nothing open between items (it pickles to loader workers), and each item a
function of (i, epoch) alone, whatever the workers.

`redraw="epoch"` is online augmentation under the paper's rule: the same originals are
copied, but each copy's transform and params are drawn anew every epoch from (its seed,
the epoch); epoch 0 draws as the plan did, so it is the folder.

Lazy imports: OpenCV loads with the first image.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .builder import BuildSettings
from .common import imageio
from .common.errors import BalanceError, BalanceValueError, UserError
from .common.formats import written_format
from .common.imageio import Stamp
from .common.parallel import default_workers
from .common.storage import Place
from .manifest import RECIPE, read_manifest, read_record
from .plan import Item, class_targets, make_plan
from .source import Scan, check_source, scan
from .transforms import Params
from .unchanged import unchanged_source
from .writing import changed_copy

REDRAWS = (None, "epoch")  # a copy's draw: the plan's, or anew every epoch


def check_redraw(redraw: str | None, error: type[UserError] = BalanceValueError) -> str | None:
    """The redraw option, once it is one of REDRAWS (`error`: the library's ValueError)."""
    if redraw not in REDRAWS:
        raise error(
            f"unknown redraw {redraw!r}; choose 'epoch' or leave it out", parameters=("redraw",)
        )
    return redraw


def redrawn(
    item: Item, epoch: int, transforms: Mapping[str, float | None]
) -> tuple[str, float | None, int | None]:
    """(transform, magnitude, seed) of a planned copy at `epoch`: the plan's at epoch 0, else
    one transform of `transforms` and a seed drawn from (the copy's seed, epoch)."""
    if not epoch or item.action != "augment" or not transforms:
        return item.transform, item.magnitude, item.seed
    rng = np.random.default_rng([int(item.seed or 0), int(epoch)])
    names = list(transforms)
    name = names[int(rng.integers(len(names)))]
    return name, transforms[name], int(rng.integers(0, 2**31 - 1))


def made_pixels(
    original: np.ndarray,
    item: Item,
    *,
    epoch: int = 0,
    transforms: Mapping[str, float | None] | None = None,
) -> tuple[Params | None, np.ndarray]:
    """(drawn params, pixels before encoding) of a plan item from its upright original, as
    the writer makes them (`writing.changed_copy`); an original or a plain copy is itself."""
    if item.action != "augment":
        return None, original
    name, magnitude, seed = redrawn(item, epoch, transforms or {})
    return changed_copy(original, name, magnitude, seed)


def load_original(path: Place, stamp: Stamp | None, digest: bytes, max_bytes: int) -> np.ndarray:
    """An original's upright pixels, once the file is the one the scan saw (its stamp: size,
    modification time, inode, change time; and its bytes' digest), as the writer reads it."""
    return imageio.load(path, expect=stamp, digest=digest or None, max_bytes=max_bytes).image


@dataclass(frozen=True, eq=False)
class Recipe:
    """A balanced set as its plan: the source root, one plan item per file (in the manifest's
    file-name order), the stamp the scan saw of each item's original, and the settings.
    `recorded`: each file's params as a folder's manifest records them (empty: not read)."""

    root: Place
    items: tuple[Item, ...]
    stamps: tuple[Stamp, ...]
    settings: BuildSettings
    recorded: tuple[Params | None, ...] = ()

    @classmethod
    def from_scan(cls, found: Scan, settings: BuildSettings) -> Recipe:
        """The recipe of a scanned source under `settings`: what `build` would plan."""
        targets = class_targets(
            found.counts(), nmin=settings.nmin, target=settings.target, per_class=settings.per_class
        )
        plan = make_plan(found.images, targets, settings.chosen, settings.seed)
        items = tuple(sorted(plan, key=lambda it: it.file_name))
        by_path = found.by_path()
        return cls(found.root, items, tuple(by_path[it.source].stamp for it in items), settings)

    @classmethod
    def from_source(
        cls,
        src: str | Place,
        settings: BuildSettings,
        *,
        workers: int | None = None,
        progress: bool = False,
    ) -> Recipe:
        """Scan SRC and plan it as `balance build SRC --out OUT` with `settings` would; no file
        is written."""
        root = check_source(src)
        found = scan(
            root,
            workers=workers or default_workers(),
            progress=progress,
            max_bytes=settings.writing.max_bytes,
        )
        return cls.from_scan(found, settings)

    @classmethod
    def from_folder(
        cls,
        folder: str | Place,
        *,
        source: str | Place | None = None,
        workers: int | None = None,
        progress: bool = False,
    ) -> Recipe:
        """The recipe a balanced folder (or a recipe-only build) records: its source (or
        `source`, where it moved), scanned again and proven the one the build read (its
        digest), planned with the recorded settings, and checked against the manifest."""
        record = read_record(folder)
        if record is None or record.get("status") not in ("complete", RECIPE):
            raise BalanceError(f"{folder} is not a finished balance build (no complete record)")
        key = record.get("settings") or {}
        settings = BuildSettings.from_key(key)
        root = Path(source if source is not None else record.get("source", ""))
        if not root.is_dir():
            raise BalanceError(
                f"the source {root} that {folder} was built from is not there: pass source="
            )
        try:
            found = unchanged_source(
                record, root, f"{folder} was built", workers=workers, progress=progress,
                max_bytes=None,
            )  # fmt: skip
        except BalanceError as exc:
            raise BalanceError(f"{exc}: its recipe no longer describes it") from None
        recipe = cls.from_scan(found, settings)
        m = read_manifest(folder).sort_values("file_name", kind="stable")
        if list(m.file_name) != [it.file_name for it in recipe.items]:
            raise BalanceError(
                f"{folder}'s manifest does not list the files its record's settings plan"
            )
        params = tuple(m["params"]) if "params" in m else ()
        return cls(recipe.root, recipe.items, recipe.stamps, settings, params)

    def __len__(self) -> int:
        return len(self.items)

    @property
    def classes(self) -> list[str]:
        """The class names, sorted (a balanced folder's class folders)."""
        return sorted({it.label for it in self.items})

    def original(self, i: int) -> np.ndarray:
        """File i's original, upright, as decoded (BalanceError when it is not the file the
        scan saw)."""
        it = self.items[i]
        path = self.root / it.source
        try:
            return load_original(path, self.stamps[i], it.digest, self.settings.writing.max_bytes)
        except imageio.BadImage as exc:
            raise BalanceError(f"{path}: {exc} (the recipe was made from another file)") from None

    def pixels(
        self, i: int, *, epoch: int = 0, encoded: bool = False, redraw: bool = False
    ) -> tuple[Params | None, np.ndarray]:
        """(params, pixels) of file i as decoded: before encoding, or (`encoded`) encoded at
        the build's quality and decoded, exactly the written file's pixels. `redraw`: the
        copy's draw at `epoch` (`redrawn`), else the plan's."""
        it = self.items[i]
        transforms = self.settings.chosen if redraw else None
        params, image = made_pixels(
            self.original(i), it, epoch=epoch if redraw else 0, transforms=transforms
        )
        if encoded and it.action != "copy":  # a byte copy decodes as its source did
            fmt = written_format(it.file_name).name
            image = imageio.decode(imageio.encode(image, fmt, self.settings.quality)).image
        return params, image

    def row(self, i: int) -> dict:
        """File i's manifest row, as far as the plan knows it (params: as recorded, if read)."""
        it = self.items[i]
        return {
            "file_name": it.file_name,
            "label": it.label,
            "source": it.source,
            "origin": it.origin,
            "augmentation": it.transform,
            "params": self.recorded[i] if self.recorded else None,
            "seed": it.seed,
        }


def check_epoch(epoch: int) -> int:
    """The epoch, once it is a whole number >= 0."""
    if isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)) or epoch < 0:
        raise BalanceValueError(
            f"epoch must be a whole number >= 0, not {epoch!r}", parameters=("epoch",)
        )
    return int(epoch)


class EpochSampler:
    """The indices of a dataset for PyTorch's DataLoader (`sampler=`), each as (i, epoch):
    the epoch travels with every index, so loader workers, persistent ones too, serve that
    epoch's draws. `set_epoch(e)` before each epoch, as with DistributedSampler; shuffle: a
    new order every epoch, drawn from (seed, epoch)."""

    def __init__(self, dataset: Any, *, shuffle: bool = False, seed: int = 0) -> None:
        self.n, self.shuffle, self.seed, self.epoch = len(dataset), bool(shuffle), seed, 0

    def set_epoch(self, epoch: int) -> None:
        """The epoch the next pass yields."""
        self.epoch = check_epoch(epoch)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        order = (
            np.random.default_rng([self.seed, self.epoch]).permutation(self.n)
            if self.shuffle
            else range(self.n)
        )
        return ((int(i), self.epoch) for i in order)

    def __len__(self) -> int:
        return self.n


class BalancedDataset:
    """The balanced set as a map-style dataset: `ds[i]` is (image, label index), the image as
    the folder's file i decodes, HxWx3 uint8 RGB (alpha dropped, 16 bits scaled to 8).

    redraw: None (each copy as planned: the folder) or "epoch" (drawn anew per epoch; call
    `set_epoch(e)` before each epoch, as with PyTorch's DistributedSampler: a DataLoader
    pickles the dataset to its workers each epoch; with `persistent_workers`, give it an
    `EpochSampler`, whose indices carry the epoch). encoded: JPEG
    files' pixels after encoding at the build's quality and decoding (exactly the written
    file's), else before (a PNG file's are the same either way). transform and
    target_transform: applied to the image and the label index, as torchvision's datasets
    do. `classes`, `class_to_idx` and `targets` are named as torchvision's ImageFolder's.
    """

    def __init__(
        self,
        recipe: Recipe,
        *,
        redraw: str | None = None,
        encoded: bool = False,
        transform: Callable[[np.ndarray], Any] | None = None,
        target_transform: Callable[[int], Any] | None = None,
    ) -> None:
        if not isinstance(recipe, Recipe):
            raise TypeError(
                f"recipe must be a Recipe, not {type(recipe).__name__} "
                "(BalancedDataset.from_folder or .from_source make one)"
            )
        self.recipe, self.redraw, self.encoded = recipe, check_redraw(redraw), bool(encoded)
        self.transform, self.target_transform = transform, target_transform
        self.classes = recipe.classes
        self.class_to_idx = {c: k for k, c in enumerate(self.classes)}
        self.targets = [self.class_to_idx[it.label] for it in recipe.items]
        self.epoch = 0

    @classmethod
    def from_folder(
        cls,
        folder: str | Place,
        *,
        source: str | Place | None = None,
        workers: int | None = None,
        **options: Any,
    ) -> BalancedDataset:
        """The dataset of a balanced folder's recipe (see `Recipe.from_folder`)."""
        return cls(Recipe.from_folder(folder, source=source, workers=workers), **options)

    @classmethod
    def from_source(
        cls,
        src: str | Place,
        settings: BuildSettings,
        *,
        workers: int | None = None,
        **options: Any,
    ) -> BalancedDataset:
        """The dataset `balance build SRC` with `settings` would write, writing nothing."""
        return cls(Recipe.from_source(src, settings, workers=workers), **options)

    def __len__(self) -> int:
        return len(self.recipe)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[Any, Any]:
        """(image, label) of file `key`, at the current epoch; `key` may be (i, epoch), as
        `EpochSampler` gives it, for that epoch's draws."""
        i, epoch = key if isinstance(key, tuple) else (key, self.epoch)
        i = range(len(self))[i]  # negative indices, and IndexError past the end
        image = self.image(i, epoch=epoch)
        label: Any = self.targets[i]
        if self.transform is not None:
            image = self.transform(image)
        if self.target_transform is not None:
            label = self.target_transform(label)
        return image, label

    def image(self, i: int, *, epoch: int | None = None) -> np.ndarray:
        """File i's pixels at `epoch` (None: the current one), HxWx3 uint8 RGB."""
        from .common.square import rgb8

        return rgb8(self._pixels(i, epoch)[1])

    def params(self, i: int, *, epoch: int | None = None) -> Params | None:
        """The params file i's copy draws at `epoch` (None: the current one; None for an
        original)."""
        return self._pixels(i, epoch)[0]

    def _pixels(self, i: int, epoch: int | None) -> tuple[Params | None, np.ndarray]:
        return self.recipe.pixels(
            i,
            epoch=self.epoch if epoch is None else epoch,
            encoded=self.encoded,
            redraw=self.redraw == "epoch",
        )

    def row(self, i: int) -> dict:
        """File i's manifest row (see `Recipe.row`)."""
        return self.recipe.row(i)

    def set_epoch(self, epoch: int) -> None:
        """The epoch whose draws `redraw="epoch"` serves next."""
        self.epoch = check_epoch(epoch)

    def __repr__(self) -> str:
        return (
            f"BalancedDataset(files={len(self)}, classes={len(self.classes)}, "
            f"root={str(self.recipe.root)!r}, redraw={self.redraw!r}, epoch={self.epoch})"
        )
