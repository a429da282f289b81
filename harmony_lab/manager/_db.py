"""Database look-ups for the manager: primary keys, gap backfills (DSN or PostgREST).

The subscription's filter is translated to SQL the way the Realtime server evaluates it: each value is
a bound parameter cast to the column's type (``col = CAST(%s AS bigint)``); identifiers are quoted
with ``psycopg.sql.Identifier``; the type names come from the catalog. With a DSN the queries run
under the subscriber's role and JWT claims (``SET LOCAL ROLE``, ``request.jwt.claims``) when that
role exists, so row level security hides what the live subscription would not have shown either.

A gap backfill (:func:`gap_fetch_via_dsn`) is one read-only REPEATABLE READ transaction: the rows
changed since the gap began, and — for subscriptions that track deletes — which of the primary keys
the channel holds are still visible: the keys go in as text arrays (``unnest(...) WITH ORDINALITY``),
each looked up by primary key with the filter applied, and the positions of the visible ones come
back (so no value has to round-trip through two JSON renderings). Through PostgREST
(:func:`gap_fetch_via_postgrest`) the same lookups are ``in.(...)`` (or ``or=(and(...))`` for composite
keys) requests of :data:`KEYS_PER_REQUEST` keys.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from harmony_lab.filters import Condition
from harmony_lab.manager._specs import TableSubscription

__all__ = [
    "KEYS_PER_REQUEST",
    "GapFetch",
    "condition_sql",
    "gap_fetch_via_dsn",
    "gap_fetch_via_postgrest",
    "key_text",
    "postgrest_backfill_query",
    "postgrest_key_queries",
    "primary_key_via_dsn",
    "primary_key_via_openapi",
]

KEYS_PER_REQUEST = 100
"""Keys per PostgREST presence request (keeps URLs short and under any max-rows setting)."""


@dataclasses.dataclass(frozen=True, slots=True)
class GapFetch:
    """What a gap backfill read: the changed ``rows`` and their ``columns`` (name, type), and the
    positions in the asked keys that are still visible (``still_present``; None when not checked)."""

    rows: list[dict[str, Any]]
    columns: tuple[tuple[str, str], ...]
    still_present: set[int] | None = None


def key_text(value: Any) -> str:
    """A primary-key value from a JSON payload as text Postgres can cast to the column's type."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


logger = logging.getLogger("harmony_lab.manager")

_COMPARISON = {"eq": "=", "neq": "<>", "lt": "<", "lte": "<=", "gt": ">", "gte": ">="}
_PATTERN = {"like": "LIKE", "ilike": "ILIKE", "match": "~", "imatch": "~*"}


def condition_sql(cond: Condition, column_type: str) -> tuple[Any, list[Any]]:
    """One condition as a ``psycopg.sql.Composed`` plus its parameters."""
    from psycopg import sql

    col = sql.Identifier(cond.column)
    typ = sql.SQL(column_type)
    params: list[Any] = []
    if cond.op in _COMPARISON:
        expr = sql.SQL("{} {} CAST({} AS {})").format(
            col, sql.SQL(_COMPARISON[cond.op]), sql.Placeholder(), typ
        )
        params.append(cond.value)
    elif cond.op in _PATTERN:
        expr = sql.SQL("{}::text {} {}").format(col, sql.SQL(_PATTERN[cond.op]), sql.Placeholder())
        params.append(cond.value)
    elif cond.op == "in":
        expr = sql.SQL("{} = ANY(CAST({} AS {}[]))").format(col, sql.Placeholder(), typ)
        params.append(cond.wire_value)
    elif cond.op == "is":
        keyword = {None: "NULL", "true": "TRUE", "false": "FALSE", "unknown": "UNKNOWN"}[
            cond.value if isinstance(cond.value, str) or cond.value is None else str(cond.value)
        ]
        expr = sql.SQL("{} IS {}").format(col, sql.SQL(keyword))
    elif cond.op == "isdistinct":
        expr = sql.SQL("{} IS DISTINCT FROM CAST({} AS {})").format(col, sql.Placeholder(), typ)
        params.append(cond.value)
    else:  # pragma: no cover - Condition validates op
        raise ValueError(f"unsupported operator {cond.op!r}")
    if cond.negate:
        expr = sql.SQL("NOT ({})").format(expr)
    return expr, params


async def _column_types(conn: Any, schema: str, table: str) -> dict[str, tuple[str, str]]:
    """column → (SQL type for casts, pg_type.typname as Realtime reports it)."""
    cur = await conn.execute(
        """
        SELECT a.attname, format_type(a.atttypid, a.atttypmod), t.typname
        FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
        WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped
        ORDER BY a.attnum
        """,
        (f'"{schema}"."{table}"',),
    )
    rows = await cur.fetchall()
    return {name: (fmt, typname) for name, fmt, typname in rows}


async def primary_key_via_dsn(dsn: str, schema: str, table: str) -> tuple[str, ...] | None:
    """The table's PK columns from ``pg_index`` (in key order), or None if it has none."""
    import psycopg

    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        cur = await conn.execute(
            """
            SELECT a.attname
            FROM pg_index i
            JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) ON true
            JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
            WHERE i.indrelid = to_regclass(%s) AND i.indisprimary
            ORDER BY k.ord
            """,
            (f'"{schema}"."{table}"',),
        )
        cols = tuple(row[0] for row in await cur.fetchall())
    return cols or None


async def primary_key_via_openapi(rest_url: str, key: str, table: str) -> tuple[str, ...] | None:
    """PK columns from PostgREST's OpenAPI description (``<pk/>`` marks PK columns)."""
    import httpx

    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(
            rest_url.rstrip("/") + "/", headers={"apikey": key, "Authorization": f"Bearer {key}"}
        )
        response.raise_for_status()
        spec = response.json()
    props = ((spec.get("definitions") or {}).get(table) or {}).get("properties") or {}
    cols = tuple(name for name, prop in props.items() if "<pk/>" in str(prop.get("description", "")))
    return cols or None


def _where_filter(
    sub: TableSubscription, types: Mapping[str, tuple[str, str]]
) -> tuple[list[Any], list[Any]]:
    where: list[Any] = []
    params: list[Any] = []
    for cond in sub.conditions:
        if cond.column not in types:
            raise LookupError(f"filter column {cond.column!r} is not a column of {sub.schema}.{sub.table}")
        expr, p = condition_sql(cond, types[cond.column][0])
        where.append(expr)
        params += p
    return where, params


def _presence_query(
    sub: TableSubscription,
    types: Mapping[str, tuple[str, str]],
    key_columns: Sequence[str],
    keys: Sequence[Mapping[str, Any]],
) -> tuple[Any, list[Any]]:
    """``SELECT n`` for the 1-based positions of ``keys`` still visible (filter applied)."""
    from psycopg import sql

    for col in key_columns:
        if col not in types:
            raise LookupError(f"primary key column {col!r} is not a column of {sub.schema}.{sub.table}")
    names = [sql.Identifier(f"k{j}") for j in range(len(key_columns))]
    match = [
        sql.SQL("{} = CAST(u.{} AS {})").format(sql.Identifier(col), names[j], sql.SQL(types[col][0]))
        for j, col in enumerate(key_columns)
    ]
    where, params = _where_filter(sub, types)
    arrays = [[key_text(key[col]) for key in keys] for col in key_columns]
    query = sql.SQL(
        "SELECT u.n FROM unnest({arrays}) WITH ORDINALITY AS u({names}, n) "
        "WHERE EXISTS (SELECT 1 FROM {schema}.{table} WHERE {cond})"
    ).format(
        arrays=sql.SQL(", ").join(sql.SQL("CAST({} AS text[])").format(sql.Placeholder()) for _ in arrays),
        names=sql.SQL(", ").join(names),
        schema=sql.Identifier(sub.schema),
        table=sql.Identifier(sub.table),
        cond=sql.SQL(" AND ").join([*match, *where]),
    )
    return query, [*arrays, *params]


FALLBACK_ROLE = "anon"


async def subscriber_role(conn: Any, claims: Mapping[str, Any] | None, *, what: str, remedy: str) -> str:
    """The database role a read on behalf of a subscriber runs as.

    The claims' role when the database has it and it is not a superuser; otherwise ``anon`` (what
    an opaque or publishable key, or a token naming an unknown role, amounts to). Never the DSN's own
    user, which is a superuser on the embedded stack and would bypass row level security. An error
    that says ``remedy`` when neither role can be used.
    """
    wanted = (claims or {}).get("role")
    for role in (wanted, FALLBACK_ROLE):
        if not isinstance(role, str) or not role:
            continue
        cur = await conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = %s", (role,))
        found = await cur.fetchone()
        if found is None or found[0]:
            continue
        if role != wanted:
            logger.info("%s: the token's role %r cannot be used here; reading as %r", what, wanted, role)
        return role
    raise PermissionError(
        f"{what}: neither the token's role {wanted!r} nor {FALLBACK_ROLE!r} is a non-superuser role in "
        f"this database, so the rows the subscriber may see cannot be determined; {remedy} (Supabase's "
        "schema has anon, authenticated and service_role)"
    )


async def act_as_subscriber(conn: Any, claims: Mapping[str, Any] | None, *, what: str, remedy: str) -> str:
    """Inside a transaction: ``SET LOCAL ROLE`` to :func:`subscriber_role` and set
    ``request.jwt.claims``, so row level security and ``auth.uid()`` see the subscriber."""
    role = await subscriber_role(conn, claims, what=what, remedy=remedy)
    await become(conn, role, claims)
    return role


async def become(conn: Any, role: str, claims: Mapping[str, Any] | None) -> None:
    """Inside a transaction: ``SET LOCAL ROLE role`` with ``request.jwt.claims`` set to ``claims``."""
    from psycopg import sql

    await conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(role)))
    await conn.execute("SELECT set_config('request.jwt.claims', %s, true)", (json.dumps(dict(claims or {})),))


async def gap_fetch_via_dsn(
    dsn: str,
    sub: TableSubscription,
    since: datetime,
    *,
    claims: dict[str, Any] | None,
    key_columns: Sequence[str] | None = None,
    known: Sequence[Mapping[str, Any]] | None = None,
) -> GapFetch:
    """The backfill of ``sub`` after a gap that began at ``since``, in one consistent snapshot.

    Rows with ``backfill.column >= since - lookback`` (filter applied, ordered, at most ``limit``);
    and, when ``known`` keys are given (with their ``key_columns``), which of them are still visible.
    Runs as the subscriber (:func:`act_as_subscriber`), never as the DSN's user.
    """
    import psycopg
    from psycopg import sql

    assert sub.backfill is not None
    bf = sub.backfill
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        types = await _column_types(conn, sub.schema, sub.table)
        if not types:
            raise LookupError(f"backfill: table {sub.schema}.{sub.table} not found via the DSN")
        if bf.column not in types:
            raise LookupError(
                f"backfill column {bf.column!r} is not a column of {sub.schema}.{sub.table}; "
                f"columns: {', '.join(types)}"
            )
        where = [
            sql.SQL("{} >= CAST({} AS {})").format(
                sql.Identifier(bf.column), sql.Placeholder(), sql.SQL(types[bf.column][0])
            )
        ]
        params: list[Any] = [since - timedelta(seconds=bf.lookback)]
        extra, extra_params = _where_filter(sub, types)
        where += extra
        params += extra_params
        query = sql.SQL(
            "SELECT to_jsonb(t) FROM (SELECT * FROM {}.{} WHERE {} ORDER BY {} LIMIT {}) AS t"
        ).format(
            sql.Identifier(sub.schema),
            sql.Identifier(sub.table),
            sql.SQL(" AND ").join(where),
            sql.Identifier(bf.column),
            sql.Literal(bf.limit),
        )
        presence = None
        if known and key_columns:
            presence = _presence_query(sub, types, key_columns, known)
        await conn.set_isolation_level(psycopg.IsolationLevel.REPEATABLE_READ)
        await conn.set_read_only(True)
        async with conn.transaction():
            await act_as_subscriber(
                conn, claims, what="backfill", remedy="create the role or subscribe without backfill="
            )
            cur = await conn.execute(query, params)
            rows = [row[0] for row in await cur.fetchall()]
            still: set[int] | None = None
            if presence is not None:
                cur = await conn.execute(presence[0], presence[1])
                still = {int(n) - 1 for (n,) in await cur.fetchall()}
            elif known is not None:
                still = set()
    columns = tuple((name, typname) for name, (_, typname) in types.items())
    return GapFetch(rows, columns, still)


def postgrest_backfill_query(client: Any, sub: TableSubscription, since: datetime) -> Any:
    """The backfill as a supabase-py PostgREST request builder (not executed).

    Realtime filters use PostgREST's syntax, so each condition maps 1:1 to ``.filter(col, op, value)``.
    """
    assert sub.backfill is not None
    bf = sub.backfill
    query = client.schema(sub.schema).table(sub.table).select("*")
    query = query.gte(bf.column, (since - timedelta(seconds=bf.lookback)).isoformat())
    return _postgrest_filters(query, sub).order(bf.column).limit(bf.limit)


def _postgrest_filters(query: Any, sub: TableSubscription) -> Any:
    for cond in sub.conditions:
        text = str(cond)
        _, rhs = text.split("=", 1)
        operator = ("not." if cond.negate else "") + cond.op
        query = query.filter(cond.column, operator, rhs[len(operator) + 1 :])
    return query


def postgrest_key_queries(
    client: Any,
    sub: TableSubscription,
    key_columns: Sequence[str],
    keys: Sequence[Mapping[str, Any]],
    *,
    per_request: int = KEYS_PER_REQUEST,
) -> list[Any]:
    """Requests (not executed) selecting which of ``keys`` are still visible, ``per_request`` each:
    ``select=<key columns>`` with the subscription's filter and ``<pk>=in.(...)`` (one key column) or
    ``or=(and(a.eq.1,b.eq.2),...)`` (composite keys)."""
    from postgrest.utils import sanitize_param

    out = []
    cols = list(key_columns)
    for start in range(0, len(keys), per_request):
        chunk = keys[start : start + per_request]
        query = _postgrest_filters(client.schema(sub.schema).table(sub.table).select(",".join(cols)), sub)
        if len(cols) == 1:
            query = query.in_(cols[0], [key_text(k[cols[0]]) for k in chunk])
        else:
            groups = (
                "and(" + ",".join(f"{c}.eq.{sanitize_param(key_text(k[c]))}" for c in cols) + ")"
                for k in chunk
            )
            query = query.or_(",".join(groups))
        out.append(query)
    return out


def _key_of(row: Mapping[str, Any], key_columns: Sequence[str]) -> tuple[str, ...]:
    return tuple(key_text(row.get(c)) for c in key_columns)


async def gap_fetch_via_postgrest(
    client: Any,
    sub: TableSubscription,
    since: datetime,
    *,
    key_columns: Sequence[str] | None = None,
    known: Sequence[Mapping[str, Any]] | None = None,
) -> GapFetch:
    """The gap backfill through supabase-py's PostgREST client (a real project without a DSN).

    Not one snapshot (separate requests); the live-wins rule of the backfill makes that safe.
    """
    response = await postgrest_backfill_query(client, sub, since).execute()
    rows = list(response.data or [])
    still: set[int] | None = None
    if known is not None:
        still = set()
        if known and key_columns:
            position = {_key_of(k, key_columns): n for n, k in enumerate(known)}
            for request in postgrest_key_queries(client, sub, key_columns, known):
                found = await request.execute()
                for row in found.data or ():
                    n = position.get(_key_of(row, key_columns))
                    if n is not None:
                        still.add(n)
    return GapFetch(rows, (), still)
