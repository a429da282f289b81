"""A table's current rows as the subscriber sees them: the starting point of a live view.

:func:`snapshot_via_dsn` reads, in one read-only REPEATABLE READ transaction:

* the table's key: its primary key, else the columns of its replica-identity index (what identifies a
  row in the change stream), else none;
* the columns the subscriber's role may ``SELECT`` (Realtime drops the others from change payloads, so
  the snapshot does too) and their types (``pg_type.typname``, as change events report them);
* the newest ``limit`` rows (``ORDER BY order_by DESC``) matching the subscription's filter.

The read runs as the subscriber: ``SET LOCAL ROLE`` to the claims' role when that role exists, else to
``anon`` (never as the DSN's own user, which is usually a superuser and bypasses row level security),
with ``request.jwt.claims`` set so that policies using ``auth.uid()`` see the subscriber. A database
without either role is refused with an error saying so.

:func:`snapshot_via_postgrest` is the same read through supabase-py's PostgREST client (a hosted
project without a DSN): PostgREST applies the key's role and RLS itself. It cannot report column types
or the key; the change events bring the types, and the key comes from PostgREST's OpenAPI description.

"Newest" is ``order_by`` when given, else the first of ``created_at``/``inserted_at`` the table has,
else its first timestamp column, else its key; the key breaks ties.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from harmony_lab.filters import Condition

__all__ = ["TableSnapshot", "newest_order", "snapshot_via_dsn", "snapshot_via_postgrest"]

logger = logging.getLogger("harmony_lab.manager")

_NEWEST_NAMES = ("created_at", "inserted_at")
_TIME_TYPES = ("timestamptz", "timestamp", "date")


@dataclasses.dataclass(frozen=True, slots=True)
class TableSnapshot:
    """What a snapshot read: ``rows`` newest first (at most the limit asked), the ``columns`` the
    subscriber may see as ``(name, type)`` (empty when the types are unknown), the table's ``key``
    columns (None when unknown), the ``order_by`` columns used, the ``role`` the read ran as and
    ``via`` (``"dsn"`` or ``"postgrest"``)."""

    rows: list[dict[str, Any]]
    columns: tuple[tuple[str, str], ...]
    key: tuple[str, ...] | None
    order_by: tuple[str, ...]
    role: str | None
    via: str


def newest_order(
    columns: Sequence[tuple[str, str]], key: Sequence[str] | None, order_by: str | Sequence[str] | None
) -> tuple[str, ...]:
    """The columns that sort a table newest first (descending), ties broken by the key."""
    names = [n for n, _ in columns]
    if order_by is not None:
        wanted = (order_by,) if isinstance(order_by, str) else tuple(order_by)
        missing = [c for c in wanted if c not in names]
        if missing:
            raise LookupError(
                f"order_by column(s) {', '.join(missing)} not among the visible columns "
                f"({', '.join(names) or 'none'}); pass order_by= naming one of them"
            )
        first: tuple[str, ...] = wanted
    else:
        candidates = [n for n in _NEWEST_NAMES if n in names] or [n for n, t in columns if t in _TIME_TYPES]
        first = tuple(candidates[:1])
    out = list(first)
    for k in key or ():
        if k not in out and k in names:
            out.append(k)
    return tuple(out)


_KEY_SQL = """
SELECT a.attname, i.indisprimary
FROM pg_index i
JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) ON true
JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
WHERE i.indrelid = %(rel)s::regclass AND (i.indisprimary OR i.indisreplident)
ORDER BY i.indisprimary DESC, k.ord
"""

_COLUMNS_SQL = """
SELECT a.attname, t.typname, format_type(a.atttypid, a.atttypmod),
       has_column_privilege(%(role)s, a.attrelid, a.attnum, 'SELECT')
FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
WHERE a.attrelid = %(rel)s::regclass AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
"""


async def snapshot_via_dsn(
    dsn: str,
    schema: str,
    table: str,
    *,
    claims: Mapping[str, Any] | None,
    conditions: Sequence[Condition] = (),
    order_by: str | Sequence[str] | None = None,
    limit: int | None = 1000,
) -> TableSnapshot:
    """The newest ``limit`` rows of ``schema.table`` (filtered by ``conditions``) as the claims' role
    sees them, with the table's key and visible columns; see the module docstring."""
    import psycopg
    from psycopg import sql

    from harmony_lab.manager._db import become, condition_sql, subscriber_role

    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit <= 0):
        raise ValueError(f"limit must be a positive int or None; got {limit!r}")
    rel = f'"{schema}"."{table}"'
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.set_isolation_level(psycopg.IsolationLevel.REPEATABLE_READ)
        await conn.set_read_only(True)
        async with conn.transaction():
            cur = await conn.execute("SELECT to_regclass(%s) IS NOT NULL", (rel,))
            found = await cur.fetchone()
            if not found or not found[0]:
                raise LookupError(f"table {schema}.{table} not found in the database the DSN points to")
            role = await subscriber_role(
                conn, claims, what="snapshot", remedy="create the role or start the frame with snapshot=False"
            )
            cur = await conn.execute(_KEY_SQL, {"rel": rel})
            key_rows = await cur.fetchall()
            primary = [name for name, is_pk in key_rows if is_pk]
            key = tuple(primary or [name for name, _ in key_rows]) or None
            cur = await conn.execute(_COLUMNS_SQL, {"rel": rel, "role": role})
            all_columns = await cur.fetchall()
            sql_types = {name: fmt for name, _, fmt, _ in all_columns}
            visible = tuple((name, typ) for name, typ, _, ok in all_columns if ok)
            order = newest_order(visible, key, order_by)
            where: list[Any] = []
            params: list[Any] = []
            for cond in conditions:
                if cond.column not in sql_types:
                    raise LookupError(f"filter column {cond.column!r} is not a column of {schema}.{table}")
                expr, p = condition_sql(cond, sql_types[cond.column])
                where.append(expr)
                params += p
            await become(conn, role, claims)
            rows: list[dict[str, Any]] = []
            if visible:
                query = sql.SQL("SELECT {cols} FROM {schema}.{table}").format(
                    cols=sql.SQL(", ").join(sql.Identifier(n) for n, _ in visible),
                    schema=sql.Identifier(schema),
                    table=sql.Identifier(table),
                )
                if where:
                    query += sql.SQL(" WHERE ") + sql.SQL(" AND ").join(where)
                if order:
                    query += sql.SQL(" ORDER BY ") + sql.SQL(", ").join(
                        sql.SQL("{} DESC NULLS LAST").format(sql.Identifier(c)) for c in order
                    )
                if limit is not None:
                    query += sql.SQL(" LIMIT {}").format(sql.Literal(limit))
                query = sql.SQL("SELECT to_jsonb(t) FROM ({}) AS t").format(query)
                cur = await conn.execute(query, params)
                rows = [row[0] for row in await cur.fetchall()]
    return TableSnapshot(rows, visible, key, order, role, "dsn")


def postgrest_snapshot_query(
    client: Any,
    schema: str,
    table: str,
    *,
    conditions: Sequence[Condition] = (),
    order_by: Sequence[str] = (),
    limit: int | None = 1000,
) -> Any:
    """The snapshot as a supabase-py PostgREST request builder (not executed)."""
    query = client.schema(schema).table(table).select("*")
    for cond in conditions:
        _, rhs = str(cond).split("=", 1)
        operator = ("not." if cond.negate else "") + cond.op
        query = query.filter(cond.column, operator, rhs[len(operator) + 1 :])
    for col in order_by:
        query = query.order(col, desc=True, nullsfirst=False)
    if limit is not None:
        query = query.limit(limit)
    return query


async def snapshot_via_postgrest(
    client: Any,
    schema: str,
    table: str,
    *,
    key: Sequence[str] | None,
    conditions: Sequence[Condition] = (),
    order_by: str | Sequence[str] | None = None,
    limit: int | None = 1000,
) -> TableSnapshot:
    """The snapshot through PostgREST (RLS applies the client's token). Without column types the
    default order is the key; pass ``order_by`` for "newest"."""
    if order_by is None:
        order: tuple[str, ...] = tuple(key or ())
    else:
        order = (order_by,) if isinstance(order_by, str) else tuple(order_by)
    query = postgrest_snapshot_query(
        client, schema, table, conditions=conditions, order_by=order, limit=limit
    )
    response = await query.execute()
    rows = [dict(r) for r in response.data or ()]
    return TableSnapshot(rows, (), tuple(key) if key else None, order, None, "postgrest")
