"""Read, check and write image files with OpenCV: bounded, single-threaded, atomic.

Import this module before anything else imports cv2: the pixel limit below is read by
OpenCV once, when it loads.
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

MAX_PIXELS = 1 << 26  # ~67 megapixels; a header claiming more is a decompression bomb
MAX_FILE_BYTES = 256 << 20
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(MAX_PIXELS))
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

# The process pool gives the parallelism; OpenCV's own threads would oversubscribe the cores.
cv2.setNumThreads(1)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_END = b"IEND\xaeB`\x82"
TEMP_SUFFIX = ".part"  # not an image extension: no loader reads a half-written file


class BadImage(Exception):
    """A source file that is not a whole, readable image; the message is the reason."""


def sniff(data: bytes) -> str:
    """The container format from the magic bytes: 'jpeg', 'png' or 'other'."""
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if data[:8] == PNG_SIGNATURE:
        return "png"
    return "other"


def jpeg_is_complete(data: bytes) -> bool:
    """True when the JPEG's scan data is followed by an end-of-image marker.

    Walks the marker segments to the first start-of-scan, so an EXIF thumbnail's own
    end marker does not count; inside entropy-coded data 0xFF is always stuffed, so
    the next FFD9 after the scan header is the real end.
    """
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            return False
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            i += 2
            continue
        length = int.from_bytes(data[i + 2:i + 4], "big")
        if marker == 0xDA:
            return data.find(b"\xff\xd9", i + 2 + length) != -1
        i += 2 + length
    return False


@dataclass(frozen=True)
class Loaded:
    image: np.ndarray  # HxW or HxWxC (C = 3 or 4, BGR[A]), uint8 or uint16
    fmt: str  # 'jpeg' | 'png' | 'other'


def decode(data: bytes, check_only: bool = False) -> Loaded:
    """Decode image bytes, keeping alpha and 16-bit depth; raise BadImage with a reason.

    check_only decodes a JPEG at 1/8 scale: every entropy-coded byte is still parsed (so
    corrupt data still fails) but the inverse DCT is skipped; the image returned is small.
    """
    if not data:
        raise BadImage("empty file")
    fmt = sniff(data)
    if fmt == "jpeg" and not jpeg_is_complete(data):
        raise BadImage("truncated JPEG (no end-of-image marker)")
    if fmt == "png" and data.rfind(PNG_END) < len(PNG_SIGNATURE):
        raise BadImage("truncated PNG (no IEND chunk)")
    flags = cv2.IMREAD_REDUCED_GRAYSCALE_8 if check_only and fmt == "jpeg" else cv2.IMREAD_UNCHANGED
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    except cv2.error as exc:
        if "MAX_IMAGE" in str(exc):
            raise BadImage(f"image header claims more than {MAX_PIXELS} pixels") from None
        raise BadImage("not a readable image") from None
    if image is None:
        raise BadImage("corrupt image data" if fmt != "other" else "not a readable image")
    if image.dtype not in (np.uint8, np.uint16):
        raise BadImage(f"unsupported sample type {image.dtype}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 3 and image.shape[2] not in (3, 4):
        raise BadImage(f"unsupported channel count {image.shape[2]}")
    return Loaded(image, fmt)


def read_bytes(path: Path) -> bytes:
    """A file's bytes, refusing files too large to be a sane image."""
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise BadImage(f"file too large ({size} bytes)")
    return path.read_bytes()


def load(path: Path, check_only: bool = False) -> Loaded:
    try:
        return decode(read_bytes(path), check_only)
    except OSError as exc:
        raise BadImage(f"unreadable ({exc.strerror or exc})") from None


def encode(image: np.ndarray, fmt: str, quality: int = 95) -> bytes:
    """Encode to 'jpeg' (8-bit, no alpha) or 'png' (any depth and channel count)."""
    if fmt == "jpeg":
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    else:
        ok, buf = cv2.imencode(".png", image)
    if not ok:
        raise ValueError(f"OpenCV could not encode a {image.dtype} {image.shape} image as {fmt}")
    return buf.tobytes()


def _replace_via_temp(dst: Path, write) -> None:
    tmp = dst.with_name(dst.name + TEMP_SUFFIX)
    try:
        write(tmp)
        os.replace(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_atomic(dst: Path, data: bytes) -> None:
    """Write bytes under a temporary name, then rename: dst only ever appears whole."""
    _replace_via_temp(dst, lambda tmp: tmp.write_bytes(data))


def copy_atomic(src: Path, dst: Path, link: bool = False) -> None:
    """Copy src to dst byte for byte (hard link when asked and possible), atomically."""

    def put(tmp: Path) -> None:
        if link:
            try:
                os.link(src, tmp)
                return
            except OSError:
                pass  # another file system, or links not supported: copy instead
        shutil.copyfile(src, tmp)

    _replace_via_temp(dst, put)
