"""Errors a user can fix. The CLI prints these as one line and exits with code 2."""


class UserError(Exception):
    """Bad input: unknown model or task, missing key, unreachable endpoint, malformed file."""


class BudgetExceeded(UserError):
    """A run's call, token or dollar budget is spent."""


class LMError(Exception):
    """A model call failed after every retry. Never swallowed into an empty answer."""


class EndpointUnreachable(LMError, UserError):
    """The endpoint could not be reached at all (connection refused, DNS failure)."""


def one_line(exc: BaseException) -> str:
    """``exc`` as the one line a user is shown: its type and message, line breaks folded."""
    return " ".join(f"{type(exc).__name__}: {exc}".split())
