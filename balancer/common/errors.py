"""The exceptions and warnings a user can cause: the message is the one line the CLI prints."""

from __future__ import annotations

import re

# The ways on that a library message names, in the library's words; the command line shows
# each as its flag (UserError.for_command_line).
OVERWRITE = "existing=Existing.OVERWRITE"
RESUME = "existing=Existing.RESUME"
OVERWRITE_FILE = "overwrite=True"  # claim_file's
FLAGS = {OVERWRITE: "--overwrite", RESUME: "--resume", OVERWRITE_FILE: "--overwrite"}


def option_name(parameter: str) -> str:
    """A library parameter as the command line spells it: max_image_mb -> --max-image-mb."""
    return "--" + parameter.replace("_", "-")


class UserError(Exception):
    """A user error (bad option, bad folder, unwritable output): one clear line, no traceback.

    `parameters`: the library parameters the message names, in the library's terms ("nmin
    must be ..."); the command line shows each as its option ("--nmin must be ...")."""

    def __init__(self, message: str, *, parameters: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.parameters = parameters

    def for_command_line(self) -> str:
        """The message with each parameter, where it first appears, spelt as the command
        line's option (later mentions are left as words)."""
        text = str(self)
        for words, flag in FLAGS.items():
            text = text.replace(words, flag)
        for name in self.parameters:
            option = option_name(name)
            text = re.sub(rf"(?<![\w\-'])({re.escape(name)})(?![\w\-'])", option, text, count=1)
        return text


class BalanceError(UserError):
    """A user error of the balancer."""


class TrainError(UserError):
    """A user error of the trainer."""


class BalanceValueError(BalanceError, ValueError):
    """A value out of range or not among the choices, given to the balancer's library."""


class TrainValueError(TrainError, ValueError):
    """A value out of range or not among the choices, given to the trainer's library."""


class ToolWarning(UserWarning):
    """Something the user should know that does not stop the command (`warning: ...` on stderr)."""
