"""The packages: public names lazily loaded, each the object its module defines; the balancer
never imports TensorFlow; no product module over 400 lines."""

import importlib
import subprocess
import sys
import types
from pathlib import Path

import pytest
from helpers import (
    REPO,
)

import balancer
import trainer
from balancer import build


@pytest.mark.parametrize("package", [balancer, trainer], ids=lambda p: p.__name__)
def test_every_export_is_its_modules_object(package):
    for name, module in package._EXPORTS.items():
        value = getattr(package, name)
        assert value is getattr(importlib.import_module(module, package.__name__), name), name
        assert name in dir(package)
    with pytest.raises(AttributeError, match="no_such_name"):
        package.no_such_name  # noqa: B018


def test_a_submodule_is_a_module_and_an_export_stays_the_function():
    import balancer.builder as builder_module
    import balancer.splitting as splitting_module

    assert isinstance(builder_module, types.ModuleType)
    assert isinstance(splitting_module, types.ModuleType)
    from balancer import split

    assert build is builder_module.build and split is splitting_module.split


def test_help_loads_neither_opencv_nor_numpy():
    """`balance --help` stays fast: the command line loads the library only to run a command."""
    code = (
        "import sys; from balancer.cli import main; sys.argv[1:] = ['--help']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'cv2', 'numpy', 'pandas'}))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"


def test_no_product_module_is_over_400_lines():
    """Small modules that each hold one job: a module that grows past this splits."""
    root = Path(__file__).resolve().parents[1]
    sizes = {
        str(p.relative_to(root)): len(p.read_text(encoding="utf-8").splitlines())
        for package in ("balancer", "trainer")
        for p in (root / package).rglob("*.py")
    }
    assert len(sizes) > 40
    assert {name: n for name, n in sizes.items() if n > 400} == {}


def test_balancer_never_imports_tensorflow(small_src, tmp_path):
    code = (
        "import sys; from balancer.cli import main; sys.argv[1:] = ['build', {src!r}, "
        "'--out', {out!r}, '--nmin', '3', '--workers', '1', '--quiet']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'trainer')))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code.format(src=str(small_src), out=str(tmp_path / "o"))],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"
    assert (tmp_path / "o" / "manifest.csv").exists()


def test_the_shared_room_names_no_trainer_record_yet_a_balance_process_knows_them():
    """balancer/common never names the trainer's records: each package declares its output
    records through the installed entry points; a process that never imported the trainer
    still knows their names without importing it, and describes them (a run folder refused
    as a class folder) by importing only its declarations, no TensorFlow."""
    trainer_records = ("metrics.json", "cv.json", "study.json")
    for path in (REPO / "balancer" / "common").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert not [r for r in trainer_records if r in text], path
    code = (
        "import sys\nfrom balancer.common.ownership import declared_kinds, record_names\n"
        "print(sorted(record_names()), 'trainer' in sys.modules)\n"
        "kinds = declared_kinds()\n"
        "print(sorted(k.kind for k in kinds.values() if k.not_classes))\n"
        "print('tensorflow' in sys.modules or 'keras' in sys.modules)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    names, refused, heavy = proc.stdout.strip().splitlines()
    every = ["balance.json", "manifest.csv", "split.csv", "split.json", *trainer_records]
    assert names == f"{sorted(every)} False"  # the names, without importing the trainer
    assert refused == str(["cv", "evaluation", "run", "split", "study"])
    assert heavy == "False"
