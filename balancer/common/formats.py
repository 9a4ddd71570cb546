"""The one table of output formats: what the tools write, how, and who can read it.

Every image file the tools write is in one of these formats. The writer (its encoder and the
names the plan gives), `verify` (a file's extension and content agree) and the loaders'
promise in README all read this table; ownership never looks at a suffix (an output's own
listing proves each file). Adding a format is one row here and its test.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class OutputFormat:
    """One output format: its name (as `imageio.sniff` reports the content), its extensions
    (the first is what the tools write), how it is encoded, and which class-folder loaders
    read it unchanged."""

    name: str
    extensions: tuple[str, ...]
    opencv_ext: str  # what cv2.imencode is given
    quality_flag: str | None  # the cv2.IMWRITE_* flag --quality sets; None: lossless
    keras: bool  # keras.utils.image_dataset_from_directory reads it
    torchvision: bool  # torchvision.datasets.ImageFolder reads it

    @property
    def extension(self) -> str:
        """The extension the tools give the files they write."""
        return self.extensions[0]


FORMATS = (
    OutputFormat(
        "jpeg", (".jpg", ".jpeg"), ".jpg", "IMWRITE_JPEG_QUALITY", keras=True, torchvision=True
    ),
    OutputFormat("png", (".png",), ".png", None, keras=True, torchvision=True),
)
BY_NAME = {f.name: f for f in FORMATS}
LOSSLESS = BY_NAME["png"]  # what a source in any other format is re-encoded to


def for_source(fmt: str) -> OutputFormat:
    """The format a source file of format `fmt` ('jpeg', 'png', 'other') is written in: its
    own where it is a row of the table, else the lossless one."""
    return BY_NAME.get(fmt, LOSSLESS)


def of_name(file_name: str) -> OutputFormat | None:
    """The format a file name says it holds (by extension, any case); None: not one we write."""
    lower = file_name.lower()
    return next((f for f in FORMATS if lower.endswith(f.extensions)), None)


def written_format(file_name: str) -> OutputFormat:
    """The format a planned or written file is encoded in, from its name."""
    found = of_name(file_name)
    if found is None:
        raise ValueError(f"{file_name!r} is not named as any output format ({names()})")
    return found


def names() -> str:
    """The extensions the tools write, for messages: '.jpg, .jpeg, .png'."""
    return ", ".join(e for f in FORMATS for e in f.extensions)
