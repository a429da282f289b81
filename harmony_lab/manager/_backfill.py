"""Gap backfill bookkeeping for one channel: pure (no I/O, no clock), driven by the runner.

A backfill answers "what changed while the channel could not deliver?" with two database reads made
after the channel is connected again (``_db.py``):

* the rows whose backfill column is at least ``gap_start - lookback`` (filtered like the
  subscription, under the subscriber's role and claims), and
* when :attr:`Backfill.deletes` is on, which of the keys the channel holds as present are still
  visible (looked up by primary key, with the same filter and RLS) — the ones that are not were
  deleted (or left the subscription's view) during the gap and are delivered as backfilled DELETEs.

**Live wins.** Both reads come from a snapshot taken while live changes are flowing again. The live
stream since the reconnect is complete and in commit order, so for every key it touches it already
ends at the latest state; a backfilled row or DELETE for such a key can only be older (the snapshot
predates the live change) and is dropped (``superseded``). For every other key nothing has changed
since the snapshot, which is therefore current. So live events are never held back or reordered, and
a consumer that applies events in order (``LiveFrame``) ends equal to the table. (An earlier design
held live events back while the query ran and replayed them afterwards; that adds latency, needs a
bound, and at the bound needs exactly this rule anyway.)

A live event can still arrive *after* the backfill for a commit the snapshot already contained (the
server was a little behind): the row is momentarily older, and the live events that follow bring it
forward; an exact repeat of a backfilled row is skipped (``duplicates``).

Bookkeeping per subscription with a backfill: :class:`~._convert.SeenRows` (last version delivered
per key, bounded) and, with ``deletes``, the keys delivered as present (inserted or updated and not
deleted since; one entry per row in the subscription's view — the cost of detecting deletes, besides
one primary-key lookup of those keys per gap). Keys touched live are remembered only while a backfill
is pending.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from harmony_lab.manager._convert import DELETED, SeenRows, pk_of, row_fingerprint, row_version
from harmony_lab.manager._specs import TableSubscription

__all__ = ["BackfillBook", "PlanStats", "Planned", "tracks_deletes"]

Key = tuple[Any, ...]


def tracks_deletes(sub: TableSubscription) -> bool:
    """Whether ``sub`` keeps the key set that detects DELETEs missed during a gap.

    Only for ``event="*"``: a subscription to INSERTs (or UPDATEs) only must not receive DELETEs.
    """
    return sub.backfill is not None and sub.backfill.deletes and sub.event == "*"


@dataclasses.dataclass(frozen=True, slots=True)
class Planned:
    """One backfilled change to deliver: ``op`` with ``row`` (INSERT/UPDATE) or ``pk`` (DELETE)."""

    op: str
    row: dict[str, Any] | None
    pk: dict[str, Any] | None


@dataclasses.dataclass(slots=True)
class PlanStats:
    rows: int = 0
    delivered: int = 0
    duplicates: int = 0
    superseded: int = 0
    deleted: int = 0
    checked: int | None = None


class BackfillBook:
    """What the runner needs to know to backfill a channel's subscriptions correctly."""

    def __init__(self, subs: Sequence[TableSubscription], *, capacity: int = 100_000) -> None:
        self.subs = tuple(subs)
        self._seen = [SeenRows(capacity) if s.backfill is not None else None for s in self.subs]
        self._present: list[dict[Key, dict[str, Any]] | None] = [
            {} if tracks_deletes(s) else None for s in self.subs
        ]
        self._seq = 0
        self._active = False
        self._touched: dict[tuple[int, Key], int] = {}
        self.duplicates = 0
        self.superseded = 0
        self.deleted = 0

    @property
    def enabled(self) -> bool:
        return any(s is not None for s in self._seen)

    def present_count(self, index: int) -> int | None:
        present = self._present[index]
        return None if present is None else len(present)

    # ------------------------------------------------------------------------------------- live
    def live(
        self,
        indexes: Iterable[int],
        op: str | None,
        pk: Mapping[str, Any] | None,
        old_pk: Mapping[str, Any] | None,
        new: Mapping[str, Any] | None,
    ) -> bool:
        """Book a live change for the subscriptions ``indexes`` (the ones the server matched).

        Returns False when the event only repeats what a backfill just delivered for every one of
        them (skip it), else True.
        """
        self._seq += 1
        matched = list(indexes)
        repeats = 0
        for i in matched:
            seen = self._seen[i]
            if seen is not None and pk is not None and self._book(i, seen, op, pk, old_pk, new):
                repeats += 1
        if matched and repeats == len(matched):
            self.duplicates += 1
            return False
        return True

    def _book(
        self,
        i: int,
        seen: SeenRows,
        op: str | None,
        pk: Mapping[str, Any],
        old_pk: Mapping[str, Any] | None,
        new: Mapping[str, Any] | None,
    ) -> bool:
        """Record one live change for subscription ``i``; True if it repeats the backfilled row."""
        sub = self.subs[i]
        assert sub.backfill is not None
        key = SeenRows.key(sub.schema, sub.table, pk)
        present = self._present[i]
        if self._active:
            self._touched[(i, key)] = self._seq
        if old_pk is not None and dict(old_pk) != dict(pk):  # the primary key changed
            old_key = SeenRows.key(sub.schema, sub.table, old_pk)
            if self._active:
                self._touched[(i, old_key)] = self._seq
            if present is not None:
                present.pop(old_key, None)
            seen.add(old_key, DELETED, "live")
        if op == "DELETE":
            if present is not None:
                present.pop(key, None)
            seen.add(key, DELETED, "live")
            return False
        if not new:
            return False
        prior = seen.get(key)
        version = row_version(new.get(sub.backfill.column))
        seen.add(key, version, "live")
        if present is not None:
            present[key] = dict(pk)
        return (
            prior is not None
            and prior.source == "backfill"
            and prior.fingerprint is not None
            and prior.fingerprint == row_fingerprint(new)
        )

    # --------------------------------------------------------------------------------- backfill
    def begin(self) -> int:
        """A gap closed and a backfill is coming: remember keys touched live from now on.

        Returns the mark to pass to :meth:`plan` (live events after it win over the backfill).
        """
        self._active = True
        return self._seq

    def finish(self) -> None:
        """No backfill is pending any more."""
        self._active = False
        self._touched.clear()

    def known(self, index: int) -> list[dict[str, Any]] | None:
        """The primary keys subscription ``index`` holds as present (a snapshot), or None when it does
        not track them."""
        present = self._present[index]
        return None if present is None else list(present.values())

    def _touched_since(self, index: int, key: Key, mark: int) -> bool:
        return self._touched.get((index, key), -1) > mark

    def plan(
        self,
        index: int,
        rows: Iterable[Mapping[str, Any]],
        key_columns: Sequence[str] | None,
        mark: int,
        *,
        asked: Sequence[Mapping[str, Any]] | None = None,
        still_present: Iterable[int] | None = None,
    ) -> tuple[list[Planned], PlanStats]:
        """What to deliver for subscription ``index`` from a backfill's result.

        ``rows``: the rows changed in the window; ``asked``: the keys (from :meth:`known`) whose
        presence was checked and ``still_present`` the positions in ``asked`` found visible (None: not
        checked). ``mark``: from :meth:`begin`.
        """
        sub = self.subs[index]
        seen = self._seen[index]
        present = self._present[index]
        if sub.backfill is None or seen is None:
            raise ValueError(f"subscription {sub.describe()} has no backfill")
        column = sub.backfill.column
        stats = PlanStats()
        out: list[Planned] = []
        in_rows: set[Key] = set()
        for raw in rows:
            row = dict(raw)
            stats.rows += 1
            pk = pk_of(key_columns, row)
            if pk is None:  # no key: cannot deduplicate, deliver as is
                out.append(Planned("INSERT", row, None))
                continue
            key = SeenRows.key(sub.schema, sub.table, pk)
            in_rows.add(key)
            if self._touched_since(index, key, mark):
                stats.superseded += 1
                continue
            version = row_version(row.get(column))
            prior = seen.get(key)
            held = prior is not None and prior.version is not DELETED
            if held and prior is not None and prior.version == version:
                stats.duplicates += 1
                continue
            seen.add(key, version, "backfill", row_fingerprint(row))
            if present is not None:
                present[key] = pk
            out.append(Planned("UPDATE" if held else "INSERT", row, pk))
        if asked is not None and still_present is not None and present is not None:
            visible = set(still_present)
            stats.checked = len(asked)
            for n, pk_raw in enumerate(asked):
                if n in visible:
                    continue
                pk = dict(pk_raw)
                key = SeenRows.key(sub.schema, sub.table, pk)
                if key in in_rows or key not in present:
                    continue
                if self._touched_since(index, key, mark):
                    stats.superseded += 1
                    continue
                del present[key]
                seen.add(key, DELETED, "backfill")
                stats.deleted += 1
                out.append(Planned("DELETE", None, pk))
        stats.delivered = len(out)
        self.duplicates += stats.duplicates
        self.superseded += stats.superseded
        self.deleted += stats.deleted
        return out, stats
