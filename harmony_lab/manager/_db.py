"""Database look-ups for the manager: primary keys, backfill queries (DSN or PostgREST).

The subscription's filter is translated to SQL the way the Realtime server evaluates it: each value is
a bound parameter cast to the column's type (``col = CAST(%s AS bigint)``); identifiers are quoted
with ``psycopg.sql.Identifier``; the type names come from the catalog. With a DSN the query runs
under the subscriber's role and JWT claims (``SET LOCAL ROLE``, ``request.jwt.claims``) when that
role exists, so row level security hides what the live subscription would not have shown either.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta
from typing import Any

from harmony_lab.filters import Condition
from harmony_lab.manager._specs import TableSubscription

__all__ = [
    "backfill_via_dsn",
    "backfill_via_postgrest",
    "condition_sql",
    "postgrest_backfill_query",
    "primary_key_via_dsn",
    "primary_key_via_openapi",
]

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


async def backfill_via_dsn(
    dsn: str,
    sub: TableSubscription,
    since: datetime,
    *,
    claims: dict[str, Any] | None,
) -> tuple[list[dict[str, Any]], tuple[tuple[str, str], ...]]:
    """Rows of ``sub`` (its filter applied) with ``backfill.column >= since``; and the columns."""
    import psycopg
    from psycopg import sql

    assert sub.backfill is not None
    bf = sub.backfill
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
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
        for cond in sub.conditions:
            if cond.column not in types:
                raise LookupError(
                    f"filter column {cond.column!r} is not a column of {sub.schema}.{sub.table}"
                )
            expr, p = condition_sql(cond, types[cond.column][0])
            where.append(expr)
            params += p
        query = sql.SQL(
            "SELECT to_jsonb(t) FROM (SELECT * FROM {}.{} WHERE {} ORDER BY {} LIMIT {}) AS t"
        ).format(
            sql.Identifier(sub.schema),
            sql.Identifier(sub.table),
            sql.SQL(" AND ").join(where),
            sql.Identifier(bf.column),
            sql.Literal(bf.limit),
        )
        async with conn.transaction():
            role = (claims or {}).get("role")
            if role:
                cur = await conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
                if await cur.fetchone():
                    await conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(role)))
                    await conn.execute(
                        "SELECT set_config('request.jwt.claims', %s, true)", (json.dumps(claims),)
                    )
                else:
                    logger.info("backfill: role %r not in this database; querying as the DSN's user", role)
            cur = await conn.execute(query, params)
            rows = [row[0] for row in await cur.fetchall()]
    columns = tuple((name, typname) for name, (_, typname) in types.items())
    return rows, columns


def postgrest_backfill_query(client: Any, sub: TableSubscription, since: datetime) -> Any:
    """The backfill as a supabase-py PostgREST request builder (not executed).

    Realtime filters use PostgREST's syntax, so each condition maps 1:1 to ``.filter(col, op, value)``.
    """
    assert sub.backfill is not None
    bf = sub.backfill
    query = client.schema(sub.schema).table(sub.table).select("*")
    query = query.gte(bf.column, (since - timedelta(seconds=bf.lookback)).isoformat())
    for cond in sub.conditions:
        text = str(cond)
        _, rhs = text.split("=", 1)
        operator = ("not." if cond.negate else "") + cond.op
        query = query.filter(cond.column, operator, rhs[len(operator) + 1 :])
    return query.order(bf.column).limit(bf.limit)


async def backfill_via_postgrest(
    client: Any, sub: TableSubscription, since: datetime
) -> tuple[list[dict[str, Any]], tuple[tuple[str, str], ...]]:
    """The same query through supabase-py's PostgREST client (a real project without a DSN)."""
    response = await postgrest_backfill_query(client, sub, since).execute()
    return list(response.data or []), ()
