"""Errors users can act on.

`InputError` carries one line naming the problem and the fix; the CLI prints it and exits 2.
"""


class InputError(ValueError):
    """Bad user input: wrong columns, bad timestamps, too-short series, corrupt files..."""
