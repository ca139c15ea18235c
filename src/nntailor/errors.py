"""The one exception type that means "the user gave us something wrong".

The CLI turns it into a single ``error: ...`` line on stderr and exit code 2;
everything else is a bug and keeps its traceback.
"""


class UserError(Exception):
    """Bad input: a path, a name, a shape, a budget. The message is what the user reads."""
