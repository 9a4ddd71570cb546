"""A test harness, loaded by every interpreter a test starts with this folder on PYTHONPATH
(the command and each of its pool workers): it freezes a build at an exact state.

BALANCED_AUG_GATE="OUT<pathsep>K<pathsep>RELEASE": once K finished files have been renamed
into OUT's class folders, the process that renames them (the command itself: workers only
write temporary files, which the command records in its journal and then renames) stops
right after that rename until the file RELEASE exists. OUT then holds exactly K finished
files, and kills and interrupts land at a known state, not at a moment a test hopes to
catch.
"""

import os

_GATE = os.environ.get("BALANCED_AUG_GATE")

if _GATE:
    import time

    _OUT, _AT, _RELEASE = _GATE.split(os.pathsep)
    _LIMIT = int(_AT)
    _replace = os.replace

    def _finished() -> int:
        return sum(
            not name.endswith(".part")
            for folder in os.scandir(_OUT)
            if folder.is_dir()
            for name in os.listdir(folder.path)
        )

    def _replace_gated(src, dst, *args, **kwargs):
        result = _replace(src, dst, *args, **kwargs)
        dst = os.fspath(dst)
        into_class = os.path.dirname(os.path.dirname(dst)) == _OUT and not dst.endswith(".part")
        if into_class and _finished() >= _LIMIT:
            while not os.path.exists(_RELEASE):
                time.sleep(0.01)
        return result

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

# BALANCED_AUG_STORE_GATE="K<pathsep>RELEASE": a build writing to a store puts K image
# objects (not the records, not its journal) and then every further put of an image waits
# until the file RELEASE exists: the store holds exactly K of its files when a kill lands.
_STORE_GATE = os.environ.get("BALANCED_AUG_STORE_GATE")

if _STORE_GATE:
    import threading
    import time as _stime

    from balancer.common import storage as _storage

    _K, _STORE_RELEASE = _STORE_GATE.split(os.pathsep)
    _reserved = [0]
    _lock = threading.Lock()
    _put = _storage.Remote.write_bytes

    def _put_gated(self, data):
        is_image = not any(part.startswith(".") for part in self.path.split("/")) and (
            self.name not in ("manifest.csv", "balance.json", "split.csv", "split.json")
        )
        if is_image:
            with _lock:
                turn = _reserved[0]
                _reserved[0] += 1
            while turn >= int(_K) and not os.path.exists(_STORE_RELEASE):
                _stime.sleep(0.01)
        return _put(self, data)

    _storage.Remote.write_bytes = _put_gated
