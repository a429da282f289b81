"""Small shared helpers for frames and widgets."""

from __future__ import annotations

import difflib
import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["strict_kwargs"]

F = TypeVar("F", bound=Callable[..., Any])


def strict_kwargs(fn: F) -> F:
    """Reject unknown keyword arguments with a message that names the valid ones (and a guess)."""
    sig = inspect.signature(fn)
    valid = [
        p.name
        for p in sig.parameters.values()
        if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name not in ("self", "cls")
    ]
    takes_var_kw = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
    name = fn.__qualname__.removesuffix(".__init__")

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not takes_var_kw:
            unknown = [k for k in kwargs if k not in valid]
            if unknown:
                hints = []
                for k in unknown:
                    close = difflib.get_close_matches(k, valid, n=1)
                    if close:
                        hints.append(f"{k!r} → did you mean {close[0]!r}?")
                hint = f" ({'; '.join(hints)})" if hints else ""
                raise TypeError(
                    f"{name}() got unexpected keyword argument(s) {', '.join(map(repr, unknown))}{hint}; "
                    f"valid keyword arguments: {', '.join(valid)}"
                )
        return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
