"""Ctrl-C held over a stretch of work where a library would turn it into another error.

A KeyboardInterrupt raised at an arbitrary bytecode can land inside a library's own error
handling (NumPy's fallback for an `__array__` without `copy`, while Keras saves weights)
and come out as a TypeError and a traceback. Code that knows such a stretch (a training
epoch's end: the checkpoint, the resume state) holds interrupts over it: a Ctrl-C that
arrives meanwhile is raised when the stretch is released, in the code that released it.
"""

from __future__ import annotations

_STATE = {"held": False, "pending": False}


def hold() -> None:
    """From now until `release`, a Ctrl-C waits."""
    _STATE["held"] = True


def release() -> None:
    """End the held stretch; a Ctrl-C that came during it is raised here."""
    _STATE["held"] = False
    if _STATE["pending"]:
        _STATE["pending"] = False
        raise KeyboardInterrupt


def deliver() -> None:
    """What a Ctrl-C handler does: raise KeyboardInterrupt now, or once the held stretch
    ends."""
    if _STATE["held"]:
        _STATE["pending"] = True
        return
    raise KeyboardInterrupt
