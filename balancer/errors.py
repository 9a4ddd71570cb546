"""The one exception a user can cause: its message is the line the CLI prints."""


class BalanceError(Exception):
    """A user error (bad option, bad folder, unwritable output): one clear line, no traceback."""
