"""The base of every error a user can fix: the CLI prints its message as one line, never a traceback."""


class UserError(Exception):
    """Something the operator or data scientist can fix; ``str()`` is one sentence for a terminal."""
