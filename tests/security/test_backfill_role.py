"""A gap backfill reads as the subscriber, never as the DSN's superuser.

Before, a subscriber with no claims (an opaque or ``sb_publishable_…`` key) or a token naming a role
the database lacks had its backfill run as the DSN's user — the superuser on the embedded stack — and
got rows of ``megolm_session_shares`` (encryption key shares) that row level security hides from it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from harmony_lab.local.schema import ALICE
from harmony_lab.manager import Backfill, TableSubscription
from harmony_lab.manager._db import gap_fetch_via_dsn

SHARES = TableSubscription("megolm_session_shares", backfill=Backfill("created_at", lookback=0.0))
LONG_AGO = datetime(2000, 1, 1, tzinfo=UTC)


async def shares_visible_to(rt, claims):
    got = await gap_fetch_via_dsn(rt.dsn, SHARES, LONG_AGO, claims=claims)
    return got.rows


async def test_the_seed_has_key_shares_that_alice_may_read(rt):
    # the table is not empty and a party to a share sees it: the refusals below mean something
    (total,) = (await rt.execute("SELECT count(*) FROM public.megolm_session_shares"))[0]
    assert total > 0
    expires = int((datetime.now(UTC) + timedelta(hours=1)).timestamp())
    alice = {"role": "authenticated", "sub": str(ALICE), "exp": expires}
    rows = await shares_visible_to(rt, alice)
    assert rows
    assert all(str(ALICE) in (r["sender_id"], r["recipient_id"]) for r in rows)
    assert len(rows) < total


@pytest.mark.parametrize(
    "claims",
    [
        None,  # an opaque or publishable key: no claims at all
        {},
        {"role": "no_such_role"},  # a token naming a role the database does not have
        {"role": "postgres"},  # a token naming the superuser
        {"role": ""},
    ],
    ids=["no-claims", "empty-claims", "unknown-role", "superuser-role", "empty-role"],
)
async def test_without_a_usable_role_the_backfill_reads_as_anon(rt, claims):
    assert await shares_visible_to(rt, claims) == []
