"""A test harness, loaded by every interpreter a test starts with this folder on PYTHONPATH
(the command and each of its pool workers): it freezes a build at an exact state.

BALANCED_AUG_GATE="OUT<pathsep>K<pathsep>RELEASE": once OUT's class folders hold K finished
files, every writer blocks before it starts its next file, until the file RELEASE exists.
A lock beside RELEASE makes "count, then write and rename" one step across processes, so
the count never passes K. Kills and interrupts then land at a known state, not at a moment
a test hopes to catch.
"""

import os

_GATE = os.environ.get("BALANCED_AUG_GATE")

if _GATE:
    import builtins
    import fcntl
    import io
    import time

    _OUT, _AT, _RELEASE = _GATE.split(os.pathsep)
    _LIMIT = int(_AT)
    _open, _replace = io.open, os.replace
    _held: list[int] = []  # the lock's fd while this process writes a file

    def _finished() -> int:
        return sum(
            not name.endswith(".part")
            for folder in os.scandir(_OUT)
            if folder.is_dir()
            for name in os.listdir(folder.path)
        )

    def _gated(path) -> bool:
        path = os.fspath(path)
        return path.endswith(".part") and os.path.dirname(os.path.dirname(path)) == _OUT

    def _open_gated(file, mode="r", *args, **kwargs):
        if "w" in mode and not isinstance(file, int) and _gated(file) and not _held:
            fd = os.open(_RELEASE + ".lock", os.O_RDWR | os.O_CREAT)
            fcntl.flock(fd, fcntl.LOCK_EX)
            _held.append(fd)
            if _finished() >= _LIMIT:
                while not os.path.exists(_RELEASE):
                    time.sleep(0.01)
        return _open(file, mode, *args, **kwargs)

    def _replace_gated(src, dst, *args, **kwargs):
        try:
            return _replace(src, dst, *args, **kwargs)
        finally:
            if _held and _gated(src):
                os.close(_held.pop())  # the file is in place: the next writer may count

    io.open = builtins.open = _open_gated
    os.replace = _replace_gated

# BALANCED_AUG_HOLD="SUFFIX<pathsep>N": once the N-th file whose name ends with SUFFIX has
# been renamed into place (a run's N-th saved state, say), this process stops for good, so a
# kill lands right after that moment.
_HOLD = os.environ.get("BALANCED_AUG_HOLD")

if _HOLD:
    import time as _time

    _SUFFIX, _COUNT = _HOLD.split(os.pathsep)
    _seen = [0]
    _replace_held = os.replace

    def _replace_then_hold(src, dst, *args, **kwargs):
        result = _replace_held(src, dst, *args, **kwargs)
        if os.fspath(dst).endswith(_SUFFIX):
            _seen[0] += 1
            if _seen[0] >= int(_COUNT):
                while True:
                    _time.sleep(1)
        return result

    os.replace = _replace_then_hold
