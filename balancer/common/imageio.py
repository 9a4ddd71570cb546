"""Read, check and write image files with OpenCV: bounded, single-threaded, atomic.

Before any decode, the image header (read with Pillow, which decodes nothing) gives the
size, the depth and the EXIF orientation: an image whose decoded pixels would take more
than `max_bytes` (width x height x channels x bytes per sample) is refused unread, so a
decompression bomb never allocates. Decoded images come out upright (EXIF orientation
applied), as every EXIF-aware viewer and loader shows them.

Lazy imports: PIL loads only for a format OpenCV cannot read.
"""

from __future__ import annotations

import io
import os
import stat
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import formats, limits
from .opencv import BACKSTOP_PIXELS, cv2
from .stamps import (  # what proves a file unchanged, for the readers that import it here
    DIGEST_BYTES,
    BadImage,
    SourceChanged,
    Stamp,
    check_content,
    check_stamp,
    content_digest,
    read_object,
    stamp_of,
)
from .storage import Remote

MAX_FILE_BYTES = 256 << 20
__all__ = [
    "DIGEST_BYTES",
    "BadImage",
    "SourceChanged",
    "Stamp",
    "check_content",
    "check_stamp",
    "content_digest",
    "stamp_of",
]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_END = b"IEND\xaeB`\x82"


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
    end marker does not count; inside entropy-coded data 0xFF is always stuffed, so any
    FFD9 after the scan header is the real end (searched from the file's end, where it is).
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
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        if marker == 0xDA:  # any FFD9 after the scan header ends it; the last one is found
            return data.rfind(b"\xff\xd9", i + 2 + length) != -1  # fast: near the end
        i += 2 + length
    return False


@dataclass(frozen=True)
class Loaded:
    """A decoded image with the facts read on the way: format, orientation, size, mtime."""

    image: np.ndarray  # HxW or HxWxC (C = 3 or 4, BGR[A]), uint8 or uint16; upright
    fmt: str  # 'jpeg' | 'png' | 'other'
    orientation: int = 1  # the file's EXIF orientation (1: stored upright), already applied
    size: tuple[int, int] = (0, 0)  # (width, height) of the upright image, full scale


@dataclass(frozen=True)
class Header:
    """What an image's header says before decoding: size, channels, depth, orientation."""

    width: int
    height: int
    channels: int  # as OpenCV decodes them (palette and 1-bit images: 3 or 1)
    sample_bytes: int  # 1, 2 or 4
    orientation: int  # EXIF orientation tag, 1 when absent

    @property
    def upright_size(self) -> tuple[int, int]:
        """(width, height) once the EXIF orientation is applied, as decode() returns it."""
        turned = self.orientation in (5, 6, 7, 8)
        return (self.height, self.width) if turned else (self.width, self.height)

    @property
    def decoded_bytes(self) -> int:
        """The bytes the decoded pixels would take."""
        return self.width * self.height * self.channels * self.sample_bytes


# Pillow mode -> (channels, bytes per sample) of what OpenCV makes of it (conservative).
_MODES = {
    "1": (1, 1),
    "L": (1, 1),
    "P": (4, 1),
    "LA": (4, 1),
    "PA": (4, 1),
    "RGB": (3, 1),
    "RGBA": (4, 1),
    "RGBX": (4, 1),
    "CMYK": (4, 1),
    "YCbCr": (3, 1),
    "LAB": (3, 1),
    "HSV": (3, 1),
    "I": (1, 4),
    "F": (1, 4),
    "I;16": (1, 2),
    "I;16L": (1, 2),
    "I;16B": (1, 2),
    "I;16N": (1, 2),
}
_PNG_CHANNELS = {0: 1, 2: 3, 3: 4, 4: 4, 6: 4}  # IHDR colour type -> OpenCV channels


def read_header(data: bytes) -> Header | None:
    """Size, depth and EXIF orientation from the header alone (no pixel is decoded);
    None when Pillow cannot parse this kind of header."""
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = None  # our own limit, in bytes, applies
    try:
        with Image.open(io.BytesIO(data)) as im:
            width, height = im.size
            channels, sample = _MODES.get(im.mode, (4, 4))
            try:
                orientation = int(im.getexif().get(0x0112, 1) or 1)
            except Exception:  # a malformed EXIF block: treat the image as upright
                orientation = 1
    except Exception:
        return None
    if data[:8] == PNG_SIGNATURE and len(data) >= 26:  # Pillow reports 16-bit RGB(A) as 8-bit
        sample = 2 if data[24] == 16 else 1
        channels = _PNG_CHANNELS.get(data[25], 4)
    return Header(width, height, channels, sample, orientation if 1 <= orientation <= 8 else 1)


def orient(image: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation tag, as PIL.ImageOps.exif_transpose does."""
    if orientation in (5, 6, 7, 8):
        image = image.swapaxes(0, 1)  # transpose: then flip to the four rotations/transposes
    flips = {
        2: (slice(None), slice(None, None, -1)),
        3: (slice(None, None, -1),) * 2,
        4: (slice(None, None, -1),),
        5: (),
        6: (slice(None), slice(None, None, -1)),
        7: (slice(None, None, -1),) * 2,
        8: (slice(None, None, -1),),
    }.get(orientation, ())
    return np.ascontiguousarray(image[flips]) if orientation != 1 else image


def check_whole(data: bytes) -> str:
    """The format by content, once the file is not empty and ends as its format must (OpenCV
    decodes a truncated file without an error, greying the missing part)."""
    if not data:
        raise BadImage("empty file")
    fmt = sniff(data)
    if fmt == "jpeg" and not jpeg_is_complete(data):
        raise BadImage("truncated JPEG (no end-of-image marker)")
    if fmt == "png" and data.rfind(PNG_END) < len(PNG_SIGNATURE):
        raise BadImage("truncated PNG (no IEND chunk)")
    return fmt


# libjpeg's DCT scaling: (colour flag, grey flag) per scale denominator
_REDUCED = {
    8: (cv2.IMREAD_REDUCED_COLOR_8, cv2.IMREAD_REDUCED_GRAYSCALE_8),
    4: (cv2.IMREAD_REDUCED_COLOR_4, cv2.IMREAD_REDUCED_GRAYSCALE_4),
    2: (cv2.IMREAD_REDUCED_COLOR_2, cv2.IMREAD_REDUCED_GRAYSCALE_2),
}


def jpeg_scale(width: int, height: int, at_least: int) -> int:
    """The largest JPEG scale denominator (8, 4 or 2; else 1) that still decodes both sides
    to at least `at_least` pixels (libjpeg rounds a scaled side up)."""
    for k in _REDUCED:
        if -(-width // k) >= at_least and -(-height // k) >= at_least:
            return k
    return 1


def _flags(fmt: str, header: Header | None, *, check_only: bool, at_least: int | None) -> int:
    if fmt != "jpeg":
        return cv2.IMREAD_UNCHANGED
    if check_only:
        return cv2.IMREAD_REDUCED_GRAYSCALE_8
    k = jpeg_scale(header.width, header.height, at_least) if header and at_least else 1
    if k == 1:
        return cv2.IMREAD_UNCHANGED
    color, grey = _REDUCED[k]
    return (grey if header and header.channels == 1 else color) | cv2.IMREAD_IGNORE_ORIENTATION


def without_icc(data: bytes) -> bytes:
    """PNG bytes without their iCCP chunk (a colour profile). libpng prints a warning on
    stderr for many broken profiles, once per decode, between progress bars; OpenCV never
    applies a profile, so the pixels are the same without it."""
    if b"iCCP" not in data[: 1 << 16]:
        return data
    parts, i = [data[:8]], 8
    while i + 8 <= len(data):
        length, kind = int.from_bytes(data[i : i + 4], "big"), data[i + 4 : i + 8]
        if kind == b"IDAT":  # profiles come before the image data
            parts.append(data[i:])
            return b"".join(parts)
        end = i + 12 + length
        if kind != b"iCCP":
            parts.append(data[i:end])
        i = end
    return data


def decode(
    data: bytes,
    *,
    check_only: bool = False,
    max_bytes: int | None = None,
    at_least: int | None = None,
) -> Loaded:
    """Decode image bytes, keeping alpha and 16-bit depth; raise BadImage with a reason.

    The header is checked first: more than `max_bytes` of decoded pixels (default
    limits.MAX_IMAGE_MB MiB) is refused unread.
    check_only decodes a JPEG at 1/8 scale: every entropy-coded byte is still parsed (so
    corrupt data still fails) but the inverse DCT is skipped; the image returned is small
    (and not oriented).
    at_least: the caller needs no more than this many pixels on the shorter side, so a JPEG
    at least twice as large is decoded at 1/2, 1/4 or 1/8 scale (libjpeg's DCT scaling: a
    fraction of the work, and each output pixel the mean of the block it stands for), the
    largest that keeps both sides at least `at_least`; upright as always. Other formats, and
    smaller JPEGs, decode whole.
    """
    fmt = check_whole(data)
    max_bytes = limits.image_bytes() if max_bytes is None else max_bytes
    header = read_header(data)
    if header is not None and header.decoded_bytes > max_bytes:
        raise BadImage(
            f"too large to decode: {header.width}x{header.height} px would take "
            f"{header.decoded_bytes / 2**20:.0f} MiB, over the "
            f"{max_bytes / 2**20:.0f} MiB limit (--max-image-mb raises it)"
        )
    flags = _flags(fmt, header, check_only=check_only, at_least=at_least)
    if fmt == "png":
        data = without_icc(data)
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    except cv2.error as exc:
        if "MAX_IMAGE" in str(exc):
            raise BadImage(f"image header claims more than {BACKSTOP_PIXELS} pixels") from None
        raise BadImage("not a readable image") from None
    if image is None:
        raise BadImage("corrupt image data" if fmt != "other" else "not a readable image")
    if image.dtype not in (np.uint8, np.uint16):
        raise BadImage(f"unsupported sample type {image.dtype}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 3 and image.shape[2] not in (3, 4):
        raise BadImage(f"unsupported channel count {image.shape[2]}")
    if image.nbytes > max_bytes:  # a header Pillow could not read, or one that lied
        raise BadImage(
            f"too large: {image.nbytes / 2**20:.0f} MiB decoded, over the "
            f"{max_bytes / 2**20:.0f} MiB limit (--max-image-mb raises it)"
        )
    orientation = header.orientation if header else 1
    if not check_only:
        image = orient(image, orientation)
    size = header.upright_size if header else image.shape[1::-1]
    return Loaded(image, fmt, orientation, size)


def read_bytes(
    path: Path | Remote, expect: Stamp | None = None, digest: bytes | None = None
) -> bytes:
    """A regular file's bytes, refusing anything else (a FIFO would block for ever), files
    too large to be a sane image and, given `expect` (its stamp) or `digest` (its bytes'),
    a file that is not the one the scan saw. An object whose bytes' digest is given is read
    in one request: the digest proves more than its ETag would."""
    if isinstance(path, Remote) and digest and expect is None:
        data = path.read_bytes()
        if len(data) > MAX_FILE_BYTES:
            raise BadImage(f"file too large ({len(data)} bytes)")
        check_content(data, digest)
        return data
    return read_stamped(path, expect, digest)[0]


def read_stamped(
    path: Path | Remote, expect: Stamp | None = None, digest: bytes | None = None
) -> tuple[bytes, Stamp]:
    """read_bytes, and the stamp of the very file the bytes came from (its fstat; an
    object's size, time and version tag, its length checked against the bytes read)."""
    if isinstance(path, Remote):
        return read_object(path, expect, digest, max_bytes=MAX_FILE_BYTES)
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0))
    try:
        st = os.fstat(fd)
        check_stamp(st, expect)
        if not stat.S_ISREG(st.st_mode):
            raise BadImage("not a regular file (a FIFO, socket or device)")
        if st.st_size > MAX_FILE_BYTES:
            raise BadImage(f"file too large ({st.st_size} bytes)")
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read()
    finally:
        os.close(fd)
    check_content(data, digest)
    return data, stamp_of(st)


def load(
    path: Path | Remote,
    *,
    check_only: bool = False,
    max_bytes: int | None = None,
    expect: Stamp | None = None,
    at_least: int | None = None,
    digest: bytes | None = None,
) -> Loaded:
    """Read and decode a file whole (BadImage, with the reason, for anything else)."""
    try:
        return decode(
            read_bytes(path, expect, digest),
            check_only=check_only,
            max_bytes=max_bytes,
            at_least=at_least,
        )
    except OSError as exc:
        raise BadImage(f"unreadable ({exc.strerror or exc})") from None


def encode(image: np.ndarray, fmt: str, quality: int = limits.JPEG_QUALITY) -> bytes:
    """Encode in an output format of the table (`formats.FORMATS`): 'jpeg' (8-bit, no alpha,
    at `quality`) or 'png' (any depth and channel count)."""
    row = formats.BY_NAME[fmt]
    flags = [getattr(cv2, row.quality_flag), quality] if row.quality_flag else []
    ok, buf = cv2.imencode(row.opencv_ext, image, flags)
    if not ok:
        raise ValueError(f"OpenCV could not encode a {image.dtype} {image.shape} image as {fmt}")
    return buf.tobytes()
