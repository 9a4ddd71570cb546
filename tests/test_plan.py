"""The plan: how many copies each class gets, of which originals, under which names."""

import re
from collections import Counter

import numpy as np
import pytest

from balancer.common.errors import BalanceError
from balancer.plan import class_targets, even_reuse, make_plan
from balancer.source import SourceImage

T = {"rotate": 0.125, "crop": 200, "zoom": 0.3}


def images(label, n, ext="jpg", fmt="jpeg"):
    return [SourceImage(f"{label}/{label}{i}.{ext}", label, fmt, 100) for i in range(n)]


def test_targets_nmin_never_removes():
    assert class_targets({"a": 10, "b": 3, "c": 50}, nmin=20) == {"a": 20, "b": 20, "c": 50}


def test_targets_majority_and_per_class_override():
    counts = {"a": 10, "b": 3, "c": 50}
    assert class_targets(counts, target="majority") == {"a": 50, "b": 50, "c": 50}
    assert class_targets(counts, nmin=20, per_class={"b": 7, "c": 10}) == {"a": 20, "b": 7, "c": 50}
    assert class_targets(counts, per_class={"b": 9}) == {"a": 10, "b": 9, "c": 50}


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({}, "nmin, target ('majority') or per_class"),
        ({"nmin": 0}, "nmin must be an integer in [1, 1,000,000,000] (got 0)"),
        ({"target": "minority"}, "majority"),
        ({"nmin": 5, "target": "majority"}, "not both"),
        ({"per_class": {"zebra": 4}}, "zebra"),
    ],
)
def test_targets_errors_name_the_problem(kwargs, fragment):
    with pytest.raises(BalanceError, match=re.escape(fragment)):
        class_targets({"a": 1, "b": 2}, **kwargs)


@pytest.mark.parametrize("n, k", [(1, 7), (3, 10), (7, 3), (5, 5), (4, 0)])
def test_even_reuse_uses_each_original_floor_or_ceil_times(n, k):
    picks = even_reuse(n, k, np.random.default_rng(0))
    uses = Counter(picks.tolist())
    assert len(picks) == k
    assert all(k // n <= uses.get(i, 0) <= -(-k // n) for i in range(n))


def test_plan_counts_names_and_determinism():
    src = {"a": images("a", 5), "b": images("b", 1), "c": images("c", 12)}
    targets = class_targets({k: len(v) for k, v in src.items()}, nmin=10)
    plan = make_plan(src, targets, T, seed=3)
    per_class = Counter(it.label for it in plan)
    assert per_class == {"a": 10, "b": 10, "c": 12}
    assert all(it.origin == "original" for it in plan if it.label == "c")
    aug = [it for it in plan if it.origin == "augmented"]
    assert len(aug) == 14 and {it.transform for it in aug} <= set(T)
    assert all(it.source == "b/b0.jpg" for it in aug if it.label == "b")  # n_c = 1
    names = [it.file_name for it in plan]
    assert len(set(n.casefold() for n in names)) == len(names)
    assert "b/b0__aug0000_" in next(n for n in names if n.startswith("b/b0__"))
    assert make_plan(src, targets, T, seed=3) == plan
    assert make_plan(src, targets, T, seed=4) != plan
    # a class's copies do not depend on the other classes
    alone = make_plan({"a": src["a"], "c": src["c"]}, {"a": 10, "c": 12}, T, seed=3)
    assert [it for it in alone if it.label == "a"] == [it for it in plan if it.label == "a"]


def test_plan_keeps_same_stem_files_apart_and_reencodes_other_formats():
    src = {
        "a": [
            SourceImage("a/x.bmp", "a", "other", 1),
            SourceImage("a/x.png", "a", "png", 1),
            SourceImage("a/sub/x.jpg", "a", "jpeg", 1),
        ],
        "b": images("b", 3),
    }
    plan = make_plan(src, {"a": 3, "b": 3}, T, seed=0)
    by_source = {it.source: it for it in plan}
    assert by_source["a/x.bmp"].file_name == "a/x.png" and by_source["a/x.bmp"].action == "encode"
    assert by_source["a/x.png"].file_name == "a/x_png.png" and by_source["a/x.png"].action == "copy"
    assert by_source["a/sub/x.jpg"].file_name == "a/sub_x.jpg"


def test_chunks_keep_an_originals_copies_together():
    """Copies of one original go to one task (its original decoded once), up to `largest`."""
    from balancer.common.parallel import chunked

    rng = np.random.default_rng(0)
    sources = sorted(rng.integers(0, 40, size=500).tolist())  # runs of 5-25 copies
    chunks = chunked(sources, 2, largest=64, key=lambda s: s)
    assert [s for c in chunks for s in c] == sources
    assert all(len(c) <= 64 for c in chunks)
    owner = {}
    for k, chunk in enumerate(chunks):
        for s in chunk:
            assert owner.setdefault(s, k) == k, f"source {s} split across chunks"
    long_run = chunked([7] * 200, 2, largest=64, key=lambda s: s)
    assert [len(c) for c in long_run] == [64, 64, 64, 8]  # still spread over the cores
