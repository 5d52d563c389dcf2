from app.errors import UserError


class StackError(UserError, RuntimeError):
    """Something the operator can fix (missing Java, a port in use, a service that never became healthy).

    The message is one sentence meant for a terminal, not a traceback.
    """
