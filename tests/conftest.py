"""Fixtures more than one test module uses; the helpers they use live in helpers.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import ONE, fake_train_run, make_folder

from balancer import BuildSettings, build


@pytest.fixture
def small_src(tmp_path: Path) -> Path:
    return make_folder(tmp_path / "src", {"cat": 6, "dog": 2, "owl": 1})


@pytest.fixture
def uneven_src(tmp_path: Path) -> Path:
    """Three classes of 10, 4 and 1 images, and a file that is not an image."""
    root = make_folder(tmp_path / "src", {"a": 10, "b": 4, "c": 1})
    (root / "b" / "broken.jpg").write_bytes(b"nope")
    return root


@pytest.fixture
def built(small_src: Path, tmp_path: Path) -> Path:
    """A finished `balance build` of small_src."""
    out = tmp_path / "out"
    build(small_src, out, BuildSettings(nmin=5, transforms="rotate,contrast,flip"), run=ONE)
    return out


@pytest.fixture(scope="session")
def balanced(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A balanced folder of three classes (12, 6, 3 originals; 10 each after) and a test folder
    beside it."""
    root = tmp_path_factory.mktemp("data")
    src = make_folder(root / "src", {"a": 12, "b": 6, "c": 3})
    build(src, root / "balanced", BuildSettings(nmin=10, transforms="rotate,zoom,flip"), run=ONE)
    make_folder(root / "test", {"a": 3, "b": 3, "c": 3})
    return root / "balanced"


@pytest.fixture(scope="session")
def study_src(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A study's source: three classes of 10, 5 and 3 images."""
    return make_folder(tmp_path_factory.mktemp("study") / "src", {"a": 10, "b": 5, "c": 3})


@pytest.fixture
def no_training(monkeypatch: pytest.MonkeyPatch) -> None:
    """fit and cv write what a run folder holds without training (fake_train_run)."""
    import trainer.crossval
    import trainer.training

    monkeypatch.setattr(trainer.training, "train_run", fake_train_run)
    monkeypatch.setattr(trainer.crossval, "train_run", fake_train_run)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that share a module-scoped fixture (a trained run, a built corpus, a cluster) run
    in one process, so it is made once; every other test goes wherever a process is free
    (`make test` runs pytest-xdist with --dist loadgroup)."""
    for item in items:
        info = getattr(item, "_fixtureinfo", None)
        defs = info.name2fixturedefs.values() if info else ()
        if any(d[-1].scope == "module" for d in defs):
            item.add_marker(pytest.mark.xdist_group(item.module.__name__))  # type: ignore[attr-defined]
