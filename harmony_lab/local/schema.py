"""The Harmony schema: Supabase-shaped roles, an ``auth`` schema, the chat tables, RLS, and the
``supabase_realtime`` publication — SQL files shipped in :mod:`harmony_lab.sql`.

>>> from harmony_lab.local.schema import apply_schema, ALICE, GENERAL   # doctest: +SKIP
>>> apply_schema(pg.dsn)                                                 # doctest: +SKIP

Applying is idempotent and serialised with an advisory lock, so concurrent or repeated calls are
fine. The seed uses fixed ids, exported here so tests and the demo can refer to them.
"""

from __future__ import annotations

import logging
import uuid
from importlib import resources
from typing import Any, Final

__all__ = [
    "ALICE",
    "BOB",
    "CAROL",
    "CHANNELS",
    "DAVE",
    "DM_ALICE_BOB",
    "DM_CAROL_DAVE",
    "DM_CHANNELS",
    "ENGINEERING",
    "ERIN",
    "FRANK",
    "GENERAL",
    "MEMBERS",
    "PUBLICATION",
    "RANDOM",
    "SCHEMA_FILES",
    "SEED_FILE",
    "TABLES",
    "TEXT_CHANNELS",
    "USERS",
    "apply_schema",
    "claims_for",
    "schema_sql",
]

logger = logging.getLogger(__name__)

PUBLICATION: Final = "supabase_realtime"
SCHEMA_FILES: Final = (
    "00_roles.sql",
    "10_auth.sql",
    "15_realtime.sql",
    "20_tables.sql",
    "30_security.sql",
    "40_publication.sql",
    "50_broadcast.sql",
)
SEED_FILE: Final = "90_seed.sql"
TABLES: Final = (
    "profiles",
    "channels",
    "channel_members",
    "messages",
    "message_reactions",
    "notifications",
    "typing_indicators",
    "megolm_session_shares",
)
"""The Harmony tables (schema ``public``), all in the ``supabase_realtime`` publication."""

# seed users (auth.users.id == profiles.id)
ALICE: Final = uuid.UUID("00000000-0000-4000-a000-000000000001")
BOB: Final = uuid.UUID("00000000-0000-4000-a000-000000000002")
CAROL: Final = uuid.UUID("00000000-0000-4000-a000-000000000003")
DAVE: Final = uuid.UUID("00000000-0000-4000-a000-000000000004")
ERIN: Final = uuid.UUID("00000000-0000-4000-a000-000000000005")
FRANK: Final = uuid.UUID("00000000-0000-4000-a000-000000000006")
USERS: Final[dict[str, uuid.UUID]] = {
    "alice": ALICE,
    "bob": BOB,
    "carol": CAROL,
    "dave": DAVE,
    "erin": ERIN,
    "frank": FRANK,
}

# seed channels (channels.id)
GENERAL: Final = 1
RANDOM: Final = 2
ENGINEERING: Final = 3
DM_ALICE_BOB: Final = 4
DM_CAROL_DAVE: Final = 5
TEXT_CHANNELS: Final[dict[str, int]] = {"general": GENERAL, "random": RANDOM, "engineering": ENGINEERING}
DM_CHANNELS: Final[dict[str, int]] = {"alice-bob": DM_ALICE_BOB, "carol-dave": DM_CAROL_DAVE}
CHANNELS: Final[dict[str, int]] = {**TEXT_CHANNELS, **DM_CHANNELS}
MEMBERS: Final[dict[int, frozenset[uuid.UUID]]] = {
    GENERAL: frozenset({ALICE, BOB, CAROL, DAVE, ERIN, FRANK}),
    RANDOM: frozenset({ALICE, BOB, CAROL, DAVE}),
    ENGINEERING: frozenset({ALICE, CAROL, ERIN, FRANK}),
    DM_ALICE_BOB: frozenset({ALICE, BOB}),
    DM_CAROL_DAVE: frozenset({CAROL, DAVE}),
}
"""Seeded channel memberships: channel id → member user ids."""

_LOCK_KEY: Final = 0x4A524D4E  # advisory lock serialising concurrent apply_schema calls


def schema_sql(*, seed: bool = True) -> str:
    """The full SQL script (schema files in order, then the seed when ``seed`` is true)."""
    names = [*SCHEMA_FILES, SEED_FILE] if seed else list(SCHEMA_FILES)
    pkg = resources.files("harmony_lab.sql")
    return "\n".join(f"-- ==== {name}\n" + pkg.joinpath(name).read_text(encoding="utf-8") for name in names)


def claims_for(user: uuid.UUID | str, *, role: str = "authenticated", **extra: Any) -> dict[str, Any]:
    """JWT claims like Supabase issues for ``user`` (for ``request.jwt.claims`` and test tokens)."""
    return {"sub": str(user), "role": role, "aud": role, **extra}


def apply_schema(conn_or_dsn: Any, *, seed: bool = True) -> None:
    """Create (or bring up to date) the Harmony schema in the database of ``conn_or_dsn``.

    ``conn_or_dsn`` is a libpq DSN/URL string or an open psycopg 3 connection (left open, its
    transaction state respected: the script runs in its own transaction or savepoint). Applying
    twice is fine. ``seed=False`` skips the sample users, channels and messages.

    It needs a superuser (it creates roles, an ``auth`` schema and a trigger on ``auth.users``):
    meant for databases harmony_lab runs (LocalPostgres, a scratch server), not for a hosted
    Supabase project, whose ``auth`` schema belongs to Supabase.
    """
    import psycopg

    if isinstance(conn_or_dsn, str):
        with psycopg.connect(conn_or_dsn, autocommit=True) as conn:
            _apply(conn, seed)
    elif isinstance(conn_or_dsn, psycopg.Connection):
        _apply(conn_or_dsn, seed)
    else:
        raise TypeError(
            "apply_schema() takes a DSN string (e.g. LocalPostgres().dsn) or a psycopg.Connection; "
            f"got {type(conn_or_dsn).__name__}"
        )


def _apply(conn: Any, seed: bool) -> None:
    import psycopg

    script = schema_sql(seed=seed)
    try:
        with conn.transaction():
            conn.execute(f"SELECT pg_advisory_xact_lock({_LOCK_KEY})")
            conn.execute(script)
    except psycopg.Error as exc:
        raise RuntimeError(f"applying the Harmony schema failed: {exc}") from exc
    logger.info("Harmony schema applied%s", " with seed data" if seed else "")
