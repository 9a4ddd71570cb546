"""The exceptions and warnings a user can cause: the message is the one line the CLI prints."""


class UserError(Exception):
    """A user error (bad option, bad folder, unwritable output): one clear line, no traceback."""


class BalanceError(UserError):
    """A user error of the balancer."""


class TrainError(UserError):
    """A user error of the trainer."""


class ToolWarning(UserWarning):
    """Something the user should know that does not stop the command (`warning: ...` on stderr)."""
