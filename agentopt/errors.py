"""Errors a user can fix. The CLI prints these as one line and exits with code 2."""

from __future__ import annotations

import typing
from typing import Any

from pydantic import BaseModel, ValidationError


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


def validation_message(model: type[BaseModel], exc: ValidationError) -> str:
    """The first error of ``exc`` in one line: where (``splits.validaton``, ``rules[0].on``) and
    what; a key the table does not have names the keys it does."""
    error = exc.errors()[0]
    loc = tuple(error["loc"])
    where = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc).lstrip(".")
    if error["type"] == "extra_forbidden":
        known = ", ".join(_model_at(model, loc[:-1]).model_fields)
        what = f"unknown key (known: {known})"
    else:  # a validator's own message, without pydantic's "Value error, " in front
        what = error["msg"].removeprefix("Value error, ")
    return f"{where}: {what}" if where else what


def _model_at(model: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel]:
    """The (nested) model that the path ``loc`` leads to inside ``model``."""
    for part in loc:
        if isinstance(part, int):
            continue  # an item of a list of models
        field = model.model_fields.get(part)
        nested = None if field is None else _model_in(field.annotation)
        if nested is None:
            break
        model = nested
    return model


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None
