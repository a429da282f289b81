"""The backfill bookkeeping (pure): dedup, live-wins over an older snapshot, DELETEs missed in a gap."""

from __future__ import annotations

import pytest

from harmony_lab.manager import Backfill, TableSubscription
from harmony_lab.manager._backfill import BackfillBook, Planned, tracks_deletes
from harmony_lab.manager._db import key_text

T0 = "2026-01-01T00:00:00.000000+00:00"
T1 = "2026-01-01T00:00:01.000000+00:00"
T2 = "2026-01-01T00:00:02.000000+00:00"
T3 = "2026-01-01T00:00:03.000000+00:00"


def row(i: int, at: str, body: str = "x") -> dict:
    return {"id": i, "body": body, "updated_at": at}


def book(**backfill) -> BackfillBook:
    return BackfillBook([TableSubscription("t", backfill=Backfill("updated_at", **backfill))])


def ops(planned: list[Planned]) -> list[tuple[str, int]]:
    return [(p.op, (p.row or p.pk or {}).get("id")) for p in planned]


def live(b: BackfillBook, op: str, r: dict | None, *, pk: dict | None = None, old_pk: dict | None = None):
    pk = pk if pk is not None else {"id": r["id"]}  # type: ignore[index]
    return b.live([0], op, pk, old_pk, r)


def test_rows_changed_in_the_gap_are_inserts_or_updates_and_repeats_are_skipped():
    b = book()
    assert live(b, "INSERT", row(1, T0))
    assert live(b, "INSERT", row(2, T0))
    mark = b.begin()
    planned, stats = b.plan(0, [row(1, T1, "edited"), row(2, T0), row(3, T1)], ("id",), mark)
    b.finish()
    assert ops(planned) == [("UPDATE", 1), ("INSERT", 3)]
    assert (stats.rows, stats.delivered, stats.duplicates) == (3, 2, 1)
    # the same rows arriving live afterwards (the server was behind) are not delivered twice ...
    assert not live(b, "UPDATE", row(1, T1, "edited"))
    assert not live(b, "INSERT", row(3, T1))
    # ... but only once: the next live change of the row goes through
    assert live(b, "UPDATE", row(3, T1))
    assert b.duplicates == 3


def test_a_live_update_that_keeps_the_backfill_column_is_not_a_duplicate():
    """With Backfill('created_at') an UPDATE keeps the version; it must still be delivered."""
    b = BackfillBook([TableSubscription("t", backfill=Backfill("created_at"))])
    mark = b.begin()
    planned, _ = b.plan(0, [{"id": 1, "body": "a", "created_at": T0}], ("id",), mark)
    b.finish()
    assert ops(planned) == [("INSERT", 1)]
    for body in ("b", "c"):
        assert b.live([0], "UPDATE", {"id": 1}, None, {"id": 1, "body": body, "created_at": T0})


def test_live_changes_since_the_reconnect_win_over_the_older_snapshot():
    b = book()
    live(b, "INSERT", row(1, T0))
    live(b, "INSERT", row(2, T0))
    live(b, "INSERT", row(3, T0))
    mark = b.begin()
    # while the backfill query runs: row 1 is updated live, row 2 deleted live
    assert live(b, "UPDATE", row(1, T3, "live v3"))
    assert live(b, "DELETE", None, pk={"id": 2})
    # the snapshot (older) still shows row 1 at v2 and row 2 present, and row 3 deleted in the gap
    planned, stats = b.plan(
        0,
        [row(1, T2, "snapshot v2"), row(2, T2, "snapshot")],
        ("id",),
        mark,
        asked=[{"id": 1}, {"id": 2}, {"id": 3}],
        still_present={0, 1},
    )
    b.finish()
    # rows 1 and 2 changed live since the reconnect: the live stream is newer, the snapshot is dropped;
    # row 3 was not touched since: the snapshot decides (it is gone)
    assert ops(planned) == [("DELETE", 3)]
    assert planned[0].pk == {"id": 3}
    assert (stats.superseded, stats.deleted) == (2, 1)


def test_keys_touched_before_the_latest_reconnect_do_not_win():
    b = book()
    live(b, "INSERT", row(1, T0))
    b.begin()
    live(b, "UPDATE", row(1, T1))  # on the connection that then dropped again
    mark = b.begin()  # second reconnect: only live events after it win
    planned, _ = b.plan(0, [row(1, T2)], ("id",), mark)
    assert ops(planned) == [("UPDATE", 1)]


def test_deletes_missed_in_a_gap():
    b = book()
    for i in (1, 2, 3, 4):
        live(b, "INSERT", row(i, T0))
    live(b, "DELETE", None, pk={"id": 4})  # deleted live: no longer held
    known = b.known(0)
    assert known == [{"id": 1}, {"id": 2}, {"id": 3}]
    mark = b.begin()
    # 1 still there; 2 gone; 3 gone but re-inserted in the gap (so it is in the rows)
    planned, stats = b.plan(0, [row(3, T1)], ("id",), mark, asked=known, still_present={0})
    assert ops(planned) == [("UPDATE", 3), ("DELETE", 2)]
    assert (stats.deleted, stats.checked) == (1, 3)
    assert b.known(0) == [{"id": 1}, {"id": 3}]
    # a later backfill of row 2 (re-inserted) is an INSERT again
    planned, _ = b.plan(0, [row(2, T3)], ("id",), b.begin())
    assert ops(planned) == [("INSERT", 2)]


def test_a_key_changing_update_forgets_the_old_key():
    b = book()
    live(b, "INSERT", row(1, T0))
    live(b, "UPDATE", row(10, T1), pk={"id": 10}, old_pk={"id": 1})
    assert b.known(0) == [{"id": 10}]


def test_only_star_subscriptions_with_deletes_on_track_keys():
    assert tracks_deletes(TableSubscription("t", backfill=Backfill()))
    assert not tracks_deletes(TableSubscription("t", backfill=Backfill(deletes=False)))
    assert not tracks_deletes(TableSubscription("t", event="INSERT", backfill=Backfill()))
    assert not tracks_deletes(TableSubscription("t"))
    b = book(deletes=False)
    live(b, "INSERT", row(1, T0))
    assert b.known(0) is None
    assert b.present_count(0) is None


def test_events_matching_a_subscription_without_backfill_are_always_delivered():
    b = BackfillBook(
        [TableSubscription("t", backfill=Backfill("updated_at")), TableSubscription("t", filter="id=eq.1")]
    )
    planned, _ = b.plan(0, [row(1, T1)], ("id",), b.begin())
    b.finish()
    assert ops(planned) == [("INSERT", 1)]
    assert b.live([0, 1], "INSERT", {"id": 1}, None, row(1, T1))  # the second binding never got it
    assert not BackfillBook([TableSubscription("t")]).enabled
    with pytest.raises(ValueError, match="has no backfill"):
        b.plan(1, [], ("id",), 0)


def test_rows_without_a_key_are_delivered_as_inserts():
    b = book()
    planned, stats = b.plan(0, [{"body": "no id", "updated_at": T1}], None, b.begin())
    assert ops(planned) == [("INSERT", None)]
    assert stats.delivered == 1


def test_timestamps_rendered_differently_are_the_same_row():
    b = book()
    planned, _ = b.plan(0, [row(1, "2026-01-01T00:00:01.123456+00:00")], ("id",), b.begin())
    b.finish()
    assert planned
    assert not live(b, "INSERT", row(1, "2026-01-01T00:00:01.123Z"))


def test_key_text():
    assert key_text(5) == "5"
    assert key_text(True) == "true"
    assert key_text("a,b") == "a,b"
    assert key_text({"k": [1]}) == '{"k": [1]}'
