"""What the postgres_changes hub asks Postgres: catalog facts, subscription checks, RLS visibility.

Everything here is ``async`` over one :class:`psycopg.AsyncConnection` owned by the caller (the
hub keeps one for change processing and one for subscribing, so a join never waits behind a
busy fan-out). Nothing blocks the event loop.

* :func:`load_tables` — columns (attnum order, ``typname``, primary key, collation, enum labels),
  ``relrowsecurity`` and, per role, the columns it may ``SELECT`` (``has_column_privilege``), in one
  pipelined round trip for every table of a batch of changes;
* :func:`check_subscription` — the checks Supabase's ``realtime.subscription_check_filters`` trigger
  makes, with its wording, plus each filter value cast to the column type for the evaluator;
* :func:`visible_rows` — RLS visibility of changed rows for groups of identical ``(role, claims)``:
  ``set_config('role')`` + ``set_config('request.jwt.claims')`` then one ``exists`` query per group for
  every row of the batch, all pipelined in one rolled-back transaction;
* :func:`evaluate_sql` — the SQL fallback of the filter evaluator, batched;
* :func:`fetch_columns` — current values of columns (unchanged TOAST values of an UPDATE).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

import psycopg
from psycopg import sql

from harmony_lab.capture import to_json_value
from harmony_lab.filters import ColumnType, Condition, classify, pg_text, sql_check

__all__ = [
    "CheckError",
    "ColumnInfo",
    "SqlCheck",
    "TableInfo",
    "check_subscription",
    "connect",
    "evaluate_sql",
    "fetch_columns",
    "load_tables",
    "pg_error_message",
    "publication_tables",
    "visible_rows",
]

logger = logging.getLogger(__name__)

SESSION_OPTIONS: Final = "-c TimeZone=UTC -c DateStyle=ISO -c IntervalStyle=postgres"


async def connect(dsn: str, *, application_name: str = "harmony_lab_changes") -> psycopg.AsyncConnection[Any]:
    """An autocommit connection with the session settings ``to_jsonb`` renderings depend on."""
    return await psycopg.AsyncConnection.connect(
        dsn, autocommit=True, options=SESSION_OPTIONS, application_name=application_name
    )


# --------------------------------------------------------------------------------------------
# catalog


@dataclasses.dataclass(frozen=True, slots=True)
class ColumnInfo:
    name: str
    attnum: int
    typname: str
    ctype: ColumnType
    is_pk: bool


@dataclasses.dataclass(frozen=True, slots=True)
class TableInfo:
    oid: int
    schema: str
    name: str
    rls: bool
    columns: tuple[ColumnInfo, ...]
    selectable: Mapping[str, frozenset[str]]
    """role → names of the columns it may SELECT (roles asked for only)."""
    bypass: Mapping[str, bool]
    """role → superuser or BYPASSRLS."""
    pk: tuple[str, ...] = dataclasses.field(init=False)
    by_name: Mapping[str, ColumnInfo] = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "pk", tuple(c.name for c in self.columns if c.is_pk))
        object.__setattr__(self, "by_name", {c.name: c for c in self.columns})

    def can_select_pk(self, role: str) -> bool:
        allowed = self.selectable.get(role, frozenset())
        return all(name in allowed for name in self.pk)

    @property
    def ident(self) -> sql.Composable:
        return sql.Identifier(self.schema, self.name)


_TABLES_SQL: Final = """
select c.oid, n.nspname, c.relname, c.relrowsecurity,
       a.attnum, a.attname, t.typname,
       case when t.typname = 'bpchar' then 'bpchar' else format_type(a.atttypid, null) end,
       t.typtype,
       case when a.attcollation = 0 then null
            when a.attcollation = 100 then (select datcollate from pg_database
                                             where datname = current_database())
            else co.collname end,
       coalesce(a.attnum = any(pk.conkey), false),
       array(select r.rolname from pg_roles r
              where r.rolname = any(%(roles)s::text[])
                and has_column_privilege(r.oid, c.oid, a.attnum, 'SELECT')),
       case when t.typtype = 'e' then array(select e.enumlabel::text from pg_enum e
                                             where e.enumtypid = t.oid order by e.enumsortorder) end
from pg_class c
join pg_namespace n on n.oid = c.relnamespace
join pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
join pg_type t on t.oid = a.atttypid
left join pg_collation co on co.oid = a.attcollation
left join pg_constraint pk on pk.conrelid = c.oid and pk.contype = 'p'
where c.oid = any(%(oids)s::oid[])
order by c.oid, a.attnum
"""

_ROLES_SQL: Final = """
select rolname, rolsuper or rolbypassrls from pg_roles where rolname = any(%(roles)s::text[])
"""


async def load_tables(
    conn: psycopg.AsyncConnection[Any], oids: Iterable[int], roles: Iterable[str]
) -> dict[int, TableInfo]:
    """Catalog facts for ``oids`` as seen now, with privileges for ``roles`` (one round trip)."""
    params = {"oids": sorted(set(oids)), "roles": sorted(set(roles))}
    async with conn.pipeline():
        cur_t = await conn.execute(_TABLES_SQL, params)
        cur_r = await conn.execute(_ROLES_SQL, params)
        rows = await cur_t.fetchall()
        role_rows = await cur_r.fetchall()
    bypass = {name: bool(flag) for name, flag in role_rows}
    grouped: dict[int, list[tuple[Any, ...]]] = {}
    for row in rows:
        grouped.setdefault(row[0], []).append(row)
    out: dict[int, TableInfo] = {}
    for oid, trows in grouped.items():
        columns = []
        selectable: dict[str, set[str]] = {r: set() for r in params["roles"]}
        for (
            _oid,
            _nsp,
            _rel,
            _rls,
            attnum,
            attname,
            typname,
            regtype,
            typtype,
            collation,
            is_pk,
            roles_ok,
            labels,
        ) in trows:
            ctype = classify(typname, regtype, typtype=typtype, collation=collation, enum_labels=labels or ())
            columns.append(ColumnInfo(attname, attnum, typname, ctype, bool(is_pk)))
            for r in roles_ok:
                selectable.setdefault(r, set()).add(attname)
        first = trows[0]
        out[oid] = TableInfo(
            oid=oid,
            schema=first[1],
            name=first[2],
            rls=bool(first[3]),
            columns=tuple(columns),
            selectable={r: frozenset(cols) for r, cols in selectable.items()},
            bypass=bypass,
        )
    return out


async def publication_tables(
    conn: psycopg.AsyncConnection[Any], publication: str, schema: str, table: str
) -> list[tuple[int, str, str]]:
    """``(oid, schema, table)`` of the publication's tables matching the binding, with Realtime's
    ``LIKE`` semantics (``*`` → ``%``; ``_`` and ``%`` in names are wildcards too, no escape)."""
    cur = await conn.execute(
        """
        select format('%%I.%%I', schemaname, tablename)::regclass::oid, schemaname, tablename
        from pg_publication_tables
        where pubname = %(pub)s
          and schemaname like (case %(schema)s when '*' then '%%' else %(schema)s end) escape ''
          and tablename like (case %(table)s when '*' then '%%' else %(table)s end) escape ''
        order by schemaname, tablename
        """,
        {"pub": publication, "schema": schema, "table": table},
    )
    return [(int(oid), s, t) for oid, s, t in await cur.fetchall()]


# --------------------------------------------------------------------------------------------
# subscription checks


class CheckError(Exception):
    """A subscription check failed; ``str()`` is the Postgrex-style message the real server shows."""


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def pg_error_message(exc: psycopg.Error) -> str:
    """``ERROR 22P02 (invalid_text_representation) invalid input syntax …`` (Postgrex's format)."""
    diag = exc.diag
    severity = diag.severity_nonlocalized or diag.severity or "ERROR"
    sqlstate = exc.sqlstate or "XX000"
    name = _snake(type(exc).__name__)
    return f"{severity} {sqlstate} ({name}) {diag.message_primary or str(exc)}"


def _raise_exception(message: str) -> CheckError:
    return CheckError(f"ERROR P0001 (raise_exception) {message}")


@dataclasses.dataclass(frozen=True, slots=True)
class CheckedCondition:
    condition: Condition
    column: ColumnInfo
    canonical: Any
    """The filter value cast to the column type, in ``to_jsonb`` rendering (list for ``in``)."""


async def _sqlerrm(
    conn: psycopg.AsyncConnection[Any], query: sql.Composable, params: Sequence[Any] | Mapping[str, Any]
) -> Any:
    """Run ``query`` in a savepoint; return its first value or raise :class:`psycopg.Error`."""
    async with conn.transaction():
        cur = await conn.execute(query, params)
        row = await cur.fetchone()
        return row[0] if row else None


async def _canonical(conn: psycopg.AsyncConnection[Any], col: ColumnInfo, value: Any, *, array: bool) -> Any:
    """A filter value cast to the column's type (``T[]`` for ``in``), in the form :class:`Change` rows
    carry it: ``to_jsonb``'s rendering, except that ``numeric`` goes through the change stream's own
    converter so values beyond a float's precision stay exact."""
    regtype = col.ctype.regtype + ("[]" if array else "")
    if col.typname == "numeric":
        text = await _sqlerrm(
            conn, sql.SQL("select cast(%s::text as {})::text").format(sql.SQL(regtype)), (value,)
        )
        return to_json_value("_numeric" if array else "numeric", text)
    return await _sqlerrm(
        conn, sql.SQL("select to_jsonb(cast(%s::text as {}))").format(sql.SQL(regtype)), (value,)
    )


# The operator each pattern filter applies. As Supabase checks it, like/ilike need ``~~`` with the
# column's exact type on its left (text, char, name, bytea) and match/imatch need ``~``/``~*`` with it on
# both sides (text): a varchar or domain column is refused for all four, an integer one too.
_PATTERN_OPERATORS: Final = {"like": "~~", "ilike": "~~", "match": "~", "imatch": "~*"}

_TEXT_COMPATIBLE = """
select case when exists (
    select 1 from pg_catalog.pg_operator
    where oprname = %(opr)s and oprleft = %(type)s::regtype
      and (not %(regex)s or (oprright = %(type)s::regtype and oprresult = 'boolean'::regtype))
) then null else %(type)s::regtype::text end
"""


async def _check_pattern_filter(conn: psycopg.AsyncConnection[Any], cond: Condition, regtype: str) -> None:
    """like/ilike/match/imatch as ``subscription_check_filters`` checks them: the column's type must
    have the operator (else ``operator like requires a text-compatible column type, got integer``),
    then a regular expression must compile (``invalid regular expression for match filter: …``)."""
    regex = cond.op in ("match", "imatch")
    params = {"opr": _PATTERN_OPERATORS[cond.op], "type": regtype, "regex": regex}
    refused_type = await _sqlerrm(conn, sql.SQL(_TEXT_COMPATIBLE), params)
    if refused_type is not None:
        raise _raise_exception(
            f"operator {cond.op} requires a text-compatible column type, got {refused_type}"
        )
    if regex:
        try:
            await _sqlerrm(conn, sql.SQL("select '' ~ %s::text"), (cond.value,))
        except psycopg.Error as exc:
            raise _raise_exception(
                f"invalid regular expression for {cond.op} filter: {exc.diag.message_primary}"
            ) from exc


async def check_subscription(
    conn: psycopg.AsyncConnection[Any],
    table: TableInfo,
    role: str,
    conditions: Sequence[Condition],
    selected: Sequence[str] | None,
) -> list[CheckedCondition]:
    """Validate filters and ``select`` for one table like ``subscription_check_filters``.

    ``table`` must carry privileges for ``role``. Raises :class:`CheckError` with the trigger's
    message (``invalid column for filter x``, cast errors, ``too many values for `in` filter…``).
    """
    allowed = table.selectable.get(role, frozenset())
    by_name = table.by_name
    checked: list[CheckedCondition] = []
    async with conn.transaction(force_rollback=True):
        for cond in conditions:
            if cond.column not in allowed or cond.column not in by_name:
                raise _raise_exception(f"invalid column for filter {cond.column}")
            col = by_name[cond.column]
            regtype = col.ctype.regtype
            canonical: Any = None
            try:
                if cond.op == "in":
                    canonical = await _canonical(conn, col, cond.wire_value, array=True)
                    if canonical is not None and len(canonical) > 100:
                        raise _raise_exception("too many values for `in` filter. Maximum 100")
                    continue_checks = False
                elif cond.op == "is":
                    if cond.value is not None and col.typname != "bool":
                        raise _raise_exception(
                            f"is {cond.value} filter requires a boolean column, got {regtype}"
                        )
                    continue_checks = False
                elif cond.op in _PATTERN_OPERATORS:
                    await _check_pattern_filter(conn, cond, regtype)
                    continue_checks = False
                else:
                    canonical = await _canonical(conn, col, cond.value, array=False)
                    continue_checks = True
                if continue_checks:
                    probe = sql.SQL("select " + sql_check(cond, regtype))
                    try:
                        await _sqlerrm(conn, probe, (cond.value, cond.value))
                    except psycopg.Error as exc:
                        raise _raise_exception(
                            f"operator {cond.op} is not supported on column {cond.column} of type "
                            f"{regtype}: {exc.diag.message_primary}"
                        ) from exc
            except psycopg.Error as exc:
                raise CheckError(pg_error_message(exc)) from exc
            checked.append(CheckedCondition(cond, col, canonical))
        for name in selected or ():
            if name not in allowed or name not in by_name:
                raise _raise_exception(f"invalid column for select {name}")
    return checked


async def check_role(conn: psycopg.AsyncConnection[Any], role: Any) -> str:
    """The claims' role must exist (``claims_role regrole``)."""
    if not isinstance(role, str) or not role:
        raise CheckError(
            "ERROR 22004 (null_value_not_allowed) the JWT claims have no `role`; "
            "tokens need a role claim such as anon, authenticated or service_role"
        )
    try:
        await _sqlerrm(conn, sql.SQL("select %s::text::regrole"), (role,))
    except psycopg.Error as exc:
        raise CheckError(pg_error_message(exc)) from exc
    return role


# --------------------------------------------------------------------------------------------
# RLS


def _rows_query(table: TableInfo, n_rows: int) -> sql.Composable:
    pk = [table.by_name[name] for name in table.pk]
    values = sql.SQL(", ").join(
        sql.SQL("({})").format(
            sql.SQL(", ").join(
                [sql.Literal(i)]
                + [sql.SQL("cast({} as {})").format(sql.Placeholder(), sql.SQL(c.ctype.regtype)) for c in pk]
            )
        )
        for i in range(n_rows)
    )
    names = [sql.Identifier(f"k{j}") for j in range(len(pk))]
    cond = sql.SQL(" and ").join(
        sql.SQL("t.{} = v.{}").format(sql.Identifier(c.name), names[j]) for j, c in enumerate(pk)
    )
    return sql.SQL(
        "select v.i from (values {values}) as v(i, {names})"
        " where exists (select 1 from {table} t where {cond})"
    ).format(values=values, names=sql.SQL(", ").join(names), table=table.ident, cond=cond)


async def visible_rows(
    conn: psycopg.AsyncConnection[Any],
    table: TableInfo,
    groups: Sequence[tuple[str, str]],
    rows: Sequence[Mapping[str, Any]],
) -> list[set[int]]:
    """For each ``(role, claims_json)`` group, the indexes of ``rows`` (primary-key images) that the
    role with those JWT claims can currently SELECT under the table's RLS policies.

    One transaction (rolled back), one pipelined round trip; a group whose query fails (e.g. the role
    lost USAGE on the schema) sees nothing and is logged.
    """
    if not groups or not rows:
        return [set() for _ in groups]
    query = _rows_query(table, len(rows))
    params = [pg_text(row.get(name)) for row in rows for name in table.pk]
    try:
        return await _visible_pipelined(conn, query, params, groups)
    except psycopg.Error as exc:
        logger.warning(
            "RLS check on %s.%s failed for a batch (%s); retrying group by group",
            table.schema,
            table.name,
            exc,
        )
    out: list[set[int]] = []
    for group in groups:
        try:
            out.extend(await _visible_pipelined(conn, query, params, [group]))
        except psycopg.Error as exc:
            logger.error(
                "RLS check on %s.%s as role %r failed: %s; the change is not delivered to that role",
                table.schema,
                table.name,
                group[0],
                exc,
            )
            out.append(set())
    return out


async def _visible_pipelined(
    conn: psycopg.AsyncConnection[Any],
    query: sql.Composable,
    params: Sequence[Any],
    groups: Sequence[tuple[str, str]],
) -> list[set[int]]:
    async with conn.transaction(force_rollback=True), conn.pipeline():
        cursors = []
        for role, claims_json in groups:
            await conn.execute(
                "select set_config('role', %s, true), set_config('request.jwt.claims', %s, true)",
                (role, claims_json),
            )
            cursors.append(await conn.execute(query, params))
        results = [{int(r[0]) for r in await cur.fetchall()} for cur in cursors]
    return results


# --------------------------------------------------------------------------------------------
# SQL fallback and TOAST


@dataclasses.dataclass(frozen=True, slots=True)
class SqlCheck:
    condition: Condition
    regtype: str
    row_text: str | None

    @property
    def filter_text(self) -> str | None:
        cond = self.condition
        if cond.op == "in":
            return cond.wire_value
        return cond.value if isinstance(cond.value, str) else None


FILTER_STATEMENT_TIMEOUT_MS: Final = 250
"""Bound on one batched filter query: a regex or pattern that takes longer is treated as not matching."""


async def _select_bounded(
    conn: psycopg.AsyncConnection[Any], query: sql.Composable, params: Sequence[Any]
) -> Any:
    async with conn.transaction():
        timeout = sql.SQL("SET LOCAL statement_timeout = {}").format(sql.Literal(FILTER_STATEMENT_TIMEOUT_MS))
        await conn.execute(timeout)
        cur = await conn.execute(query, params)
        return await cur.fetchone()


async def evaluate_sql(conn: psycopg.AsyncConnection[Any], checks: Sequence[SqlCheck]) -> list[bool]:
    """Evaluate conditions Python left to Postgres: ``True`` only when the SQL result is true.

    Every query runs under a statement timeout (:data:`FILTER_STATEMENT_TIMEOUT_MS`): a filter that
    exceeds it counts as not matching, and is logged, instead of holding up every other subscriber.
    """
    if not checks:
        return []
    exprs = [sql_check(c.condition, c.regtype) for c in checks]
    params: list[Any] = []
    for c in checks:
        params.extend((c.row_text, c.filter_text))
    try:
        row = await _select_bounded(conn, sql.SQL("select " + ", ".join(exprs)), params)
        assert row is not None
        return [v is True for v in row]
    except psycopg.Error as exc:
        logger.warning("batched filter evaluation failed (%s); evaluating one by one", exc)
    out = []
    for c, expr in zip(checks, exprs, strict=True):
        try:
            row = await _select_bounded(conn, sql.SQL("select " + expr), (c.row_text, c.filter_text))
            out.append(bool(row and row[0] is True))
        except psycopg.Error as exc:
            logger.error(
                "filter %s on a %s value of %d characters raised in Postgres: %s; treated as not matching",
                c.condition,
                c.regtype,
                len(c.row_text or ""),
                exc,
            )
            out.append(False)
    return out


async def fetch_columns(
    conn: psycopg.AsyncConnection[Any], table: TableInfo, pk_values: Mapping[str, Any], columns: Sequence[str]
) -> dict[str, Any] | None:
    """Current values (``to_jsonb`` rendering) of ``columns`` of the row with ``pk_values``."""
    if not table.pk or not columns:
        return None
    by_name = table.by_name
    where = sql.SQL(" and ").join(
        sql.SQL("{} = cast(%s as {})").format(sql.Identifier(name), sql.SQL(by_name[name].ctype.regtype))
        for name in table.pk
    )
    pick = sql.SQL(", ").join(
        sql.SQL("{}, to_jsonb({})").format(sql.Literal(name), sql.Identifier(name)) for name in columns
    )
    query = sql.SQL("select jsonb_build_object({}) from {} where {}").format(pick, table.ident, where)
    cur = await conn.execute(query, [pg_text(pk_values.get(name)) for name in table.pk])
    row = await cur.fetchone()
    if row is None:
        return None
    value = row[0]
    return dict(json.loads(value) if isinstance(value, str) else value)
