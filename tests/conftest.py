"""Fixtures; the helpers they use live in helpers.py, which tests import directly."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import make_folder


@pytest.fixture
def small_src(tmp_path: Path) -> Path:
    return make_folder(tmp_path / "src", {"cat": 6, "dog": 2, "owl": 1})
