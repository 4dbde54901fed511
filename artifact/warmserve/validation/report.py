"""Turning a pydantic ``ValidationError`` into the one line every CLI prints: ``<key>: <what is wrong>``.

Pydantic reports every problem with a location tuple and a sentence; a user
needs the first problem, with the dotted config key they typed
(``workload.rps``), the value they gave and, for an unknown key, the keys
that are valid there. Only the first error is reported so the message stays
one line; fixing it and rerunning shows the next.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, ValidationError

from warmserve.errors import InputError


def dotted(prefix: str, loc: Iterable[Any]) -> str:
    """``prefix`` joined with a pydantic location (list indices as ``[i]``)."""
    key = prefix
    for part in loc:
        if isinstance(part, int):
            key += f"[{part}]"
        else:
            key = f"{key}.{part}" if key else str(part)
    return key or "config"


def _sentence(msg: str) -> str:
    """Pydantic's 'Input should be greater than 0' as 'must be greater than 0'."""
    for head, repl in (("Input should be", "must be"), ("Value error, ", ""), ("Assertion failed, ", "")):
        if msg.startswith(head):
            msg = repl + msg[len(head):]
    return msg


def _valid_keys(model: type[BaseModel] | None, loc: tuple[Any, ...]) -> list[str] | None:
    """Field names of the (nested) model that holds ``loc[-1]``, for an 'unknown key' line."""
    cur: Any = model
    for part in loc[:-1]:
        if cur is None or not (isinstance(cur, type) and issubclass(cur, BaseModel)):
            return None
        field = cur.model_fields.get(str(part))
        if field is None:
            return None
        ann = field.annotation
        cur = next((a for a in getattr(ann, "__args__", (ann,)) if isinstance(a, type) and issubclass(a, BaseModel)),
                   ann)
    if isinstance(cur, type) and issubclass(cur, BaseModel):
        return sorted(cur.model_fields)
    return None


def first_error(exc: ValidationError, prefix: str = "", model: type[BaseModel] | None = None,
                valid: list[str] | None = None, use_loc: bool = True) -> InputError:
    """The first error of ``exc`` as an ``InputError('<key>: <what is wrong>')``."""
    err = exc.errors(include_url=False)[0]
    loc = tuple(err.get("loc", ())) if use_loc else ()  # a bare type's loc names union members, not keys
    key = dotted(prefix, loc)
    kind = err.get("type", "")
    if kind == "extra_forbidden":
        keys = valid if valid is not None else _valid_keys(model, loc)
        return InputError(f"{key}: unknown key; valid keys here: {keys}")
    if kind == "missing":
        return InputError(f"{key}: missing (required)")
    text = _sentence(str(err.get("msg", "invalid")))
    if kind == "value_error" and (m := re.match(r"^([A-Za-z_][\w.]*): (.*)$", text)):
        key, text = dotted(key, m.group(1).split(".")), m.group(2)  # a cross-field rule names its key
    if "input" in err and kind not in ("value_error", "assertion_error"):
        text += f", got {err['input']!r}"
    return InputError(f"{key}: {text}")
