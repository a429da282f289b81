"""Who is present on a channel, reduced from the presence messages a client sees (pure, no I/O).

One reducer for every consumer — the manager's presence handle, the roster widget and the analysis of
recordings — so they cannot disagree about who is online.

Phoenix Presence keeps, per key, a list of *metas* (one per tracking connection, each told apart by
its ``presence_ref``; raw Phoenix payloads call it ``phx_ref``). Clients see three operations:

* ``sync``: the whole state, ``{key: [meta, …]}`` (or ``{"state": {…}}``, or ``{key: {"metas": […]}}``
  as Phoenix sends it). Keys it does not list are gone.
* ``join``: ``{"key", "new"/"newPresences": [meta…], "current"/"currentPresences": [meta…]}``.
* ``leave``: ``{"key", "left"/"leftPresences": [meta…], "current"/"currentPresences": [meta…]}``.

A key is present while it has at least one meta. A join adds its new metas to the key's current ones
(those it carries, else those known); a leave that carries the remaining metas sets them, else it
removes the metas it names. A key's user is its latest
meta's ``user_id`` (the key itself when there is none), its status the latest meta's ``status``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["PresenceDiff", "PresenceState", "meta_id", "metas_of", "user_of"]

Meta = Mapping[str, Any]


def metas_of(value: Any) -> list[Meta]:
    """The metas of one key: a list of mappings, or Phoenix's ``{"metas": [...]}``; anything else is none."""
    if isinstance(value, Mapping) and "metas" in value:
        value = value["metas"]
    if not isinstance(value, list | tuple):
        return []
    return [m for m in value if isinstance(m, Mapping)]


def meta_id(meta: Meta) -> str:
    """A meta's identity: its ``presence_ref`` (``phx_ref``), else its content."""
    ref = meta.get("presence_ref", meta.get("phx_ref"))
    if ref is not None:
        return str(ref)
    return json.dumps(meta, sort_keys=True, default=str)


def user_of(key: str, meta: Meta | None) -> str:
    """The user a key stands for: the meta's ``user_id``, else the key."""
    user = meta.get("user_id") if meta is not None else None
    return str(user) if user not in (None, "") else str(key)


def _field(payload: Mapping[str, Any], *names: str) -> list[Meta] | None:
    for name in names:
        if name in payload and payload[name] is not None:
            return metas_of(payload[name])
    return None


@dataclasses.dataclass(frozen=True, slots=True)
class PresenceDiff:
    """What one message changed: keys that became present, and keys that left (with their last metas)."""

    joined: tuple[str, ...] = ()
    left: Mapping[str, tuple[Meta, ...]] = dataclasses.field(default_factory=dict)
    changed: tuple[str, ...] = ()
    """Keys present after the message whose metas it touched (joined ones included)."""


class PresenceState:
    """The presence state of one channel; :meth:`apply` folds in one message."""

    def __init__(self) -> None:
        self._keys: dict[str, dict[str, Meta]] = {}

    def apply(self, op: str, payload: Any) -> PresenceDiff:
        """Fold in a ``sync``, ``join`` or ``leave`` payload; other operations change nothing."""
        op = (op or "").lower()
        if not isinstance(payload, Mapping):
            return PresenceDiff()
        if op == "sync":
            state = payload.get("state") if isinstance(payload.get("state"), Mapping) else payload
            return self.replace({str(k): metas_of(v) for k, v in state.items()})
        if op not in ("join", "leave") or payload.get("key") is None:
            return PresenceDiff()
        key = str(payload["key"])
        before = self._keys.get(key, {})
        current = _field(payload, "current", "currentPresences")
        if op == "join":
            # a join's current metas are the key's metas before it; the new ones are added
            after = {meta_id(m): m for m in current} if current is not None else dict(before)
            for m in _field(payload, "new", "newPresences") or []:
                after[meta_id(m)] = m
        elif current is not None:
            after = {meta_id(m): m for m in current}  # a leave's current metas are what remains
        else:
            after = dict(before)
            for m in _field(payload, "left", "leftPresences") or []:
                after.pop(meta_id(m), None)
        return self._set(key, after)

    def replace(self, state: Mapping[str, Iterable[Meta]]) -> PresenceDiff:
        """Make ``state`` (``{key: metas}``) the whole state, as a ``sync`` does."""
        joined: list[str] = []
        changed: list[str] = []
        left: dict[str, tuple[Meta, ...]] = {}
        new = {str(k): {meta_id(m): m for m in metas} for k, metas in state.items()}
        new = {k: v for k, v in new.items() if v}
        for key, metas in self._keys.items():
            if key not in new:
                left[key] = tuple(metas.values())
        for key, metas in new.items():
            if key not in self._keys:
                joined.append(key)
            if self._keys.get(key) != metas:
                changed.append(key)
        self._keys = new
        return PresenceDiff(tuple(joined), left, tuple(changed))

    def clear(self) -> PresenceDiff:
        """Everyone leaves (the channel is gone: presence is unknown)."""
        return self.replace({})

    def _set(self, key: str, metas: dict[str, Meta]) -> PresenceDiff:
        before = self._keys.get(key)
        if not metas:
            if before is None:
                return PresenceDiff()
            del self._keys[key]
            return PresenceDiff(left={key: tuple(before.values())})
        self._keys[key] = metas
        return PresenceDiff(joined=(key,) if before is None else (), changed=(key,))

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def keys(self) -> list[str]:
        return list(self._keys)

    def metas(self, key: str) -> list[Meta]:
        return list(self._keys.get(key, {}).values())

    def latest(self, key: str) -> Meta | None:
        """The key's most recent meta (the last one tracked), or None when it is not present."""
        metas = self._keys.get(key)
        return next(reversed(metas.values())) if metas else None

    def users(self) -> dict[str, Meta]:
        """Each present user with the latest meta among its keys."""
        return {user_of(k, self.latest(k)): m for k in self._keys if (m := self.latest(k)) is not None}

    def meta_ids(self, key: str) -> set[str]:
        return set(self._keys.get(key, {}))
