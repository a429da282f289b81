"""Constructors that reject unknown keyword arguments, naming the valid ones (read from the signature,
so the list cannot drift from it) and the closest match.

``@strict_kwargs`` decorates a function or method (``__init__``) or a class (a dataclass: its generated
``__init__`` is wrapped). One message everywhere::

    TableSubscription() got unknown keyword argument(s) 'tabel' (did you mean 'table'?); valid: table, …
"""

from __future__ import annotations

import difflib
import functools
import inspect
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

__all__ = ["keyword_names", "strict_kwargs", "unknown_kwargs_error"]

T = TypeVar("T")


def keyword_names(fn: Callable[..., Any]) -> list[str]:
    """The names ``fn`` accepts as keywords, in signature order (without ``self``/``cls``)."""
    return [
        p.name
        for p in inspect.signature(fn).parameters.values()
        if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name not in ("self", "cls")
    ]


def unknown_kwargs_error(owner: str, unknown: Iterable[str], valid: Iterable[str]) -> TypeError:
    """A TypeError naming the unknown arguments (each with a close match, if any) and the valid ones."""
    valid = list(valid)
    parts = []
    for name in sorted(unknown):
        close = difflib.get_close_matches(name, valid, n=1)
        parts.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    return TypeError(
        f"{owner}() got unknown keyword argument(s) {', '.join(parts)}; valid: {', '.join(valid)}"
    )


def strict_kwargs(obj: T) -> T:
    """Reject unknown keyword arguments of a function/``__init__``, or of a class's ``__init__``."""
    if isinstance(obj, type):
        cls = obj
        cls.__init__ = _strict(cls.__init__, cls.__name__)  # type: ignore[misc]
        return obj
    if not callable(obj):
        raise TypeError(f"strict_kwargs decorates a function or a class; got {obj!r}")
    owner = obj.__qualname__.rsplit("<locals>.", 1)[-1].removesuffix(".__init__")
    return _strict(obj, owner)  # type: ignore[return-value]


def _strict(fn: Callable[..., Any], owner: str) -> Callable[..., Any]:
    params = inspect.signature(fn).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return fn  # it takes **kwargs on purpose
    valid = keyword_names(fn)
    accepted = frozenset(valid)

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        unknown = [k for k in kwargs if k not in accepted]
        if unknown:
            raise unknown_kwargs_error(owner, unknown, valid)
        return fn(*args, **kwargs)

    return wrapper
