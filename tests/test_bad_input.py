import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from helpers import QUIET, assert_one_line_error, run_cli, textured, write_image

from balancer import BuildSettings, build, read_manifest, scan
from balancer.common.errors import BalanceError
from balancer.common.opencv import cv2


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def palette_png(w: int = 16, h: int = 16) -> bytes:
    rows = b"".join(b"\0" + bytes((x + y) % 4 for x in range(w)) for y in range(h))
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 3, 0, 0, 0))
        + png_chunk(b"PLTE", bytes([255, 0, 0, 0, 255, 0, 0, 0, 255, 9, 9, 9]))
        + png_chunk(b"IDAT", zlib.compress(rows))
        + png_chunk(b"IEND", b"")
    )


def bomb_png(side: int = 100_000) -> bytes:
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0))
        + png_chunk(b"IDAT", zlib.compress(b"\0" * 1000))
        + png_chunk(b"IEND", b"")
    )


@pytest.fixture
def messy(tmp_path: Path) -> Path:
    src = tmp_path / "messy"
    good = write_image(src / "cat" / "good.jpg", textured(40, 40))
    whole = good.read_bytes()
    (src / "cat" / "truncated.jpg").write_bytes(whole[: len(whole) // 2])
    (src / "cat" / "zero.jpg").write_bytes(b"")
    (src / "cat" / "text.jpg").write_text("not an image at all")
    (src / "cat" / "noise.png").write_bytes(np.random.default_rng(0).bytes(3000))
    (src / "cat" / "bomb.png").write_bytes(bomb_png())
    (src / "cat" / "notes.txt").write_text("hello")
    write_image(src / "cat" / "UPPER.JPG", textured(40, 40, seed=2))
    write_image(src / "cat" / "ça va 😀.jpg", textured(40, 40, seed=3))
    write_image(src / "cat" / "gray.jpg", textured(40, 40, channels=1, seed=4))
    write_image(src / "dog" / "alpha.png", textured(30, 30, channels=4, seed=5))
    write_image(src / "dog" / "deep.png", textured(30, 30, dtype=np.uint16, seed=6))
    (src / "dog" / "palette.png").write_bytes(palette_png())
    write_image(src / "dog" / "tiny.png", textured(8, 8, seed=7))
    write_image(src / "dog" / "sub" / "nested.webp", textured(30, 30, seed=8))
    for junk in [".DS_Store", "Thumbs.db", "desktop.ini", ".hidden.jpg"]:
        (src / "dog" / junk).write_bytes(whole)
    write_image(src / "dog" / ".cache" / "x.jpg", textured(10, 10))
    write_image(src / ".git" / "y.jpg", textured(10, 10))
    (src / ".DS_Store").write_bytes(b"junk")
    (src / "README.txt").write_text("a file at the root")
    (src / "empty").mkdir()
    (src / "dog" / "link.jpg").symlink_to(good)
    return src


def test_scan_keeps_every_good_image_and_says_why_it_skips(messy):
    found = scan(messy, workers=2, progress=False)
    assert {k: sorted(Path(i.path).name for i in v) for k, v in found.images.items()} == {
        "cat": ["UPPER.JPG", "good.jpg", "gray.jpg", "ça va 😀.jpg"],
        "dog": ["alpha.png", "deep.png", "nested.webp", "palette.png", "tiny.png"],
    }
    reasons = {s.path: s.reason for s in found.skipped}
    assert reasons == {
        "README.txt": "not inside a class folder",
        "cat/bomb.png": "too large to decode: 100000x100000 px would take 28610 MiB, over the "
        "256 MiB limit (--max-image-mb raises it)",
        "cat/noise.png": "not a readable image",
        "cat/notes.txt": "not an image file extension ('.txt')",
        "cat/text.jpg": "not a readable image",
        "cat/truncated.jpg": "truncated JPEG (no end-of-image marker)",
        "cat/zero.jpg": "empty file",
        "dog/link.jpg": "symbolic link (not followed)",
    }
    assert found.empty == ["empty"]
    assert (
        found.ignored == 6
    )  # .git, .DS_Store at the root; 4 junk files in dog (.cache is a hidden folder, not counted)


def test_build_on_messy_folder_keeps_good_images_whole(messy, tmp_path):
    out = tmp_path / "out"
    proc = run_cli(
        "balancer",
        "build",
        messy,
        "--out",
        out,
        "--nmin",
        "6",
        "--workers",
        "2",
        "--transforms",
        "crop=16,rotate,cutout=8,width,zoom,contrast,flip,blur",
    )
    assert proc.returncode == 0, proc.stderr
    assert "warning: skipped cat/truncated.jpg: truncated JPEG" in proc.stderr
    assert "class folder 'empty' has no usable image" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["balance.json", "cat", "dog", "manifest.csv"]
    m = read_manifest(out)
    assert m.groupby("label").size().to_dict() == {"cat": 6, "dog": 6}
    assert sorted(p.relative_to(out).as_posix() for p in out.glob("*/*")) == sorted(m.file_name)
    names = set(m.file_name)
    assert {"cat/UPPER.jpg", "cat/ça va 😀.jpg", "dog/sub_nested.png", "dog/palette.png"} <= names
    for name in m.file_name:
        image = cv2.imread(str(out / name), cv2.IMREAD_UNCHANGED)
        assert image is not None and image.size > 0, name
    deep = m[(m.source == "dog/deep.png")].file_name
    assert all(cv2.imread(str(out / f), cv2.IMREAD_UNCHANGED).dtype == np.uint16 for f in deep)


def test_too_few_classes_is_a_user_error(tmp_path):
    src = tmp_path / "one"
    write_image(src / "only" / "a.jpg", textured(10, 10))
    (src / "broken").mkdir()
    (src / "broken" / "b.jpg").write_bytes(b"nope")
    with pytest.raises(BalanceError, match="need at least 2"):
        build(src, tmp_path / "out", BuildSettings(nmin=2), run=QUIET)
    assert_one_line_error(
        run_cli("balancer", "build", src, "--out", tmp_path / "out", "--nmin", "2"),
        "need at least 2",
    )
    assert not (tmp_path / "out").exists()


def test_one_folder_rule_for_the_scanner_and_for_predict(tmp_path):
    """`balance`'s scanner and `train predict`'s folder walk are one walker: the same images,
    the same entries left out with the same reasons (links never followed, hidden files and
    OS junk ignored, hidden folders not entered)."""
    from balancer.source import list_source
    from trainer.evaluation import _images_under

    cls = tmp_path / "src" / "a"
    write_image(cls / "x.jpg", textured(16, 16))
    write_image(cls / "deep" / "y.png", textured(16, 16), quality=0)
    write_image(cls / ".hidden" / "z.jpg", textured(16, 16))
    (cls / "notes.txt").write_text("not an image")
    (cls / "Thumbs.db").write_bytes(b"junk")
    (cls / "link.jpg").symlink_to(cls / "x.jpg")
    listing = list_source(tmp_path / "src")
    images, skipped = _images_under(cls)
    assert sorted(c[0] for c in listing.candidates) == ["a/deep/y.png", "a/x.jpg"]
    assert sorted(p.relative_to(cls).as_posix() for p in images) == ["deep/y.png", "x.jpg"]
    by_scan = {s.path.removeprefix("a/"): s.reason for s in listing.skipped}
    assert by_scan == {s["path"]: s["reason"] for s in skipped}
    assert by_scan == {
        "link.jpg": "symbolic link (not followed)",
        "notes.txt": "not an image file extension ('.txt')",
    }
    assert listing.ignored == 1  # Thumbs.db; the hidden folder is not entered
