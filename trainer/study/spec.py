"""What a study is: its arms (the paper's Tables 2-3 and 4), folds, models and losses, and
the settings they train with; checked once when made."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from balancer.common.errors import TrainError, TrainValueError
from balancer.common.limits import COUNT, Interval
from balancer.transforms import PAPER_SET, parse_transforms

from .. import backend
from ..balancing import Arm
from ..config import FOLDS, TrainConfig
from ..data import Folder
from .significance import LEVEL

REDRAWN = "ROS + T redrawn each epoch"  # the ablation's online arm
BUDGETS = ("steps", "epochs")  # what every arm of a study gets the same of
LEVELS = Interval(0, 1, "neither")


def transform_arms(transforms: dict) -> list[Arm]:
    """Baseline plus one arm per transform that doubles the training set (the paper's Tables 2-3)."""
    return [Arm("baseline")] + [Arm(name, {name: m}) for name, m in transforms.items()]


def ablation_arms(transforms: dict, every: dict) -> list[Arm]:
    """The paper's Table 4: baseline, ROS only, ROS + every transform, ROS + the chosen T; and
    class weights, the cheapest way to weigh the rare classes, to compare ROS with; and ROS +
    T with each copy's transform drawn anew every epoch (online augmentation under the
    paper's one-transform rule), on the same folds as the offline ROS + T."""
    return [
        Arm("baseline"),
        Arm("class weight", class_weight=True),
        Arm("ROS", {}, balance=True),
        Arm("ROS + all transforms", every, balance=True),
        Arm("ROS + T", dict(transforms), balance=True),
        Arm(REDRAWN, dict(transforms), balance=True, redraw=True),
    ]


@dataclass(frozen=True, kw_only=True)
class StudySpec:
    """One study: which arms, folds, models and losses, trained with which settings; checked
    once when made. Its `key` is what a study folder must hold to be resumed."""

    kind: str  # "transforms" | "ablation"
    arms: tuple[Arm, ...]
    folds: int = 5
    models: tuple[str, ...] = ("efficientnet-b0",)
    losses: tuple[str, ...] = ("focal",)
    config: TrainConfig = field(default_factory=TrainConfig)
    nmin: int | None = None  # the ablation's N_min, per training fold
    budget: str = "steps"  # "steps": every arm the baseline's optimizer steps; "epochs": its epochs
    significance: float = (
        LEVEL  # the family-wise level of the test behind a suggestion (not in `key`:
    )
    # it reads the results, it does not train)

    def __post_init__(self) -> None:
        FOLDS.check(self.folds, "folds", TrainValueError)
        if self.budget not in BUDGETS:
            raise TrainValueError(
                f"unknown budget '{self.budget}'; choose from {', '.join(BUDGETS)}",
                parameters=("budget",),
            )
        LEVELS.check(self.significance, "significance", TrainValueError)
        if self.nmin is not None or any(a.balance for a in self.arms):
            COUNT.check(self.nmin, "nmin", TrainValueError)
        for model in self.models:
            replace(self.config, model=model)  # validates the name
        for loss in self.losses:
            replace(self.config, loss=loss)
        self.config.check_weights()

    @classmethod
    def of_transforms(
        cls, config: TrainConfig, transforms: str = "all", **options: Any
    ) -> StudySpec:
        """The paper's Tables 2-3: the baseline and one arm per transform, each doubling every
        fold's training set once. `options`: folds, models, losses, budget, significance (fields)."""
        arms = tuple(transform_arms(parse_transforms(transforms)))
        return cls(kind="transforms", arms=arms, config=config, **_listed(options))

    @classmethod
    def of_ablation(
        cls,
        config: TrainConfig,
        *,
        nmin: int,
        transforms: str = PAPER_SET,
        every: str = "all",
        **options: Any,
    ) -> StudySpec:
        """The paper's Table 4 (baseline, ROS, ROS + all, ROS + T) and a class-weight arm,
        balanced inside each training fold. `every` is the 'all transforms' arm's set: 'all'
        at the defaults, or with overrides ('all,crop=24,cutout=12') for small images.
        `options`: folds, models, losses, budget, significance (fields)."""
        arms = ablation_arms(parse_transforms(transforms), parse_transforms(every))
        return cls(kind="ablation", arms=tuple(arms), config=config, nmin=nmin, **_listed(options))

    def key(self, folder: Folder) -> dict:
        """What a study folder must hold to be resumed: this study, of this data."""
        return {
            "study": self.kind,
            "counted_from": 1,  # runs/.../fold-1 is the first fold (0.x began at fold-0)
            **backend.maker(),
            "source": str(folder.root.resolve()),
            "data_digest": folder.digest(),
            "folds": self.folds,
            "models": list(self.models),
            "losses": list(self.losses),
            "nmin": self.nmin,
            "budget": self.budget,
            "arms": [asdict(a) for a in self.arms],
            "config": {
                k: v for k, v in self.config.to_dict().items() if k not in ("model", "loss")
            },
        }

    def runs(self) -> list[tuple[int, str, str, Arm]]:
        """(fold from 1, model, loss, arm) for every run, in the order they train."""
        return [
            (k, model, loss, arm)
            for k in range(1, self.folds + 1)
            for model in self.models
            for loss in self.losses
            for arm in self.arms
        ]


def _listed(options: dict) -> dict:
    """A study's options with its models and losses as tuples (any sequence is taken)."""
    return {k: tuple(v) if k in ("models", "losses") else v for k, v in options.items()}


def parse_list(value: str, option: str) -> list[str]:
    """'a, b' as ['a', 'b']; one line when nothing is given."""
    items = [v.strip() for v in value.split(",") if v.strip()]
    if not items:
        raise TrainError(f"{option} needs at least one value")
    return items
