"""Errors a user can fix: bad values, bad files. The CLI prints them as one line and exits 2."""


class InputError(ValueError):
    """A value, file or field given by the user is wrong; the message says which and why."""
